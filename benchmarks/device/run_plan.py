"""Run one GPU plan from an unpacked bundle; called by ``run.sh`` (see there).

1. Checks that ``jsonargparse`` and ``pyautoattack`` are imported from the bundle's wheels,
   unpacks the data into the layouts the DataModules read and the fp16 models into fp32 state
   dicts, and points ``LIT_ROBUST_DATA`` / ``LIT_ROBUST_MODELS`` at them.
2. Prints the time estimate of every step from its counted work (:mod:`plans`, :mod:`work`):
   on the CPU measured here (``calibration_cpu.json``), on the H200 before any GPU run (the
   CPU figure over the ratio of the machines' measured matrix rates) and, on a CUDA device,
   from the device's own passes measured at the start.
3. Runs the steps in order. A step whose estimate would carry the plan past its time budget
   (8 minutes on the GPU, 3 on the CPU with ``--smoke``) is skipped and recorded as such; a
   reproduction step first checks that its baseline learns (``benchmarks/reproduce.py``).
4. Writes ``plan_<plan>.json`` and ``.md`` beside each step's own result files in ``--out``
   and checks the limits of what comes back from the GPU machine: at most 8 files, each under
   16 MB, at most two folders deep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

DEVICE_DIR = Path(__file__).resolve().parent
REPO = DEVICE_DIR.parents[1]
sys.path.insert(0, str(DEVICE_DIR))

from bundle_contents import UNPACKED_MODEL_FILES  # noqa: E402
from plans import BENCHMARKS, PLANS, Step, step_work  # noqa: E402
from work import Work, cpu_rates, gpu_ratio, pre_run_gpu_rates  # noqa: E402

BUDGET_S = {"gpu": 480.0, "smoke": 170.0}
MAX_FILES, MAX_FILE_BYTES, MAX_DEPTH = 8, 16 * 10**6, 2
BUNDLED_PACKAGES = ("jsonargparse", "pyautoattack", "docstring_parser", "typeshed_client")


class PlanError(RuntimeError):
    """The plan cannot run as asked; the message says why and what to do."""


def check_site(site: Path) -> dict[str, str]:
    """Where each bundled package is imported from; it must be the bundle's site folder."""
    import importlib

    found = {}
    for name in BUNDLED_PACKAGES:
        module = importlib.import_module(name)
        found[name] = str(Path(module.__file__).resolve())
        if not found[name].startswith(str(site.resolve())):
            raise PlanError(f"{name} is imported from {found[name]}, not from the bundle's "
                            f"wheels in {site}: run the plan through run.sh")
    return found


def unpack(bundle: Path, work: Path, manifest: dict) -> tuple[Path, Path]:
    """Write the bundle's data files and fp32 models under ``work``; returns both roots."""
    data, models = work / "data", work / "models"
    for dataset in manifest["data"]:
        arrays = np.load(bundle / "data" / f"{dataset}.npz")
        paths, offsets, blob = arrays["paths"], arrays["offsets"], arrays["blob"]
        for index, relative in enumerate(paths):
            target = data / str(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob[offsets[index]:offsets[index + 1]].tobytes())
    models.mkdir(parents=True, exist_ok=True)
    for model in manifest["models"]:
        state = torch.load(bundle / "models" / f"{model}.fp16.pt", map_location="cpu",
                           weights_only=True)
        torch.save({key: value.float() if value.is_floating_point() else value
                    for key, value in state.items()}, models / UNPACKED_MODEL_FILES[model])
    return data, models


def device_rates(device: torch.device, cpu: dict[str, float]) -> dict[str, float]:
    """The device's measured seconds per pass (and matrix rate); start-up as on the CPU."""
    from throughput import matmul_flops, pass_seconds

    return {**pass_seconds(device), "matmul_fp32_flops": matmul_flops(device),
            "startup_s_per_run": cpu["startup_s_per_run"]}


def estimate_lines(plan: str, works: dict[str, Work], rates: dict[str, dict]) -> list[str]:
    """The estimate table printed at the start (and kept in the plan's markdown)."""
    names = list(rates)
    lines = [f"Time estimate of plan {plan} from counted work (image passes of the ResNet-18 at "
             "32 px; benchmarks/device/work.py) and measured throughput:", "",
             "| step | forward passes | forward + backward passes | runs | "
             + " | ".join(f"{name} (s)" for name in names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for step, work in works.items():
        lines.append(f"| {step} | {work.forward:,.0f} | {work.backward:,.0f} | {work.runs} | "
                     + " | ".join(f"{work.seconds(rates[name]):,.0f}" for name in names) + " |")
    totals = [sum(work.seconds(rates[name]) for work in works.values()) for name in names]
    lines.append("| **total** | | | | " + " | ".join(f"**{t:,.0f}**" for t in totals) + " |")
    return lines


def run_step(step: Step, smoke: bool, out: Path, work: Path, models: Path) -> dict:
    """Run one step; returns what it produced (result files are written into ``out``; a
    benchmark's markdown goes into the plan's own, so that at most 8 files come back)."""
    scale = "smoke" if smoke else "gpu"
    if step.kind == "benchmark":
        import importlib

        script, arguments = BENCHMARKS[step.name]
        stem = work / "runs" / step.name / f"{step.name}_{scale}"
        result = importlib.import_module(script).main(
            [*arguments, "--scale", scale, "--output", str(stem)])
        (out / f"{stem.name}.json").write_bytes(stem.with_suffix(".json").read_bytes())
        return {"status": "ran", "files": [f"{stem.name}.json"],
                "report": stem.with_suffix(".md").read_text(),
                "verdicts": _benchmark_verdicts(result)}
    if step.kind == "reproduce":
        import reproduce

        result = reproduce.reproduce(step.name, "smoke" if smoke else "gpu", out,
                                     work / "runs" / step.name, models)
        return {"status": result["status"], "files": [f"reproduce_{step.name}_"
                                                      f"{result['scale']}.json",
                                                      f"reproduce_{step.name}_"
                                                      f"{result['scale']}.md"],
                "verdicts": {row["text"]: row["verdict"]
                             for row in result.get("directions", [])},
                "message": result.get("message")}
    import gpu_suite

    results = work / "runs" / "gpu_suite"
    results.mkdir(parents=True, exist_ok=True)
    command = gpu_suite.steps(smoke, models, results)[step.name]
    outcome = gpu_suite.run_step(step.name, command, results, Path(os.environ["LIT_ROBUST_DATA"]))
    return {"status": "failed" if "error" in outcome else "ran", "outcome": outcome,
            "summary": gpu_suite.summary_lines({step.name: outcome})[2:]}


def _benchmark_verdicts(result: dict) -> dict[str, str]:
    """The paired verdicts of a benchmark's result (fast_at.py, certified_training.py)."""
    rows = result["comparisons"]
    if isinstance(rows, dict):  # certified_training.py: per method
        rows = [{"method": method, **row} for method, rows in rows.items() for row in rows]
    return {f"{row.get('method', 'guarded vs unguarded')}: {row['metric']}": row["verdict"]
            for row in rows}


def check_out(out: Path) -> list[str]:
    """The files in ``out``, after checking the limits of what comes back."""
    files = sorted(path for path in out.rglob("*") if path.is_file())
    problems = [f"{len(files)} files (at most {MAX_FILES})"] if len(files) > MAX_FILES else []
    for path in files:
        relative = path.relative_to(out)
        if path.stat().st_size >= MAX_FILE_BYTES:
            problems.append(f"{relative} is {path.stat().st_size} bytes (under 16 MB)")
        if len(relative.parts) - 1 > MAX_DEPTH:
            problems.append(f"{relative} is more than {MAX_DEPTH} folders deep")
    if problems:
        raise PlanError("the results would not all come back: " + "; ".join(problems))
    return [str(path.relative_to(out)) for path in files]


def plan_markdown(record: dict) -> str:
    lines = [f"# GPU plan {record['plan']}{' (smoke, CPU)' if record['smoke'] else ''}", "",
             f"`{record['command']}` ({record['date']}), device {record['device']}.", "",
             *record["estimate"], "", "## Steps", "",
             "| step | status | estimated (s) | took (s) | result |", "|---|---|---|---|---|"]
    summaries, reports = [], []
    for name, step in record["steps"].items():
        if step.get("report"):  # its title becomes a section, its sections subsections
            title, *body = step["report"].splitlines()
            reports += ["", f"## {name}: {title.removeprefix('# ')}",
                        *("#" + line if line.startswith("#") else line for line in body)]
        detail = step.get("message") or ", ".join(step.get("files", []))
        if step.get("summary"):
            detail = detail or "figures below"
            summaries += step["summary"]
        took = "–" if step.get("seconds") is None else f"{step['seconds']:.0f}"
        lines.append(f"| {name} | {step['status']} | {step['estimated_s']:.0f} | {took} | "
                     f"{detail} |")
    lines += ["", f"Total {record['seconds']:.0f} s of a {record['budget_s']:.0f} s budget."]
    if summaries:
        lines += ["", "## Figures (gpu_suite.py)", "", "| step | figure | value |",
                  "|---|---|---|", *summaries]
    lines += reports
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", choices=sorted(PLANS))
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="a fresh temporary folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="time budget (default: 480 on the GPU, 170 with --smoke)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    manifest = json.loads((args.bundle / "manifest.json").read_text())
    if manifest["plan"] != args.plan:
        raise PlanError(f"the bundle in {args.bundle} was packed for {manifest['plan']}, not "
                        f"{args.plan}: python benchmarks/device/pack.py {args.plan}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise PlanError("no CUDA device: the plan is sized for one H200; on a CPU run it with "
                        "--smoke")
    imported = check_site(args.work / "site")
    data, models = unpack(args.bundle, args.work, manifest)
    os.environ["LIT_ROBUST_DATA"], os.environ["LIT_ROBUST_MODELS"] = str(data), str(models)
    sys.path.insert(0, str(REPO / "benchmarks"))
    budget = args.budget_s or BUDGET_S["smoke" if args.smoke else "gpu"]
    works = {step.name: step_work(step, args.smoke, manifest["images"])
             for step in PLANS[args.plan]}
    cpu = cpu_rates()
    rates = {"CPU here": cpu, "H200 before any GPU run": pre_run_gpu_rates(cpu)}
    if device.type == "cuda":
        rates[f"{torch.cuda.get_device_name(device)}, measured now"] = device_rates(device, cpu)
    guard = rates[list(rates)[-1] if device.type == "cuda" else "CPU here"]
    pre_run = rates["H200 before any GPU run"]
    compute = sum(work.seconds({**pre_run, "startup_s_per_run": 0.0}) for work in works.values())
    startup = sum(work.runs for work in works.values()) * pre_run["startup_s_per_run"]
    margin = ("" if args.smoke else
              f" The pre-run H200 figure assumes the GPU reaches the fraction of its matrix "
              f"ceiling that this CPU reaches, a lower bound: the plan fits {budget:.0f} s unless "
              f"the GPU is more than {(budget - startup) / compute:,.0f}x slower than that.")
    estimate = estimate_lines(args.plan, works, rates) + [
        "", f"H200 / CPU matrix-rate ratio {gpu_ratio(cpu):,.0f} (benchmarks/device/work.py)."
        f"{margin} The steps are guarded with the "
        f"{'measured device' if device.type == 'cuda' else 'CPU'} figures against a "
        f"{budget:.0f} s budget."]
    print("\n".join(estimate), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    steps: dict[str, dict] = {}
    for step in PLANS[args.plan]:
        projected = works[step.name].seconds(guard)
        elapsed = time.perf_counter() - started
        entry: dict = {"estimated_s": projected, "work": works[step.name].to_dict()}
        if elapsed + projected > budget:
            entry.update(status="skipped", seconds=None, message=(
                f"skipped: estimated {projected:.0f} s after {elapsed:.0f} s would pass the "
                f"{budget:.0f} s budget"))
        else:
            print(f"== {step.name} (estimated {projected:.0f} s)", flush=True)
            begin = time.perf_counter()
            try:
                entry.update(run_step(step, args.smoke, args.out, args.work, models))
            except Exception as error:  # the other steps still run and report
                traceback.print_exc()
                entry.update(status="failed", message=f"{type(error).__name__}: {error}")
            entry["seconds"] = round(time.perf_counter() - begin, 1)
        steps[step.name] = entry
        print(f"== {step.name}: {entry['status']} ({entry.get('seconds')} s)", flush=True)
    record = {"plan": args.plan, "smoke": args.smoke, "device": str(device),
              "command": f"bash benchmarks/device/run.sh {args.plan}"
                         + (" --smoke" if args.smoke else ""),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget_s": budget, "bundle": {k: manifest[k] for k in ("plan", "bytes", "images")},
              "imported_from_bundle": imported, "rates": rates, "estimate": estimate,
              "steps": steps, "seconds": round(time.perf_counter() - started, 1)}
    (args.out / f"plan_{args.plan}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / f"plan_{args.plan}.md").write_text(plan_markdown(record))
    record["files"] = check_out(args.out)
    print(plan_markdown(record))
    failed = [name for name, step in steps.items() if step["status"] == "failed"]
    if failed:
        raise SystemExit(f"failed steps: {', '.join(failed)}")
    return record


if __name__ == "__main__":
    try:
        main()
    except PlanError as error:
        print(f"run_plan: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
