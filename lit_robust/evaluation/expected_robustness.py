"""Expected robustness: robust accuracy averaged over a range of perturbation budgets.

Ngnawé et al., "Robust Fine-Tuning from Non-Robust Pretrained Models: Mitigating Suboptimal
Transfer With Epsilon-Scheduling" (arXiv:2509.23325, 2025) report, next to the accuracy at one
budget, the accuracy across a range of budgets, which credits a model that trades a little
robustness at the training ε for much more accuracy at smaller ones. Here it is the mean of
the PGD robust accuracies at evenly spaced budgets ``0, ε_max/(n−1), …, ε_max`` (the budget 0
gives the clean accuracy): for an evenly spaced grid, an estimate of the expected accuracy
when ε is drawn uniformly from [0, ε_max].
"""

from __future__ import annotations

from collections.abc import Sequence

from lit_robust.attacks.objectives import AttackLoss
from lit_robust.attacks.pgd import Norm
from lit_robust.evaluation.pgd_evaluator import PGDEvaluator


def budget_grid(eps_max: float, num_eps: int) -> list[float]:
    """``num_eps`` evenly spaced budgets from 0 to ``eps_max``, both included.

    Raises:
        ValueError: for ``num_eps < 2`` or ``eps_max <= 0``.
    """
    if num_eps < 2 or eps_max <= 0:
        raise ValueError(f"expected robustness needs num_eps >= 2 budgets up to eps_max > 0, got "
                         f"num_eps={num_eps}, eps_max={eps_max}")
    return [eps_max * i / (num_eps - 1) for i in range(num_eps)]


class ExpectedRobustness(PGDEvaluator):
    """Robust accuracy under PGD at every budget of a grid, and their mean.

    Metric names: ``robust_acc/<pgd name>`` for each budget (as :class:`PGDEvaluator` with an
    ``eps_list``) and ``expected_robust_acc/<name>``, the mean, with the default name
    ``pgd<steps>_<norm>_eps0-<ε_max>_n<num>``.

    Args:
        eps_max: the largest budget (default L∞ 8/255), in [0, 1] pixel units.
        num_eps: budgets in the grid, 0 and ``eps_max`` included (default 9: 0, 1/255, …,
            8/255 for L∞ 8/255).
        eps_list: the budgets themselves instead of the grid (their mean is reported).
        steps: PGD steps per budget (default 10); the step size is 2.5·ε/steps for each ε.
        norm: ``"linf"`` (default) or ``"l2"``.
        restarts: random-start runs per budget (worst case per example).
        loss: attack objective (``"ce"``).
        name: metric name of the mean.

    Raises:
        ValueError: for a bad grid (see :func:`budget_grid`), ``eps_list`` together with
            ``num_eps``, or an empty ``eps_list``.
    """

    def __init__(
        self,
        eps_max: float = 8 / 255,
        num_eps: int | None = None,
        eps_list: Sequence[float] | None = None,
        steps: int = 10,
        norm: Norm = "linf",
        restarts: int = 1,
        loss: AttackLoss = "ce",
        name: str | None = None,
    ) -> None:
        if eps_list is not None and num_eps is not None:
            raise ValueError("give either eps_list or num_eps (a grid up to eps_max), not both")
        budgets = list(eps_list) if eps_list is not None else budget_grid(eps_max, num_eps or 9)
        super().__init__(eps_list=budgets, steps=steps, norm=norm, restarts=restarts, loss=loss)
        self._mean_name = name

    def default_name(self) -> str:
        budgets = [attack.eps for attack in self.attacks]
        first = self.attacks[0]
        return (f"pgd{first.steps}_{first.norm}_eps{min(budgets):.4g}-{max(budgets):.4g}"
                f"_n{len(budgets)}")

    @property
    def name(self) -> str:
        return self._mean_name or self.default_name()

    def metric_names(self) -> list[str]:
        return [f"robust_acc/{attack.name}" for attack in self.attacks]

    def compute(self) -> dict[str, float]:
        values = super().compute()
        values[f"expected_robust_acc/{self.name}"] = sum(values.values()) / len(values)
        return values
