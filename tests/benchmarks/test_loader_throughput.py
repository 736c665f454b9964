"""Smoke run of benchmarks/loader_throughput.py on the CPU, at tiny sizes, on real CIFAR-10."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.shared_paths import shared_data_root

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("loader_throughput",
                                              REPO / "benchmarks" / "loader_throughput.py")
loader_throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loader_throughput)
spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
gpu_suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_suite)


def test_the_benchmark_writes_both_loaders_and_at_side_by_side(tmp_path, monkeypatch) -> None:
    shared_data = shared_data_root()
    output = tmp_path / "loader"
    monkeypatch.setattr(sys, "argv", [
        "loader_throughput.py", "--device", "cpu", "--data-root", str(shared_data),
        "--samples-per-class", "4", "--batch-size", "8", "--num-workers", "0", "--batches", "3",
        "--at-batches", "1", "--steps", "1", "--repeats", "1", "--output", str(output)])
    loader_throughput.main()
    result = json.loads(output.with_suffix(".json").read_text())
    assert result["train_images"] == 40 and result["num_workers"] == 0
    for name in ("ordinary", "device_cache", "at"):
        assert result[f"{name}_images_per_s"] > 0
    assert result["device_cache_over_at"] == pytest.approx(
        result["device_cache_images_per_s"] / result["at_images_per_s"], rel=1e-3)
    report = output.with_suffix(".md").read_text()
    assert "| device cache |" in report and "| AT (PGD-1) training |" in report
    assert "--samples-per-class 4" in report


def test_the_gpu_suite_runs_both_new_benchmarks_also_in_smoke_mode(tmp_path) -> None:
    for smoke in (True, False):
        steps = gpu_suite.steps(smoke, tmp_path / "models", tmp_path)
        assert steps["loader_throughput"][0] == "loader_throughput.py"
        assert steps["compile_effect"][0] == "compile_effect.py"
        assert ("--device" in steps["loader_throughput"]) and (
            steps["compile_effect"][steps["compile_effect"].index("--backend") + 1]
            == ("eager" if smoke else "inductor"))
    outcome = {"compile_effect": {"seconds": 1.0, "result": {"settings": [
        {"precision": "bf16", "compiled": True, "images_per_s": 10.0, "speedup": 1.5}]}},
        "loader_throughput": {"seconds": 2.0, "result": {"device_cache_over_at": 4.2}}}
    lines = gpu_suite.summary_lines(outcome)
    assert "| compile_effect precision=bf16, compiled=True | speedup | 1.5 |" in lines
    assert "| loader_throughput  | device_cache_over_at | 4.2 |" in lines
