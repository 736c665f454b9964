"""A YAML layered over a shipped config by the CLI tests: tiny model, tiny real data, cheap
attacks and evaluators, the report in ``tmp_path/reports``."""

from __future__ import annotations

from pathlib import Path

import yaml

CHEAP_ATTACK = {"eps": 8 / 255, "step_size": 4 / 255, "steps": 2}
CONF = Path(__file__).resolve().parent
# command-line arguments: the tiny model and tiny real CIFAR-10 data on the CPU, quietly
TINY_CLI = ["--config", str(CONF / "tiny_model.yaml"), "--config", str(CONF / "tiny_cifar10.yaml"),
            "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
# ... and a fit of one short epoch
SHORT_FIT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
             "--trainer.limit_val_batches", "1"]


def write_tiny_overrides(tmp_path: Path, **model_args: object) -> Path:
    """Write the overrides (``model_args`` added to or replacing the model's) and return the
    file's path."""
    attack = {"class_path": "lit_robust.attacks.PGDAttack", "init_args": CHEAP_ATTACK}
    overrides = {
        "model": {"init_args": {
            "backbone": "tiny_cnn", "pretrained": None, "val_attack": attack,
            "evaluators": [
                {"class_path": "lit_robust.evaluation.CleanAccuracy"},
                {"class_path": "lit_robust.evaluation.PGDEvaluator", "init_args": CHEAP_ATTACK},
            ],
            "report_dir": str(tmp_path / "reports"),
            **model_args,
        }},
        "data": {"init_args": {"samples_per_class": 2, "val_size": 0.2,
                               "test_samples_per_class": 1, "batch_size": 8, "num_workers": 0}},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return path
