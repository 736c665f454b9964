"""Framework overhead of the real training path: ``Trainer.fit`` against a plain PyTorch loop.

Both sides run exactly the same computation on the same in-memory batches: the method's own
``make_adversarial`` and ``training_loss`` (so the same model, attack, loss and precision),
``backward`` and the same SGD update. The Lightning side is a ``Trainer.fit`` of the method as
users run it (its logging, metrics, hooks and scheduler included, no validation, no
checkpointing); the plain side calls the two hooks in a ``for`` loop. Each side runs in its own
subprocess, alternating, so peak memory is measured per side (CPU: peak RSS of the process;
CUDA: ``torch.cuda.max_memory_allocated``). Reported per method:

    speed_ratio  = Lightning images/s ÷ plain images/s        (target ≥ 0.95)
    memory_ratio = Lightning peak memory ÷ plain peak memory  (target ≤ 1.10)

On CPU the peak RSS includes the libraries loaded at start-up (most of it, for small models), so
``training_memory_ratio`` also compares the growth of the peak RSS from just before the method
is built to the end of training.

Examples::

    python benchmarks/fit_overhead.py --methods at twins --model tiny_cnn --batches 20
    python benchmarks/fit_overhead.py --model resnet18 --device cuda --precision bf16-mixed \
        --batch-sizes 128 512 --batches 40 --output benchmarks/results/fit_overhead_gpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.methods import TWINS, AdversarialTraining, RobustClassifier

METHODS = ("at", "twins")
WARMUP_BATCHES = 3


def build_method(name: str, model: str, steps: int) -> RobustClassifier:
    """The method with a PGD-``steps`` L∞ 8/255 attack and a constant learning rate."""
    attack = PGDAttack(eps=8 / 255, step_size=2 / 255, steps=steps)
    common: dict[str, Any] = dict(
        backbone=model, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, lr=0.01,
        schedule="constant", attack=attack, val_attack=None,
    )
    if name == "at":
        return AdversarialTraining(**common)
    return TWINS(log_grad_ratio_every_n_steps=0, **common)


def batches(batch_size: int, count: int, image_size: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch_size * count, 3, image_size, image_size, generator=generator)
    labels = torch.randint(0, 10, (batch_size * count,), generator=generator)
    return TensorDataset(images, labels)


class InMemoryData(LightningDataModule):
    """The benchmark's tensors as a DataModule (no workers, no shuffling)."""

    def __init__(self, dataset: TensorDataset, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=False)


class Stopwatch(Callback):
    """Time from the end of the warm-up batches to the end of training."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.start, self.stop = device, 0.0, 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, *args: Any) -> None:
        if trainer.global_step == WARMUP_BATCHES:
            self.start = self._now()

    def on_train_end(self, *args: Any) -> None:
        self.stop = self._now()


def run_lightning(method: RobustClassifier, data: TensorDataset, args: argparse.Namespace,
                  device: torch.device) -> float:
    watch = Stopwatch(device)
    trainer = Trainer(
        accelerator=device.type, devices=1, max_steps=len(data) // args.batch_size,
        precision=args.precision, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, inference_mode=False, callbacks=[watch],
    )
    trainer.fit(method, datamodule=InMemoryData(data, args.batch_size))
    return watch.stop - watch.start


def adversarial_step(method: RobustClassifier, optimizer: torch.optim.Optimizer, x: Tensor,
                     y: Tensor, autocast: contextlib.AbstractContextManager) -> None:
    """One plain-PyTorch training step of ``method``: attack, loss, backward, update."""
    with autocast:
        x_adv = method.make_adversarial(x, y)
        loss, _ = method.training_loss(x, x_adv, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def run_plain(method: RobustClassifier, data: TensorDataset, args: argparse.Namespace,
              device: torch.device) -> float:
    method.configure_model()
    method.to(device)
    method.train()
    optimizer = torch.optim.SGD(method.param_groups(), lr=method.hparams.lr,
                                momentum=method.hparams.momentum,
                                weight_decay=method.hparams.weight_decay)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if args.precision == "bf16-mixed" else contextlib.nullcontext())
    start = 0.0
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    for index, (x, y) in enumerate(loader):
        if index == WARMUP_BATCHES:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        adversarial_step(method, optimizer, x.to(device), y.to(device), autocast)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def worker(args: argparse.Namespace) -> None:
    """One timed run of one side, printed as one JSON line."""
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = batches(args.batch_size, args.batches + WARMUP_BATCHES, args.image_size)
    baseline = 0 if device.type == "cuda" else current_rss_bytes()
    method = build_method(args.method, args.model, args.steps)
    run = run_lightning if args.worker == "lightning" else run_plain
    seconds = run(method, data, args, device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"images_per_s": args.batches * args.batch_size / seconds,
                      "peak_memory_bytes": peak, "training_memory_bytes": peak - baseline}))


def current_rss_bytes() -> int:
    """The resident set size of this process now (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def measure(args: argparse.Namespace, method: str, batch_size: int, side: str) -> dict:
    command = [
        sys.executable, __file__, "--worker", side, "--method", method, "--model", args.model,
        "--device", args.device, "--batch-size", str(batch_size), "--batches", str(args.batches),
        "--image-size", str(args.image_size), "--steps", str(args.steps),
        "--precision", args.precision, "--threads", str(args.threads or 0),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> list[dict]:
    rows = []
    for method in args.methods:
        for batch_size in args.batch_sizes:
            runs: dict[str, list[dict]] = {"plain": [], "lightning": []}
            for _ in range(args.repeats):
                for side in ("plain", "lightning"):
                    runs[side].append(measure(args, method, batch_size, side))
            speed = {side: statistics.median(r["images_per_s"] for r in runs[side])
                     for side in runs}
            memory = {side: max(r["peak_memory_bytes"] for r in runs[side]) for side in runs}
            growth = {side: max(r["training_memory_bytes"] for r in runs[side]) for side in runs}
            rows.append({
                "method": method, "model": args.model, "device": args.device,
                "precision": args.precision, "batch_size": batch_size,
                "pgd_steps": args.steps, "timed_batches": args.batches,
                "plain_images_per_s": round(speed["plain"], 1),
                "lightning_images_per_s": round(speed["lightning"], 1),
                "speed_ratio": round(speed["lightning"] / speed["plain"], 3),
                "plain_peak_memory_mb": round(memory["plain"] / 2**20, 1),
                "lightning_peak_memory_mb": round(memory["lightning"] / 2**20, 1),
                "memory_ratio": round(memory["lightning"] / memory["plain"], 3),
                "training_memory_ratio": round(growth["lightning"] / max(growth["plain"], 1), 3),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("plain", "lightning"), help=argparse.SUPPRESS)
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch-size", type=int, default=128, help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per run")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed"), default="32-true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--output", type=Path, default=None, help="write the rows as JSON")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = compare(args)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
