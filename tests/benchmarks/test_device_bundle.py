"""The GPU bundle: its size check, its slim wheel, and the CPU rehearsal of a plan from a
freshly packed bundle alone, in a copy of the working tree with no ../shared beside it."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEVICE = REPO / "benchmarks" / "device"


def _load(name: str):
    sys.path.insert(0, str(DEVICE))
    spec = importlib.util.spec_from_file_location(name, DEVICE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pack = _load("pack")


def test_the_size_check_refuses_a_bundle_over_the_limit(tmp_path: Path, data_root: Path,
                                                        models_root: Path, capsys) -> None:
    out = tmp_path / "bundle"
    with pytest.raises(SystemExit) as stop:
        pack.main(["twins_rift", "--out", str(out), "--limit-mib", "5",
                   "--data", str(data_root), "--models", str(models_root)])
    assert stop.value.code == 2
    printed = capsys.readouterr()
    assert "over the 5.00 MiB limit, so nothing was written" in printed.err
    assert "models/robust.fp16.pt" in printed.out and "total (limit 5 MiB)" in printed.out
    assert list(tmp_path.iterdir()) == []  # no bundle and no staging folder left behind
    # a folder that is not a bundle is never overwritten
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    with pytest.raises(SystemExit):
        pack.main(["perf", "--out", str(out), "--data", str(data_root),
                   "--models", str(models_root)])
    assert (out / "mine.txt").read_text() == "kept"


def test_the_slim_pyautoattack_wheel_leaves_the_example_models_out() -> None:
    name, payload = pack.wheel_from_installed("pyautoattack", pack.SLIM_WHEELS["pyautoattack"])
    assert name == "pyautoattack-0.2.0-py3-none-any.whl" and len(payload) < 200_000
    with zipfile.ZipFile(__import__("io").BytesIO(payload)) as archive:
        names = archive.namelist()
        record = archive.read("pyautoattack-0.2.0.dist-info/RECORD").decode()
        assert "Tag: py3-none-any" in archive.read(
            "pyautoattack-0.2.0.dist-info/WHEEL").decode()
    assert "pyautoattack/autopgd_base.py" in names
    assert not any("examples/" in n or n.endswith((".pt", ".h5", ".pyc")) for n in names)
    assert all(line.split(",")[0] in names for line in record.splitlines())


@pytest.mark.slow
def test_the_smoke_rehearsal_runs_from_a_fresh_bundle_alone(tmp_path: Path, data_root: Path,
                                                            models_root: Path) -> None:
    """What travels to the GPU machine (tracked and untracked-not-ignored files) is copied to
    a folder with no ../shared beside it; the bundle is packed into it; run.sh --smoke runs
    with the data and model variables pointing nowhere, so everything comes from the bundle."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.splitlines()
    copy = tmp_path / "clone" / "repo"
    for relative in listed:
        if (REPO / relative).is_file():
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, copy / relative)
    assert not (copy.parent / "shared").exists()
    subprocess.run([sys.executable, str(copy / "benchmarks/device/pack.py"), "twins_rift",
                    "--data", str(data_root), "--models", str(models_root)],
                   check=True, cwd=copy, capture_output=True)
    out = tmp_path / "out"
    environment = {**os.environ, "OUT": str(out), "PYTHON": sys.executable,
                   "LIT_ROBUST_DATA": str(tmp_path / "nowhere"),
                   "LIT_ROBUST_MODELS": str(tmp_path / "nowhere"), "PYTHONPATH": ""}
    done = subprocess.run(["bash", "benchmarks/device/run.sh", "twins_rift", "--smoke"],
                          cwd=copy, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Time estimate of plan twins_rift" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "plan_twins_rift.json", "plan_twins_rift.md", "reproduce_rift_smoke.json",
        "reproduce_rift_smoke.md", "reproduce_twins_smoke.json", "reproduce_twins_smoke.md"])
    record = json.loads((out / "plan_twins_rift.json").read_text())
    assert record["seconds"] < 180
    for name, path in record["imported_from_bundle"].items():
        assert "/site/" in path and str(REPO) not in path, name
    assert {step["status"] for step in record["steps"].values()} == {"ran"}
    rift = json.loads((out / "reproduce_rift_smoke.json").read_text())
    assert rift["status"] == "ran" and rift["test_images"] == 20
    assert str(tmp_path / "nowhere") not in json.dumps(rift)
    twins = json.loads((out / "reproduce_twins_smoke.json").read_text())
    assert list(twins["runs"]) == ["head", "at_ft", "twins_at"]
