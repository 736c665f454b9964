"""The runs of the reproduction suite (:mod:`reproduce`): per paper, the ``lit-robust`` calls
of the shipped configs at each scale, the claims they test and the paper's numbers.

A scale changes only sizes (images, epochs, attack steps and iterations, the α grid), never a
method's hyperparameters; ``tests/benchmarks/test_reproduce.py`` checks that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import transfer_study  # beside this file, like this module for reproduce.py

REPO = Path(__file__).resolve().parents[1]
PAPERS = ("twins", "rift", "cartl", "study", "cartl_fdm", "study_sources")
SCALES = ("smoke", "cpu", "gpu")
EPS, STEP = "0.031372549", "0.007843137"  # 8/255 and 2/255
SHARED_MODEL = "cifar10_resnet18_fgsm_rs.pt"


@dataclass(frozen=True)
class Run:
    """One ``lit-robust`` call; its report is ``<work>/<name>/report.json``, unless
    ``reported`` is false (a source model's training, which other runs start from). ``needs``
    names the runs whose outputs it starts from (they run first)."""

    name: str
    args: tuple[str, ...]
    reported: bool = True
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A direction the paper reports: ``metric`` of run ``ours`` vs run ``baseline``.

    ``expected`` is ``"up"`` (higher) or ``"kept"`` (not lower by more than
    ``tolerance_points``); ``paper_delta`` is the paper's change in points, if it gives one.
    """

    text: str
    metric: str
    ours: str
    baseline: str
    expected: str
    tolerance_points: float = 0.0
    paper_delta: float | None = None


@dataclass(frozen=True)
class Paper:
    """The runs, metrics, claims and published numbers of one reproduction."""

    title: str
    setting: str
    runs: list[Run]
    metrics: list[str]
    baseline: str
    claims: list[Claim]
    paper_setting: str
    paper_values: dict[str, dict[str, float]]


def _evaluators(pgd_steps: int, pgd_restarts: int, aa_iters: int, aa_targets: int,
                corruption: dict | None = None) -> str:
    """Clean, PGD and AutoAttack (APGD-CE + APGD-T; left out when ``aa_iters`` is 0) and,
    when ``corruption`` is given, generated corruptions."""
    evaluators = [
        {"class_path": "lit_robust.evaluation.CleanAccuracy"},
        {"class_path": "lit_robust.evaluation.PGDEvaluator",
         "init_args": {"eps": float(EPS), "step_size": float(STEP), "steps": pgd_steps,
                       "norm": "linf", "restarts": pgd_restarts}},
    ]
    if aa_iters:
        evaluators.append(
            {"class_path": "lit_robust.evaluation.AutoAttackEvaluator",
             "init_args": {"norm": "Linf", "eps": float(EPS), "version": "custom",
                           "attacks_to_run": ["apgd-ce", "apgd-t"], "apgd_n_iter": aa_iters,
                           "apgd_n_restarts": 1, "apgd_t_n_iter": aa_iters,
                           "apgd_t_n_restarts": 1, "apgd_t_n_target_classes": aa_targets}})
    if corruption is not None:
        evaluators.append({"class_path": "lit_robust.evaluation.CorruptionRobustness",
                           "init_args": {"source": "generate", **corruption}})
    return json.dumps(evaluators)


def _common(work: Path, name: str, workers: int) -> list[str]:
    return ["--trainer.logger.init_args.save_dir", str(work / name),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--data.init_args.num_workers", str(workers)]


# Sizes per scale. TWINS: target images per class (train / test; None = all), epochs, training
# PGD steps, evaluation PGD steps, AutoAttack iterations and target classes, the methods run
# and the epochs of a head fitted first (None: the methods start from a new random head).
# The target is the Tiny-ImageNet subset at 32 px, chosen by measurement
# (benchmarks/results/linear_probe_cpu.md): a linear probe of the robust source's frozen
# features reaches 8.7 % there against 5.2 % for random features, while on GTSRB it reaches
# 39.8 % against 61.7 % for random features (the robust source's features hurt there).
# ``gpu`` is sized for one H200 from the GPU bundle's data (benchmarks/device): all 5,000
# training images (a tenth held out) and the 4,000 test images; the head is fitted first
# (clean linear probe of the frozen source, 10 epochs), as TWINS' and RoLI's practice
# suggests: at the paper's lr 0.003 a new head barely moves in the steps that fit (the cpu
# result on GTSRB, where the fine-tunings stayed near chance).
TWINS_TARGET = ["--data", "lit_robust.data.TinyImageNetDataModule",
                "--data.init_args.image_size", "32", "--data.init_args.resize", "resize"]
TWINS_SIZES = {
    "smoke": dict(train=1, test=None, test_first=40, batch=43, epochs=1, steps=1, pgd=2, aa=2,
                  targets=1, workers=0, methods=("at_ft", "twins_at"), head_epochs=1),
    "cpu": dict(train=20, test=10, test_first=None, batch=64, epochs=4, steps=3, pgd=10, aa=20,
                targets=3, workers=0, methods=("twins_at", "twins_trades", "at_ft", "trades_ft"),
                head_epochs=None),
    "gpu": dict(train=None, test=None, test_first=None, batch=128, epochs=10, steps=10, pgd=10,
                aa=100, targets=3, workers=8, methods=("at_ft", "twins_at"), head_epochs=10),
}
TWINS_RUNS = {"twins_at": "TWINS-AT", "twins_trades": "TWINS-TRADES", "at_ft": "AT fine-tuning",
              "trades_ft": "TRADES fine-tuning"}
TWINS_PAIRS = (("twins_at", "at_ft"), ("twins_trades", "trades_ft"))


def _twins_head(size: dict, work: Path, source: Path) -> Run:
    """A clean linear probe of the frozen source on the target, whose head the methods start
    from."""
    args = ["fit", "--config", str(REPO / "configs/method/last_layer.yaml"),
            "--config", str(REPO / "configs/data/tiny_imagenet.yaml"), *TWINS_TARGET[2:],
            "--model.init_args.backbone", "resnet18", "--model.init_args.pretrained", str(source),
            "--model.init_args.mean", "[0, 0, 0]", "--model.init_args.std", "[1, 1, 1]",
            "--model.init_args.milestones", json.dumps([size["head_epochs"] * 0.75]),
            "--data.init_args.batch_size", str(size["batch"]),
            "--trainer.max_epochs", str(size["head_epochs"]),
            "--trainer.logger.init_args.version", "0", *_common(work, "head", size["workers"])]
    return Run("head", tuple(args + _twins_data(size)), reported=False)


def _twins_data(size: dict) -> list[str]:
    args = []
    if size["train"] is not None:  # small scales: no validation split, test final weights
        args += ["--data.init_args.samples_per_class", str(size["train"]),
                 "--data.init_args.val_size", "0"]
    if size["test"] is not None:
        args += ["--data.init_args.test_samples_per_class", str(size["test"])]
    if size["test_first"] is not None:
        args += ["--data.init_args.test_first_n", str(size["test_first"])]
    return args


def twins(scale: str, work: Path, models: Path) -> Paper:
    """TWINS-AT / -TRADES vs AT / TRADES fine-tuning of the robust CIFAR-10 ResNet-18 on the
    Tiny-ImageNet subset at 32 px (the method settings of the shipped TWINS configs)."""
    size = TWINS_SIZES[scale]
    epochs = size["epochs"]
    runs = []
    start, needs = models / SHARED_MODEL, ()
    if size["head_epochs"] is not None:
        runs.append(_twins_head(size, work, start))
        start = work / "head" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt"
        needs = ("head",)
    for name in size["methods"]:
        args = ["fit", "--test_after_fit", "true",
                "--config", str(REPO / f"configs/experiments/twins/gtsrb_from_cifar10_{name}.yaml"),
                *TWINS_TARGET, "--model.init_args.pretrained", str(start),
                "--model.init_args.report_dir", str(work / name),
                "--model.init_args.milestones", json.dumps([epochs / 2, epochs * 5 / 6]),
                "--model.init_args.attack.init_args.steps", str(size["steps"]),
                "--model.init_args.evaluators", _evaluators(size["pgd"], 1, size["aa"],
                                                            size["targets"]),
                "--data.init_args.batch_size", str(size["batch"]),
                "--trainer.max_epochs", str(epochs), *_common(work, name, size["workers"])]
        if needs:  # the head fitted first is kept
            args += ["--model.init_args.reset_head", "false"]
        runs.append(Run(name, tuple(args + _twins_data(size)), needs=needs))
    claims = [Claim(f"{TWINS_RUNS[ours]} above {TWINS_RUNS[base]}: {metric}", metric, ours, base,
                    "up")
              for ours, base in TWINS_PAIRS if {ours, base} <= set(size["methods"])
              for metric in ("clean", "pgd10", "autoattack")]
    head = ("" if size["head_epochs"] is None else
            f", starting from a head fitted first on the frozen source ({size['head_epochs']} "
            "epochs of clean last-layer training, configs/method/last_layer.yaml; a departure "
            "from the paper's new random head)")
    return Paper(
        title="TWINS (Liu et al., CVPR 2023)",
        setting=("the robust CIFAR-10 ResNet-18 of ../shared/models fine-tuned on the "
                 "Tiny-ImageNet subset resized to 32 px (the target its features suit best: "
                 "benchmarks/results/linear_probe_cpu.md) with the method settings of "
                 f"configs/experiments/twins/gtsrb_from_cifar10_*.yaml{head}; L∞ 8/255"),
        runs=runs, metrics=["clean=clean_acc", "pgd10=robust_acc/pgd*",
                            "autoattack=robust_acc/autoattack*"],
        baseline="at_ft", claims=claims,
        paper_setting=("the paper fine-tunes a robust ImageNet ResNet-50 on CIFAR-10/100, "
                       "Caltech-256, CUB-200 and Stanford Dogs; Tiny-ImageNet is not among its "
                       "datasets, so it gives no number for this setting, only the direction: "
                       "TWINS-AT "
                       "and TWINS-TRADES improve clean and robust accuracy over AT and TRADES "
                       "fine-tuning"),
        paper_values={},
    )


# RiFT: CIFAR-10 images per class (train / validation / test), fine-tuning epochs, MRC
# samples / epochs / batch, attack steps of the MRC search and α sweep, the α grid, evaluation.
# ``gpu`` is sized for one H200 from the GPU bundle's CIFAR-10 subset (benchmarks/device:
# 1,100 training images per class, 1,000 of them held out for the MRC search and α, and 200
# test images per class): the shared robust ResNet-18 is the base, as at the cpu scale.
RIFT_SIZES = {
    "smoke": dict(train=2, val=1, test=2, batch=32, epochs=1, mrc=8, mrc_epochs=1, mrc_batch=8,
                  steps=2, alphas=[0.0, 0.5, 1.0], pgd=2, restarts=1, aa=2, targets=1,
                  corruption={"corruptions": ["gaussian_noise", "defocus_blur", "fog"],
                              "severities": [3]},
                  workers=0, source=None),
    # cpu: 2,000 test images (a paired difference of about 1.5 points is detectable there)
    # with the paper's three measures only, to stay within 40 minutes on 2 cores: clean,
    # PGD-10 with one restart (the paper's adversarial measure) and the 15 corruptions at
    # severity 3. AutoAttack (0 iterations: not run) would add 30,000 attack passes per test,
    # about 8 minutes each (benchmarks/device/work.py); it is measured at the gpu scale.
    "cpu": dict(train=100, val=10, test=200, batch=64, epochs=10, mrc=64, mrc_epochs=5,
                mrc_batch=32, steps=10, alphas=None, pgd=10, restarts=1, aa=0, targets=0,
                corruption={"severities": [3]}, workers=0, source=None),
    "gpu": dict(train=None, val=None, test=None, batch=128, epochs=10, mrc=None, mrc_epochs=10,
                mrc_batch=128, steps=10, alphas=None, pgd=10, restarts=3, aa=100, targets=3,
                corruption={}, workers=8, source=None),
}


def rift(scale: str, work: Path, models: Path) -> Paper:
    """RiFT vs its adversarially trained starting point on CIFAR-10 (ResNet-18)."""
    size = RIFT_SIZES[scale]
    runs = []
    pretrained = models / SHARED_MODEL
    if size["source"] is not None:  # the suite adversarially trains the base model first
        source = size["source"]
        runs.append(Run("source", (
            "fit", "--config", str(REPO / "configs/method/adversarial_training.yaml"),
            "--config", str(REPO / "configs/data/cifar10.yaml"),
            "--model.init_args.mean", "[0, 0, 0]", "--model.init_args.std", "[1, 1, 1]",
            "--model.init_args.milestones", json.dumps([source["epochs"] / 2,
                                                        source["epochs"] * 3 / 4]),
            "--model.init_args.attack.init_args.steps", str(source["steps"]),
            "--trainer.max_epochs", str(source["epochs"]),
            "--trainer.logger.init_args.version", "0",
            *_common(work, "source", size["workers"])), reported=False))
        pretrained = work / "source" / "lit_robust" / "version_0" / "checkpoints" / "last.ckpt"
    data = ["--data.init_args.batch_size", str(size["batch"]), "--data.init_args.val_size", "1000"]
    for key, option in (("train", "samples_per_class"), ("val", "val_samples_per_class"),
                        ("test", "test_samples_per_class")):
        if size[key] is not None:
            data += [f"--data.init_args.{option}", str(size[key])]
    config = REPO / "configs/experiments/rift/cifar10_resnet18_shared_robust.yaml"
    common = ["--config", str(config),
              "--model.init_args.pretrained", str(pretrained),
              "--model.init_args.evaluators", _evaluators(size["pgd"], size["restarts"], size["aa"],
                                                          size["targets"], size["corruption"]),
              *data]
    needs = ("source",) if size["source"] is not None else ()
    runs.append(Run("base", ("test", *common, "--model.init_args.report_dir", str(work / "base"),
                             *_common(work, "base", size["workers"])), needs=needs))
    fit = ["fit", "--test_after_fit", "true", *common,
           "--model.init_args.report_dir", str(work / "rift"),
           "--model.init_args.mrc_cache", str(work / "rift_mrc_cache.json"),
           "--model.init_args.mrc_epochs", str(size["mrc_epochs"]),
           "--model.init_args.mrc_batch_size", str(size["mrc_batch"]),
           "--model.init_args.mrc_attack.init_args.steps", str(size["steps"]),
           "--model.init_args.interpolation_attack.init_args.steps", str(size["steps"]),
           "--model.init_args.milestones", json.dumps([size["epochs"] / 2]),
           "--trainer.max_epochs", str(size["epochs"]), "--trainer.limit_val_batches", "0",
           *_common(work, "rift", size["workers"])]
    if size["mrc"] is not None:
        fit += ["--model.init_args.mrc_samples", str(size["mrc"])]
    if size["alphas"] is not None:
        fit += ["--model.init_args.alphas", json.dumps(size["alphas"])]
    runs.append(Run("rift", tuple(fit), needs=needs))
    claims = [Claim("RiFT raises clean accuracy", "clean", "rift", "base", "up",
                    paper_delta=1.98),
              Claim("RiFT keeps PGD-10 accuracy (within 0.5 points)", "pgd10", "rift", "base",
                    "kept", tolerance_points=0.5, paper_delta=0.02),
              Claim("RiFT keeps AutoAttack accuracy (within 0.5 points)", "autoattack", "rift",
                    "base", "kept", tolerance_points=0.5),
              Claim("RiFT raises corruption accuracy", "corruption", "rift", "base", "up")]
    metrics = ["clean=clean_acc", "pgd10=robust_acc/pgd*", "autoattack=robust_acc/autoattack*",
               "corruption=corruption_acc/mean"]
    if not size["aa"]:  # AutoAttack is not run at this scale
        claims = [claim for claim in claims if claim.metric != "autoattack"]
        metrics = [metric for metric in metrics if not metric.startswith("autoattack=")]
    return Paper(
        title="RiFT (Zhu et al., ICCV 2023)",
        setting=("RiFT (configs/experiments/rift/cifar10_resnet18_shared_robust.yaml) from "
                 + ("the shared robust CIFAR-10 ResNet-18 of ../shared/models"
                    if size["source"] is None else
                    "a ResNet-18 adversarially trained on CIFAR-10 by the suite (PGD, L∞ 8/255)")
                 + " on real CIFAR-10; L∞ 8/255"
                 + ("" if size["aa"] else "; AutoAttack is not run at this scale (the paper's "
                    "measures are clean, PGD-10 and corruption accuracy)")),
        runs=runs, metrics=metrics, baseline="base", claims=claims,
        paper_setting=("Table 1, ResNet-18 on CIFAR-10, PGD-10 AT model vs RiFT (std / adv); the "
                       "paper's corruption (OOD) numbers are not transcribed here"),
        paper_values={"base": {"clean": 81.46, "pgd10": 53.63},
                      "rift": {"clean": 83.44, "pgd10": 53.65}},
    )


# CARTL scenario (a): GTSRB images per class (train / test; None = all), the fraction of each
# config's own epochs (NEFT / vanilla 100, LwF 52 with 25 head-only), evaluation sizes.
CARTL_SIZES = {
    "smoke": dict(train=1, test=1, batch=43, epochs=None, pgd=2, aa=2, targets=1, workers=0),
    "cpu": dict(train=30, test=10, batch=64, epochs=0.1, pgd=20, aa=20, targets=3, workers=0),
    "gpu": dict(train=None, test=None, batch=128, epochs=1.0, pgd=20, aa=100, targets=3,
                workers=8),
}
CARTL_RUNS = {"vanilla_k3": 100, "neft_k3": 100, "lwf_k3": 52}  # each config's epochs
CARTL_CONFIG = "configs/experiments/cartl/gtsrb_from_cifar10_resnet18_shared_robust_{}.yaml"


def cartl(scale: str, work: Path, models: Path) -> Paper:
    """NEFT and LwF vs vanilla last-k fine-tuning of the robust CIFAR-10 ResNet-18 on GTSRB."""
    size = CARTL_SIZES[scale]
    runs = []
    for name, config_epochs in CARTL_RUNS.items():
        epochs = 1 if size["epochs"] is None else round(size["epochs"] * config_epochs)
        config = REPO / CARTL_CONFIG.format(name)
        args = ["fit", "--test_after_fit", "true", "--config", str(config),
                "--model.init_args.pretrained", str(models / SHARED_MODEL),
                "--model.init_args.report_dir", str(work / name),
                "--model.init_args.evaluators", _evaluators(size["pgd"], 1, size["aa"],
                                                            size["targets"]),
                "--data.init_args.batch_size", str(size["batch"]),
                "--trainer.max_epochs", str(epochs), *_common(work, name, size["workers"])]
        if name == "lwf_k3":  # constant lr; the head-only warm-up keeps its 25/52 share
            args += ["--model.init_args.head_only_epochs", str(epochs * 25 // 52)]
        else:  # x0.2 at 40, 70 and 90 of 100 epochs
            args += ["--model.init_args.milestones",
                     json.dumps([epochs * 0.4, epochs * 0.7, epochs * 0.9])]
        if size["train"] is not None:
            args += ["--data.init_args.samples_per_class", str(size["train"]),
                     "--data.init_args.val_size", "0"]
        if size["test"] is not None:
            args += ["--data.init_args.test_samples_per_class", str(size["test"])]
        runs.append(Run(name, tuple(args)))
    return Paper(
        title="CARTL (Chen et al., ICML 2021)",
        setting=("the robust CIFAR-10 ResNet-18 of ../shared/models transferred to GTSRB with "
                 "configs/experiments/cartl/gtsrb_from_cifar10_resnet18_shared_robust_*_k3.yaml "
                 "(clean fine-tuning of the last 3 of 9 blocks; NEFT β = 0.6); L∞ 8/255"),
        runs=runs, metrics=["clean=clean_acc", "pgd20=robust_acc/pgd*",
                            "autoattack=robust_acc/autoattack*"],
        baseline="vanilla_k3",
        claims=[Claim("NEFT keeps more PGD-20 robustness than vanilla last-k", "pgd20",
                      "neft_k3", "vanilla_k3", "up"),
                Claim("NEFT keeps more AutoAttack robustness than vanilla last-k", "autoattack",
                      "neft_k3", "vanilla_k3", "up"),
                Claim("NEFT's clean accuracy is similar to vanilla's (within 1 point)", "clean",
                      "neft_k3", "vanilla_k3", "kept", tolerance_points=1.0)],
        paper_setting=("the paper transfers Wide ResNet sources (WRN-34-10 for CIFAR-100 → "
                       "CIFAR-10, WRN-28-4 for the transfers to SVHN and GTSRB), not this "
                       "ResNet-18, and its numbers are not transcribed here: compare the "
                       "direction of its Table 3, NEFT above vanilla last-k fine-tuning in PGD "
                       "robust accuracy at similar clean accuracy"),
        paper_values={},
    )


STUDY_NAMES = {"random": "random init", "st": "ST", "simclr": "SimCLR", "at": "AT",
               "cr": "CR"}
STUDY_CERTIFIED_METRICS = ["SA (smoothed)=smoothing_sigma0.5/certified_acc@0",
                           "RA-CT=smoothing_sigma0.5/certified_acc@0.5"]
STUDY_CERTIFIED_CLAIMS = ("SA (smoothed)", "RA-CT")


def study(scale: str, work: Path, models: Path) -> Paper:
    """Random init vs ST and SimCLR pre-training, each fine-tuned with AT and with CR: the
    runs and sizes of ``benchmarks/transfer_study.py`` (its default sources and fine-tunings)."""
    sources, finetuning = transfer_study.DEFAULT_SOURCES, transfer_study.DEFAULT_FINETUNING
    name = transfer_study.run_name
    runs = [Run(run, tuple(args), reported=not run.startswith("pre_"),
                needs=transfer_study.needs(run))
            for run, args in transfer_study.runs(scale, work, sources, finetuning)]
    # CR rows are certified models: their SA is the smoothed classifier's accuracy at radius 0
    # and their robustness the certified accuracy at 0.5 (RA-CT), as the study reports them.
    claims = [Claim(f"{STUDY_NAMES[source]} pre-training raises {metric} over random init "
                    f"({STUDY_NAMES[finetune]} fine-tuning)", metric, name(source, finetune),
                    name("random", finetune), "up")
              for finetune in finetuning for source in sources if source != "random"
              for metric in (STUDY_CERTIFIED_CLAIMS
                             if finetune in transfer_study.CERTIFIED_FINETUNING
                             else ("SA", "RA-WB"))]
    return Paper(
        title="A Study of the Effects of Transfer Learning on Adversarial Robustness "
              "(Vaishnavi, Eykholt and Rahmati, TMLR)",
        setting=("sources pre-trained on the Tiny-ImageNet subset of ../shared/data (none for "
                 "random init; configs/experiments/transfer/self_contained/pretrain_{st,simclr}"
                 ".yaml), fine-tuned on the GTSRB subset with AT (L2 ε 0.5, 3 steps) or CR "
                 "(σ 0.5) (finetune_{at,cr}.yaml); "
                 + ("resnet18, the source at 64 px" if scale == "gpu" else "tiny_cnn at 32 px")
                 + "; RA-WB APGD-CE and RA-BB Square at L2 0.5; for the CR rows SA (smoothed) "
                 "is the smoothed classifier's accuracy at radius 0 and RA-CT its certified "
                 "accuracy at L2 0.5 (σ 0.5), both on the certification's fewer images (ACR is "
                 "in each run's report.json)"),
        runs=runs, metrics=list(transfer_study.ACCURACY_METRICS) + STUDY_CERTIFIED_METRICS,
        baseline=name("random", finetuning[0]), claims=claims,
        paper_setting=("the paper pre-trains ResNet-50 on ImageNet and fine-tunes on 12 "
                       "downstream sets at 224 px; GTSRB is not among them and its numbers are "
                       "not transcribed here: compare the direction it reports, supervised and "
                       "SimCLR pre-training above random init in SA and in robustness, with AT "
                       "and with CR fine-tuning (the gain in robustness following the gain in "
                       "SA)"),
        paper_values={},
    )


PLANS = {"twins": twins, "rift": rift, "cartl": cartl, "study": study}

# AutoLoRa against TWINS-AT and AT fine-tuning, beside this module like the source plans.
from reproduce_peft import autolora  # noqa: E402

PAPERS += ("autolora",)
PLANS.update(autolora=autolora)

# The plans that train or pick their own sources live beside this module and use its helpers.
from reproduce_sources import cartl_fdm, study_sources  # noqa: E402

PLANS.update(cartl_fdm=cartl_fdm, study_sources=study_sources)

# What each not-yet-standard paper needs before it can run: methods and scenario configs.
NEEDS = {
    "cartl": (("NEFTTransfer", "VanillaTransfer", "LwFTransfer"),
              [CARTL_CONFIG.format(name) for name in CARTL_RUNS]),
    "study": (("ConsistencyRegularization", "SimCLR"),
              ["configs/experiments/transfer/self_contained/*.yaml"]),
    "cartl_fdm": (("CARTLSource", "NEFTTransfer", "VanillaTransfer"),
                  ["configs/experiments/cartl/source_cifar10_resnet18_fdm_k3.yaml",
                   "configs/experiments/cartl/gtsrb_from_cifar10_resnet18_fdm_neft_k3.yaml",
                   CARTL_CONFIG.format("vanilla_k3")]),
    "study_sources": (("ConsistencyRegularization",),
                      ["configs/experiments/transfer/self_contained/finetune_*.yaml"]),
}


def missing_pieces(paper: str) -> list[str]:
    """What a paper still lacks in lit_robust (empty when it can run)."""
    import lit_robust.methods as methods

    if paper not in NEEDS:
        return []
    names, configs = NEEDS[paper]
    missing = [f"lit_robust.methods.{name}" for name in names if not hasattr(methods, name)]
    missing += [f"the config {config}" for config in configs if not any(REPO.glob(config))]
    return missing
