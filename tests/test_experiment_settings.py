"""The shipped experiment configs hold the papers' settings (DESIGN §6), table-driven.

Each row of :data:`SETTINGS` is ``(file pattern, dotted key, expected value)``: every config
under ``configs/experiments/`` that matches the pattern must hold the value at the key. A key
``a.b[PGDEvaluator].c`` picks, in the list at ``a.b``, the entry whose ``class_path`` ends
with that class name. To cover a new paper, add its rows; a covered folder whose file matches
no row fails, and so does a row that matches no file.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiments"
COVERED = ("twins", "rift", "autolora", "roli")  # folders whose every config must match the table

LINF_8 = {"eps": 8 / 255, "step_size": 2 / 255, "steps": 10, "norm": "linf"}
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
M = "model.init_args"

SETTINGS: list[tuple[str, str, Any]] = [
    # TWINS (Liu et al., CVPR 2023): SGD 0.003, momentum 0.9, batch 128, 60 epochs, x0.1 at
    # 30 and 50; PGD-10 L-inf 8/255 step 2/255 for training and PGD-10 for evaluation.
    ("twins/*.yaml", f"{M}.lr", 0.003),
    ("twins/*.yaml", f"{M}.momentum", 0.9),
    ("twins/*.yaml", f"{M}.schedule", "multistep"),
    ("twins/*.yaml", f"{M}.milestones", [30, 50]),
    ("twins/*.yaml", f"{M}.gamma", 0.1),
    ("twins/*.yaml", "data.init_args.batch_size", 128),
    ("twins/*.yaml", "trainer.max_epochs", 60),
    ("twins/*.yaml", f"{M}.attack.init_args", {**LINF_8, "loss": "ce"}),
    ("twins/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 1}),
    ("twins/cifar*.yaml", f"{M}.weight_decay", 1e-5),
    ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.weight_decay", 1e-5),
    ("twins/caltech256_*.yaml", f"{M}.weight_decay", 1e-3),
    ("twins/cifar*_twins_*.yaml", f"{M}.lam", 1.0),
    ("twins/gtsrb_from_cifar10_twins_*.yaml", f"{M}.lam", 1.0),
    ("twins/caltech256_twins_*.yaml", f"{M}.lam", 0.4),
    ("twins/*trades*.yaml", f"{M}.beta", 6.0),
    ("twins/*_twins_at.yaml", f"{M}.variant", "at"),
    ("twins/*_twins_trades.yaml", f"{M}.variant", "trades"),
    ("twins/*_at_ft.yaml", "model.class_path", "lit_robust.methods.AdversarialTraining"),
    ("twins/*_at_ft.yaml", f"{M}.attack_in_eval_mode", True),
    ("twins/cifar*.yaml", f"{M}.mean", IMAGENET[0]),
    ("twins/cifar*.yaml", f"{M}.std", IMAGENET[1]),
    ("twins/caltech256_*.yaml", f"{M}.mean", IMAGENET[0]),
    ("twins/caltech256_*.yaml", f"{M}.std", IMAGENET[1]),
    ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.mean", [0.0, 0.0, 0.0]),
    ("twins/gtsrb_from_cifar10_*.yaml", f"{M}.std", [1.0, 1.0, 1.0]),
    # RiFT (Zhu et al., ICCV 2023): MRC with eps 0.1, 10 ascent epochs at lr 1 on PGD-10
    # examples; fine-tuning SGD 1e-3, momentum 0.9, wd 5e-4, 10 epochs, x0.1 at 5; alpha in
    # {0, 0.1, ..., 1} within 0.1 points of alpha = 0; PGD-10 worst of 3 restarts.
    ("rift/*.yaml", "model.class_path", "lit_robust.methods.rift.RiFT"),
    ("rift/*.yaml", f"{M}.mrc_epsilon", 0.1),
    ("rift/*.yaml", f"{M}.mrc_epochs", 10),
    ("rift/*.yaml", f"{M}.mrc_lr", 1.0),
    ("rift/*.yaml", f"{M}.mrc_attack.init_args", LINF_8),
    ("rift/*.yaml", f"{M}.interpolation_attack.init_args", LINF_8),
    ("rift/*.yaml", f"{M}.alphas", [round(0.1 * i, 1) for i in range(11)]),
    ("rift/*.yaml", f"{M}.alpha_tolerance", 0.1),
    ("rift/*.yaml", f"{M}.lr", 0.001),
    ("rift/*.yaml", f"{M}.momentum", 0.9),
    ("rift/*.yaml", f"{M}.weight_decay", 5e-4),
    ("rift/*.yaml", f"{M}.schedule", "multistep"),
    ("rift/*.yaml", f"{M}.milestones", [5]),
    ("rift/*.yaml", f"{M}.gamma", 0.1),
    ("rift/*.yaml", "trainer.max_epochs", 10),
    ("rift/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 3}),
    ("rift/*.yaml", f"{M}.evaluators[CorruptionRobustness].class_path",
     "lit_robust.evaluation.CorruptionRobustness"),
    # AutoLoRa (Xu et al., ICLR 2024; official high-resolution code): r_nat 8, LoRA scale 1/8,
    # lambda2 = 6 x accuracy, automatic lr from 0.01 (window 4, rho 0.75, halving, stop below
    # 1e-5), SGD momentum 0.9, wd 1e-4, batch 128, 60 epochs, PGD-10 L-inf 8/255 step 2/255,
    # 5% of the training split held out; the TWINS protocol's sources and normalization.
    ("autolora/*.yaml", "model.class_path", "lit_robust.methods.AutoLoRa"),
    ("autolora/*.yaml", f"{M}.rank", 8),
    ("autolora/*.yaml", f"{M}.lora_alpha", 1.0),
    ("autolora/*.yaml", f"{M}.kl_scale", 6.0),
    ("autolora/*.yaml", f"{M}.auto_lr", True),
    ("autolora/*.yaml", f"{M}.lr", 0.01),
    ("autolora/*.yaml", f"{M}.lr_window", 4),
    ("autolora/*.yaml", f"{M}.lr_rho", 0.75),
    ("autolora/*.yaml", f"{M}.lr_divisor", 2.0),
    ("autolora/*.yaml", f"{M}.min_lr", 1e-5),
    ("autolora/*.yaml", f"{M}.momentum", 0.9),
    ("autolora/*.yaml", f"{M}.weight_decay", 1e-4),
    ("autolora/*.yaml", f"{M}.attack.init_args", {**LINF_8, "loss": "ce"}),
    ("autolora/*.yaml", f"{M}.evaluators[PGDEvaluator].init_args", {**LINF_8, "restarts": 1}),
    ("autolora/*.yaml", "data.init_args.batch_size", 128),
    ("autolora/*.yaml", "data.init_args.val_size", 0.05),
    ("autolora/*.yaml", "trainer.max_epochs", 60),
    ("autolora/cifar*.yaml", f"{M}.mean", IMAGENET[0]),
    ("autolora/caltech256.yaml", f"{M}.std", IMAGENET[1]),
    ("autolora/gtsrb_from_cifar10.yaml", f"{M}.mean", [0.0, 0.0, 0.0]),
    # RoLI (Hua et al., CVPR 2024; official configs/linear/*_ranli.yaml and
    # configs/finetune/*_roli.yaml): PGD-7 L-inf 8/255 step 2/255 training, PGD-10
    # validation, batch 64, cosine with 10 warm-up epochs; stage 1 SGD, stage 2 AdamW 1e-4.
    ("roli/*.yaml", "model.class_path", "lit_robust.methods.RoLI"),
    ("roli/*.yaml", f"{M}.attack.init_args", {**LINF_8, "steps": 7, "loss": "ce"}),
    ("roli/*.yaml", f"{M}.val_attack.init_args", {**LINF_8, "loss": "ce"}),
    ("roli/*.yaml", "data.init_args.batch_size", 64),
    ("roli/*.yaml", f"{M}.schedule", "cosine"),
    ("roli/*.yaml", f"{M}.warmup_epochs", 10),
    ("roli/*_probe.yaml", f"{M}.stage", "probe"),
    ("roli/*_probe.yaml", f"{M}.optimizer", "sgd"),
    ("roli/*_probe.yaml", f"{M}.momentum", 0.9),
    ("roli/*_finetune.yaml", f"{M}.stage", "finetune"),
    ("roli/*_finetune.yaml", f"{M}.optimizer", "adamw"),
    ("roli/*_finetune.yaml", f"{M}.lr", 1e-4),
    ("roli/cifar10_probe.yaml", f"{M}.lr", 0.05),
    ("roli/cifar10_*.yaml", f"{M}.weight_decay", 0.01),
    ("roli/cifar100_probe.yaml", f"{M}.lr", 0.1),
    ("roli/cifar100_*.yaml", f"{M}.weight_decay", 0.001),
    ("roli/caltech256_probe.yaml", f"{M}.lr", 0.5),
    ("roli/caltech256_probe.yaml", f"{M}.weight_decay", 0.01),
    ("roli/caltech256_finetune.yaml", f"{M}.weight_decay", 1e-4),
    ("roli/caltech256_*.yaml", "trainer.max_epochs", 40),
    ("roli/cifar*.yaml", "trainer.max_epochs", 20),
]


def _configs() -> list[str]:
    return sorted(str(p.relative_to(EXPERIMENTS)) for folder in COVERED
                  for p in (EXPERIMENTS / folder).glob("*.yaml"))


def lookup(config: dict[str, Any], key: str) -> Any:
    """The value at a dotted key; ``name[Class]`` selects a list entry by its class_path."""
    value: Any = config
    for part in key.split("."):
        match = re.fullmatch(r"(\w+)\[(\w+)\]", part)
        if match is None:
            value = value[part]
            continue
        entries = [e for e in value[match.group(1)]
                   if e["class_path"].rsplit(".", 1)[-1] == match.group(2)]
        assert len(entries) == 1, f"expected one {match.group(2)} in {match.group(1)}"
        value = entries[0]
    return value


def _close(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(actual) >= set(expected) and all(
            _close(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _close(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, float) and not isinstance(actual, bool):
        return isinstance(actual, (int, float)) and actual == pytest.approx(expected, rel=1e-6)
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("name", _configs())
def test_config_holds_the_papers_settings(name: str) -> None:
    config = yaml.safe_load((EXPERIMENTS / name).read_text())
    rows = [(key, value) for pattern, key, value in SETTINGS if fnmatch(name, pattern)]
    assert rows, f"{name} matches no row of SETTINGS; add the paper's settings for it"
    wrong = {key: (lookup(config, key), value) for key, value in rows
             if not _close(lookup(config, key), value)}
    assert not wrong, f"{name}: (found, paper) = {wrong}"


def test_every_row_applies_to_some_config() -> None:
    names = _configs()
    unused = [pattern for pattern, _, _ in SETTINGS
              if not any(fnmatch(n, pattern) for n in names)]
    assert not unused, f"rows match no config: {unused}"


def test_comparison_catches_a_wrong_value() -> None:
    assert not _close(0.0031, 0.003)
    assert not _close({"eps": 8 / 255, "steps": 7}, LINF_8)
    assert not _close([30, 40], [30, 50])
    assert not _close(1, True) and not _close("ce", "kl")
    assert _close({**LINF_8, "loss": "ce"}, LINF_8) and _close(0.0078431372, 2 / 255)
