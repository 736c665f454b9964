"""The GPU plans, their steps and each step's counted work (:mod:`work`).

| plan | steps | bundle (bundle_contents.py) |
|---|---|---|
| ``perf`` | every step of ``benchmarks/gpu_suite.py`` | robust ResNet-18, 20,000 CIFAR-10 images |
| ``twins_rift`` | ``reproduce.py --paper rift``, then ``--paper twins`` | robust ResNet-18, CIFAR-10 and Tiny-ImageNet subsets |
| ``cartl_study`` | ``reproduce.py --paper cartl_fdm``, then ``--paper study_sources`` | robust and standard ResNet-18, CIFAR-10 and GTSRB subsets |
| ``new_methods`` | ``fast_at.py --part fast``, ``--part overfitting``, ``certified_training.py``, then ``reproduce.py --paper autolora`` | robust ResNet-18, CIFAR-10 and GTSRB subsets |

A step runs at the scale ``gpu`` (``smoke`` with ``--smoke``), whose sizes are those of
``benchmarks/reproduce_plans.py``, ``benchmarks/reproduce_sources.py``,
``benchmarks/reproduce_peft.py``, ``benchmarks/fast_at.py`` and
``benchmarks/certified_training.py`` applied to the images the bundle holds. The counts below
follow those sizes and the configs' own settings (attack steps, AutoAttack iterations, queries,
noise draws) run by run.

``new_methods`` holds the three comparisons of the fast-AT, certified-training and
parameter-efficient methods, all with the CIFAR ResNet-18, within one 8-minute plan. Of its
pre-run H200 estimate (31 s, start-ups included), fast AT vs PGD-AT (10,000 training images, 6
epochs, 2,000 test images) takes 10 s, catastrophic overfitting with and without the guard
(8 epochs) 3 s, SmoothAdv and MACER vs Gaussian augmentation (5,000 training images, 6 epochs,
500 images certified with n0 = 100, n = 1,000 as at cpu scale: largest certifiable radius
0.62 at σ = 0.25) 9 s and AutoLoRa vs TWINS-AT and AT fine-tuning (the whole GTSRB subset,
10 epochs, PGD-10 and AutoAttack with one APGD-T target class on 2,000 test images) 9 s; the
plan fits 8 minutes unless the GPU is 24x slower than that bound, as the other plans (23x to
31x). All three fit, so none is left out; what the sizing gave up instead: the papers'
epochs and data (Wong et al.'s 15 epochs on all of CIFAR-10), half the training images for
certified training, whose noise draws (SmoothAdv's PGD-10 on 2 draws, MACER's 16) cost 22
and 16 passes per image where Gaussian augmentation costs one, and two of AutoAttack's three
APGD-T target classes used by ``twins_rift``. With ``--smoke``, the fast-AT and
certified-training steps run the quickstart's TinyCNN (their scripts' ``smoke``
scale), whose passes are counted as ResNet-18 passes: their smoke estimates are upper bounds.
"""  # noqa: E501

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import certified_training  # noqa: E402
import fast_at  # noqa: E402
import gpu_suite  # noqa: E402
import reproduce_plans  # noqa: E402
import reproduce_sources  # noqa: E402

# isort: split
import reproduce_peft  # noqa: E402  (after reproduce_plans, which imports it and which it imports)
from work import (  # noqa: E402
    Work,
    certification,
    evaluation,
    head_training,
    total,
    training,
    validation,
)

RESNET18_MODULES = 21  # Conv2d and Linear modules of the CIFAR ResNet-18 (RiFT's candidates)
# Images per split of the data in ../shared/data, for estimates of runs outside a bundle.
DATA_COUNTS = {"cifar10": {"train": 50_000, "test": 10_000},
               "gtsrb": {"train": 6_535, "test": 3_000},
               "tiny_imagenet": {"train": 5_000, "val": 4_000}}
VAL_ATTACK_BATCHES = 4  # robust validation batches per epoch in the configs


@dataclass(frozen=True)
class Step:
    """One step of a plan: a paper of ``benchmarks/reproduce.py``, a ``gpu_suite.py`` step or
    a benchmark script of :data:`BENCHMARKS`."""

    name: str
    kind: str  # "reproduce", "gpu_suite" or "benchmark"


PLANS: dict[str, tuple[Step, ...]] = {
    "perf": tuple(Step(name, "gpu_suite") for name in (
        "fit_overhead", "train_throughput", "certify_throughput", "mrc_search",
        "loader_throughput", "compile_effect", "reference_loops")),
    "twins_rift": (Step("rift", "reproduce"), Step("twins", "reproduce")),
    "cartl_study": (Step("cartl_fdm", "reproduce"), Step("study_sources", "reproduce")),
    "new_methods": (Step("fast_at", "benchmark"), Step("catastrophic_overfitting", "benchmark"),
                    Step("certified_training", "benchmark"), Step("autolora", "reproduce")),
}
# The benchmark steps: the script (beside ``benchmarks/reproduce.py``) and its arguments before
# ``--scale`` and ``--output``.
BENCHMARKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fast_at": ("fast_at", ("--part", "fast")),
    "catastrophic_overfitting": ("fast_at", ("--part", "overfitting")),
    "certified_training": ("certified_training", ()),
}


def images(counts: dict, dataset: str, split: str) -> int:
    """Images of a dataset split in the bundle (``counts`` from its manifest)."""
    return counts[dataset][split]


def _split(total_images: int, val_size: float | int) -> tuple[int, int]:
    held = round(total_images * val_size) if isinstance(val_size, float) else val_size
    return total_images - held, held


def rift_work(scale: str, counts: dict) -> list[Work]:
    """The base model's test, then RiFT's fit (MRC search, fine-tuning, α sweep) and test."""
    size = reproduce_plans.RIFT_SIZES[scale]
    train, val = _split(images(counts, "cifar10", "train"), 1000)
    train = train if size["train"] is None else size["train"] * 10
    val = val if size["val"] is None else size["val"] * 10
    test = images(counts, "cifar10", "test") if size["test"] is None else size["test"] * 10
    conditions = (len(size["corruption"].get("corruptions", range(15)))
                  * len(size["corruption"].get("severities", range(5))))
    test_work = evaluation(test, size["pgd"], size["restarts"], size["aa"], size["targets"],
                           conditions)
    mrc = val if size["mrc"] is None else size["mrc"]
    alphas = 11 if size["alphas"] is None else len(size["alphas"])
    search = (Work(backward=mrc * size["steps"])  # the fixed adversarial set
              + Work(forward=RESNET18_MODULES * size["mrc_epochs"] * mrc,
                     backward=RESNET18_MODULES * size["mrc_epochs"] * mrc))
    sweep = Work(forward=alphas * val * 2, backward=alphas * val * size["steps"])
    return [test_work + Work(runs=1),
            search + training(train, size["epochs"]) + sweep + test_work + Work(runs=1)]


def twins_work(scale: str, counts: dict) -> list[Work]:
    """The head fitted first (if any), then each method's PGD-AT fine-tuning and its test."""
    size = reproduce_plans.TWINS_SIZES[scale]
    train, val = _split(images(counts, "tiny_imagenet", "train"), 0.1)
    if size["train"] is not None:
        train, val = size["train"] * 200, 0
    test = (size["test"] * 200 if size["test"] is not None else size["test_first"]
            or images(counts, "tiny_imagenet", "val"))
    works = []
    if size["head_epochs"] is not None:
        works.append(head_training(train, size["head_epochs"])
                     + Work(forward=val * size["head_epochs"], runs=1))
    attacked = min(val, VAL_ATTACK_BATCHES * size["batch"])
    for _ in size["methods"]:
        works.append(training(train, size["epochs"], size["steps"])
                     + validation(val, size["epochs"], 10, attacked)
                     + evaluation(test, size["pgd"], 1, size["aa"], size["targets"])
                     + Work(runs=1))
    return works


def cartl_fdm_work(scale: str, counts: dict) -> list[Work]:
    """Two CIFAR-10 sources (PGD-7 AT; AT + FDM, one more clean forward), then the two
    transfers to GTSRB (clean fine-tuning, counted as full backward passes) and their tests."""
    size = reproduce_sources.CARTL_FDM_SIZES[scale]
    source_train, source_val = _split(images(counts, "cifar10", "train"), 0.1)
    if size["source_train"] is not None:
        source_train, source_val = size["source_train"] * 10, 0
    train, val = _split(images(counts, "gtsrb", "train"), 0.1)
    if size["train"] is not None:
        train, val = size["train"] * 43, 0
    test = images(counts, "gtsrb", "test") if size["test"] is None else size["test"] * 43
    epochs = 1 if size["epochs"] is None else max(1, round(100 * size["epochs"]))
    source_epochs = size["source_epochs"]
    attacked = min(source_val, VAL_ATTACK_BATCHES * size["batch"])
    at = (training(source_train, source_epochs, 7)
          + validation(source_val, source_epochs, 10, attacked) + Work(runs=1))
    fdm = at + Work(forward=source_train * source_epochs)
    transfer = (training(train, epochs)
                + validation(val, epochs, 10, min(val, VAL_ATTACK_BATCHES * size["batch"]))
                + evaluation(test, size["pgd"], 1, size["aa"], size["targets"]) + Work(runs=1))
    return [at, fdm, transfer, transfer]


def autolora_work(scale: str, counts: dict) -> list[Work]:
    """The clean probe of the head, then AT fine-tuning, TWINS-AT and AutoLoRa (PGD-AT, one
    more forward + backward pass per image for AutoLoRa's natural branch), each validated on
    every held-out image with PGD-10 (AutoLoRa's automatic learning rate follows it) and
    tested."""
    size = reproduce_peft.AUTOLORA_SIZES[scale]
    train, val = _split(images(counts, "gtsrb", "train"), 0.05)
    if size["train"] is not None:
        train = size["train"] * 43
    if size["val"] is not None:
        val = min(val, size["val"] * 43)
    test = images(counts, "gtsrb", "test") if size["test"] is None else size["test"] * 43
    epochs = size["epochs"]
    works = [head_training(train, size["head_epochs"])
             + Work(forward=val * size["head_epochs"], runs=1)]
    for name in reproduce_peft.AUTOLORA_RUNS:
        works.append(training(train, epochs, size["steps"] + (name == "autolora"))
                     + validation(val, epochs, 10, val)
                     + evaluation(test, size["pgd"], 1, size["aa"], size["targets"])
                     + Work(runs=1))
    return works


# Training passes per image of the fast-AT methods (benchmarks/fast_at.py): the attack's steps
# and the training step; GradAlign's FGSM step from zero gives the first input gradient, the
# one at x + η is one more pass and the double back-propagation through it another.
FAST_AT_PASSES = {"fgsm_rs": 2, "n_fgsm": 2, "grad_align": 4, "pgd10_at": 11, "pgd3_at": 4}
GUARD_IMAGES = 512  # CatastrophicOverfittingGuard's held-out images (its default num_images)


def _cifar10_sizes(size: dict, counts: dict) -> tuple[int, int, int]:
    """Training, validation and test images of a fast_at / certified_training scale (its data
    arguments over the quickstart's) on the bundle's CIFAR-10 subset."""
    data = {**fast_at.quickstart()[1], **size["data"]}
    train = images(counts, "cifar10", "train") - data["val_size"]
    if data.get("samples_per_class") is not None:
        train = min(train, data["samples_per_class"] * 10)
    val = data["val_size"]
    if data.get("val_samples_per_class") is not None:
        val = min(val, data["val_samples_per_class"] * 10)
    test = images(counts, "cifar10", "test")
    if data.get("test_samples_per_class") is not None:
        test = min(test, data["test_samples_per_class"] * 10)
    return train, val, test


def _pgd10_test(test: int) -> Work:
    """fast_at.test_predictions: clean and attacked forward passes, PGD-10's steps."""
    return Work(forward=2 * test, backward=10 * test)


def fast_at_work(scale: str, counts: dict) -> list[Work]:
    """The side-by-side throughput rounds (a warm-up and ``repeats``), then each method's fit
    (validated on the quickstart's 2 attacked batches) and test."""
    size = fast_at.SCALES[scale]
    train, val, test = _cifar10_sizes(size, counts)
    batch = {**fast_at.quickstart()[1], **size["data"]}["batch_size"]
    epochs = size["epochs"] or fast_at.quickstart()[2]
    rounds = Work(backward=(size["repeats"] + 1) * size["iterations"] * batch
                  * sum(FAST_AT_PASSES.values()), runs=1)
    return [rounds] + [training(train, epochs, passes - 1)
                       + validation(val, epochs, 10, min(val, 2 * batch))
                       + _pgd10_test(test) + Work(runs=1)
                       for passes in FAST_AT_PASSES.values()]


def catastrophic_overfitting_work(scale: str, counts: dict) -> list[Work]:
    """Plain FGSM training twice (unguarded and guarded, counted for every epoch), validated on
    one attacked batch, the guard's clean, FGSM and PGD-10 accuracy on its held-out images
    after every epoch, and the test."""
    size = fast_at.SCALES[scale]
    train, val, test = _cifar10_sizes(size, counts)
    batch = {**fast_at.quickstart()[1], **size["data"]}["batch_size"]
    epochs = size["overfitting_epochs"]
    guard = min(val, GUARD_IMAGES)
    run = (training(train, epochs, 1) + validation(val, epochs, 10, min(val, batch))
           + Work(forward=3 * guard * epochs, backward=11 * guard * epochs)
           + _pgd10_test(test) + Work(runs=1))
    return [run, run]


# Training passes per image of the certified-training methods (benchmarks/certified_training.py):
# one noisy copy; SmoothAdv's PGD on 2 noise draws and its training on both; MACER's 16 draws.
CERTIFIED_PASSES = {"gaussian": 1, "smoothadv": None, "macer": 16}


def certified_training_work(scale: str, counts: dict) -> list[Work]:
    """Each method's fit (clean validation), its clean test and its certification of every
    ``skip``-th test image with n0 + n noisy forward passes."""
    size = certified_training.SCALES[scale]
    train, val, test = _cifar10_sizes(size, counts)
    epochs = size["epochs"] or fast_at.quickstart()[2]
    certified = -(-test // size["skip"])
    works = []
    for passes in CERTIFIED_PASSES.values():
        passes = passes or 2 * (size["attack_steps"] + 1)
        works.append(training(train, epochs, passes - 1) + Work(forward=val * epochs + test)
                     + certification(certified, size["n0"], size["n"]) + Work(runs=1))
    return works


# The study's fine-tuning configs (configs/experiments/transfer/self_contained/finetune_*.yaml):
# training attack steps (AT) or noisy copies (CR) and the validation split.
STUDY_CONFIG = {"at_steps": 3, "cr_copies": 2, "val_size": 500}


def study_sources_work(scale: str, counts: dict) -> list[Work]:
    """Six fine-tunings (three sources × AT and CR) with their SA, RA-WB, RA-BB and
    certification."""
    size = reproduce_sources.STUDY_SOURCES_SIZES[scale]
    train, val = _split(images(counts, "gtsrb", "train"), STUDY_CONFIG["val_size"])
    if size["train"] is not None:
        train, val = size["train"] * 43, 0
    test = images(counts, "gtsrb", "test") if size["test"] is None else size["test"] * 43
    epochs = 8 if size["epochs"] is None else size["epochs"]
    n0, n, certified = size["certify"]
    tests = (evaluation(test, aa_iterations=size["apgd"])
             + Work(forward=test * size["square"])
             + certification(min(certified, test), n0, n) + Work(forward=val * epochs, runs=1))
    at = training(train, epochs, STUDY_CONFIG["at_steps"]) + tests
    cr = training(train * STUDY_CONFIG["cr_copies"], epochs) + tests
    return [at, cr] * len(reproduce_sources.STUDY_SOURCES)


def _option(command: list[str], name: str, default: float = 0) -> float:
    return float(command[command.index(name) + 1]) if name in command else default


def _options(command: list[str], name: str) -> list[float]:
    if name not in command:
        return []
    values = []
    for value in command[command.index(name) + 1:]:
        if value.startswith("--"):
            break
        values.append(float(value))
    return values


def gpu_suite_work(step: str, smoke: bool) -> list[Work]:
    """The passes one ``gpu_suite.py`` step makes, read from its arguments."""
    command = gpu_suite.steps(smoke, Path("models"), Path("results"))[step]
    batch, steps = _option(command, "--batch-size"), _option(command, "--steps", 10)
    repeats = _option(command, "--repeats", 1)
    if step == "fit_overhead":  # AT and TWINS, Lightning and the plain loop, per batch size
        fb = sum(_options(command, "--batch-sizes")) * _option(command, "--batches") * (
            steps + 1) * repeats * 2 * 2
        return [Work(backward=fb, runs=1)]
    if step == "train_throughput":  # PGD-K AT and standard training steps
        return [Work(backward=batch * _option(command, "--iterations") * repeats * (steps + 2),
                     runs=1)]
    if step == "certify_throughput":  # certification and the plain forward it is compared to
        draws = _option(command, "--n0") + _option(command, "--n")
        return [Work(forward=_option(command, "--images") * draws * repeats * 2, runs=1)]
    if step == "mrc_search":  # our search and the reference structure, after PGD-10
        count = _option(command, "--images")
        return [Work(backward=count * (_option(command, "--epochs") * RESNET18_MODULES * 2
                                       + 10), runs=1)]
    if step == "loader_throughput":  # PGD AT batches with each loader
        return [Work(backward=_option(command, "--at-batches") * batch * (steps + 1) * repeats
                     * 2, runs=1)]
    if step == "compile_effect":  # eager and compiled, fp32 and bf16 (compilation uncounted)
        return [Work(backward=batch * (steps + 1) * _option(command, "--iterations") * repeats
                     * 4, runs=1)]
    # reference_loops: AT and TRADES fits, ours and the papers' loops; certification at each n
    if smoke:
        return [Work(backward=2000, forward=2000, runs=1)]
    fb = batch * sum(_options(command, "--batches")) * 11 * 2 * 2 * repeats
    f = _option(command, "--images") * sum(_options(command, "--n")) * 3 * repeats
    return [Work(backward=fb, forward=f, runs=1)]


PAPER_WORK: dict[str, Callable[[str, dict], list[Work]]] = {
    "rift": rift_work, "twins": twins_work, "cartl_fdm": cartl_fdm_work,
    "study_sources": study_sources_work, "autolora": autolora_work,
}
BENCHMARK_WORK: dict[str, Callable[[str, dict], list[Work]]] = {
    "fast_at": fast_at_work, "catastrophic_overfitting": catastrophic_overfitting_work,
    "certified_training": certified_training_work,
}


def step_work(step: Step, smoke: bool, counts: dict) -> Work:
    """The counted work of one step of a plan."""
    if step.kind == "gpu_suite":
        return total(gpu_suite_work(step.name, smoke))
    if step.kind == "benchmark":
        return total(BENCHMARK_WORK[step.name]("smoke" if smoke else "gpu", counts))
    return total(PAPER_WORK[step.name]("smoke" if smoke else "gpu", counts))
