"""Progress lines with an ETA for long work outside the trainer's loops: the counter itself,
the four places that use it (certification, AutoAttack, corruptions, the MRC search), and
the trainer's ``enable_progress_bar`` and rank 0 deciding whether anything is printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from lit_robust import progress
from lit_robust.evaluation import (
    AutoAttackEvaluator,
    CleanAccuracy,
    CorruptionRobustness,
    SmoothingCertification,
    evaluate,
)
from lit_robust.methods import StandardTraining
from lit_robust.methods.rift import module_robust_criticality
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.zoo import build_backbone
from lit_robust.progress import Progress, trainer_shows_progress
from tests.evaluation.corruption_files import write_cifar_c
from tests.evaluation.toy_models import self_labelled_batch

ETA = r"\d+:\d\d:\d\d elapsed, ETA \d+:\d\d:\d\d"


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def every_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Print a line after every item (the first line of a task is then always due)."""
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)


def _lines(capsys: pytest.CaptureFixture, task: str) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(task)]


def test_lines_give_counts_elapsed_time_and_eta(capsys: pytest.CaptureFixture) -> None:
    clock = FakeClock()
    counter = Progress("certify", 4, "images", min_interval_s=10.0, clock=clock)
    clock.now += 30.0
    counter.advance(detail="image 0")
    clock.now += 5.0  # only 5 s since the last line: not due
    counter.advance()
    clock.now += 25.0
    counter.advance()
    clock.now += 1.0  # the last item: printed because earlier lines were
    counter.advance()
    assert _lines(capsys, "certify") == [
        "certify: 1/4 images, 0:00:30 elapsed, ETA 0:01:30 (image 0)",
        "certify: 3/4 images, 0:01:00 elapsed, ETA 0:00:20",
        "certify: 4/4 images, 0:01:01 elapsed",
    ]


def test_long_tasks_print_less_often(capsys: pytest.CaptureFixture) -> None:
    clock = FakeClock()
    counter = Progress("search", 100, "modules", min_interval_s=10.0, clock=clock)
    for _ in range(100):  # one item a minute for 100 minutes
        clock.now += 60.0
        counter.advance()
    lines = _lines(capsys, "search")
    assert lines[0] == "search: 1/100 modules, 0:01:00 elapsed, ETA 1:39:00"
    assert lines[-1] == "search: 100/100 modules, 1:40:00 elapsed"
    minutes = [int(re.search(r"(\d+)/100", line).group(1)) for line in lines]
    gaps = list(zip(minutes, minutes[1:], strict=False))[:-1]  # the last item always prints
    assert all(later - earlier >= max(1, 0.05 * later) for earlier, later in gaps)
    assert minutes[:20] == list(range(1, 21))  # every minute while 5 % is under a minute
    assert len(lines) < 60


def test_an_unknown_total_gives_no_eta(capsys: pytest.CaptureFixture) -> None:
    clock = FakeClock()
    counter = Progress("search", None, "modules", min_interval_s=10.0, clock=clock)
    clock.now += 60.0
    counter.advance()
    assert _lines(capsys, "search") == ["search: 1 modules, 0:01:00 elapsed"]


def test_short_tasks_print_nothing(capsys: pytest.CaptureFixture) -> None:
    clock = FakeClock()
    counter = Progress("certify", 3, "images", min_interval_s=10.0, clock=clock)
    for _ in range(3):
        clock.now += 1.0
        counter.advance()
    assert capsys.readouterr().out == ""


def test_disabled_or_not_rank_zero_prints_nothing(capsys, monkeypatch) -> None:
    clock = FakeClock()
    counter = Progress("certify", 2, "images", enabled=False, min_interval_s=0.0, clock=clock)
    clock.now += 20.0
    counter.advance()
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    other_rank = Progress("certify", 2, "images", min_interval_s=0.0, clock=clock)
    clock.now += 20.0
    other_rank.advance()
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="number of items"):
        Progress("certify", -1)


def test_trainer_without_progress_bar_or_on_another_rank_shows_none() -> None:
    quiet = Trainer(enable_progress_bar=False, logger=False, enable_checkpointing=False)
    shown = Trainer(enable_progress_bar=True, logger=False, enable_checkpointing=False)
    assert not trainer_shows_progress(quiet) and trainer_shows_progress(shown)

    class OtherRank:
        progress_bar_callback = shown.progress_bar_callback
        is_global_zero = False

    assert not trainer_shows_progress(OtherRank())


def _loader(n: int = 6, batch_size: int = 3) -> tuple[torch.nn.Module, DataLoader]:
    model, x, y = self_labelled_batch(n)
    return model, DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _certification() -> SmoothingCertification:
    return SmoothingCertification(sigma=0.25, n0=4, n=20, skip=2, batch_size=20,
                                  name="certify")


def test_certification_counts_its_images(every_item, capsys) -> None:
    model, loader = _loader()
    evaluate(model, loader, [_certification()])
    lines = _lines(capsys, "certify")
    assert re.fullmatch(rf"certify: 1/3 images, {ETA}", lines[0])  # images 0, 2, 4
    assert lines[-1].startswith("certify: 3/3 images")

    evaluate(model, loader, [_certification()], progress=False)
    assert _lines(capsys, "certify") == []


def test_autoattack_counts_its_attack_runs(every_item, capsys) -> None:
    model, loader = _loader()
    autoattack = AutoAttackEvaluator(eps=1 / 255, version="custom",
                                     attacks_to_run=["apgd-ce", "apgd-t"], apgd_n_iter=1,
                                     apgd_n_restarts=1, apgd_t_n_iter=1,
                                     apgd_t_n_target_classes=1, name="aa")
    evaluate(model, loader, [autoattack])
    lines = _lines(capsys, "aa:")
    # 2 batches × 2 attacks
    assert re.fullmatch(rf"aa: 1/4 attack runs, {ETA} \(apgd-ce\)", lines[0])
    assert lines[-1].startswith("aa: 4/4 attack runs") and lines[-1].endswith("(apgd-t)")

    evaluate(model, loader, [autoattack], progress=False)
    assert _lines(capsys, "aa:") == []


def test_corruptions_count_corruption_severity_passes(every_item, capsys,
                                                      tmp_path: Path) -> None:
    model, loader = _loader()
    generated = CorruptionRobustness(corruptions=["gaussian_noise", "contrast"], severities=[1],
                                     name="generated")
    evaluate(model, loader, [generated])
    lines = _lines(capsys, "generated")
    unit = "corruption × severity passes"
    assert re.fullmatch(rf"generated: 1/4 {unit}, {ETA} \(gaussian_noise 1\)", lines[0])
    assert lines[-1].startswith(f"generated: 4/4 {unit}")  # 2 batches × 2 corruptions

    write_cifar_c(tmp_path, corruption="fog")
    files = CorruptionRobustness(corruptions=["fog"], severities=[1, 5], source="files",
                                 root=str(tmp_path), dataset="cifar10", name="files")
    evaluate(model, loader, [CleanAccuracy(), files])
    lines = _lines(capsys, "files")
    assert re.fullmatch(rf"files: 1/2 {unit}, {ETA} \(fog 1\)", lines[0])
    assert lines[-1].startswith(f"files: 2/2 {unit}")

    evaluate(model, loader, [generated], progress=False)
    assert _lines(capsys, "generated") == []


def test_mrc_search_counts_its_modules(every_item, capsys) -> None:
    net = build_backbone("tiny_cnn", num_classes=10)
    model = NormalizedClassifier(net, mean=[0.5] * 3, std=[0.25] * 3)
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    rows = module_robust_criticality(model, x, y, epochs=1, batch_size=8)
    lines = _lines(capsys, "MRC search")
    assert re.fullmatch(rf"MRC search: 1/{len(rows)} modules, {ETA} \({rows[0].module}\)",
                        lines[0])
    assert lines[-1].startswith(f"MRC search: {len(rows)}/{len(rows)} modules")

    module_robust_criticality(model, x, y, epochs=1, batch_size=8, progress=False)
    assert _lines(capsys, "MRC search") == []


@pytest.mark.parametrize("progress_bar", [True, False])
def test_a_methods_test_prints_progress_only_with_the_progress_bar(
    progress_bar: bool, every_item, capsys, tmp_path: Path
) -> None:
    _, loader = _loader()
    method = StandardTraining(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                              evaluators=[_certification()])
    trainer = Trainer(enable_progress_bar=progress_bar, logger=False, enable_checkpointing=False,
                      enable_model_summary=False, inference_mode=False,
                      default_root_dir=tmp_path, accelerator="cpu")
    trainer.test(method, loader)
    lines = _lines(capsys, "certify:")
    if progress_bar:
        assert re.fullmatch(rf"certify: 1/3 images, {ETA}", lines[0])
    else:
        assert lines == []
