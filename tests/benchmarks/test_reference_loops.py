"""Smoke run of benchmarks/reference_loops.py on the CPU, and its place in the GPU suite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("gpu_suite", REPO / "benchmarks" / "gpu_suite.py")
gpu_suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_suite)


def run_benchmark(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reference_loops.py"), *flags],
        capture_output=True, text=True, check=False, cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_smoke_run_reports_both_sides_and_seeded_certificates_agree(tmp_path) -> None:
    output = tmp_path / "reference_loops"
    done = run_benchmark("--smoke", "--threads", "1", "--output", str(output))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.with_suffix(".json").read_text())
    assert result["device"] == "cpu" and "--smoke" in result["command"]
    training = [row for row in result["settings"] if row["kind"] == "training"]
    certification = [row for row in result["settings"] if row["kind"] == "certification"]
    assert [(row["method"], row["timed_batches"]) for row in training] == [
        ("at", 1), ("at", 2), ("trades", 1), ("trades", 2)]
    for row in training:
        assert row["reference_images_per_s"] > 0 and row["lightning_images_per_s"] > 0
        assert row["speedup"] == pytest.approx(
            row["lightning_images_per_s"] / row["reference_images_per_s"], rel=0.01)
    assert [row["n"] for row in certification] == [100, 200]
    for row in certification:
        assert row["certify_speedup"] == pytest.approx(
            row["certify_images_per_s"] / row["reference_images_per_s"], rel=0.01)
        assert row["certify_batch_images_per_s"] > 0
        # same seed, same noise order: Cohen et al.'s loop and certify must agree exactly
        assert row["seeded_prediction_agreement"] == 1.0
        assert row["seeded_radius_max_abs_diff"] < 1e-9
        assert 0.0 <= row["certify_batch_prediction_agreement"] <= 1.0
    report = output.with_suffix(".md").read_text()
    assert result["command"] in report and "| trades | tiny_cnn | 8 | 2 | 2 |" in report


def test_bad_sizes_are_rejected_with_the_flag_named() -> None:
    done = run_benchmark("--n", "0")
    assert done.returncode != 0 and "--n must be >= 1, got 0" in done.stderr


def test_the_gpu_suite_runs_the_benchmark_in_both_modes(tmp_path) -> None:
    for smoke in (True, False):
        command = gpu_suite.steps(smoke, tmp_path / "models", tmp_path)["reference_loops"]
        assert command[0] == "reference_loops.py"
        assert ("--smoke" in command) is smoke
        assert command[command.index("--model") + 1] == ("tiny_cnn" if smoke else "resnet18")
        assert command[-1] == str(tmp_path / "gpu_suite_reference_loops")
