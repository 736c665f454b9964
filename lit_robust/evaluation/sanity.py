"""Sanity checks that catch broken robustness evaluations (DESIGN §7).

Two layers:

- :class:`SanityChecks` is an evaluator that attacks each test batch over a small ε sweep
  that starts at 0 and checks that ε = 0 reproduces clean accuracy exactly, that every
  perturbation stays inside its ε-ball and the [0, 1] image box, that accuracy does not grow
  with ε, and that no attacked accuracy exceeds clean accuracy.
- :func:`check_metrics` checks a merged ``{metric: value}`` dict across evaluators. The
  robustness report runs it. ``robust_le_clean``: every ``robust_acc/...`` is at most
  ``clean_acc``. The built-in evaluators count an image as robust only when it is also
  classified correctly clean, so they cannot fail it; it guards third-party evaluators.
  ``eps0_robust_matches_clean``: every robust accuracy at ε = 0 (a name whose budget part is
  ``eps0``, e.g. ``robust_acc/pgd10_linf_eps0`` or ``robust_acc/<name>/eps0`` of a PGD sweep)
  equals ``clean_acc`` exactly. It fails when the evaluators saw different images (e.g. one of
  them counts DDP padding twice), a different model or BN mode, or an attack that moves inputs
  with a zero budget.

The checks of :class:`SanityChecks` compare its own sweep's plain accuracy on x_adv (not
gated by clean correctness) with clean accuracy, so each of them can fail.

Checks are reported as ``<name>/<check>`` (``sanity/eps0_matches_clean``, ...) with 1.0 for
pass and 0.0 for fail; the sweep's accuracies as ``eps_sweep/<name>/eps<ε>``. With
``strict=True`` a failure raises :class:`SanityCheckError` (which carries the results, so the
report can still be written first); otherwise it is logged at ERROR level and issued as a
:class:`SanityCheckWarning`.

The remaining check of DESIGN §7, that a standard-trained model falls to about 0% under PGD,
needs a model known to be standard-trained; the test suite runs it on the ResNet-18 shipped
with ``pyautoattack``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from lit_robust.attacks.pgd import Norm, check_budget, pgd
from lit_robust.evaluation.accuracy import accuracy
from lit_robust.evaluation.base import Evaluator
from lit_robust.evaluation.pgd_evaluator import accuracy_vs_eps_figure
from lit_robust.evaluation.runner import attack_mode

logger = logging.getLogger(__name__)

AttackFn = Callable[[nn.Module, Tensor, Tensor, float], Tensor]
"""``attack(model, x, y, eps) -> x_adv``: the attack under test."""

CHECKS = ("eps0_matches_clean", "within_budget", "monotone_in_eps", "sweep_le_clean")
"""The checks of :class:`SanityChecks`, reported as ``<name>/<check>``."""

METRIC_CHECKS = ("robust_le_clean", "eps0_robust_matches_clean")
"""The checks of :func:`check_metrics`, reported as ``sanity/<check>``."""

_ZERO_BUDGET = re.compile(r"(^|[_/])eps0($|/)")

_DEFAULT_EPS = {"linf": (0.0, 2 / 255, 4 / 255, 8 / 255), "l2": (0.0, 0.125, 0.25, 0.5)}
# Slack for float rounding when checking ‖x_adv − x‖ ≤ ε and x_adv ∈ [0, 1].
_BUDGET_ATOL = 1e-5


class SanityCheckError(RuntimeError):
    """A robustness evaluation failed a sanity check and cannot be trusted.

    Attributes:
        results: every check's outcome (and the sweep's accuracies), so that a report can
            still be written before the error propagates.
    """

    def __init__(self, message: str, results: Mapping[str, float]) -> None:
        super().__init__(message)
        self.results = dict(results)


class SanityCheckWarning(UserWarning):
    """A sanity check failed with ``strict=False``."""


def report_failures(
    failures: Sequence[str], strict: bool, results: Mapping[str, float]
) -> None:
    """Raise (``strict``) or log and warn about failed checks; do nothing when none failed.

    Args:
        failures: one message per failed check.
        strict: raise instead of logging and warning.
        results: the checks' outcomes, attached to the error.

    Raises:
        SanityCheckError: when ``strict`` and a check failed.
    """
    if not failures:
        return
    message = "robustness evaluation failed sanity checks:\n- " + "\n- ".join(failures)
    if strict:
        raise SanityCheckError(message, results)
    logger.error(message)
    warnings.warn(message, SanityCheckWarning, stacklevel=3)


def check_metrics(
    metrics: Mapping[str, float], strict: bool = True, tolerance: float = 0.0
) -> dict[str, float]:
    """Check merged metrics of several evaluators against clean accuracy.

    ``robust_le_clean``: no robust accuracy exceeds clean accuracy (the built-in evaluators
    cannot fail it, see the module docstring). ``eps0_robust_matches_clean``: every robust
    accuracy at ε = 0 equals clean accuracy; reported only when such a metric exists.

    Args:
        metrics: merged ``{name: value}`` with ``clean_acc`` and ``robust_acc/...`` entries.
        strict: raise on failure instead of logging and warning.
        tolerance: allowed excess of a robust accuracy over clean accuracy (the ε = 0 check
            is exact up to float rounding).

    Returns:
        ``{"sanity/<check>": 1.0 or 0.0}``, or ``{}`` when the dict has no clean and robust
        accuracies to compare.

    Raises:
        SanityCheckError: when ``strict`` and a check failed.
    """
    robust = {k: v for k, v in metrics.items() if k.startswith("robust_acc/")}
    if "clean_acc" not in metrics or not robust:
        return {}
    clean = metrics["clean_acc"]
    above = [
        f"{key} = {value:.4f} exceeds clean_acc = {clean:.4f}: attack and clean evaluation saw "
        "different data or models, or the attack is broken"
        for key, value in robust.items()
        if value > clean + tolerance
    ]
    results = {"sanity/robust_le_clean": 0.0 if above else 1.0}
    at_zero = {k: v for k, v in robust.items() if _ZERO_BUDGET.search(k.removeprefix("robust_acc"))}
    differ = [
        f"{key} = {value:.4f} differs from clean_acc = {clean:.4f} at eps = 0: the evaluators saw "
        "different images or models, or the attack moves inputs with a zero budget"
        for key, value in at_zero.items()
        if abs(value - clean) > 1e-9
    ]
    if at_zero:
        results["sanity/eps0_robust_matches_clean"] = 0.0 if differ else 1.0
    report_failures(above + differ, strict, results)
    return results


def _perturbation_norm(delta: Tensor, norm: Norm) -> Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(p=2, dim=1)


class SanityChecks(Evaluator):
    """Evaluation sanity checks over an ε sweep (see the module docstring).

    Args:
        eps_list: budgets of the sweep in pixel units; 0 is added when missing and the list
            is sorted. Default: 0, 2/255, 4/255, 8/255 for L∞ and 0, 0.125, 0.25, 0.5 for L2.
        norm: ``"linf"`` or ``"l2"``.
        steps: PGD steps of the default attack (step size 2.5·ε/steps, random start).
        restarts: PGD restarts of the default attack.
        attack: the attack to check, ``attack(model, x, y, eps) -> x_adv``; ``None`` uses
            PGD with ``steps`` and ``restarts``.
        tolerance: allowed violation (as a fraction of examples) of the monotonicity and
            robust-below-clean checks, absorbing random-start noise; ε = 0 must match exactly.
        strict: raise :class:`SanityCheckError` on a failed check; otherwise log and warn.
        name: prefix of the check names; ``"sanity"`` by default.

    Raises:
        ValueError: for a budget not in pixel units, ``steps < 1``, ``restarts < 1`` or a
            tolerance outside [0, 1).
    """

    def __init__(
        self,
        eps_list: Sequence[float] | None = None,
        norm: Norm = "linf",
        steps: int = 10,
        restarts: int = 1,
        attack: AttackFn | None = None,
        tolerance: float = 0.01,
        strict: bool = True,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        check_budget(0.0, None, norm)
        budgets = _DEFAULT_EPS[norm] if eps_list is None else eps_list
        for eps in budgets:
            check_budget(eps, None, norm)
        if steps < 1 or restarts < 1:
            raise ValueError(f"need steps >= 1 and restarts >= 1, got {steps} and {restarts}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance is a fraction of examples in [0, 1), got {tolerance}")
        self.eps_list = sorted({0.0, *map(float, budgets)})
        self.norm = norm
        self.steps = steps
        self.restarts = restarts
        self.attack = attack
        self.tolerance = tolerance
        self.strict = strict
        n = len(self.eps_list)
        self.add_state("correct", default=torch.zeros(n, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("clean_correct", default=torch.tensor(0, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("budget_excess", default=torch.tensor(0.0), dist_reduce_fx="max")

    def default_name(self) -> str:
        return "sanity"

    def _run_attack(self, model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
        if self.attack is not None:
            return self.attack(model, x, y, eps)
        return pgd(model, x, y, eps=eps, step_size=None, steps=self.steps, norm=self.norm,
                   restarts=self.restarts)

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        x, y = self.real_images(x, y)
        if y.numel() == 0:
            return
        with attack_mode(model):
            with torch.no_grad():
                self.clean_correct += (model(x).argmax(dim=1) == y).sum()
            for index, eps in enumerate(self.eps_list):
                x_adv = self._run_attack(model, x, y, eps).detach()
                with torch.no_grad():
                    self.correct[index] += (model(x_adv).argmax(dim=1) == y).sum()
                    excess = torch.stack([
                        (_perturbation_norm(x_adv - x, self.norm) - eps).max(),
                        -x_adv.min(),
                        x_adv.max() - 1,
                    ]).max().float()
                    self.budget_excess = torch.maximum(self.budget_excess, excess)
        self.total += y.numel()

    def sweep(self) -> list[float]:
        """Accuracy at each ε of :attr:`eps_list`."""
        return [accuracy(correct, self.total, self) for correct in self.correct]

    def compute(self) -> dict[str, float]:
        clean = accuracy(self.clean_correct, self.total, self)
        sweep = self.sweep()
        excess = float(self.budget_excess)
        failures: dict[str, str] = {}
        if int(self.correct[0]) != int(self.clean_correct):
            failures["eps0_matches_clean"] = (
                f"accuracy at eps=0 is {sweep[0]:.4f} but clean accuracy is {clean:.4f}: the "
                "attack changes inputs even with a zero budget"
            )
        if excess > _BUDGET_ATOL:
            failures["within_budget"] = (
                f"a perturbation leaves its {self.norm} eps-ball or the [0, 1] box by {excess:.3g}"
                ": the attack ignores eps or does not project/clip"
            )
        rises = [
            f"{sweep[i - 1]:.4f} at eps={self.eps_list[i - 1]:.4g} to {sweep[i]:.4f} at "
            f"eps={self.eps_list[i]:.4g}"
            for i in range(1, len(sweep))
            if sweep[i] > sweep[i - 1] + self.tolerance
        ]
        if rises:
            failures["monotone_in_eps"] = "accuracy rises with eps: " + "; ".join(rises)
        above = [
            f"eps={e:.4g} ({a:.4f})"
            for e, a in zip(self.eps_list, sweep, strict=True)
            if a > clean + self.tolerance
        ]
        if above:
            failures["sweep_le_clean"] = (
                f"attacked accuracy exceeds clean accuracy {clean:.4f} at " + ", ".join(above)
            )
        results = {f"{self.name}/{c}": 0.0 if c in failures else 1.0 for c in CHECKS}
        results.update({
            f"eps_sweep/{self.name}/eps{eps:.4g}": acc
            for eps, acc in zip(self.eps_list, sweep, strict=True)
        })
        report_failures([f"{self.name}/{c}: {m}" for c, m in failures.items()], self.strict,
                        results)
        return results

    def figures(self) -> dict[str, Figure]:
        """Accuracy against ε over the sweep."""
        figure = accuracy_vs_eps_figure(self.eps_list, self.sweep(), self.norm,
                                        title="sanity ε sweep")
        return {f"eps_sweep/{self.name}": figure}
