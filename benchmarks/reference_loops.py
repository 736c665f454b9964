"""Our training and certification paths against loops written the way the papers' code does it.

Both sides of each comparison run in the same process, alternating ``--repeats`` times (median
reported), on the same model, the same data tensors, the same attack settings, the same SGD
optimizer and fp32:

- **AT** (Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR
  2018): the reference epoch crafts PGD-K (L∞ 8/255, step 2/255, uniform start) with the model
  in train mode, as Madry-style code does, then takes the SGD step and reads the loss and the
  accuracy back with ``.item()`` after every step. Ours is a ``Trainer.fit`` of
  :class:`~lit_robust.methods.AdversarialTraining` with ``attack_in_eval_mode=False``.
- **TRADES** (Zhang et al., ICML 2019, β = 6): the reference epoch switches to ``model.eval()``
  for the KL attack (start x + 0.001·N(0, I), clean logits recomputed at every step, as in the
  official code), back to ``model.train()`` for the loss, and reads the loss back every step.
  Ours is a ``Trainer.fit`` of :class:`~lit_robust.methods.TRADES`.
- **Certification** (Cohen et al., "Certified Adversarial Robustness via Randomized
  Smoothing", ICML 2019): the reference CERTIFY treats one image at a time, draws each batch of
  noisy copies in a Python loop, copies its predictions to the host and counts them with
  ``np.bincount`` (the original counts them in a Python loop, which is slower still), then
  takes the Clopper–Pearson bound. Ours is :meth:`SmoothedClassifier.certify` per image and
  :meth:`SmoothedClassifier.certify_batch` over all images, at the same n0 / n / α / batch.

Reported: images/s of each side and ``speedup`` = ours ÷ reference (certification target ≥ 1.0
on CPU, ≥ 1.5 on GPU). The reference CERTIFY draws its noise from a seeded generator in the same
order as ``certify``, so for the same seed both must return the same predictions and radii
(``seeded_prediction_agreement``, ``seeded_radius_max_abs_diff``); ``certify_batch`` draws in
another order, so only its agreement on the prediction (class or abstain) is reported.

The Lightning side reuses ``fit_overhead.py``'s data, timing and ``Trainer`` helpers: the first
``WARMUP_BATCHES`` batches of each run are not timed, on both sides.

Examples::

    python benchmarks/reference_loops.py --output benchmarks/results/reference_loops_cpu
    python benchmarks/reference_loops.py --model resnet18 --device cuda --batch-size 256 \
        --batches 10 20 --n 10000 100000 --cert-batch-size 1000
    python benchmarks/reference_loops.py --smoke --output /tmp/reference_loops
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fit_overhead import WARMUP_BATCHES, batches, build_method, run_lightning
from result_files import write_result_files
from scipy.stats import beta as beta_distribution
from scipy.stats import norm
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier
from lit_robust.methods import TRADES, AdversarialTraining

EPS, STEP_SIZE, TRADES_BETA, ALPHA, SIGMA = 8 / 255, 2 / 255, 6.0, 0.001, 0.25


def build_at(model: str, steps: int) -> AdversarialTraining:
    """``fit_overhead``'s AT method, crafting its attack in train mode like Madry-style code."""
    method = build_method("at", model, steps)
    method.attack_in_eval_mode = False
    return method


def build_trades(model: str, steps: int) -> TRADES:
    """TRADES (β = 6) with the official code's KL attack and ``fit_overhead``'s settings."""
    attack = PGDAttack(eps=EPS, step_size=STEP_SIZE, steps=steps, loss="kl", start="normal")
    return TRADES(beta=TRADES_BETA, backbone=model, num_classes=10, mean=[0.5] * 3,
                  std=[0.25] * 3, lr=0.01, schedule="constant", attack=attack, val_attack=None)


def reference_at_step(model: nn.Module, x: Tensor, y: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Madry-style PGD-K AT: the attack runs in train mode; returns (loss, logits)."""
    x_adv = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss, [x_adv])[0]
        x_adv = x_adv.detach() + STEP_SIZE * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0, 1)
    logits = model(x_adv)
    return F.cross_entropy(logits, y), logits


def reference_trades_step(model: nn.Module, x: Tensor, y: Tensor,
                          steps: int) -> tuple[Tensor, Tensor]:
    """The official TRADES step: KL attack in eval mode, loss in train mode; (loss, logits)."""
    kl = nn.KLDivLoss(reduction="sum")
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss_kl = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(model(x), dim=1))
        grad = torch.autograd.grad(loss_kl, [x_adv])[0]
        x_adv = x_adv.detach() + STEP_SIZE * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS).clamp(0, 1)
    model.train()
    x_adv = x_adv.clamp(0, 1).detach()
    logits = model(x)
    loss_robust = kl(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1)) / len(x)
    return F.cross_entropy(logits, y) + TRADES_BETA * loss_robust, logits


REFERENCE_STEPS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "at": reference_at_step, "trades": reference_trades_step,
}
BUILDERS: dict[str, Callable[[str, int], AdversarialTraining]] = {
    "at": build_at, "trades": build_trades,
}


def run_reference_epoch(method_name: str, data: TensorDataset, args: argparse.Namespace,
                        device: torch.device) -> float:
    """Seconds of the reference epoch after the warm-up batches (same model and optimizer)."""
    method = BUILDERS[method_name](args.model, args.steps)
    method.configure_model()
    model = method.model.to(device)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=method.hparams.lr,
                                momentum=method.hparams.momentum,
                                weight_decay=method.hparams.weight_decay)
    step = REFERENCE_STEPS[method_name]
    log: list[tuple[float, float]] = []
    start = 0.0
    for index, (x, y) in enumerate(DataLoader(data, batch_size=args.batch_size, shuffle=False)):
        if index == WARMUP_BATCHES:
            synchronize(device)
            start = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss, logits = step(model, x, y, args.steps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        log.append((loss.item(), logits.argmax(1).eq(y).float().mean().item()))
    synchronize(device)
    return time.perf_counter() - start


def training_row(method_name: str, count: int, args: argparse.Namespace,
                 device: torch.device) -> dict:
    """Reference epoch against ``Trainer.fit`` over the same ``count`` timed batches."""
    data = batches(args.batch_size, count + WARMUP_BATCHES, args.image_size)
    speed: dict[str, list[float]] = {"reference": [], "lightning": []}
    images = count * args.batch_size
    for _ in range(args.repeats):
        torch.manual_seed(0)
        speed["reference"].append(images / run_reference_epoch(method_name, data, args, device))
        torch.manual_seed(0)
        method = BUILDERS[method_name](args.model, args.steps)
        speed["lightning"].append(images / run_lightning(method, data, args, device))
    reference, ours = (statistics.median(speed[side]) for side in ("reference", "lightning"))
    return {"kind": "training", "method": method_name, "model": args.model,
            "batch_size": args.batch_size, "timed_batches": count, "pgd_steps": args.steps,
            "reference_images_per_s": round(reference, 2),
            "lightning_images_per_s": round(ours, 2), "speedup": round(ours / reference, 3)}


def reference_sample_noise(model: nn.Module, x: Tensor, num: int, batch_size: int,
                           generator: torch.Generator) -> np.ndarray:
    """Cohen et al.'s ``_sample_noise``: one image, host-side counts after every batch."""
    counts = np.zeros(10, dtype=int)
    with torch.no_grad():
        remaining = num
        while remaining > 0:
            this_batch_size = min(batch_size, remaining)
            remaining -= this_batch_size
            batch = x.repeat((this_batch_size, 1, 1, 1))
            noise = torch.randn(batch.shape, generator=generator, device=x.device) * SIGMA
            predictions = model(batch + noise).argmax(1)
            counts += np.bincount(predictions.cpu().numpy(), minlength=10)
    return counts


def reference_certify(model: nn.Module, x: Tensor, n0: int, n: int, batch_size: int,
                      generator: torch.Generator) -> tuple[int, float]:
    """Cohen et al.'s ``certify``: selection, estimation, Clopper–Pearson bound, radius."""
    model.eval()
    c_hat = int(reference_sample_noise(model, x, n0, batch_size, generator).argmax())
    n_a = int(reference_sample_noise(model, x, n, batch_size, generator)[c_hat])
    p_lower = beta_distribution.ppf(ALPHA, n_a, n - n_a + 1) if n_a > 0 else 0.0
    if p_lower < 0.5:
        return ABSTAIN, 0.0
    return c_hat, SIGMA * norm.ppf(p_lower)


def certification_row(n: int, model: nn.Module, images: Tensor, args: argparse.Namespace) -> dict:
    """Reference CERTIFY against ``certify`` and ``certify_batch`` at the same n0/n/α/batch."""
    device = images.device
    smoothed = SmoothedClassifier(model, num_classes=10, sigma=SIGMA)
    size = args.cert_batch_size

    def seeded() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(args.seed)

    def reference() -> list[tuple[int, float]]:
        return [reference_certify(model, image, args.n0, n, size, seeded()) for image in images]

    def ours() -> list[tuple[int, float]]:
        return [smoothed.certify(image, args.n0, n, ALPHA, size, seeded()) for image in images]

    def ours_batch() -> tuple[Tensor, Tensor]:
        return smoothed.certify_batch(images, args.n0, n, ALPHA, size, seeded())

    sides = {"reference": reference, "certify": ours, "certify_batch": ours_batch}
    speed: dict[str, list[float]] = {side: [] for side in sides}
    outputs: dict[str, object] = {}
    for _ in range(args.repeats):
        for side, function in sides.items():
            synchronize(device)
            start = time.perf_counter()
            outputs[side] = function()
            synchronize(device)
            speed[side].append(len(images) / (time.perf_counter() - start))
    median = {side: statistics.median(values) for side, values in speed.items()}
    ref_predictions = [prediction for prediction, _ in outputs["reference"]]
    ref_radii = np.array([radius for _, radius in outputs["reference"]])
    our_predictions = [prediction for prediction, _ in outputs["certify"]]
    our_radii = np.array([radius for _, radius in outputs["certify"]])
    batch_predictions = outputs["certify_batch"][0].tolist()
    return {
        "kind": "certification", "method": "certify", "model": args.model,
        "images": len(images), "n0": args.n0, "n": n, "alpha": ALPHA, "sigma": SIGMA,
        "batch_size": size,
        "reference_images_per_s": round(median["reference"], 3),
        "certify_images_per_s": round(median["certify"], 3),
        "certify_batch_images_per_s": round(median["certify_batch"], 3),
        "certify_speedup": round(median["certify"] / median["reference"], 3),
        "certify_batch_speedup": round(median["certify_batch"] / median["reference"], 3),
        "reference_abstentions": ref_predictions.count(ABSTAIN),
        "seeded_prediction_agreement": agreement(ref_predictions, our_predictions),
        "seeded_radius_max_abs_diff": float(np.abs(ref_radii - our_radii).max()),
        "certify_batch_prediction_agreement": agreement(ref_predictions, batch_predictions),
    }


def agreement(first: list[int], second: list[int]) -> float:
    """Fraction of images on which two lists of predictions (class or abstain) agree."""
    return sum(a == b for a, b in zip(first, second, strict=True)) / len(first)


def certification_model(args: argparse.Namespace, device: torch.device) -> nn.Module:
    """The AT method's classifier after a few SGD steps on the benchmark's tensors.

    A freshly initialized network votes for nearly one class everywhere; a few steps on the
    (random) labels make the counts differ between images, so abstentions and several classes
    occur and the agreement check has something to tell apart.
    """
    torch.manual_seed(args.seed)
    method = build_at(args.model, 1)
    method.configure_model()
    model = method.model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = batches(args.batch_size, 1, args.image_size).tensors
    model.train()
    for _ in range(args.fit_steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        optimizer.step()
    return model.eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def report(result: dict) -> str:
    """The markdown report: both tables and the command that produced them."""
    lines = [
        "# Our paths against the papers' reference loops", "",
        f"Command: `{result['command']}`", "",
        f"Device: {result['device']}, torch threads: {result['threads']}, fp32, median of "
        f"{result['repeats']} alternating repeats.", "",
        "## Training (reference epoch vs `Trainer.fit`)", "",
        "| method | model | batch | timed batches | PGD steps | reference img/s | "
        "Lightning img/s | speed-up |", "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["settings"]:
        if row["kind"] == "training":
            lines.append(
                f"| {row['method']} | {row['model']} | {row['batch_size']} | "
                f"{row['timed_batches']} | {row['pgd_steps']} | {row['reference_images_per_s']} "
                f"| {row['lightning_images_per_s']} | {row['speedup']}× |")
    lines += [
        "", "## Certification (Cohen et al.'s loop vs `certify` / `certify_batch`)", "",
        "| images | n0 | n | batch | reference img/s | certify img/s | certify_batch img/s | "
        "certify speed-up | certify_batch speed-up | seeded agreement | max radius diff | "
        "certify_batch agreement | reference abstains |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["settings"]:
        if row["kind"] == "certification":
            lines.append(
                f"| {row['images']} | {row['n0']} | {row['n']} | {row['batch_size']} | "
                f"{row['reference_images_per_s']} | {row['certify_images_per_s']} | "
                f"{row['certify_batch_images_per_s']} | {row['certify_speedup']}× | "
                f"{row['certify_batch_speedup']}× | {row['seeded_prediction_agreement']} | "
                f"{row['seeded_radius_max_abs_diff']:.2e} | "
                f"{row['certify_batch_prediction_agreement']} | {row['reference_abstentions']} |")
    lines += [
        "", "Notes: the reference TRADES attack recomputes the clean logits at every PGD step, "
        "as the official code does; ours computes the clean probabilities once per batch. "
        "Seeded agreement compares the reference loop with `certify` under the same seed "
        "(same noise, so predictions and radii must match exactly); `certify_batch` draws its "
        "noise in another order, so its agreement is statistical.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_cnn", help="backbone (resnet18 for GPUs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", nargs="+", choices=tuple(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--batch-size", type=int, default=64, help="training batch size")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 8],
                        help="timed training batches, one setting each")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=8, help="images to certify")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 4000],
                        help="estimation samples per image, one setting each")
    parser.add_argument("--n0", type=int, default=100, help="selection samples per image")
    parser.add_argument("--cert-batch-size", type=int, default=500,
                        help="noisy samples per forward pass")
    parser.add_argument("--fit-steps", type=int, default=30,
                        help="SGD steps on the certified model before certification")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes on the CPU (seconds); overrides the size flags")
    parser.add_argument("--output", type=Path, default=None,
                        help="write <output>.json and <output>.md")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.batch_size, args.batches, args.steps = "cpu", 8, [1, 2], 2
        args.images, args.n, args.n0, args.cert_batch_size = 3, [100, 200], 20, 50
        args.repeats, args.fit_steps = 1, 10
    values = {"--batch-size": args.batch_size, "--steps": args.steps, "--images": args.images,
              "--n0": args.n0, "--cert-batch-size": args.cert_batch_size,
              "--repeats": args.repeats, "--batches": min(args.batches), "--n": min(args.n)}
    for flag, value in values.items():
        if value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    if args.fit_steps < 0:
        parser.error(f"--fit-steps must be >= 0, got {args.fit_steps}")
    args.precision = "32-true"  # read by fit_overhead.run_lightning; both sides run fp32
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for method_name in args.methods:
        for count in args.batches:
            rows.append(training_row(method_name, count, args, device))
            print(json.dumps(rows[-1]), flush=True)
    model = certification_model(args, device)
    images = torch.rand(args.images, 3, args.image_size, args.image_size,
                        generator=torch.Generator().manual_seed(args.seed)).to(device)
    for n in args.n:
        rows.append(certification_row(n, model, images, args))
        print(json.dumps(rows[-1]), flush=True)
    command = shlex.join(["python", "benchmarks/reference_loops.py",
                          *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "device": str(device), "threads": torch.get_num_threads(),
              "repeats": args.repeats, "settings": rows}
    if args.output:
        write_result_files(args.output, result, report(result))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
