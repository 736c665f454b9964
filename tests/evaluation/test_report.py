"""RobustnessReport files, TensorBoard logging and finish_evaluation in a Lightning test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.evaluation import (
    CleanAccuracy,
    Evaluator,
    PGDEvaluator,
    RobustnessReport,
    SanityCheckError,
    finish_evaluation,
    log_to_tensorboard,
)
from lit_robust.evaluation.report import metric_groups
from lit_robust.evaluation.sanity import SanityCheckWarning

METRICS = {
    "clean_acc": 0.838,
    "robust_acc/pgd10x3_linf_eps0.03137": 0.318,
    "robust_acc/autoattack_standard_linf_eps0.03137": 0.235,
    "robust_acc/autoattack_standard_linf_eps0.03137/apgd-ce": 0.25,
    "eps_sweep/sanity/eps0": 0.838,
    "smoothing_sigma0.25/certified_acc@0": 0.7,
    "smoothing_sigma0.25/certified_acc@0.5": 0.4,
    "smoothing_sigma0.25/acr": 0.471,
    "smoothing_sigma0.25/abstain_rate": 0.05,
    "corruption_acc/mean": 0.66,
    "corruption_acc/severity_5": 0.5,
    "sanity/within_budget": 1.0,
    "seconds": float("nan"),
}


def test_groups_are_recognized_by_name() -> None:
    groups = metric_groups(METRICS)
    assert groups["clean_acc"] == "clean"
    assert groups["robust_acc/autoattack_standard_linf_eps0.03137/apgd-ce"] == "adversarial"
    assert groups["eps_sweep/sanity/eps0"] == "ε sweep"
    assert groups["smoothing_sigma0.25/acr"] == "certified"
    assert groups["smoothing_sigma0.25/abstain_rate"] == "certified"
    assert groups["corruption_acc/mean"] == "corruptions"
    assert groups["sanity/within_budget"] == "sanity"
    assert groups["seconds"] == "other"


def test_report_files_hold_every_metric_and_never_overwrite(tmp_path: Path) -> None:
    report = RobustnessReport(METRICS, method="TRADES", checkpoint="last.ckpt",
                              dataset="CIFAR10", config={"beta": 6.0, "root": tmp_path})
    json_path, md_path = report.write(tmp_path / "out")
    assert (json_path.name, md_path.name) == ("report.json", "report.md")
    document = json.loads(json_path.read_text())
    assert document["metadata"]["method"] == "TRADES"
    assert document["config"] == {"beta": 6.0, "root": str(tmp_path)}
    assert set(document["metrics"]) == {*METRICS, "sanity/robust_le_clean"}
    assert document["metrics"]["seconds"] is None  # NaN is written as null
    assert document["metrics"]["sanity/robust_le_clean"] == 1.0
    markdown = md_path.read_text()
    for key in document["metrics"]:
        assert f"`{key}`" in markdown
    assert "| clean | `clean_acc` | 83.80% |" in markdown
    assert "| certified | `smoothing_sigma0.25/acr` | 0.471 |" in markdown
    assert "| sanity | `sanity/within_budget` | pass |" in markdown
    assert "| corruptions | `corruption_acc/mean` | 66.00% |" in markdown

    first = json_path.read_text()
    again = RobustnessReport({"clean_acc": 0.5}).write(tmp_path / "out")
    assert [p.name for p in again] == ["report-1.json", "report-1.md"]
    assert json_path.read_text() == first
    (tmp_path / "out" / "report-2.md").write_text("someone else's")
    third = RobustnessReport({"clean_acc": 0.5}).write(tmp_path / "out")
    assert [p.name for p in third] == ["report-3.json", "report-3.md"]


def test_failed_checks_are_flagged_in_the_report(tmp_path: Path) -> None:
    with pytest.warns(SanityCheckWarning):
        report = RobustnessReport({"clean_acc": 0.2, "robust_acc/pgd": 0.3})
    assert report.failed_checks == ["sanity/robust_le_clean"]
    _, md_path = report.write(tmp_path)
    markdown = md_path.read_text()
    assert "| sanity | `sanity/robust_le_clean` | **FAIL** |" in markdown
    assert "cannot be trusted" in markdown


def test_log_to_tensorboard_writes_scalars_and_figures(tmp_path: Path) -> None:
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    assert log_to_tensorboard(None, {"clean_acc": 0.5}) is False
    assert log_to_tensorboard(CSVLogger(tmp_path), {"clean_acc": 0.5}) is False
    tb = TensorBoardLogger(tmp_path, name="tb")
    assert log_to_tensorboard(tb, {"clean_acc": 0.5}, {"curve": figure}, step=3)
    events = EventAccumulator(tb.log_dir)
    events.Reload()
    assert events.Scalars("test/clean_acc")[0].value == pytest.approx(0.5)
    assert events.Scalars("test/clean_acc")[0].step == 3
    assert "test/curve" in events.Tags()["images"]


class _Classifier(LightningModule):
    """The smallest module that tests like lit_robust's methods do."""

    def __init__(self, evaluators: list[Evaluator], report_dir: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["evaluators"])
        self.report_dir = report_dir
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
        self.evaluators = nn.ModuleList(evaluators)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        for evaluator in self.evaluators:
            evaluator.update(self.model, x, y)

    def on_test_epoch_end(self) -> None:
        self.results = finish_evaluation(self, list(self.evaluators))


class _Inflated(Evaluator):
    """A broken robust evaluation that claims more than clean accuracy."""

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        pass

    def compute(self) -> dict[str, float]:
        return {"robust_acc/inflated": 1.0}


def _loader() -> DataLoader:
    torch.manual_seed(1)
    x = torch.rand(24, 3, 8, 8)
    return DataLoader(TensorDataset(x, torch.randint(0, 4, (24,))), batch_size=8)


def _trainer(tmp_path: Path, logger: object) -> Trainer:
    return Trainer(default_root_dir=tmp_path, logger=logger, inference_mode=False,
                   enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def test_finish_evaluation_logs_and_writes_the_report(tmp_path: Path) -> None:
    module = _Classifier([CleanAccuracy(), PGDEvaluator(steps=2, eps=1 / 255)])
    tb = TensorBoardLogger(tmp_path, name="tb")
    (logged,) = _trainer(tmp_path, tb).test(module, _loader())
    assert set(logged) == {"test/clean_acc", "test/robust_acc/pgd2_linf_eps0.003922",
                           "test/sanity/robust_le_clean"}
    assert logged["test/clean_acc"] == pytest.approx(module.results["clean_acc"])
    document = json.loads((Path(tb.log_dir) / "report.json").read_text())
    assert document["metadata"]["method"] == "_Classifier"
    assert document["metrics"] == module.results
    assert math.isclose(document["metrics"]["sanity/robust_le_clean"], 1.0)
    # evaluators are reset, so a second test run reports the same numbers into report-1
    (again,) = _trainer(tmp_path, tb).test(module, _loader())
    assert again == logged
    assert (Path(tb.log_dir) / "report-1.json").is_file()


def test_without_logger_the_report_goes_to_report_dir_only(tmp_path: Path) -> None:
    _trainer(tmp_path, False).test(_Classifier([CleanAccuracy()]), _loader())
    assert not list(tmp_path.rglob("report*.json"))
    module = _Classifier([CleanAccuracy()], report_dir=str(tmp_path / "reports"))
    _trainer(tmp_path, False).test(module, _loader())
    assert (tmp_path / "reports" / "report.json").is_file()


def test_a_failed_check_raises_after_the_report_is_written(tmp_path: Path) -> None:
    module = _Classifier([CleanAccuracy(), _Inflated()], report_dir=str(tmp_path))
    with pytest.raises(SanityCheckError, match="robust accuracy exceeds clean accuracy"):
        with pytest.warns(SanityCheckWarning):
            _trainer(tmp_path, False).test(module, _loader())
    assert "**FAIL**" in (tmp_path / "report.md").read_text()
