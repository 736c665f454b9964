"""Weight interpolation between the robust and the fine-tuned model, and RiFT's choice of α.

RiFT (Zhu et al., "Improving Generalization of Adversarial Training via Robust Critical
Fine-Tuning", ICCV 2023), Section 3.3: θ(α) = (1 − α)·θ_AT + α·θ_FT, with α chosen as the
value of best clean validation accuracy among those that keep the robust validation accuracy
within a small tolerance of the adversarially trained model's (α = 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor


def interpolate_state_dicts(
    sd_a: Mapping[str, Tensor], sd_b: Mapping[str, Tensor], alpha: float
) -> dict[str, Tensor]:
    """Return ``(1 − α)·sd_a + α·sd_b`` entry by entry.

    Floating-point entries are interpolated with exactly that formula, so ``alpha=0`` gives
    ``sd_a`` and ``alpha=1`` gives ``sd_b`` bit for bit. Entries that are not floating point
    (BatchNorm's integer ``num_batches_tracked``, boolean masks) cannot be interpolated; they are
    taken from the nearer end point: from ``sd_a`` for ``alpha < 0.5`` and from ``sd_b``
    otherwise (again exact at both ends).

    Args:
        sd_a: the state at ``alpha = 0`` (RiFT: the adversarially trained weights θ_AT).
        sd_b: the state at ``alpha = 1`` (RiFT: the fine-tuned weights θ_FT).
        alpha: the interpolation weight, in [0, 1].

    Returns:
        A new dict with the keys of ``sd_a`` (tensors on ``sd_a``'s devices and dtypes).

    Raises:
        ValueError: when ``alpha`` is outside [0, 1], the key sets differ (the message lists the
            keys found in only one of them), or two entries differ in shape or dtype.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    only_a, only_b = sorted(set(sd_a) - set(sd_b)), sorted(set(sd_b) - set(sd_a))
    if only_a or only_b:
        raise ValueError(
            f"the state dicts have different keys: only in the first {only_a}, only in the "
            f"second {only_b}"
        )
    result: dict[str, Tensor] = {}
    for key, a in sd_a.items():
        b = sd_b[key]
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"{key!r} differs in shape or dtype: {tuple(a.shape)} {a.dtype} vs "
                f"{tuple(b.shape)} {b.dtype}"
            )
        if torch.is_floating_point(a) or torch.is_complex(a):
            result[key] = (1.0 - alpha) * a + alpha * b.to(a.device)
        else:
            result[key] = (a if alpha < 0.5 else b.to(a.device)).clone()
    return result


def select_alpha(
    alphas: Sequence[float],
    clean_accs: Sequence[float],
    robust_accs: Sequence[float],
    tolerance: float = 0.1,
) -> float:
    """RiFT's rule: the α of best clean accuracy whose robust accuracy stays near α = 0's.

    An α qualifies when ``robust_acc(α) >= robust_acc(0) − tolerance``; α = 0 always qualifies.
    Among the qualifying values the one with the highest clean accuracy wins; ties go to the
    smaller α (closer to the robust model).

    Args:
        alphas: the evaluated interpolation weights; must contain 0.
        clean_accs: clean validation accuracy at each α, as fractions in [0, 1].
        robust_accs: robust validation accuracy at each α, as fractions in [0, 1].
        tolerance: allowed drop of robust accuracy in **percentage points** (the paper's 0.1,
            i.e. 0.001 in the fractions above).

    Returns:
        The selected α.

    Raises:
        ValueError: for sequences of different lengths, no α = 0, accuracies outside [0, 1]
            (e.g. given in percent) or a negative tolerance.
    """
    alphas, clean, robust = [float(a) for a in alphas], list(clean_accs), list(robust_accs)
    if not len(alphas) == len(clean) == len(robust) or len(alphas) == 0:
        raise ValueError(
            f"need one clean and one robust accuracy per alpha, got {len(alphas)} alphas, "
            f"{len(clean)} clean and {len(robust)} robust accuracies"
        )
    if 0.0 not in alphas:
        raise ValueError(f"alphas must contain 0 (the robust model itself), got {alphas}")
    for name, values in (("clean", clean), ("robust", robust)):
        bad = [v for v in values if not 0.0 <= v <= 1.0]
        if bad:
            raise ValueError(
                f"{name} accuracies must be fractions in [0, 1], got {bad}; divide percentages "
                "by 100"
            )
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 percentage points, got {tolerance}")
    threshold = robust[alphas.index(0.0)] - tolerance / 100.0
    qualifying = [i for i, r in enumerate(robust) if r >= threshold or alphas[i] == 0.0]
    best = max(qualifying, key=lambda i: (clean[i], -alphas[i]))
    return alphas[best]
