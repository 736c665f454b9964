"""Adversarial-training throughput against standard training, in one run (DESIGN §8).

K-step PGD adversarial training costs K attack passes plus one training pass, so its ideal
throughput is ST throughput / (K + 1). This script times both training steps of the same
model on the same batches, alternating them, and prints

    efficiency = AT images/s × (K + 1) / ST images/s

(1.0 is the ideal; above 1 is possible because attack passes need no weight gradients).

Example::

    python benchmarks/train_throughput.py --model resnet18 --device cuda --steps 10 --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import torch
import torch.nn.functional as F

from lit_robust.attacks import pgd
from lit_robust.models import build_classifier
from lit_robust.models.modes import eval_mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K")
    parser.add_argument("--iterations", type=int, default=5, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_classifier(args.model, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16
                else contextlib.nullcontext())

    def step(adversarial: bool) -> None:
        with autocast:
            inputs = x
            if adversarial:
                with eval_mode(model):
                    inputs = pgd(model, x, y, eps=8 / 255, step_size=2 / 255, steps=args.steps)
            loss = F.cross_entropy(model(inputs), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def timed(adversarial: bool) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.iterations):
            step(adversarial)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return args.iterations * args.batch_size / (time.perf_counter() - start)

    step(False)  # warm-up
    step(True)
    ratios, st_rates, at_rates = [], [], []
    for _ in range(args.repeats):
        st, at = timed(False), timed(True)
        st_rates.append(st)
        at_rates.append(at)
        ratios.append(at * (args.steps + 1) / st)
    print(json.dumps({
        "model": args.model, "device": str(device), "batch_size": args.batch_size,
        "pgd_steps": args.steps, "st_images_per_s": round(statistics.median(st_rates), 1),
        "at_images_per_s": round(statistics.median(at_rates), 1),
        "efficiency": round(statistics.median(ratios), 3),
    }))


if __name__ == "__main__":
    main()
