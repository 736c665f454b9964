"""Reproduction plan of parameter-efficient robust fine-tuning (:mod:`reproduce`): AutoLoRa
against TWINS-AT and AT fine-tuning, on the TWINS protocol's self-contained scenario.

The shared robust CIFAR-10 ResNet-18 (``../shared/models``) is fine-tuned on GTSRB with the
shipped configs ``configs/experiments/autolora/gtsrb_from_cifar10.yaml`` and
``configs/experiments/twins/gtsrb_from_cifar10_{twins_at,at_ft}.yaml``. All three start from
one classifier head fitted first by a clean linear probe of the frozen source (its backbone
and BatchNorm statistics untouched, ``bn_statistics: source``): with a new random head, the
TWINS configs' learning rate (0.003) leaves the fine-tunings at chance in the steps a CPU run
affords (benchmarks/results/reproduce_twins_cpu.md). All runs see the same training images
and the same held-out 5 % (AutoLoRa's automatic learning rate follows its robust accuracy;
the others validate on it and select nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

from reproduce_plans import REPO, SHARED_MODEL, Claim, Paper, Run, _common, _evaluators

# GTSRB images per class for training / validation / test (None: all), epochs of the methods
# and of the head fitted first, training PGD steps, evaluation PGD steps, AutoAttack
# (APGD-CE + APGD-T) iterations and target classes. ``gpu``: the whole GTSRB copy of the GPU
# bundle (benchmarks/device: 70 training images per class, the first 2,000 test images), sized
# with the rest of the ``new_methods`` plan for one H200 within 8 minutes: AutoAttack keeps
# its 100 iterations with one APGD-T target class (the cpu scale's), as the three tests of
# 2,000 images would otherwise weigh as much as the three fine-tunings.
AUTOLORA_SIZES = {
    "smoke": dict(train=1, val=1, test=1, batch=43, epochs=1, head_epochs=1, steps=1, pgd=2,
                  aa=2, targets=1, workers=0),
    "cpu": dict(train=20, val=3, test=5, batch=64, epochs=4, head_epochs=10, steps=2, pgd=10,
                aa=20, targets=1, workers=0),
    "gpu": dict(train=None, val=None, test=None, batch=128, epochs=10, head_epochs=10, steps=10,
                pgd=10, aa=100, targets=1, workers=8),
}
AUTOLORA_RUNS = {
    "at_ft": ("configs/experiments/twins/gtsrb_from_cifar10_at_ft.yaml", "AT fine-tuning"),
    "twins_at": ("configs/experiments/twins/gtsrb_from_cifar10_twins_at.yaml", "TWINS-AT"),
    "autolora": ("configs/experiments/autolora/gtsrb_from_cifar10.yaml", "AutoLoRa"),
}
# The clean linear probe's learning rate, constant (setup, not a method's setting): measured on
# the cpu scale's images, the probe reaches 15 % validation accuracy in 20 epochs at 0.5 and
# 8 % in 10 epochs at 0.1 (multistep); the source's features transfer slowly to GTSRB.
HEAD_LR = 0.5


def _data(size: dict) -> list[str]:
    """The same training, validation and test images for every run."""
    args = ["--data.init_args.val_size", "0.05"]
    for key, option in (("train", "samples_per_class"), ("val", "val_samples_per_class"),
                        ("test", "test_samples_per_class")):
        if size[key] is not None:
            args += [f"--data.init_args.{option}", str(size[key])]
    return args


def _head(size: dict, work: Path, source: Path) -> Run:
    """A clean linear probe of the frozen source on GTSRB; the methods start from its head."""
    args = ["fit", "--config", str(REPO / "configs/method/last_layer.yaml"),
            "--config", str(REPO / "configs/data/gtsrb.yaml"),
            "--model.init_args.backbone", "resnet18", "--model.init_args.pretrained", str(source),
            "--model.init_args.mean", "[0, 0, 0]", "--model.init_args.std", "[1, 1, 1]",
            "--model.init_args.bn_statistics", "source",
            "--model.init_args.lr", str(HEAD_LR), "--model.init_args.schedule", "constant",
            "--data.init_args.batch_size", str(size["batch"]),
            "--trainer.max_epochs", str(size["head_epochs"]),
            "--trainer.logger.init_args.version", "0", *_common(work, "head", size["workers"])]
    return Run("head", tuple(args + _data(size)), reported=False)


def autolora(scale: str, work: Path, models: Path) -> Paper:
    """AutoLoRa vs TWINS-AT and AT fine-tuning of the robust CIFAR-10 ResNet-18 on GTSRB."""
    size = AUTOLORA_SIZES[scale]
    epochs = size["epochs"]
    head = work / "head" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt"
    runs = [_head(size, work, models / SHARED_MODEL)]
    for name, (config, _) in AUTOLORA_RUNS.items():
        args = ["fit", "--test_after_fit", "true", "--config", str(REPO / config),
                "--model.init_args.pretrained", str(head),
                "--model.init_args.reset_head", "false",
                "--model.init_args.report_dir", str(work / name),
                "--model.init_args.attack.init_args.steps", str(size["steps"]),
                "--model.init_args.evaluators", _evaluators(size["pgd"], 1, size["aa"],
                                                            size["targets"]),
                "--data.init_args.batch_size", str(size["batch"]),
                "--trainer.max_epochs", str(epochs), *_common(work, name, size["workers"])]
        if name != "autolora":  # the TWINS configs' x0.1 at 30 and 50 of 60 epochs, scaled
            args += ["--model.init_args.milestones", json.dumps([epochs / 2, epochs * 5 / 6])]
        runs.append(Run(name, tuple(args + _data(size)), needs=("head",)))
    label = {name: text for name, (_, text) in AUTOLORA_RUNS.items()}
    claims = [Claim(f"AutoLoRa above AT fine-tuning: {metric}", metric, "autolora", "at_ft",
                    "up") for metric in ("clean", "pgd10", "autoattack")]
    claims += [Claim(f"AutoLoRa not below {label['twins_at']} by more than 1 point: {metric}",
                     metric, "autolora", "twins_at", "kept", tolerance_points=1.0,
                     paper_delta=delta)
               for metric, delta in (("clean", 0.43), ("autoattack", 0.27))]
    return Paper(
        title="AutoLoRa (Xu, Zhang and Kankanhalli, ICLR 2024)",
        setting=("the robust CIFAR-10 ResNet-18 of ../shared/models fine-tuned on GTSRB with "
                 "configs/experiments/autolora/gtsrb_from_cifar10.yaml and configs/experiments/"
                 "twins/gtsrb_from_cifar10_{twins_at,at_ft}.yaml, all three starting from a "
                 f"head fitted first on the frozen source ({size['head_epochs']} epochs of clean "
                 f"last-layer training at constant lr {HEAD_LR:g}, BatchNorm statistics kept; a "
                 "departure from the papers' new random head); the same training images and "
                 "held-out 5 % "
                 f"for all; {epochs} epochs, training PGD-{size['steps']}; L∞ 8/255"),
        runs=runs, metrics=["clean=clean_acc", "pgd10=robust_acc/pgd*",
                            "autoattack=robust_acc/autoattack*"],
        baseline="at_ft", claims=claims,
        paper_setting=("AutoLoRa's comparison on the TWINS protocol, a robust ImageNet "
                       "ResNet-50 fine-tuned on CIFAR-10 (clean / AutoAttack): AutoLoRa 86.93 / "
                       "52.00, TWINS 86.50 / 51.73; GTSRB from a CIFAR-10 ResNet-18 is not among "
                       "the paper's settings, so only the directions compare"),
        paper_values={"autolora": {"clean": 86.93, "autoattack": 52.00},
                      "twins_at": {"clean": 86.50, "autoattack": 51.73}},
    )
