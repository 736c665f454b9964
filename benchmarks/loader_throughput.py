"""Loader throughput against adversarial-training throughput, side by side in one run.

The loader must not be what limits training. This script measures, on the same device and batch
size, alternating the three in every repeat:

- ``ordinary``: the DataModule's usual training loader (CPU decoding, crop and flip in
  ``--num-workers`` worker processes), batches moved to the device;
- ``device_cache``: the same DataModule with ``device_cache=True``: index batches moved to the
  device, crops and flips gathered there (:mod:`lit_robust.data.device_cache`);
- ``at``: PGD-``K`` adversarial training steps (L∞ 8/255, attack in eval mode, SGD) of
  ``--model`` on batches already on the device: the rate the loader has to keep up with.

and reports each in images/s with ``<loader>_over_at`` = loader images/s ÷ AT images/s (target
≥ 3). The images are the real CIFAR-10 training images of ``--data-root`` (a class-balanced
subset of ``--samples-per-class`` per class).

Examples::

    python benchmarks/loader_throughput.py --device cpu --model tiny_cnn
    python benchmarks/loader_throughput.py --device cuda --model resnet18 --bf16 \\
        --batch-size 512 --samples-per-class 2000 --output benchmarks/results/loader_throughput_gpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.fabric.utilities.apply_func import move_data_to_device

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks beside this file
from result_files import write_result_files  # noqa: E402

from lit_robust.attacks import pgd
from lit_robust.data import CIFAR10DataModule
from lit_robust.models import build_classifier
from lit_robust.models.modes import eval_mode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_timer(datamodule: CIFAR10DataModule, device: torch.device,
                 batches: int) -> Callable[[], float]:
    """A timer of ``batches`` training batches of the DataModule's loader as Lightning runs it:
    moved to ``device``, then through the DataModule's ``on_after_batch_transfer``."""
    loader = datamodule.train_dataloader()
    wanted = batches * datamodule.batch_size

    def timed() -> float:
        images = 0
        _sync(device)
        start = time.perf_counter()
        while images < wanted:
            for batch in loader:
                x, _ = datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)
                images += x.shape[0]
                if images >= wanted:
                    break
        _sync(device)
        return images / (time.perf_counter() - start)

    return timed


def at_timer(model_name: str, device: torch.device, batch_size: int, steps: int, batches: int,
             bf16: bool) -> Callable[[], float]:
    """A timer of ``batches`` PGD-``steps`` AT steps on batches already on ``device``."""
    torch.manual_seed(0)
    model = build_classifier(model_name, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if bf16
                else contextlib.nullcontext())

    def step() -> None:
        with autocast:
            with eval_mode(model):
                x_adv = pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=steps)
            loss = F.cross_entropy(model(x_adv), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up

    def timed() -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            step()
        _sync(device)
        return batches * batch_size / (time.perf_counter() - start)

    return timed


def measure(args: argparse.Namespace) -> dict:
    """Median images/s of the two loaders and of AT over ``--repeats`` alternating rounds."""
    device = torch.device(args.device)
    common = dict(root=str(args.data_root), samples_per_class=args.samples_per_class,
                  val_size=0, batch_size=args.batch_size, num_workers=args.num_workers,
                  split_seed=0)
    started = time.perf_counter()
    ordinary = CIFAR10DataModule(**common)
    ordinary.setup("fit")
    cached = CIFAR10DataModule(**common, device_cache=True)
    cached.setup("fit")
    setup_seconds = time.perf_counter() - started
    torch.manual_seed(0)
    timers = {
        "ordinary": loader_timer(ordinary, device, args.batches),
        "device_cache": loader_timer(cached, device, args.batches),
        "at": at_timer(args.model, device, args.batch_size, args.steps, args.at_batches,
                       args.bf16),
    }
    for name in ("ordinary", "device_cache"):
        timers[name]()  # warm-up: worker start, the device copy of the cache
    rates: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(args.repeats):
        for name, timed in timers.items():
            rates[name].append(timed())
    median = {name: statistics.median(values) for name, values in rates.items()}
    return {
        "device": str(device), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "model": args.model, "pgd_steps": args.steps,
        "bf16": args.bf16, "batch_size": args.batch_size, "num_workers": args.num_workers,
        "train_images": len(cached.train_dataset), "setup_seconds": round(setup_seconds, 1),
        "repeats": args.repeats,
        **{f"{name}_images_per_s": round(rate, 1) for name, rate in median.items()},
        "ordinary_over_at": round(median["ordinary"] / median["at"], 2),
        "device_cache_over_at": round(median["device_cache"] / median["at"], 2),
        "target_over_at": 3.0,
    }


def markdown(result: dict, command: str) -> str:
    """The result as a short markdown report."""
    rows = [("ordinary loader", "ordinary"), ("device cache", "device_cache"),
            (f"AT (PGD-{result['pgd_steps']}) training", "at")]
    lines = [
        f"# Loader throughput against AT throughput ({result['device']})", "",
        f"`{command}`", "",
        f"{result['model']}, batch size {result['batch_size']}, "
        f"{result['train_images']} real CIFAR-10 training images, ordinary loader with "
        f"{result['num_workers']} workers, {result['torch_threads']} torch threads on "
        f"{result['cpu_count']} cores, median of {result['repeats']} alternating repeats.", "",
        "| what | images/s | ÷ AT |", "|---|---|---|",
    ]
    for label, key in rows:
        rate = result[f"{key}_images_per_s"]
        ratio = "1" if key == "at" else result[f"{key}_over_at"]
        lines.append(f"| {label} | {rate} | {ratio} |")
    lines += ["", f"Target: loader ÷ AT ≥ {result['target_over_at']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("LIT_ROBUST_DATA", "../shared/data")))
    parser.add_argument("--samples-per-class", type=int, default=300,
                        help="training images per class (the loaders' epoch)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-workers", type=int, default=2,
                        help="workers of the ordinary loader (the DataModule's default: 2)")
    parser.add_argument("--batches", type=int, default=40, help="timed loader batches")
    parser.add_argument("--at-batches", type=int, default=3, help="timed AT steps")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="AT under bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--output", type=Path, default=None,
                        help="write <output>.json and <output>.md (default: print the JSON)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args)
    print(json.dumps(result))
    if args.output is not None:
        command = " ".join(["python", "benchmarks/loader_throughput.py", *sys.argv[1:]])
        write_result_files(args.output, result, markdown(result, command))


if __name__ == "__main__":
    main()
