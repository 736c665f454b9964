"""The throughputs a plan's time estimate is built from, measured on the machine at hand.

    python benchmarks/device/throughput.py --output benchmarks/device/calibration_cpu.json

A plan counts its work in image passes of the CIFAR ResNet-18 at 32 px (:mod:`work`):
forward passes (evaluation, corruptions, certification) and forward + backward passes
(a training step or an attack step, both a forward and a gradient through the network). This
module times one image of each on the current device (batch 128, fp32, the model in eval mode
as attacks run it; a training step's weight gradients and optimizer update add little to the
input gradient an attack step computes), and the device's fp32 matrix-product rate
(2048 × 2048, the fastest of several products), which the pre-run GPU estimate scales by.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

# The bf16 matrix-product rate of one H200 as measured on this workplace's machine of that
# kind (8192 × 8192 × 8192 through PyTorch, mean of ten products on random data, 2026-10-28;
# 769–798 TFLOP/s on 2026-11-04): the GPU ceiling the pre-run estimate divides by.
H200_MATMUL_FLOPS = 788e12
H200_SOURCE = ("788 TFLOP/s: bf16 8192^3 matrix product on random data, measured on one "
               "nvidia-h200 machine of this workplace on 2026-10-28 (769-798 on 2026-11-04)")


def _timed(function: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Fastest seconds of ``function`` over ``repeats`` calls, after one warm-up call (the
    fastest, not the median: on a machine shared with other jobs, slower calls measure the
    other jobs)."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_flops(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """fp32 FLOP/s of a ``size``³ matrix product on ``device``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = _timed(lambda: torch.mm(a, b), device, repeats)
    return 2 * size**3 / seconds


def pass_seconds(device: torch.device, batch_size: int = 128, repeats: int = 5,
                 channels_last: bool = False) -> dict[str, float]:
    """Seconds per image of a forward pass and of a forward + backward (input gradient) pass
    of the CIFAR ResNet-18 at 32 px."""
    from lit_robust.models import build_classifier

    model = build_classifier("resnet18", num_classes=10, mean=[0.0] * 3, std=[1.0] * 3)
    model = model.to(device).eval()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=generator).to(
        device, memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), generator=generator).to(device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def forward_backward() -> None:
        inputs = x.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(F.cross_entropy(model(inputs), y), inputs)
        gradient.sign_()

    return {"forward_s_per_image": _timed(forward, device, repeats) / batch_size,
            "forward_backward_s_per_image": _timed(forward_backward, device, repeats)
            / batch_size}


def startup_seconds(data_root: Path, models_root: Path) -> float:
    """Wall seconds of a ``lit-robust test`` whose counted work is negligible (the shared
    robust ResNet-18, one CIFAR-10 test image per class, clean accuracy only): what every run
    pays before its work (imports are already done in a plan, so this is mostly reading and
    preparing the data and building the model)."""
    from unittest import mock

    from lit_robust.main import cli

    repo = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as folder, mock.patch.object(sys, "argv", ["lit-robust"]):
        arguments = [
            "test", "--config", str(repo / "configs/experiments/rift/cifar10_resnet18_shared_"
                                    "robust.yaml"),
            "--model.init_args.pretrained", str(models_root / "cifar10_resnet18_fgsm_rs.pt"),
            "--model.init_args.evaluators", '[{"class_path": "lit_robust.evaluation.'
                                            'CleanAccuracy"}]',
            "--model.init_args.report_dir", folder, "--data.init_args.root", str(data_root),
            "--data.init_args.test_samples_per_class", "1", "--data.init_args.num_workers", "0",
            "--trainer.logger.init_args.save_dir", folder,
            "--trainer.enable_progress_bar", "false"]
        cli(arguments)  # warm-up: the first run also pays the imports
        start = time.perf_counter()
        cli(arguments)
        return time.perf_counter() - start


def calibrate(device: torch.device, data_root: Path | None = None,
              models_root: Path | None = None) -> dict:
    """Every figure of this module on ``device``, with where it was measured (the start-up
    per run only when the data and models roots are given)."""
    result = {"device": str(device), "torch": torch.__version__,
              "processor": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "matmul_fp32_flops": matmul_flops(device), **pass_seconds(device)}
    if data_root is not None and models_root is not None:
        result["startup_s_per_run"] = startup_seconds(data_root, models_root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "LIT_ROBUST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")))
    parser.add_argument("--models", type=Path, default=Path(os.environ.get(
        "LIT_ROBUST_MODELS", Path(__file__).resolve().parents[3] / "shared" / "models")))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    result = calibrate(torch.device(args.device), args.data.resolve(), args.models.resolve())
    result["command"] = "python benchmarks/device/throughput.py " + " ".join(sys.argv[1:])
    result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    text = json.dumps(result, indent=2) + "\n"
    if args.output is not None:
        args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
