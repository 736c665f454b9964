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


def test_the_new_methods_plan_counts_its_work_and_fits_eight_minutes() -> None:
    """The certified-training step against a hand count, and the whole plan's pre-run H200
    estimate within the 480 s budget with the other plans' margin (>= 20x)."""
    plans, work = _load("plans"), _load("work")
    counts = {"cifar10": {"train": 11_000, "test": 2_000}, "gtsrb": {"train": 2_670, "test": 2_000}}
    # 5,000 training images x 6 epochs x (1 + 2 draws x (PGD-10 + 1) + 16 draws) passes; per
    # method the 500 validation images each epoch, the clean test and 500 x (100 + 1,000) draws
    certified = plans.step_work(plans.Step("certified_training", "benchmark"), False, counts)
    assert certified.to_dict() == {"forward": 3 * (500 * 6 + 2_000 + 500 * 1_100),
                                   "backward": 5_000 * 6 * (1 + 22 + 16), "runs": 3}
    rates = work.pre_run_gpu_rates(work.cpu_rates())
    steps = [plans.step_work(step, False, counts) for step in plans.PLANS["new_methods"]]
    assert [step.name for step in plans.PLANS["new_methods"]] == [
        "fast_at", "catastrophic_overfitting", "certified_training", "autolora"]
    compute = sum(step.seconds({**rates, "startup_s_per_run": 0.0}) for step in steps)
    startup = sum(step.runs for step in steps) * rates["startup_s_per_run"]
    assert (480 - startup) / compute >= 20


def _check_twins_rift(out: Path, nowhere: Path) -> None:
    """The RiFT and TWINS smokes of ``reproduce.py`` as the bundle runs them (their result
    files' fields are checked in tests/benchmarks/test_reproduce.py on CARTL and the study)."""
    rift = json.loads((out / "reproduce_rift_smoke.json").read_text())
    assert rift["status"] == "ran" and rift["test_images"] == 20
    assert list(rift["runs"]) == list(rift["ours"]) == ["base", "rift"]
    assert rift["paper_numbers"]["values"]["rift"] == {"clean": 83.44, "pgd10": 53.65}
    assert set(rift["ours"]["rift"]) == {"clean", "pgd10", "autoattack", "corruption"}
    assert "| base | 81.46 | 53.63 |" in (out / "reproduce_rift_smoke.md").read_text()
    assert str(nowhere) not in json.dumps(rift)
    twins = json.loads((out / "reproduce_twins_smoke.json").read_text())
    assert twins["status"] == "ran" and twins["test_images"] == 40
    assert list(twins["runs"]) == ["head", "at_ft", "twins_at"]
    assert list(twins["ours"]) == ["at_ft", "twins_at"]
    assert twins["paper_numbers"]["values"] == {}
    # smoke: PGD-2 with the 2/255 step of PGD-10
    assert twins["metrics"]["pgd10"] == "robust_acc/pgd2_linf_eps0.03137_step0.007843"
    assert "Tiny-ImageNet is not among its" in twins["paper_numbers"]["setting"]
    assert len(twins["directions"]) == 3
    for result in (rift, twins):
        assert all(row["test"] in {"exact McNemar", "paired bootstrap"}
                   for row in result["directions"])


def _check_new_methods(out: Path, nowhere: Path) -> None:
    fast = json.loads((out / "fast_at_smoke.json").read_text())
    assert set(fast["runs"]) == {"fgsm_rs", "n_fgsm", "grad_align", "pgd10_at", "pgd3_at"}
    assert fast["model"] == "TinyCNN width 16" and fast["data"]["test_images"] == 10
    assert {row["method"] for row in fast["comparisons"]} == set(fast["runs"]) - {"pgd10_at"}
    overfitting = json.loads((out / "catastrophic_overfitting_smoke.json").read_text())
    assert len(overfitting["runs"]["unguarded"]["history"]) == 2  # the guard measured
    assert 1 <= len(overfitting["runs"]["guarded"]["history"]) <= 2  # both epochs
    certified = json.loads((out / "certified_training_smoke.json").read_text())
    assert set(certified["comparisons"]) == {"smoothadv", "macer"}
    assert all(len(run["index"]) == 5 for run in certified["runs"].values())
    autolora = json.loads((out / "reproduce_autolora_smoke.json").read_text())
    assert autolora["status"] == "ran" and list(autolora["runs"]) == [
        "head", "at_ft", "twins_at", "autolora"]
    assert str(nowhere) not in json.dumps([fast, overfitting, certified, autolora])
    report = (out / "plan_new_methods.md").read_text()  # the benchmarks' reports, inside
    assert "## fast_at: Fast adversarial training" in report
    assert "### Throughput, side by side in one run" in report


# Per plan: the result files of its smoke, besides plan_<plan>.{json,md}, and their checks.
REHEARSALS = {
    "twins_rift": (["reproduce_rift_smoke.json", "reproduce_rift_smoke.md",
                    "reproduce_twins_smoke.json", "reproduce_twins_smoke.md"],
                   _check_twins_rift),
    "new_methods": (["fast_at_smoke.json", "catastrophic_overfitting_smoke.json",
                     "certified_training_smoke.json", "reproduce_autolora_smoke.json",
                     "reproduce_autolora_smoke.md"], _check_new_methods),
}


@pytest.mark.slow
@pytest.mark.parametrize("plan", sorted(REHEARSALS))
def test_the_smoke_rehearsal_runs_from_a_fresh_bundle_alone(plan: str, tmp_path: Path,
                                                            data_root: Path,
                                                            models_root: Path) -> None:
    """What travels to the GPU machine (tracked and untracked-not-ignored files) is copied to
    a folder with no ../shared beside it; the plan's bundle is packed into it; run.sh --smoke
    runs with the data and model variables pointing nowhere, so everything comes from the
    bundle. Every step is seeded (the configs' and the benchmarks' seed 0)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.splitlines()
    copy = tmp_path / "clone" / "repo"
    for relative in listed:
        if (REPO / relative).is_file():
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, copy / relative)
    assert not (copy.parent / "shared").exists()
    subprocess.run([sys.executable, str(copy / "benchmarks/device/pack.py"), plan,
                    "--data", str(data_root), "--models", str(models_root)],
                   check=True, cwd=copy, capture_output=True)
    out, nowhere = tmp_path / "out", tmp_path / "nowhere"
    environment = {**os.environ, "OUT": str(out), "PYTHON": sys.executable,
                   "LIT_ROBUST_DATA": str(nowhere), "LIT_ROBUST_MODELS": str(nowhere),
                   "PYTHONPATH": ""}
    done = subprocess.run(["bash", "benchmarks/device/run.sh", plan, "--smoke"],
                          cwd=copy, env=environment, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Time estimate of plan {plan}" in done.stdout
    files, check = REHEARSALS[plan]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"plan_{plan}.json", f"plan_{plan}.md", *files])
    record = json.loads((out / f"plan_{plan}.json").read_text())
    for name, path in record["imported_from_bundle"].items():
        assert "/site/" in path and str(REPO) not in path, name
    assert {step["status"] for step in record["steps"].values()} == {"ran"}
    check(out, nowhere)
