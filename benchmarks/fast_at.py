"""Fast adversarial training against PGD-AT, and catastrophic overfitting caught by the guard.

    python benchmarks/fast_at.py --part fast --output benchmarks/results/fast_at_cpu
    python benchmarks/fast_at.py --part overfitting \
        --output benchmarks/results/catastrophic_overfitting_cpu

``--part fast``: on the quickstart's data and model (``configs/quickstart.yaml``: TinyCNN width
16, 5,000 real CIFAR-10 training images, 500 held-out validation images, its optimizer and
schedule, the same epochs), trains FGSM-RS, N-FGSM, GradAlign, PGD-10 AT and PGD-3 AT
(L∞ 8/255), then

- times the five methods' own training steps side by side on the same real batches
  (alternating, ``--repeats`` rounds of ``--iterations`` steps each), and reports each
  method's median images/s relative to PGD-10 AT's measured in the same rounds;
- tests every final model on the quickstart's 1,000 test images (100 per class): clean and
  PGD-10 (step 2/255, one random start, seeded) predictions image by image, with an exact
  McNemar test of each method against PGD-10 AT (:mod:`paired_verdicts`), after checking
  that PGD-10 AT learns (clean accuracy well above chance).

``--part overfitting``: plain FGSM training (zero start, step ε) at ε = 16/255, once
unguarded (the guard only watching, ``max_drop`` 0.99) and once with
:class:`~lit_robust.callbacks.CatastrophicOverfittingGuard`; reports the held-out PGD / FGSM
accuracy after every epoch of both runs, what the guard did, and the two final models' test
accuracies with the paired test. At this scale the TinyCNN does not collapse at 8/255 or
12/255 (measured with the quickstart's and with Wong et al.'s cyclic 0.2 learning rate), and
at 16/255 its held-out PGD accuracy peaks near 14 % before collapsing, so a fall of Wong et
al.'s 20 points cannot happen: the guard runs with ``max_drop`` 0.1.

Scales: ``cpu`` (the figures in ``benchmarks/results``; about 15 minutes on 2 cores for both
parts) and ``smoke`` (a few images and one epoch: checks the pipeline, not the claims).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_at_report import fast_markdown, overfitting_markdown  # noqa: E402
from paired_verdicts import learns, mcnemar  # noqa: E402
from result_files import write_result_files  # noqa: E402

from lit_robust.attacks import PGDAttack, pgd  # noqa: E402
from lit_robust.callbacks import CatastrophicOverfittingGuard  # noqa: E402
from lit_robust.data import CIFAR10DataModule  # noqa: E402
from lit_robust.methods import (  # noqa: E402
    FGSMRS,
    NFGSM,
    AdversarialTraining,
    GradAlign,
    RobustClassifier,
    SingleStepAdversarialTraining,
)
from lit_robust.models.modes import eval_mode  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255
REFERENCE = "pgd10_at"
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {"data": {}, "epochs": None, "iterations": 3, "repeats": 5,
            "overfitting_eps": 16 / 255, "overfitting_epochs": 12, "max_drop": 0.1},
    "smoke": {"data": {"samples_per_class": 12, "val_size": 40, "val_samples_per_class": 4,
                       "test_samples_per_class": 4, "batch_size": 32},
              "epochs": 1, "iterations": 1, "repeats": 1,
              "overfitting_eps": 16 / 255, "overfitting_epochs": 2, "max_drop": 0.1},
}


def quickstart() -> tuple[dict[str, Any], dict[str, Any], int]:
    """The quickstart's model arguments (without its attack), data arguments and epochs."""
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    model = dict(config["model"]["init_args"])
    for key in ("attack", "val_attack", "evaluators"):
        model.pop(key, None)
    return model, dict(config["data"]["init_args"]), int(config["trainer"]["max_epochs"])


def fast_methods(model_args: dict[str, Any]) -> dict[str, RobustClassifier]:
    """The five methods at L∞ 8/255, validated with the quickstart's PGD-10 on 2 batches."""
    common = dict(model_args, val_attack=PGDAttack(eps=EPS, step_size=2 / 255, steps=10),
                  evaluators=[])
    return {
        "fgsm_rs": FGSMRS(eps=EPS, **common),
        "n_fgsm": NFGSM(eps=EPS, **common),
        "grad_align": GradAlign(eps=EPS, grad_align_lambda=0.2, **common),
        REFERENCE: AdversarialTraining(
            attack=PGDAttack(eps=EPS, step_size=2 / 255, steps=10), **common),
        "pgd3_at": AdversarialTraining(
            attack=PGDAttack(eps=EPS, step_size=2.5 / 255, steps=3), **common),
    }


def data_module(data_args: dict[str, Any], scale: dict[str, Any]) -> CIFAR10DataModule:
    return CIFAR10DataModule(**{**data_args, **scale["data"]})


def fit(method: RobustClassifier, data: CIFAR10DataModule, epochs: int,
        callbacks: list | None = None) -> float:
    """Train with the quickstart's trainer settings; return the wall time in seconds."""
    seed_everything(0, verbose=False)
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", devices=1,
                      callbacks=callbacks or [], num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(method, data)
    return time.perf_counter() - start


def test_predictions(method: RobustClassifier, data: CIFAR10DataModule,
                     eps: float = EPS) -> dict[str, Any]:
    """Clean and PGD-10 (step ε/4, i.e. 2/255 at 8/255, one seeded random start) correctness
    of every test image, in test-set order; robust means correct on both."""
    data.setup("test")
    clean, robust, labels = [], [], []
    model = method.model
    torch.manual_seed(0)
    with eval_mode(model):
        for x, y in data.test_dataloader():
            x_adv = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10)
            with torch.no_grad():
                clean.append(model(x).argmax(1) == y)
                robust.append(model(x_adv).argmax(1) == y)
            labels.append(y)
    clean_t, robust_t = torch.cat(clean), torch.cat(robust)
    return {"clean": clean_t.tolist(), "pgd10": (clean_t & robust_t).tolist(),
            "images": len(clean_t), "classes": int(torch.cat(labels).max()) + 1}


def step_throughput(methods: dict[str, RobustClassifier], data: CIFAR10DataModule,
                    iterations: int, repeats: int) -> dict[str, dict[str, float]]:
    """Images/s of each method's training step (attack, loss, backward, SGD step), timed
    side by side on the same real batches, alternating methods within every round."""
    data.setup("fit")
    batches = []
    for x, y in data.train_dataloader():
        batches.append((x, y))
        if len(batches) == iterations:
            break
    optimizers = {}
    for name, method in methods.items():
        method.configure_model()
        method.model.train()
        optimizers[name] = torch.optim.SGD(method.model.parameters(), lr=0.01, momentum=0.9)

    def run(name: str) -> float:
        method, optimizer = methods[name], optimizers[name]
        start = time.perf_counter()
        for x, y in batches:
            x_adv = method.make_adversarial(x, y)
            loss, _ = method.training_loss(x, x_adv, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return sum(len(y) for _, y in batches) / (time.perf_counter() - start)

    for name in methods:  # warm-up
        run(name)
    rates: dict[str, list[float]] = {name: [] for name in methods}
    ratios: dict[str, list[float]] = {name: [] for name in methods}
    for round_index in range(repeats):
        order = list(methods) if round_index % 2 == 0 else list(reversed(methods))
        measured = {name: run(name) for name in order}
        for name, rate in measured.items():
            rates[name].append(rate)
            ratios[name].append(rate / measured[REFERENCE])
    return {name: {"images_per_s": round(statistics.median(rates[name]), 1),
                   "vs_pgd10_at": round(statistics.median(ratios[name]), 3),
                   "ratio_range": [round(min(ratios[name]), 3), round(max(ratios[name]), 3)]}
            for name in methods}


def run_fast(scale: dict[str, Any]) -> dict[str, Any]:
    model_args, data_args, epochs = quickstart()
    epochs = scale["epochs"] or epochs
    data = data_module(data_args, scale)
    timed = fast_methods({**model_args, "num_classes": data.num_classes,
                          "mean": list(data.mean), "std": list(data.std)})
    throughput = step_throughput(timed, data, scale["iterations"], scale["repeats"])
    runs: dict[str, Any] = {}
    for name, method in fast_methods(model_args).items():
        data = data_module(data_args, scale)
        seconds = fit(method, data, epochs)
        runs[name] = {"fit_seconds": round(seconds, 1), **test_predictions(method, data)}
        print(f"{name}: {seconds:.0f} s", flush=True)
    reference = runs[REFERENCE]
    baseline = learns(sum(reference["clean"]), reference["images"], reference["classes"])
    comparisons = []
    for name in runs:
        if name == REFERENCE:
            continue
        for metric in ("clean", "pgd10"):
            comparisons.append({"method": name, "metric": metric,
                                **mcnemar(runs[name][metric], reference[metric])})
    return {"epochs": epochs, "data": data_facts(data), "throughput": throughput,
            "baseline_learns": baseline, "runs": runs, "comparisons": comparisons}


def data_facts(data: CIFAR10DataModule) -> dict[str, int]:
    """How many training, validation and test images the runs used."""
    data.setup("fit")
    data.setup("test")
    return {"train_images": len(data.train_dataset), "val_images": len(data.val_dataset or []),
            "test_images": len(data.test_dataset)}


def run_overfitting(scale: dict[str, Any]) -> dict[str, Any]:
    model_args, data_args, _ = quickstart()
    eps, epochs = scale["overfitting_eps"], scale["overfitting_epochs"]
    results: dict[str, Any] = {}
    for name, guard in (("unguarded", CatastrophicOverfittingGuard(max_drop=0.99)),
                        ("guarded", CatastrophicOverfittingGuard(max_drop=scale["max_drop"]))):
        guard.attack = PGDAttack(eps=eps, step_size=eps / 4, steps=10)
        method = SingleStepAdversarialTraining(
            eps=eps, **{**model_args, "val_attack_batches": 1},
            val_attack=PGDAttack(eps=eps, step_size=eps / 4, steps=10), evaluators=[])
        data = data_module(data_args, scale)
        seconds = fit(method, data, epochs, callbacks=[guard])
        results[name] = {"fit_seconds": round(seconds, 1), "history": guard.history,
                         "events": guard.events, **test_predictions(method, data, eps)}
        print(f"{name}: {seconds:.0f} s, events {guard.events}", flush=True)
    comparisons = [{"metric": metric, **mcnemar(results["guarded"][metric],
                                                results["unguarded"][metric])}
                   for metric in ("clean", "pgd10")]
    return {"eps": eps, "epochs": epochs, "max_drop": scale["max_drop"],
            "data": data_facts(data), "runs": results, "comparisons": comparisons}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["fast", "overfitting"], required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--output", type=Path, required=True,
                        help="writes <output>.json and <output>.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    scale = SCALES[args.scale]
    body = run_fast(scale) if args.part == "fast" else run_overfitting(scale)
    result = {"command": f"python benchmarks/fast_at.py --part {args.part} --scale "
                         f"{args.scale} --output {args.output}",
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_seconds": round(time.perf_counter() - start), **body}
    markdown = fast_markdown(result) if args.part == "fast" else overfitting_markdown(result)
    write_result_files(args.output, result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
