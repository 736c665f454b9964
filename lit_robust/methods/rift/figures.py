"""RiFT's figures: MRC per module (the paper's Figure 3) and the interpolation curve (Figure 1)."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure

from lit_robust.methods.rift.criticality import CriticalityRow


def criticality_figure(rows: Sequence[CriticalityRow], chosen: Sequence[str] = ()) -> Figure:
    """Bar charts of the MRC and of the robust-accuracy drop of every module.

    Args:
        rows: the MRC table, in model order.
        chosen: modules to highlight (the fine-tuned ones).
    """
    names = [row.module for row in rows]
    colors = ["tab:red" if name in chosen else "tab:blue" for name in names]
    figure = Figure(figsize=(max(6.0, 0.35 * len(rows) + 2), 6.0), layout="constrained")
    mrc_axes, drop_axes = figure.subplots(2, 1, sharex=True)
    positions = list(range(len(rows)))
    mrc_axes.bar(positions, [row.mrc for row in rows], color=colors)
    mrc_axes.set_ylabel("MRC (robust loss increase)")
    mrc_axes.set_title("Module robust criticality (red: fine-tuned)")
    drop_axes.bar(positions, [100 * row.robust_acc_drop for row in rows], color=colors)
    drop_axes.set_ylabel("robust accuracy drop (points)")
    drop_axes.set_xticks(positions, names, rotation=90, fontsize=7)
    return figure


def interpolation_figure(
    alphas: Sequence[float],
    clean_accs: Sequence[float],
    robust_accs: Sequence[float],
    selected: float,
    tolerance: float,
) -> Figure:
    """Clean and robust validation accuracy along θ(α) = (1 − α)·θ_AT + α·θ_FT.

    Args:
        alphas: interpolation weights.
        clean_accs: clean accuracies (fractions).
        robust_accs: robust accuracies (fractions).
        selected: the chosen α (marked).
        tolerance: the selection rule's tolerance in percentage points (drawn as a line).
    """
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.subplots()
    axes.plot(alphas, [100 * a for a in clean_accs], "o-", label="clean")
    axes.plot(alphas, [100 * a for a in robust_accs], "s-", label="robust")
    robust_at_zero = robust_accs[list(alphas).index(0.0)]
    axes.axhline(100 * robust_at_zero - tolerance, color="gray", linestyle=":",
                 label="robust(α=0) − tolerance")
    axes.axvline(selected, color="tab:red", linestyle="--", label=f"selected α = {selected:g}")
    axes.set_xlabel("α (0: adversarially trained, 1: fine-tuned)")
    axes.set_ylabel("validation accuracy (%)")
    axes.legend()
    return figure
