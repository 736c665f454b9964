"""Markdown of the fast-AT and catastrophic-overfitting benchmarks (:mod:`fast_at`)."""

from __future__ import annotations

from typing import Any

NAMES = {"fgsm_rs": "FGSM-RS", "n_fgsm": "N-FGSM", "grad_align": "GradAlign",
         "pgd10_at": "PGD-10 AT", "pgd3_at": "PGD-3 AT"}


def _percent(values: list[bool]) -> str:
    return f"{100 * sum(values) / len(values):.1f}"


def _data(result: dict[str, Any]) -> str:
    data = result["data"]
    return (f"{data['train_images']:,} real CIFAR-10 training images ({data['val_images']:,} "
            f"held-out validation images, {data['test_images']:,} test images)")


def _model(result: dict[str, Any]) -> str:
    """The network (results written before it was recorded used the quickstart's)."""
    return result.get("model", "TinyCNN width 16")


def _scale(result: dict[str, Any]) -> str:
    return {"cpu": "CPU", "gpu": "GPU", "smoke": "smoke"}[result.get("scale", "cpu")]


def fast_markdown(result: dict[str, Any]) -> str:
    runs, throughput = result["runs"], result["throughput"]
    images = runs["pgd10_at"]["images"]
    base = result["baseline_learns"]
    model = _model(result)
    lines = [
        "# Fast adversarial training vs PGD-AT on the quickstart's data"
        + (" and model" if model == "TinyCNN width 16" else f", {model}"),
        "",
        f"`{result['command']}` ({result['date']}, wall time {result['wall_seconds']} s)",
        "",
        f"Quickstart setting (`configs/quickstart.yaml`) with the {model}, "
        f"{_data(result)}, SGD lr 0.05 cosine with a 1-epoch warm-up, "
        f"{result['epochs']} epochs for every method, L∞ ε = 8/255; FGSM-RS α = 10/255, N-FGSM "
        "k = 2 and α = 8/255 unprojected, GradAlign λ = 0.2 (FGSM from zero), PGD-10 step "
        "2/255, PGD-3 step 2.5/255. Every attack runs as its paper's code runs it (single-step: "
        "BatchNorm in train mode; PGD: eval mode, the library default).",
        "",
        "## Throughput, side by side in one run",
        "",
        "Images/s of each method's training step (attack, loss, backward, SGD step) on the same "
        f"real batches of {result.get('batch_size', 128)}, methods alternating within every "
        "round; the ratio is to PGD-10 AT in the same round (median, with the range over "
        "rounds).",
        "",
        "| method | images/s | × PGD-10 AT | range |",
        "|---|---|---|---|",
    ]
    for name, row in throughput.items():
        low, high = row["ratio_range"]
        lines.append(f"| {NAMES[name]} | {row['images_per_s']} | {row['vs_pgd10_at']:.2f} | "
                     f"{low:.2f}–{high:.2f} |")
    lines += [
        "",
        f"## Accuracy on {images} test images (class-balanced)",
        "",
        "Clean accuracy and PGD-10 accuracy (L∞ 8/255, step 2/255, one seeded random start; "
        "robust = correct on the clean and the attacked image). Paired verdict against PGD-10 "
        "AT on the same images: exact McNemar test (two-sided, level 0.05; `first only` / "
        "`AT only` are the images only that model gets right), computed in the benchmark "
        "from per-image predictions with `scipy.stats.binomtest`.",
        "",
        f"Baseline check: PGD-10 AT clean accuracy {100 * base['accuracy']:.1f} % vs chance "
        f"{100 * base['chance']:.0f} % (one-sided binomial p = {base['p_value']:.1e}): "
        + ("it learns, so the comparisons below are informative." if base["learns"] else
           "it does not learn at this scale: the comparisons below are uninformative."),
        "",
        "| method | clean % | PGD-10 % | training s |",
        "|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(f"| {NAMES[name]} | {_percent(run['clean'])} | {_percent(run['pgd10'])} | "
                     f"{run['fit_seconds']:.0f} |")
    lines += ["", "| method vs PGD-10 AT | metric | Δ points | first only / AT only | p | "
              "verdict |", "|---|---|---|---|---|---|"]
    for row in result["comparisons"]:
        lines.append(f"| {NAMES[row['method']]} | {row['metric']} | {row['delta_points']:+.1f} | "
                     f"{row['first_only']} / {row['second_only']} | {row['p_value']:.3g} | "
                     f"{row['verdict'] if base['learns'] else 'uninformative'} |")
    lines += ["", "Training seconds are sequential `Trainer.fit` wall times (validation "
              "included) on a shared machine; the throughput table is the side-by-side figure."]
    return "\n".join(lines) + "\n"


def overfitting_markdown(result: dict[str, Any]) -> str:
    eps255 = round(result["eps"] * 255)
    runs = result["runs"]
    lines = [
        f"# Catastrophic overfitting at {_scale(result)} scale, caught by the guard",
        "",
        f"`{result['command']}` ({result['date']}, wall time {result['wall_seconds']} s)",
        "",
        f"Plain FGSM training (zero start, one step of ε, projected) at L∞ ε = {eps255}/255 on "
        f"the quickstart's data with the {_model(result)} ({_data(result)}) for "
        f"{result['epochs']} epochs, twice from the same "
        "seed: unguarded (the guard only measuring, `max_drop` 0.99) and with "
        f"`CatastrophicOverfittingGuard(max_drop={result['max_drop']})` (FGSM rise required). "
        + ("At this scale the model does not collapse at 8/255 or 12/255, and at 16/255 its "
           "held-out PGD accuracy peaks near 14 %, so Wong et al.'s 20-point fall (the default "
           "`max_drop` 0.2) cannot occur; the threshold is scaled to 10 points. "
           if _model(result) == "TinyCNN width 16" else
           "The threshold is the cpu scale's 10 points (Wong et al.'s is 20), kept until the "
           "model's peak PGD accuracy at this ε is measured. ")
        + "After every epoch both measure clean, FGSM (zero start, step ε) and PGD-10 (step "
        f"ε/4) accuracy at ε = {eps255}/255 on the same held-out validation images (up to "
        "512 of them).",
        "",
        "## Held-out accuracy after each epoch (%)",
        "",
        "| epoch | unguarded clean | FGSM | PGD-10 | guarded clean | FGSM | PGD-10 |",
        "|---|---|---|---|---|---|---|",
    ]
    unguarded, guarded = runs["unguarded"]["history"], runs["guarded"]["history"]
    for index, record in enumerate(unguarded):
        row = [f"{100 * record[k]:.1f}" for k in ("clean_acc", "fgsm_acc", "pgd_acc")]
        if index < len(guarded):
            other = guarded[index]
            row += [f"{100 * other[k]:.1f}" for k in ("clean_acc", "fgsm_acc", "pgd_acc")]
            if other.get("collapse"):
                row[-1] += " (collapse: restored, stopped)"
        else:
            row += ["–", "–", "–"]
        lines.append(f"| {record['epoch']} | " + " | ".join(row) + " |")
    events = runs["guarded"]["events"]
    lines += ["", "## What the guard did", ""]
    if events:
        event = events[0]
        lines.append(
            f"At epoch {event['detected_at']['epoch']} (step {event['detected_at']['step']}) "
            f"held-out PGD-10 accuracy fell from {100 * event['pgd_acc'][0]:.1f} % (best "
            f"{100 * event['best_pgd_acc']:.1f} %) to {100 * event['pgd_acc'][1]:.1f} % while "
            f"FGSM accuracy rose from {100 * event['fgsm_acc'][0]:.1f} % to "
            f"{100 * event['fgsm_acc'][1]:.1f} %; the guard restored the weights of epoch "
            f"{event['restored']['epoch']} (step {event['restored']['step']}) bit for bit and "
            "stopped training.")
    else:
        lines.append("Nothing: no collapse was detected in this run.")
    images = runs["guarded"]["images"]
    lines += ["", f"## Final models on {images} test images (%)", "",
              "| run | clean | PGD-10 | training s |", "|---|---|---|---|"]
    for name in ("unguarded", "guarded"):
        run = runs[name]
        lines.append(f"| {name} | {_percent(run['clean'])} | {_percent(run['pgd10'])} | "
                     f"{run['fit_seconds']:.0f} |")
    lines += ["", "Paired (exact McNemar, guarded vs unguarded):", "",
              "| metric | Δ points | guarded only / unguarded only | p | verdict |",
              "|---|---|---|---|---|"]
    for row in result["comparisons"]:
        lines.append(f"| {row['metric']} | {row['delta_points']:+.1f} | {row['first_only']} / "
                     f"{row['second_only']} | {row['p_value']:.3g} | {row['verdict']} |")
    return "\n".join(lines) + "\n"
