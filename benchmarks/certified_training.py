"""SmoothAdv and MACER against Gaussian augmentation, through the certification evaluator.

    python benchmarks/certified_training.py --output benchmarks/results/certified_training_cpu

On the quickstart's data and model (``configs/quickstart.yaml``: TinyCNN width 16, its 5,000
training images, optimizer, schedule and epochs, the same for the three methods) trains the
base classifier of randomized smoothing at σ = 0.25 with

- Gaussian augmentation (Cohen et al.): one noisy copy per image;
- SmoothAdv (Salman et al.): m = 2 noise draws, PGD-10 on the soft smoothed classifier at L2
  ε = 0.25 (their 64/256) warmed up over the first epoch, every noisy adversarial copy trained;
- MACER (Zhai et al.): k = 16 noise samples, β = 16, γ = 8, λ = 12;

then certifies every second image of the quickstart's 1,000 test images (500) with
:class:`~lit_robust.evaluation.SmoothingCertification` in the method's own ``test``
(n0 = 100, n = 1,000, α = 0.001: the largest certifiable radius is σ·Φ⁻¹(0.001^(1/1000)) ≈ 0.62).
Each method is compared with Gaussian augmentation image by image: exact McNemar tests of
"certified correct at radius r" for r = 0, 0.25, 0.5, and a Wilcoxon signed-rank test of the
per-image certified radius (0 when wrong or abstaining), whose mean is the ACR. The learning
check asks that Gaussian augmentation's smoothed classifier (radius 0) be above chance.

Departures from the papers, for the CPU: the quickstart's network, data, optimizer (SGD lr 0.05,
cosine) and epochs instead of ResNet-110 (ResNet-18 in the shipped recipes), the whole CIFAR-10
and the papers' schedules; SmoothAdv's ε warm-up shortened from 10 of 150 epochs to 1 of 8;
certification with n = 1,000 instead of 100,000.

Scales: ``cpu`` (the above), ``gpu`` (one CUDA device, the ``new_methods`` plan of the GPU
bundle, ``benchmarks/device``: the CIFAR ResNet-18 on 5,000 training images of the bundle's
CIFAR-10 subset for 6 epochs, every fourth of its 2,000 test images (500) certified with
n0 = 100, n = 1,000 as at cpu scale) and ``smoke`` (the quickstart's TinyCNN on one image per
class for one epoch: checks the pipeline, not the claims).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Trainer, seed_everything
from scipy.stats import wilcoxon

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fast_at import MODEL_NAMES, RESNET18, data_facts, device_of, quickstart  # noqa: E402
from paired_verdicts import learns, mcnemar  # noqa: E402
from result_files import write_result_files  # noqa: E402

from lit_robust.data import CIFAR10DataModule  # noqa: E402
from lit_robust.evaluation import ABSTAIN, CleanAccuracy, SmoothingCertification  # noqa: E402
from lit_robust.methods import MACER, GaussianAugmentation, RobustClassifier, SmoothAdv  # noqa: E402

SIGMA = 0.25
RADII = (0.0, 0.25, 0.5)
BASELINE = "gaussian"
NAMES = {"gaussian": "Gaussian augmentation", "smoothadv": "SmoothAdv", "macer": "MACER"}
# Per scale: data and model arguments over the quickstart's, epochs (None: the quickstart's),
# certification sizes, SmoothAdv's attack steps and the accelerator. ``gpu`` is sized with the
# rest of the ``new_methods`` plan to fit 8 minutes on one H200 (benchmarks/device/plans.py).
SCALES: dict[str, dict[str, Any]] = {
    "cpu": {"data": {}, "model": {}, "epochs": None, "n0": 100, "n": 1000, "skip": 2,
            "attack_steps": 10, "accelerator": "cpu"},
    "gpu": {"data": {"samples_per_class": 500, "val_size": 1000, "val_samples_per_class": 50,
                     "test_samples_per_class": 200, "batch_size": 128, "num_workers": 4},
            "model": RESNET18, "epochs": 6, "n0": 100, "n": 1000, "skip": 4,
            "attack_steps": 10, "accelerator": "gpu"},
    "smoke": {"data": {"samples_per_class": 1, "val_size": 20, "val_samples_per_class": 1,
                       "test_samples_per_class": 1, "batch_size": 10},
              "model": {}, "epochs": 1, "n0": 10, "n": 50, "skip": 2, "attack_steps": 2,
              "accelerator": "cpu"},
}


class RecordedCertification(SmoothingCertification):
    """The certification evaluator, keeping its per-image records past the end of ``test``
    (which resets the evaluators)."""

    kept: dict[str, np.ndarray] | None = None

    def compute(self) -> dict[str, float]:
        metrics = super().compute()
        self.kept = self._records
        return metrics


def methods(model_args: dict[str, Any], scale: dict[str, Any]) -> dict[str, RobustClassifier]:
    def evaluators() -> list:
        return [CleanAccuracy(), RecordedCertification(
            sigma=SIGMA, n0=scale["n0"], n=scale["n"], alpha=0.001, skip=scale["skip"],
            max_images=None, batch_size=1100, radii=list(RADII))]

    common = dict(model_args, val_attack=None)
    return {
        BASELINE: GaussianAugmentation(sigma=SIGMA, evaluators=evaluators(), **common),
        "smoothadv": SmoothAdv(sigma=SIGMA, num_noise_samples=2, eps=0.25,
                               attack_steps=scale["attack_steps"], eps_warmup_epochs=1,
                               evaluators=evaluators(), **common),
        "macer": MACER(sigma=SIGMA, num_noise_samples=16, beta=16.0, hinge=8.0,
                       radius_weight=12.0, evaluators=evaluators(), **common),
    }


def train_and_certify(method: RobustClassifier, data: CIFAR10DataModule, epochs: int,
                      accelerator: str = "cpu") -> dict[str, Any]:
    """Fit, then ``test`` (clean accuracy and certification); return metrics and records."""
    seed_everything(0, verbose=False)
    trainer = Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator=accelerator, devices=1,
                      num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(method, data)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    trainer.test(method, data, verbose=False)
    certifier = next(e for e in method.evaluators if isinstance(e, RecordedCertification))
    records = certifier.kept
    correct = (records["prediction"] == records["label"]) & (records["prediction"] != ABSTAIN)
    return {"fit_seconds": round(fit_seconds, 1),
            "test_seconds": round(time.perf_counter() - start, 1),
            "metrics": {k: float(v) for k, v in method.test_results.items()},
            "index": records["index"].tolist(),
            "radius": np.where(correct, records["radius"], 0.0).tolist(),
            "correct": correct.tolist()}


def compare(run: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    if run["index"] != baseline["index"]:
        raise RuntimeError("the two certifications did not certify the same images")
    rows = []
    for radius in RADII:
        ours = [c and r >= radius for c, r in zip(run["correct"], run["radius"], strict=True)]
        base = [c and r >= radius for c, r in zip(baseline["correct"], baseline["radius"],
                                                   strict=True)]
        rows.append({"metric": f"certified_acc@{radius:g}", **mcnemar(ours, base)})
    ours, base = np.array(run["radius"]), np.array(baseline["radius"])
    differs = ours != base
    p_value = float(wilcoxon(ours[differs], base[differs]).pvalue) if differs.any() else 1.0
    delta = float(ours.mean() - base.mean())
    verdict = "no significant difference"
    if p_value < 0.05:
        verdict = "higher" if delta > 0 else "lower"
    rows.append({"metric": "acr", "accuracy": float(ours.mean()),
                 "baseline_accuracy": float(base.mean()), "delta": round(delta, 4),
                 "p_value": p_value, "verdict": verdict})
    return rows


def run(scale: dict[str, Any]) -> dict[str, Any]:
    model_args, data_args, epochs = quickstart()
    model_args.update(scale["model"])
    epochs = scale["epochs"] or epochs
    device_of(scale)  # the gpu scale stops here without CUDA
    runs: dict[str, Any] = {}
    data = None
    for name, method in methods(model_args, scale).items():
        data = CIFAR10DataModule(**{**data_args, **scale["data"]})
        runs[name] = train_and_certify(method, data, epochs, scale["accelerator"])
        print(f"{name}: {runs[name]['fit_seconds']:.0f} s fit, {runs[name]['test_seconds']:.0f} "
              f"s test", flush=True)
    baseline = runs[BASELINE]
    check = learns(sum(baseline["correct"]), len(baseline["correct"]), 10)
    comparisons = {name: compare(runs[name], baseline) for name in runs if name != BASELINE}
    return {"epochs": epochs, "model": MODEL_NAMES[model_args["backbone"]], "sigma": SIGMA,
            "n0": scale["n0"], "n": scale["n"],
            "data": data_facts(data), "baseline_learns": check, "runs": runs,
            "comparisons": comparisons}


def to_markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    images = len(runs[BASELINE]["index"])
    check = result["baseline_learns"]
    scale = {"cpu": "CPU", "gpu": "GPU", "smoke": "smoke"}[result.get("scale", "cpu")]
    lines = [
        f"# SmoothAdv and MACER vs Gaussian augmentation at {scale} scale",
        "",
        f"`{result['command']}` ({result['date']}, wall time {result['wall_seconds']} s)",
        "",
        f"σ = {result['sigma']}; {result.get('model', 'TinyCNN width 16')} on "
        f"{result['data']['train_images']:,} real "
        f"CIFAR-10 training images, {result['epochs']} epochs, the quickstart's optimizer for "
        f"all three; CERTIFY (n0 = {result['n0']}, n = {result['n']:,}, α = 0.001) of {images} "
        "evenly spaced test images by `SmoothingCertification` in each method's `test`. "
        "Settings and departures from the papers: `benchmarks/certified_training.py`.",
        "",
        f"Learning check: Gaussian augmentation's smoothed accuracy {100 * check['accuracy']:.1f} "
        f"% vs chance 10 % (one-sided binomial p = {check['p_value']:.1e}): "
        + ("informative." if check["learns"] else "uninformative at this scale."),
        "",
        "| method | clean % (base) | certified % r=0 | r=0.25 | r=0.5 | ACR | fit s | "
        "certify s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    prefix = f"smoothing_sigma{result['sigma']:g}"
    for name, run_result in runs.items():
        metrics = run_result["metrics"]
        cells = [f"{100 * metrics['clean_acc']:.1f}"]
        cells += [f"{100 * metrics[f'{prefix}/certified_acc@{r:g}']:.1f}" for r in RADII]
        cells += [f"{metrics[f'{prefix}/acr']:.3f}", f"{run_result['fit_seconds']:.0f}",
                  f"{run_result['test_seconds']:.0f}"]
        lines.append(f"| {NAMES[name]} | " + " | ".join(cells) + " |")
    lines += ["", "Paired against Gaussian augmentation on the same certified images (exact "
              "McNemar for certified accuracy, Wilcoxon signed-rank for the per-image radius "
              "behind the ACR; level 0.05):", "",
              "| method | metric | Δ | method only / GA only | p | verdict |",
              "|---|---|---|---|---|---|"]
    for name, rows in result["comparisons"].items():
        for row in rows:
            if row["metric"] == "acr":
                delta, counts = f"{row['delta']:+.3f}", "–"
            else:
                delta = f"{row['delta_points']:+.1f} pt"
                counts = f"{row['first_only']} / {row['second_only']}"
            verdict = row["verdict"] if check["learns"] else "uninformative"
            lines.append(f"| {NAMES[name]} | {row['metric']} | {delta} | {counts} | "
                         f"{row['p_value']:.3g} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--output", type=Path, required=True,
                        help="writes <output>.json and <output>.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    body = run(SCALES[args.scale])
    result = {"command": f"python benchmarks/certified_training.py --scale {args.scale} "
                         f"--output {args.output}", "scale": args.scale,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_seconds": round(time.perf_counter() - start), **body}
    markdown = to_markdown(result)
    write_result_files(args.output, result, markdown)
    print(markdown)
    return result


if __name__ == "__main__":
    main()
