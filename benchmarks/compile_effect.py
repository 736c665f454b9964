"""Effect of ``compile_model`` (``torch.compile``) and of bf16 autocast on an AT step.

One PGD-``K`` adversarial-training step (L∞ 8/255, attack in eval mode, cross-entropy on the
adversarial batch, SGD), built through the method itself
(:class:`~lit_robust.methods.AdversarialTraining` with ``compile_model``), in four settings:
fp32 and bf16 autocast (what ``trainer.precision: bf16-mixed`` runs), each eager and compiled.
Every setting runs in its own process; the first step (compilation included) is timed apart
from the steady state. Reported per setting:

    images_per_s         steady-state AT images/s (median of the repeats)
    first_step_seconds   the first step, compilation included
    speedup              images/s ÷ images/s of eager fp32

Examples::

    python benchmarks/compile_effect.py --device cpu --model tiny_cnn \\
        --output benchmarks/results/compile_effect_cpu
    python benchmarks/compile_effect.py --device cuda --model resnet18 --batch-size 512
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmarks beside this file
from fit_overhead import adversarial_step  # noqa: E402
from result_files import write_result_files  # noqa: E402

from lit_robust.attacks import PGDAttack
from lit_robust.methods import AdversarialTraining

SETTINGS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> dict:
    """Time one setting in this process."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    method = AdversarialTraining(
        backbone=args.model, num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, lr=0.01,
        schedule="constant", attack=PGDAttack(eps=8 / 255, step_size=2 / 255, steps=args.steps),
        val_attack=None, evaluators=[], compile_model=args.compile,
        compile_backend=args.backend)
    method.configure_model()
    method.to(device).train()
    optimizer = torch.optim.SGD(method.param_groups(), lr=0.01, momentum=0.9)
    x = torch.rand(args.batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else contextlib.nullcontext())

    def step() -> None:
        adversarial_step(method, optimizer, x, y, autocast)

    def seconds(steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        return time.perf_counter() - start

    first = seconds(1)
    seconds(1)  # warm-up after compilation
    rates = [args.iterations * args.batch_size / seconds(args.iterations)
             for _ in range(args.repeats)]
    return {"precision": args.precision, "compiled": args.compile,
            "backend": args.backend if args.compile else "none",
            "first_step_seconds": round(first, 2),
            "images_per_s": round(statistics.median(rates), 1)}


def compare(args: argparse.Namespace) -> dict:
    """Every setting, each in a fresh process; speed-ups against eager fp32."""
    rows = []
    for precision, compiled in SETTINGS:
        command = [sys.executable, __file__, "--worker", "--precision", precision,
                   "--device", args.device, "--model", args.model, "--backend", args.backend,
                   "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                   "--iterations", str(args.iterations), "--repeats", str(args.repeats),
                   *(["--compile"] if compiled else [])]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{precision} compiled={compiled} failed:\n{done.stderr[-4000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    baseline = rows[0]["images_per_s"]
    for row in rows:
        row["speedup"] = round(row["images_per_s"] / baseline, 3)
    return {"device": args.device, "model": args.model, "batch_size": args.batch_size,
            "pgd_steps": args.steps, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "settings": rows}


def markdown(result: dict, command: str) -> str:
    """The result as a short markdown report."""
    lines = [
        f"# torch.compile and bf16 on an AT step ({result['device']})", "", f"`{command}`", "",
        f"{result['model']}, batch size {result['batch_size']}, PGD-{result['pgd_steps']} "
        f"adversarial training step, torch {result['torch']}, {result['torch_threads']} "
        f"threads on {result['cpu_count']} cores.", "",
        "| precision | compiled (backend) | AT images/s | speed-up vs eager fp32 | "
        "first step s |", "|---|---|---|---|---|",
    ]
    for row in result["settings"]:
        compiled = f"yes ({row['backend']})" if row["compiled"] else "no"
        lines.append(f"| {row['precision']} | {compiled} | {row['images_per_s']} | "
                     f"{row['speedup']} | {row['first_step_seconds']} |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="tiny_cnn")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="PGD steps K")
    parser.add_argument("--iterations", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None,
                        help="write <output>.json and <output>.md (default: print the JSON)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    result = compare(args)
    print(json.dumps(result))
    if args.output is not None:
        command = " ".join(["python", "benchmarks/compile_effect.py", *sys.argv[1:]])
        write_result_files(args.output, result, markdown(result, command))


if __name__ == "__main__":
    main()
