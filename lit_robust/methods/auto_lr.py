"""AutoLoRa's automatic learning rate: halve and reload the best weights when progress stalls.

Xu, Zhang and Kankanhalli, "AutoLoRa: A Parameter-Free Automated Robust Fine-Tuning Framework",
ICLR 2024 (Section 4.2, Algorithm 1), which adapts the step-size rule of APGD (Croce and Hein,
ICML 2020) to the learning rate, with the robust accuracy on a held-out validation split as the
objective. At the checkpoints w_j = 4, 8, 12, … (0-based epochs; ``window = 4``):

1. condition 1: fewer than ρ·(w_j − w_{j−1}) of the window's epochs improved on the epoch
   before (``acc[e+1] > acc[e]`` for e in w_{j−1} … w_j − 1), ρ = 0.75;
2. condition 2: the learning rate was not reduced at the last check and the best accuracy has
   not changed since then (``rule="paper"``, APGD's rule). The official code
   (``Finetuning_Methods/AutoLoRa``) keeps a list of learning rates that it copies forward, so
   its check of the learning rate always passes after the first checkpoint: with
   ``rule="code"`` condition 2 is "not the first check and the best accuracy has not changed".

When either holds, the learning rate is divided by 2 and training goes on from the weights of
the best epoch so far. Training stops once the learning rate is below 1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

AutoLRRule = Literal["paper", "code"]


@dataclass(frozen=True)
class AutoLRDecision:
    """What to do after an epoch: keep its weights as the best so far (``new_best``), and/or
    divide the learning rate and reload the best weights (``reduce``, with the ``reason``)."""

    new_best: bool
    reduce: bool
    reason: str = ""


class AutomaticLearningRate:
    """The rule's state: the learning rate, the validation history and the best accuracy.

    Args:
        lr: the initial learning rate (0.01 in AutoLoRa).
        window: epochs between checks (4).
        rho: the share of improving epochs a window needs (0.75).
        divisor: the learning rate is divided by this at a reduction (2).
        min_lr: training stops once the learning rate falls below this (1e-5).
        rule: ``"paper"`` or ``"code"`` for condition 2 (see the module docstring).

    Raises:
        ValueError: for a non-positive ``lr``, ``window``, ``divisor - 1`` or ``min_lr``, a
            ``rho`` outside (0, 1] or an unknown rule.
    """

    def __init__(self, lr: float = 0.01, window: int = 4, rho: float = 0.75,
                 divisor: float = 2.0, min_lr: float = 1e-5, rule: AutoLRRule = "paper") -> None:
        if lr <= 0 or window < 1 or divisor <= 1 or min_lr <= 0 or not 0 < rho <= 1:
            raise ValueError(
                f"the automatic learning rate needs lr > 0, window >= 1, divisor > 1, min_lr > 0 "
                f"and 0 < rho <= 1; got lr={lr}, window={window}, divisor={divisor}, "
                f"min_lr={min_lr}, rho={rho}"
            )
        if rule not in ("paper", "code"):
            raise ValueError(f"rule must be 'paper' or 'code', got {rule!r}")
        self.lr = lr
        self.window = window
        self.rho = rho
        self.divisor = divisor
        self.min_lr = min_lr
        self.rule = rule
        self.history: list[float] = []
        self.best = -math.inf
        self.best_at_last_check = -math.inf
        self.reduced_at_last_check = False
        self.checks = 0

    @property
    def finished(self) -> bool:
        """Whether the learning rate fell below ``min_lr`` (training should stop)."""
        return self.lr < self.min_lr

    def update(self, accuracy: float) -> AutoLRDecision:
        """Record the validation robust accuracy of the next epoch and decide.

        The epoch is ``len(history)`` before the call (0-based); a check happens at epochs
        ``window``, ``2·window``, ….
        """
        epoch = len(self.history)
        self.history.append(float(accuracy))
        new_best = accuracy > self.best
        if new_best:
            self.best = float(accuracy)
        if epoch == 0 or epoch % self.window != 0:
            return AutoLRDecision(new_best, False)
        values = self.history[epoch - self.window: epoch + 1]
        improved = sum(b > a for a, b in zip(values[:-1], values[1:], strict=True))
        reason = ""
        if improved < self.rho * self.window:
            reason = (f"{improved} of the last {self.window} epochs improved the validation "
                      f"robust accuracy (fewer than {self.rho:g}·{self.window})")
        elif self.best == self.best_at_last_check and (
                not self.reduced_at_last_check if self.rule == "paper" else self.checks > 0):
            reason = "the best validation robust accuracy did not change since the last check"
        reduce = bool(reason)
        self.best_at_last_check = self.best
        self.reduced_at_last_check = reduce
        self.checks += 1
        if reduce:
            self.lr /= self.divisor
        return AutoLRDecision(new_best, reduce, reason)

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to continue the rule after a resume."""
        return {"lr": self.lr, "history": list(self.history), "best": self.best,
                "best_at_last_check": self.best_at_last_check,
                "reduced_at_last_check": self.reduced_at_last_check, "checks": self.checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.lr = float(state["lr"])
        self.history = [float(v) for v in state["history"]]
        self.best = float(state["best"])
        self.best_at_last_check = float(state["best_at_last_check"])
        self.reduced_at_last_check = bool(state["reduced_at_last_check"])
        self.checks = int(state["checks"])
