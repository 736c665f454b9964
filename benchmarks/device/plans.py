"""The GPU plans, their steps and each step's counted work (:mod:`work`).

| plan | steps | bundle (bundle_contents.py) |
|---|---|---|
| ``perf`` | every step of ``benchmarks/gpu_suite.py`` | robust ResNet-18, 20,000 CIFAR-10 images |
| ``twins_rift`` | ``reproduce.py --paper rift``, then ``--paper twins`` | robust ResNet-18, CIFAR-10 and Tiny-ImageNet subsets |
| ``cartl_study`` | ``reproduce.py --paper cartl_fdm``, then ``--paper study_sources`` | robust and standard ResNet-18, CIFAR-10 and GTSRB subsets |

A step runs at the reproduction scale ``gpu`` (``smoke`` with ``--smoke``), whose sizes are
those of ``benchmarks/reproduce_plans.py`` and ``benchmarks/reproduce_sources.py`` applied to
the images the bundle holds. The counts below follow those sizes and the configs' own settings
(attack steps, AutoAttack iterations, queries, noise draws) run by run.
"""  # noqa: E501

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import gpu_suite  # noqa: E402
import reproduce_plans  # noqa: E402
import reproduce_sources  # noqa: E402
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
    """One step of a plan: a paper of ``benchmarks/reproduce.py`` or a ``gpu_suite.py`` step."""

    name: str
    kind: str  # "reproduce" or "gpu_suite"


PLANS: dict[str, tuple[Step, ...]] = {
    "perf": tuple(Step(name, "gpu_suite") for name in (
        "fit_overhead", "train_throughput", "certify_throughput", "mrc_search",
        "loader_throughput", "compile_effect", "reference_loops")),
    "twins_rift": (Step("rift", "reproduce"), Step("twins", "reproduce")),
    "cartl_study": (Step("cartl_fdm", "reproduce"), Step("study_sources", "reproduce")),
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
    "study_sources": study_sources_work,
}


def step_work(step: Step, smoke: bool, counts: dict) -> Work:
    """The counted work of one step of a plan."""
    if step.kind == "gpu_suite":
        return total(gpu_suite_work(step.name, smoke))
    return total(PAPER_WORK[step.name]("smoke" if smoke else "gpu", counts))
