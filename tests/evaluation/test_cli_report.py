"""End to end: `lit-robust test` on a checkpoint of a short real-data run writes the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lit_robust.main import cli

REPO = Path(__file__).resolve().parents[2]
METHOD = REPO / "configs" / "method" / "adversarial_training.yaml"
EVALUATORS = REPO / "tests" / "conf" / "all_evaluators.yaml"
DATA = [
    "--data", "lit_robust.data.CIFAR10DataModule",
    "--data.samples_per_class", "20", "--data.val_size", "50",
    "--data.test_samples_per_class", "4", "--data.batch_size", "32", "--data.num_workers", "0",
]
TINY = [
    "--model.init_args.backbone", "tiny_cnn",
    "--model.init_args.attack.init_args.steps", "2",
]


def test_cli_test_on_checkpoint_writes_every_metric(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    fit = cli(["fit", "--config", str(METHOD), *DATA, *TINY, "--trainer.max_epochs", "1"])
    checkpoint = fit.trainer.checkpoint_callback.last_model_path
    assert Path(checkpoint).is_file()

    test = cli([
        "test", "--config", str(METHOD), "--config", str(EVALUATORS), *DATA, *TINY,
        "--ckpt_path", checkpoint, "--model.init_args.report_dir", str(tmp_path / "reports"),
    ])
    report = json.loads((tmp_path / "reports" / "report.json").read_text())
    metrics = report["metrics"]
    expected = [
        "clean_acc",
        "robust_acc/pgd3x2_linf_eps0.03137",
        "robust_acc/autoattack_apgd-ce+apgd-t_linf_eps0.03137",
        "robust_acc/autoattack_apgd-ce+apgd-t_linf_eps0.03137/apgd-t",
        "smoothing_sigma0.25/acr",
        "smoothing_sigma0.25/certified_acc@0.25",
        "corruption_acc/mean",
        "corruption_acc/gaussian_noise",
        "sanity/eps0_matches_clean",
        "sanity/monotone_in_eps",
        "sanity/robust_le_clean",
    ]
    missing = [name for name in expected if name not in metrics]
    assert not missing, f"report lacks {missing}; has {sorted(metrics)}"
    assert all(metrics[k] == 1.0 for k in metrics if k.startswith("sanity/"))
    markdown = (tmp_path / "reports" / "report.md").read_text()
    assert "clean_acc" in markdown and "corruption_acc/mean" in markdown
    assert test.model.test_results["clean_acc"] == metrics["clean_acc"]
