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
parts), ``gpu`` (one CUDA device, the ``new_methods`` plan of the GPU bundle,
``benchmarks/device``: the CIFAR ResNet-18 instead of the TinyCNN, 10,000 training images,
6 epochs (8 for the overfitting part), 2,000 test images, the quickstart's optimizer and
schedule) and ``smoke`` (the quickstart's TinyCNN on one image per class for one epoch:
checks the pipeline, not the claims, in seconds on a CPU).
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
RESNET18 = {"backbone": "resnet18", "backbone_kwargs": {}}  # the CIFAR ResNet-18
# Per scale: data and model arguments over the quickstart's, epochs (None: the quickstart's),
# throughput rounds, the overfitting part's settings and the accelerator. ``gpu``: the GPU
# bundle's CIFAR-10 subset (1,100 training images per class: 1,000 of them held out, 1,000
# per class kept; 200 test images per class), sized with the rest of the ``new_methods`` plan
# to fit 8 minutes on one H200 (benchmarks/device/plans.py); its ``max_drop`` is the cpu
# scale's, not yet measured against the ResNet-18's peak PGD accuracy at 16/255.
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {"data": {}, "model": {}, "epochs": None, "iterations": 3, "repeats": 5,
            "overfitting_eps": 16 / 255, "overfitting_epochs": 12, "max_drop": 0.1,
            "accelerator": "cpu"},
    "gpu": {"data": {"samples_per_class": 1000, "val_size": 1000, "val_samples_per_class": 50,
                     "test_samples_per_class": 200, "batch_size": 128, "num_workers": 4},
            "model": RESNET18, "epochs": 6, "iterations": 10, "repeats": 5,
            "overfitting_eps": 16 / 255, "overfitting_epochs": 8, "max_drop": 0.1,
            "accelerator": "gpu"},
    "smoke": {"data": {"samples_per_class": 1, "val_size": 20, "val_samples_per_class": 1,
                       "test_samples_per_class": 1, "batch_size": 10},
              "model": {}, "epochs": 1, "iterations": 1, "repeats": 1,
              "overfitting_eps": 16 / 255, "overfitting_epochs": 2, "max_drop": 0.1,
              "accelerator": "cpu"},
}
MODEL_NAMES = {"tiny_cnn": "TinyCNN width 16", "resnet18": "CIFAR ResNet-18"}


def device_of(scale: dict[str, Any]) -> torch.device:
    """The device a scale runs on; the ``gpu`` scale refuses to run without CUDA."""
    if scale["accelerator"] == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("error: the gpu scale needs a CUDA device and none is available; on "
                         "a CPU use --scale cpu or --scale smoke")
    return torch.device("cuda")


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
        callbacks: list | None = None, accelerator: str = "cpu") -> float:
    """Train with the quickstart's trainer settings; return the wall time in seconds."""
    seed_everything(0, verbose=False)
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator=accelerator, devices=1,
                      callbacks=callbacks or [], num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(method, data)
    return time.perf_counter() - start


def test_predictions(method: RobustClassifier, data: CIFAR10DataModule,
                     eps: float = EPS, device: torch.device | None = None) -> dict[str, Any]:
    """Clean and PGD-10 (step ε/4, i.e. 2/255 at 8/255, one seeded random start) correctness
    of every test image, in test-set order, on ``device`` (default: the CPU); robust means
    correct on both."""
    data.setup("test")
    clean, robust, labels = [], [], []
    device = device or torch.device("cpu")
    model = method.to(device).model
    torch.manual_seed(0)
    with eval_mode(model):
        for x, y in data.test_dataloader():
            x, y = x.to(device), y.to(device)
            x_adv = pgd(model, x, y, eps=eps, step_size=eps / 4, steps=10)
            with torch.no_grad():
                clean.append(model(x).argmax(1) == y)
                robust.append(model(x_adv).argmax(1) == y)
            labels.append(y)
    clean_t, robust_t = torch.cat(clean), torch.cat(robust)
    return {"clean": clean_t.tolist(), "pgd10": (clean_t & robust_t).tolist(),
            "images": len(clean_t), "classes": int(torch.cat(labels).max()) + 1}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_throughput(methods: dict[str, RobustClassifier], data: CIFAR10DataModule,
                    iterations: int, repeats: int,
                    device: torch.device | None = None) -> dict[str, dict[str, float]]:
    """Images/s of each method's training step (attack, loss, backward, SGD step), timed
    side by side on the same real batches on ``device`` (default: the CPU), alternating
    methods within every round."""
    data.setup("fit")
    device = device or torch.device("cpu")
    batches = []
    for x, y in data.train_dataloader():
        batches.append((x.to(device), y.to(device)))
        if len(batches) == iterations:
            break
    optimizers = {}
    for name, method in methods.items():
        method.configure_model()
        method.to(device)
        method.model.train()
        optimizers[name] = torch.optim.SGD(method.model.parameters(), lr=0.01, momentum=0.9)

    def run(name: str) -> float:
        method, optimizer = methods[name], optimizers[name]
        _synchronize(device)
        start = time.perf_counter()
        for x, y in batches:
            x_adv = method.make_adversarial(x, y)
            loss, _ = method.training_loss(x, x_adv, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _synchronize(device)
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
    model_args.update(scale["model"])
    epochs = scale["epochs"] or epochs
    device = device_of(scale)
    data = data_module(data_args, scale)
    timed = fast_methods({**model_args, "num_classes": data.num_classes,
                          "mean": list(data.mean), "std": list(data.std)})
    throughput = step_throughput(timed, data, scale["iterations"], scale["repeats"], device)
    runs: dict[str, Any] = {}
    for name, method in fast_methods(model_args).items():
        data = data_module(data_args, scale)
        seconds = fit(method, data, epochs, accelerator=scale["accelerator"])
        runs[name] = {"fit_seconds": round(seconds, 1),
                      **test_predictions(method, data, device=device)}
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
    return {"epochs": epochs, "model": MODEL_NAMES[model_args["backbone"]],
            "batch_size": data.batch_size, "data": data_facts(data), "throughput": throughput,
            "baseline_learns": baseline, "runs": runs, "comparisons": comparisons}


def data_facts(data: CIFAR10DataModule) -> dict[str, int]:
    """How many training, validation and test images the runs used."""
    data.setup("fit")
    data.setup("test")
    return {"train_images": len(data.train_dataset), "val_images": len(data.val_dataset or []),
            "test_images": len(data.test_dataset)}


def run_overfitting(scale: dict[str, Any]) -> dict[str, Any]:
    model_args, data_args, _ = quickstart()
    model_args.update(scale["model"])
    device = device_of(scale)
    eps, epochs = scale["overfitting_eps"], scale["overfitting_epochs"]
    results: dict[str, Any] = {}
    for name, guard in (("unguarded", CatastrophicOverfittingGuard(max_drop=0.99)),
                        ("guarded", CatastrophicOverfittingGuard(max_drop=scale["max_drop"]))):
        guard.attack = PGDAttack(eps=eps, step_size=eps / 4, steps=10)
        method = SingleStepAdversarialTraining(
            eps=eps, **{**model_args, "val_attack_batches": 1},
            val_attack=PGDAttack(eps=eps, step_size=eps / 4, steps=10), evaluators=[])
        data = data_module(data_args, scale)
        seconds = fit(method, data, epochs, callbacks=[guard], accelerator=scale["accelerator"])
        results[name] = {"fit_seconds": round(seconds, 1), "history": guard.history,
                         "events": guard.events, **test_predictions(method, data, eps, device)}
        print(f"{name}: {seconds:.0f} s, events {guard.events}", flush=True)
    comparisons = [{"metric": metric, **mcnemar(results["guarded"][metric],
                                                results["unguarded"][metric])}
                   for metric in ("clean", "pgd10")]
    return {"eps": eps, "epochs": epochs, "max_drop": scale["max_drop"],
            "model": MODEL_NAMES[model_args["backbone"]], "data": data_facts(data),
            "runs": results, "comparisons": comparisons}


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
                         f"{args.scale} --output {args.output}", "scale": args.scale,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_seconds": round(time.perf_counter() - start), **body}
    markdown = fast_markdown(result) if args.part == "fast" else overfitting_markdown(result)
    write_result_files(args.output, result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
