"""Reproduction plans that train or pick their own sources (:mod:`reproduce`): CARTL's
FDM source + NEFT against an AT source + vanilla transfer, and the transfer study's AT / CR
fine-tuning from random, standard and robust sources.

Both start from the CIFAR ResNet-18s the GPU bundle carries (benchmarks/device): the robust
one of ``../shared/models`` and the standard one it was fine-tuned from (``pyautoattack``'s
``examples/model_test.pt``), and transfer to GTSRB.
"""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from reproduce_plans import (
    REPO,
    SHARED_MODEL,
    Claim,
    Paper,
    Run,
    _common,
    _evaluators,
)

STANDARD_MODEL = "cifar10_resnet18_standard.pt"  # as run.sh unpacks it from the bundle


def standard_model(models: Path) -> Path:
    """The standard CIFAR-10 ResNet-18: beside the robust one when unpacked from a bundle,
    else the example model inside the installed ``pyautoattack``."""
    if (models / STANDARD_MODEL).is_file():
        return models / STANDARD_MODEL
    return Path(str(importlib.resources.files("pyautoattack") / "examples" / "model_test.pt"))


def _checkpoint(work: Path, name: str, logger_name: str) -> Path:
    return work / name / logger_name / "version_0" / "checkpoints" / "last.ckpt"


# CARTL (FDM + NEFT vs AT + vanilla): CIFAR-10 images per class for the sources (None: all),
# source epochs (both sources fine-tune the robust ResNet-18 at lr 0.01 for the same epochs),
# GTSRB images per class for the transfer (None: all) and test images per class, the fraction
# of the transfer configs' 100 epochs, evaluation sizes. ``gpu``: the cartl_study bundle.
CARTL_FDM_SIZES = {
    "smoke": dict(source_train=2, source_epochs=1, train=1, test=1, epochs=None, batch=43,
                  pgd=2, aa=2, targets=1, workers=0),
    "cpu": dict(source_train=20, source_epochs=2, train=20, test=10, epochs=0.05, batch=64,
                pgd=20, aa=20, targets=3, workers=0),
    "gpu": dict(source_train=None, source_epochs=10, train=None, test=None, epochs=0.2,
                batch=128, pgd=20, aa=100, targets=3, workers=8),
}
CARTL_FDM_CONFIGS = {
    "at_source": "configs/method/adversarial_training.yaml",
    "fdm_source": "configs/experiments/cartl/source_cifar10_resnet18_fdm_k3.yaml",
    "vanilla_k3": "configs/experiments/cartl/gtsrb_from_cifar10_resnet18_shared_robust_"
                  "vanilla_k3.yaml",
    "neft_k3": "configs/experiments/cartl/gtsrb_from_cifar10_resnet18_fdm_neft_k3.yaml",
}


def cartl_fdm(scale: str, work: Path, models: Path) -> Paper:
    """CARTL's FDM source with NEFT against a plain AT source with vanilla last-k transfer."""
    size = CARTL_FDM_SIZES[scale]
    runs = []
    for name, logger in (("at_source", "lit_robust"), ("fdm_source", "cartl")):
        args = ["fit", "--config", str(REPO / CARTL_FDM_CONFIGS[name])]
        if name == "at_source":
            args += ["--config", str(REPO / "configs/data/cifar10.yaml"),
                     "--model.init_args.attack.init_args.steps", "7"]  # CARTL's source PGD-7
        epochs = size["source_epochs"]
        args += ["--model.init_args.pretrained", str(models / SHARED_MODEL),
                 "--model.init_args.mean", "[0, 0, 0]", "--model.init_args.std", "[1, 1, 1]",
                 "--model.init_args.lr", "0.01",
                 "--model.init_args.milestones", json.dumps([epochs * 0.5, epochs * 0.75]),
                 "--data.init_args.batch_size", str(size["batch"]),
                 "--trainer.max_epochs", str(epochs),
                 "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                 "--trainer.logger.init_args.name", logger,
                 "--trainer.logger.init_args.version", "0",
                 *_common(work, name, size["workers"])]
        if size["source_train"] is not None:
            args += ["--data.init_args.samples_per_class", str(size["source_train"]),
                     "--data.init_args.val_size", "0"]
        runs.append(Run(name, tuple(args), reported=False))
    for name, source, logger in (("vanilla_k3", "at_source", "lit_robust"),
                                 ("neft_k3", "fdm_source", "cartl")):
        epochs = 1 if size["epochs"] is None else max(1, round(100 * size["epochs"]))
        args = ["fit", "--test_after_fit", "true", "--config", str(REPO / CARTL_FDM_CONFIGS[name]),
                "--model.init_args.pretrained", str(_checkpoint(work, source, logger)),
                "--model.init_args.report_dir", str(work / name),
                "--model.init_args.evaluators", _evaluators(size["pgd"], 1, size["aa"],
                                                            size["targets"]),
                "--model.init_args.milestones",
                json.dumps([epochs * 0.4, epochs * 0.7, epochs * 0.9]),
                "--data.init_args.batch_size", str(size["batch"]),
                "--trainer.max_epochs", str(epochs), *_common(work, name, size["workers"])]
        if size["train"] is not None:
            args += ["--data.init_args.samples_per_class", str(size["train"]),
                     "--data.init_args.val_size", "0"]
        if size["test"] is not None:
            args += ["--data.init_args.test_samples_per_class", str(size["test"])]
        runs.append(Run(name, tuple(args), needs=(source,)))
    return Paper(
        title="CARTL (Chen et al., ICML 2021): FDM + NEFT vs AT + vanilla transfer",
        setting=("two CIFAR-10 sources fine-tuned from the robust ResNet-18 of ../shared/models "
                 "for the same epochs at lr 0.01 (a departure: the paper trains its sources "
                 "from scratch): PGD-7 AT, and AT with FDM (configs/experiments/cartl/"
                 "source_cifar10_resnet18_fdm_k3.yaml); each transferred to GTSRB, the AT "
                 "source with vanilla last-3 fine-tuning, the FDM source with NEFT (β 0.4); "
                 "L∞ 8/255"),
        runs=runs, metrics=["clean=clean_acc", "pgd20=robust_acc/pgd*",
                            "autoattack=robust_acc/autoattack*"],
        baseline="vanilla_k3",
        claims=[Claim("FDM + NEFT keeps more PGD-20 robustness than AT + vanilla", "pgd20",
                      "neft_k3", "vanilla_k3", "up"),
                Claim("FDM + NEFT keeps more AutoAttack robustness than AT + vanilla",
                      "autoattack", "neft_k3", "vanilla_k3", "up"),
                Claim("FDM + NEFT's clean accuracy is similar (within 1 point)", "clean",
                      "neft_k3", "vanilla_k3", "kept", tolerance_points=1.0)],
        paper_setting=("Table 3 compares CARTL (FDM source + NEFT) with an AT source and "
                       "vanilla fine-tuning on Wide ResNets; its numbers are not transcribed "
                       "here, only its direction"),
        paper_values={},
    )


# The study from given sources: GTSRB images per class (None: the config's) and test images
# per class (None: all), epochs of each fine-tuning (None: the config's 8), and the evaluation
# sizes: APGD-CE iterations (RA-WB), Square queries (RA-BB), certification (n0, n, images).
# ``cpu`` and ``gpu`` evaluate as the configs do.
STUDY_SOURCES_SIZES = {
    "smoke": dict(train=2, test=1, epochs=1, batch=43, workers=0, apgd=2, square=10,
                  certify=(4, 16, 5)),
    "cpu": dict(train=None, test=None, epochs=None, batch=64, workers=0, apgd=20, square=300,
                certify=(20, 200, 50)),
    "gpu": dict(train=None, test=None, epochs=15, batch=128, workers=8, apgd=20, square=300,
                certify=(20, 200, 50)),
}


def _study_evaluators(size: dict) -> str:
    """The fine-tuning configs' evaluators (the same names) at this scale's sizes."""
    n0, n, certified = size["certify"]
    attack = {"norm": "L2", "eps": 0.5, "version": "custom"}
    return json.dumps([
        {"class_path": "lit_robust.evaluation.CleanAccuracy"},
        {"class_path": "lit_robust.evaluation.AutoAttackEvaluator",
         "init_args": {**attack, "attacks_to_run": ["apgd-ce"], "apgd_n_iter": size["apgd"],
                       "apgd_n_restarts": 1, "name": "ra_wb_apgd_ce_l2_eps0.5"}},
        {"class_path": "lit_robust.evaluation.AutoAttackEvaluator",
         "init_args": {**attack, "attacks_to_run": ["square"],
                       "square_n_queries": size["square"], "name": "ra_bb_square_l2_eps0.5"}},
        {"class_path": "lit_robust.evaluation.SmoothingCertification",
         "init_args": {"sigma": 0.5, "n0": n0, "n": n, "alpha": 0.001, "max_images": certified,
                       "radii": [0.0, 0.25, 0.5, 0.75, 1.0]}}])
STUDY_SOURCES = {"random": "random init", "standard": "standard", "robust": "robust"}
STUDY_FINETUNING = {"at": "AT", "cr": "CR"}
STUDY_METRICS = ["SA=clean_acc", "RA-WB=robust_acc/ra_wb*", "RA-BB=robust_acc/ra_bb*"]


def study_sources(scale: str, work: Path, models: Path) -> Paper:
    """AT (L2 0.5) and CR (σ 0.5) fine-tuning on GTSRB from random, standard and robust
    CIFAR-10 ResNet-18s: does pre-training raise SA and robustness over random init?"""
    size = STUDY_SOURCES_SIZES[scale]
    files = {"standard": standard_model(models), "robust": models / SHARED_MODEL}
    runs = []
    for source in STUDY_SOURCES:
        for finetune in STUDY_FINETUNING:
            name = f"{source}__{finetune}"
            config = REPO / f"configs/experiments/transfer/self_contained/finetune_{finetune}.yaml"
            args = ["fit", "--test_after_fit", "true", "--config", str(config),
                    "--model.init_args.backbone", "resnet18",
                    "--model.init_args.backbone_kwargs", "null",
                    "--model.init_args.mean", "[0, 0, 0]", "--model.init_args.std", "[1, 1, 1]",
                    "--model.init_args.report_dir", str(work / name),
                    "--model.init_args.evaluators", _study_evaluators(size),
                    "--data.init_args.batch_size", str(size["batch"]),
                    *_common(work, name, size["workers"])]
            if source in files:
                args += ["--model.init_args.pretrained", str(files[source])]
            if size["epochs"] is not None:
                args += ["--trainer.max_epochs", str(size["epochs"])]
            if size["train"] is not None:
                args += ["--data.init_args.samples_per_class", str(size["train"]),
                         "--data.init_args.val_size", "0"]
            if size["test"] is not None:
                args += ["--data.init_args.test_samples_per_class", str(size["test"])]
            elif scale == "gpu":  # every test image of the bundle
                args += ["--data.init_args.test_samples_per_class", "null"]
            runs.append(Run(name, tuple(args)))
    claims = [Claim(f"{STUDY_SOURCES[source]} source raises {metric} over random init "
                    f"({STUDY_FINETUNING[finetune]} fine-tuning)", metric,
                    f"{source}__{finetune}", f"random__{finetune}", "up")
              for finetune in STUDY_FINETUNING for source in ("standard", "robust")
              for metric in ("SA", "RA-WB")]
    return Paper(
        title="A Study of the Effects of Transfer Learning on Adversarial Robustness "
              "(Vaishnavi, Eykholt and Rahmati, TMLR): random, standard and robust sources",
        setting=("ResNet-18 at 32 px fine-tuned on GTSRB with configs/experiments/transfer/"
                 "self_contained/finetune_{at,cr}.yaml (AT L2 ε 0.5, 3 steps; CR σ 0.5) from "
                 "random init, the standard CIFAR-10 ResNet-18 (pyautoattack's example model) "
                 "and the robust one of ../shared/models; no normalization (the sources' "
                 "own); RA-WB APGD-CE and RA-BB Square at L2 0.5"),
        runs=runs, metrics=STUDY_METRICS, baseline="random__at", claims=claims,
        paper_setting=("the paper fine-tunes ImageNet ResNet-50 sources on 12 downstream sets; "
                       "its numbers are not transcribed here: compare the direction, "
                       "pre-trained sources above random init in SA and in robustness, the "
                       "robustness gain following the SA gain"),
        paper_values={},
    )
