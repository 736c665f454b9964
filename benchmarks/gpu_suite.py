"""Every benchmark at GPU scale in one command, with a summary table (DESIGN §8).

Runs, one after the other on one CUDA device:

1. ``fit_overhead.py``: ``Trainer.fit`` of AT (PGD-10) and TWINS against a plain loop of the
   same computation, ResNet-18, bf16, two batch sizes; the AT images/s also give the time of
   one 50,000-image CIFAR-10 PGD-10 AT epoch (target ≤ 8 s on an H200);
2. ``train_throughput.py``: PGD-10 AT cost against standard training, ideal (K + 1)×, two
   batch sizes;
3. ``certify_throughput.py``: certification at n = 100,000 against plain forward throughput
   (target ≥ 0.90; ≤ 0.5 s per image on an H200);
4. ``mrc_search.py``: RiFT's MRC search against the reference structure, on the robust
   ResNet-18 of ``--models-root`` and CIFAR-10 images of ``--data-root``;
5. ``loader_throughput.py``: the ordinary loader and the device cache against PGD-10 AT
   images/s, on CIFAR-10 images of ``--data-root`` (target loader ÷ AT ≥ 3);
6. ``compile_effect.py``: ``compile_model`` (inductor) and bf16 autocast against eager fp32
   for one PGD-10 AT step.
7. ``reference_loops.py``: AT and TRADES ``Trainer.fit`` and ``certify`` / ``certify_batch``
   against loops written the way the papers' code does it, fp32 (certification target ≥ 1.5×).

Each writes its JSON under ``--results`` (``gpu_suite_<step>.json``); the suite prints one table
at the end and writes ``gpu_suite_summary.json``. ``--smoke`` runs the same steps at tiny sizes
on the CPU (a minute or two) to check that everything runs before spending GPU time.

Examples::

    python benchmarks/gpu_suite.py --models-root ../shared/models
    python benchmarks/gpu_suite.py --smoke --results /tmp/suite
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CIFAR10_TRAIN_IMAGES = 50_000


def steps(smoke: bool, models_root: Path, results: Path) -> dict[str, list[str]]:
    """The command of each step; ``smoke`` shrinks every size and runs on the CPU."""
    device = "cpu" if smoke else "cuda"
    model = "tiny_cnn" if smoke else "resnet18"
    precision = "32-true" if smoke else "bf16-mixed"
    bf16 = [] if smoke else ["--bf16"]
    return {
        "fit_overhead": [
            "fit_overhead.py", "--methods", "at", "twins", "--model", model, "--device", device,
            "--precision", precision, "--repeats", "1" if smoke else "2",
            "--batch-sizes", *(["16"] if smoke else ["256", "512"]),
            "--batches", "3" if smoke else "30", "--steps", "2" if smoke else "10",
            "--output", str(results / "gpu_suite_fit_overhead.json"),
        ],
        "train_throughput": [
            "train_throughput.py", "--model", model, "--device", device, *bf16,
            "--channels-last", "--steps", "2" if smoke else "10",
            "--batch-size", "16" if smoke else "512", "--iterations", "2" if smoke else "10",
            "--repeats", "1" if smoke else "3",
        ],
        "certify_throughput": [
            "certify_throughput.py", "--model", model, "--device", device, *bf16,
            "--channels-last", "--n", "200" if smoke else "100000",
            "--n0", "20" if smoke else "100",
            "--images", "1" if smoke else "4", "--batch-size", "100" if smoke else "10000",
            "--repeats", "1" if smoke else "3",
            "--output", str(results / "gpu_suite_certify_throughput.json"),
        ],
        "mrc_search": [
            "mrc_search.py", "--models-root", str(models_root), "--images", "8" if smoke else "512",
            "--epochs", "1" if smoke else "2", "--batch-size", "8" if smoke else "256",
            "--json", str(results / "gpu_suite_mrc_search.json"),
        ],
        "loader_throughput": [
            "loader_throughput.py", "--model", model, "--device", device, *bf16,
            "--samples-per-class", "20" if smoke else "2000",
            "--batch-size", "16" if smoke else "512", "--num-workers", "0" if smoke else "8",
            "--batches", "4" if smoke else "50", "--at-batches", "1" if smoke else "10",
            "--steps", "2" if smoke else "10", "--repeats", "1" if smoke else "3",
            "--output", str(results / "gpu_suite_loader_throughput"),
        ],
        "compile_effect": [
            "compile_effect.py", "--model", model, "--device", device,
            "--backend", "eager" if smoke else "inductor",
            "--batch-size", "8" if smoke else "512", "--steps", "1" if smoke else "10",
            "--iterations", "1" if smoke else "10", "--repeats", "1" if smoke else "3",
            "--output", str(results / "gpu_suite_compile_effect"),
        ],
        "reference_loops": [
            "reference_loops.py", "--model", model, "--device", device,
            *(["--smoke"] if smoke else ["--batch-size", "256", "--batches", "10", "20",
                                         "--n", "10000", "100000", "--cert-batch-size", "1000",
                                         "--images", "4", "--repeats", "2"]),
            "--output", str(results / "gpu_suite_reference_loops"),
        ],
    }


def run_step(name: str, command: list[str], results: Path, data_root: Path) -> dict:
    """Run one benchmark; return its JSON result (from its output file or its last line)."""
    started = time.perf_counter()
    environment = {**os.environ, "LIT_ROBUST_DATA": str(data_root)}
    done = subprocess.run([sys.executable, str(HERE / command[0]), *command[1:]],
                          capture_output=True, text=True, check=False, env=environment)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr[-2000:], "seconds": round(seconds, 1)}
    output = results / f"gpu_suite_{name}.json"
    if output.is_file():
        result = json.loads(output.read_text())
    else:
        result = json.loads(done.stdout.strip().splitlines()[-1])
        output.write_text(json.dumps(result, indent=2) + "\n")
    return {"result": result, "seconds": round(seconds, 1),
            "command": " ".join(["python", f"benchmarks/{command[0]}", *command[1:]])}


def summary_lines(outcomes: dict[str, dict]) -> list[str]:
    """A markdown table: one row per figure of every step."""
    lines = ["| step | figure | value |", "|---|---|---|"]
    for name, outcome in outcomes.items():
        if "error" in outcome:
            lines.append(f"| {name} | **failed** | see gpu_suite_summary.json |")
            continue
        result = outcome["result"]
        rows = result if isinstance(result, list) else result.get("settings", [result])
        for row in rows:
            label = ", ".join(f"{key}={row[key]}" for key in ("method", "batch_size",
                                                                "precision", "compiled")
                              if key in row)
            for key, value in row.items():
                if any(word in key for word in ("ratio", "efficiency", "speedup", "per_s",
                                                "seconds_per_image", "over_at")):
                    lines.append(f"| {name} {label} | {key} | {value} |")
            if name == "fit_overhead" and row.get("method") == "at":
                epoch = CIFAR10_TRAIN_IMAGES / row["lightning_images_per_s"]
                lines.append(f"| {name} {label} | at_epoch_50k_seconds | {epoch:.1f} |")
        lines.append(f"| {name} | wall seconds | {outcome['seconds']} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument("--models-root", type=Path, default=Path("../shared/models"))
    parser.add_argument("--data-root", type=Path,
                        default=Path(os.environ.get("LIT_ROBUST_DATA", "../shared/data")),
                        help="real data for the MRC step (CIFAR-10 validation images)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps")
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    for name, command in steps(args.smoke, args.models_root.resolve(), args.results).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        outcomes[name] = run_step(name, command, args.results, args.data_root.resolve())
    (args.results / "gpu_suite_summary.json").write_text(json.dumps(outcomes, indent=2) + "\n")
    print("\n".join(summary_lines(outcomes)))
    if any("error" in outcome for outcome in outcomes.values()):
        failed = [name for name, outcome in outcomes.items() if "error" in outcome]
        sys.exit(f"failed steps: {', '.join(failed)} (errors in gpu_suite_summary.json)")


if __name__ == "__main__":
    main()
