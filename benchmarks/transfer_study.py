"""The self-contained transfer study: every source × fine-tuning pair on the real data.

    python benchmarks/transfer_study.py --scale cpu --work runs/study
    python benchmarks/transfer_study.py --scale gpu --sources random st at cr simclr \\
        --finetune at cr last_layer

Vaishnavi, Eykholt and Rahmati, "A Study of the Effects of Transfer Learning on Adversarial
Robustness" (TMLR), scaled to the data beside the repository: each source is pre-trained on
the Tiny-ImageNet subset with ``configs/experiments/transfer/self_contained/pretrain_<source>.yaml``
(``random`` is no pre-training), then fine-tuned on the GTSRB subset with
``finetune_<method>.yaml`` from the source's last checkpoint, and tested (SA, RA-WB, RA-BB,
certified accuracy and ACR at σ = 0.5). The fine-tuning reports go through the comparison
tool (:mod:`lit_robust.analysis`) into the study's two tables,
``<work>/comparison/study_<scale>_{empirical,certified}.{md,csv,png,...}`` (both in
``study_<scale>.md``): SA, RA-WB and RA-BB of the AT and last-layer rows; SA (the smoothed
classifier's accuracy at radius 0), RA-CT and ACR of the CR rows.

A scale changes sizes only (backbone, resolution, epochs, images), never a method's
hyperparameters: ``smoke`` checks the pipeline in about a minute, ``cpu`` is the configs as
shipped (tiny_cnn, 32 px, sources 20 epochs, fine-tunings 8 epochs, 812 GTSRB test images;
about 35 minutes for the default sources and fine-tunings on one core each), ``gpu`` uses
resnet18 with the source at 64 px and longer schedules. ``benchmarks/reproduce.py --paper
study`` runs the default sources and fine-tunings of this plan and judges the directions.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "experiments" / "transfer" / "self_contained"
SOURCES = ("random", "st", "at", "cr", "simclr")
FINETUNING = ("at", "cr", "last_layer")
# The default study (also ``benchmarks/reproduce.py --paper study``): 2 pre-trainings, 6
# fine-tunings.
DEFAULT_SOURCES = ("random", "st", "simclr")
DEFAULT_FINETUNING = ("at", "cr")
# The study's two tables. Empirical robustness (AT and last-layer rows): SA, RA-WB, RA-BB.
# Certified robustness (CR rows): SA is the smoothed classifier's accuracy at radius 0, RA-CT
# its certified accuracy at radius 0.5, and ACR (the study's tables of certified models).
ACCURACY_METRICS = ["SA=clean_acc", "RA-WB=robust_acc/ra_wb*", "RA-BB=robust_acc/ra_bb*"]
CERTIFIED_METRICS = ["SA=smoothing_sigma0.5/certified_acc@0",
                     "RA-CT=smoothing_sigma0.5/certified_acc@0.5", "ACR=smoothing_sigma0.5/acr"]
CERTIFIED_FINETUNING = ("cr",)

# Per scale: source / target epochs (None: the config's), extra overrides of every run, and
# overrides of the source (pre-training) runs.
SCALES: dict[str, dict] = {
    "smoke": dict(source_epochs=1, target_epochs=1,
                  common=["--data.init_args.samples_per_class", "2",
                          "--data.init_args.val_size", "0",
                          "--data.init_args.test_samples_per_class", "1"],
                  source=[]),
    "cpu": dict(source_epochs=None, target_epochs=None, common=[], source=[]),
    "gpu": dict(source_epochs=60, target_epochs=20,
                common=["--model.init_args.backbone", "resnet18",
                        "--model.init_args.backbone_kwargs", "null",
                        "--model.init_args.channels_last", "true",
                        "--data.init_args.num_workers", "8",
                        "--trainer.precision", "bf16-mixed"],
                source=["--data.init_args.image_size", "64",
                        "--data.init_args.batch_size", "256"]),
}


def run_name(source: str, finetune: str | None = None) -> str:
    return f"pre_{source}" if finetune is None else f"{source}__{finetune}"


def runs(scale: str, work: Path, sources: Sequence[str],
         finetuning: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The ``lit-robust`` calls, in order: every pre-training before the fine-tunings."""
    size = SCALES[scale]
    plan = []

    def common(name: str, epochs: int | None) -> list[str]:
        args = ["--trainer.logger.init_args.save_dir", str(work / name),
                "--trainer.logger.init_args.version", "run",
                "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false", *size["common"]]
        return args + (["--trainer.max_epochs", str(epochs)] if epochs is not None else [])

    for source in sources:
        if source != "random":
            name = run_name(source)
            plan.append((name, ["fit", "--config", str(CONFIGS / f"pretrain_{source}.yaml"),
                                *common(name, size["source_epochs"]), *size["source"]]))
    for source in sources:
        for finetune in finetuning:
            name = run_name(source, finetune)
            args = ["fit", "--test_after_fit", "true",
                    "--config", str(CONFIGS / f"finetune_{finetune}.yaml"),
                    "--model.init_args.report_dir", str(work / name),
                    *common(name, size["target_epochs"])]
            if source != "random":
                args += ["--model.init_args.pretrained", str(checkpoint(work, source))]
            plan.append((name, args))
    return plan


def needs(name: str) -> tuple[str, ...]:
    """The pre-training a run starts from (none for a pre-training or a random init)."""
    if name.startswith("pre_"):
        return ()
    source = name.split("__")[0]
    return () if source == "random" else (run_name(source),)


def checkpoint(work: Path, source: str) -> Path:
    """The last checkpoint a pre-training run writes."""
    return work / run_name(source) / "lit_robust" / "run" / "checkpoints" / "last.ckpt"


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="The self-contained transfer study.")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--work", type=Path, default=Path("runs/study"))
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(DEFAULT_SOURCES))
    parser.add_argument("--finetune", nargs="+", choices=FINETUNING,
                        default=list(DEFAULT_FINETUNING))
    args = parser.parse_args(argv)
    from lit_robust.main import cli

    seconds = {}
    for name, call in runs(args.scale, args.work, args.sources, args.finetune):
        shutil.rmtree(args.work / name, ignore_errors=True)
        start = time.perf_counter()
        with mock.patch.object(sys, "argv", ["lit-robust"]):
            cli(call)
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
    out = write_tables(args.work, f"study_{args.scale}", args.sources, args.finetune)
    (out / f"study_{args.scale}_seconds.json").write_text(json.dumps(seconds, indent=1))
    print(f"comparison written to {out}")
    return out


def study_tables(finetuning: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """``{table: (fine-tunings, metrics)}``: the empirical table of the AT and last-layer
    rows and the certified table of the CR rows (those with fine-tunings)."""
    certified = [f for f in finetuning if f in CERTIFIED_FINETUNING]
    empirical = [f for f in finetuning if f not in CERTIFIED_FINETUNING]
    tables = {"empirical": (empirical, ACCURACY_METRICS),
              "certified": (certified, CERTIFIED_METRICS)}
    return {name: table for name, table in tables.items() if table[0]}


def write_tables(work: Path, name: str, sources: Sequence[str], finetuning: Sequence[str]) -> Path:
    """Compare the fine-tunings' reports in the study's tables (baseline: the first source),
    written as ``<work>/comparison/<name>_<table>.*`` and together in ``<name>.md``."""
    from lit_robust.analysis import compare

    out = work / "comparison"
    parts = []
    for table, (finetunes, metrics) in study_tables(finetuning).items():
        reports = [work / run_name(s, f) / "report.json" for s in sources for f in finetunes]
        comparison = compare(reports, rows=["run"], metrics=metrics,
                             baseline=run_name(sources[0], finetunes[0]))
        comparison.write(out, name=f"{name}_{table}")
        parts.append((out / f"{name}_{table}.md").read_text(encoding="utf-8"))
    (out / f"{name}.md").write_text("\n".join(parts), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
