"""Randomized-smoothing certification throughput against plain forward throughput.

CERTIFY at n samples per image is pure inference, so its ideal speed is the model's forward
throughput: images/s × n = forward samples/s (DESIGN §8). This script measures both in the
same run, on batches of the same size, and prints their ratio (target ≥ 0.9).

- forward: ``model(x).argmax(1)`` on a fixed batch of ``--batch-size`` images, repeated for
  the same number of samples that certification draws;
- certification: :meth:`SmoothedClassifier.certify` on ``--images`` images (n0 selection plus
  n estimation samples each); its throughput counts the n estimation samples only.

The two measurements alternate ``--repeats`` times and the median ratio is reported, so that
load changes on a shared machine hit both sides alike. On a busy shared CPU, ``--threads 1
--clock process`` measures the process's CPU time instead of wall time, which other
processes barely disturb.

Example::

    python benchmarks/certify_throughput.py --model resnet18 --device cuda --n 100000 --bf16
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lit_robust.evaluation.smoothing import SmoothedClassifier
from lit_robust.models.zoo import build_backbone


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_samples_per_second(model: nn.Module, batch: torch.Tensor, samples: int,
                               bf16: bool, clock: Callable[[], float]) -> float:
    """Samples per second of ``model(batch).argmax(1)`` over ``samples`` samples."""
    steps = -(-samples // len(batch))
    device = batch.device
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model(batch).argmax(1)  # warm-up
        _synchronize(device)
        start = clock()
        for _ in range(steps):
            prediction = model(batch).argmax(1)
        prediction.sum().item()
        _synchronize(device)
    return steps * len(batch) / (clock() - start)


def certification_images_per_second(smoothed: SmoothedClassifier, images: torch.Tensor, n0: int,
                                    n: int, batch_size: int, clock: Callable[[], float]) -> float:
    """Images per second of CERTIFY (α = 0.001) over ``images``."""
    generator = torch.Generator(device=images.device).manual_seed(0)
    smoothed.certify(images[0], n0, min(n, batch_size), 0.001, batch_size, generator)  # warm-up
    _synchronize(images.device)
    start = clock()
    for image in images:
        smoothed.certify(image, n0, n, 0.001, batch_size, generator)
    _synchronize(images.device)
    return len(images) / (clock() - start)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_cnn", help="backbone name (lit_robust zoo)")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--n", type=int, default=10_000, help="estimation samples per image")
    parser.add_argument("--n0", type=int, default=100, help="selection samples per image")
    parser.add_argument("--images", type=int, default=3, help="images to certify")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--clock", choices=["wall", "process"], default="wall",
                        help="wall time, or this process's CPU time (CPU device only)")
    parser.add_argument("--output", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "process" and device.type != "cpu":
        parser.error("--clock process measures CPU time: use it with --device cpu")
    clock = time.process_time if args.clock == "process" else time.perf_counter
    torch.manual_seed(0)
    model = build_backbone(args.model, args.num_classes).to(device).eval()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    shape = (3, args.image_size, args.image_size)
    images = torch.rand(args.images, *shape, device=device)
    batch = torch.rand(args.batch_size, *shape, device=device).to(memory_format=memory_format)

    smoothed = SmoothedClassifier(model, args.num_classes, args.sigma, bf16=args.bf16)
    measurements = []
    for _ in range(args.repeats):
        forward = forward_samples_per_second(model, batch, args.images * (args.n0 + args.n),
                                             args.bf16, clock)
        per_second = certification_images_per_second(smoothed, images, args.n0, args.n,
                                                      args.batch_size, clock)
        measurements.append((per_second * args.n / forward, forward, per_second))
    ratio, forward, images_per_second = sorted(measurements)[len(measurements) // 2]
    results: dict[str, object] = {
        "model": args.model, "device": str(device), "batch_size": args.batch_size,
        "n": args.n, "n0": args.n0, "images": args.images, "bf16": args.bf16,
        "repeats": args.repeats, "clock": args.clock, "threads": torch.get_num_threads(),
        "forward_samples_per_s": forward,
        "certify_images_per_s": images_per_second,
        "certify_samples_per_s": images_per_second * args.n,
        "ratio": ratio,
        "ratios": [m[0] for m in measurements],
    }
    print(f"{args.model} on {device} ({torch.get_num_threads()} threads, {args.clock} clock), "
          f"batch {args.batch_size}, n0 {args.n0}, n {args.n}")
    print(f"forward        {forward:12.1f} samples/s")
    print(f"certification  {images_per_second * args.n:12.1f} samples/s "
          f"({images_per_second:.4f} images/s)")
    print(f"ratio          {ratio:12.3f}   (target >= 0.9; median of "
          f"{', '.join(f'{m[0]:.3f}' for m in measurements)})")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
