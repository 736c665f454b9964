"""Robust accuracy under PGD with restarts, optionally over a sweep of budgets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.attacks.objectives import AttackLoss
from lit_robust.attacks.pgd import Norm
from lit_robust.evaluation.accuracy import accuracy
from lit_robust.evaluation.base import Evaluator
from lit_robust.evaluation.runner import attack_mode


class PGDEvaluator(Evaluator):
    """Robust accuracy under PGD-k with restarts (Madry et al., ICLR 2018).

    Each example keeps its worst case over the restarts (:func:`lit_robust.attacks.pgd`).
    As in AutoAttack, an example counts as robust only when it is classified correctly both
    clean and under attack, so robust accuracy never exceeds clean accuracy. The random starts
    of test image i are drawn from the attack's ``seed``, i's index in the test set and the
    restart only, so every image gets the same attack whatever the batch size, the DDP shard
    or the number of processes, and a DDP evaluation equals a one-process one image by image.

    The attack is given either as a :class:`~lit_robust.attacks.PGDAttack`, configured as the
    methods' training attacks are (YAML ``attack: {class_path: lit_robust.attacks.PGDAttack,
    init_args: {...}}``), or by the flat arguments ``eps`` … ``random_start``, not both.

    Metric names: ``robust_acc/<name>`` with the default name ``pgd<steps>[x<restarts>]_
    <norm>_eps<ε>[_step<step>]``, e.g. ``robust_acc/pgd10x3_linf_eps0.03137``; the step size
    appears only when it differs from the default 2.5·ε/steps (``PGDAttack.name``). With
    ``eps_list`` there is one metric per budget: the default names carry each ε, and a given
    ``name`` becomes ``robust_acc/<name>/eps<ε>``.

    Args:
        attack: the attack, with its restarts and random start; replaces the flat arguments.
        eps: radius in [0, 1] pixel units (default L∞ 8/255; L2 0.5); replaced by
            ``eps_list``.
        step_size: step in pixel units, the same for every budget; ``None`` (default) uses
            2.5·ε/steps for each ε (2/255 for L∞ 8/255 with 10 steps, 0.125 for L2 0.5).
        steps: gradient steps per restart (default 10).
        norm: ``"linf"`` (default) or ``"l2"``.
        restarts: independent random-start runs (default 1); the per-example worst case
            counts.
        loss: attack objective, ``"ce"`` (default) or ``"kl"`` (TRADES).
        random_start: start each run from a random point of the ε-ball (default ``True``).
        eps_list: several budgets to evaluate (an ε sweep) instead of ``eps``; flat
            arguments only.
        name: metric name (see above).

    Raises:
        ValueError: for ``attack`` together with flat arguments or ``eps_list``, budgets not
            in pixel units, ``steps < 0``, ``restarts < 1`` or an empty ``eps_list``.
        TypeError: for an ``attack`` that is not a ``PGDAttack``.
    """

    def __init__(
        self,
        attack: PGDAttack | None = None,
        eps: float | None = None,
        step_size: float | None = None,
        steps: int | None = None,
        norm: Norm | None = None,
        restarts: int | None = None,
        loss: AttackLoss | None = None,
        random_start: bool | None = None,
        eps_list: Sequence[float] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        flat = {"eps": eps, "step_size": step_size, "steps": steps, "norm": norm,
                "restarts": restarts, "loss": loss, "random_start": random_start,
                "eps_list": eps_list}
        if attack is not None:
            self.attacks = [_checked_attack(attack, flat)]
        else:
            self.attacks = _flat_attacks(**flat)
        self.add_state("correct", default=torch.zeros(len(self.attacks), dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.keep_per_image()

    def default_name(self) -> str:
        return self.attacks[0].name

    def per_image_names(self) -> list[str]:
        return self.metric_names()

    def metric_names(self) -> list[str]:
        """The reported metric names, one per budget."""
        if len(self.attacks) == 1:
            return [f"robust_acc/{self.name}"]
        if self._name is None:
            return [f"robust_acc/{attack.name}" for attack in self.attacks]
        return [f"robust_acc/{self._name}/eps{attack.eps:.4g}" for attack in self.attacks]

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        x, y, positions = self.real_images_indexed(x, y)
        if y.numel() == 0:
            return
        per_image = []
        with attack_mode(model):
            with torch.no_grad():
                clean_correct = model(x).argmax(dim=1) == y
            for index, attack in enumerate(self.attacks):
                x_adv = attack(model, x, y, indices=positions)
                with torch.no_grad():
                    robust = clean_correct & (model(x_adv).argmax(dim=1) == y)
                self.correct[index] += robust.sum()
                per_image.append(robust)
        self.total += y.numel()
        self.record_per_image(positions, torch.stack(per_image, dim=1))

    def compute(self) -> dict[str, float]:
        return {
            key: accuracy(correct, self.total, self)
            for key, correct in zip(self.metric_names(), self.correct, strict=True)
        }

    def figures(self) -> dict[str, Figure]:
        """Robust accuracy against ε when several budgets were evaluated."""
        if len(self.attacks) < 2:
            return {}
        values = self.compute()
        budgets = [attack.eps for attack in self.attacks]
        figure = accuracy_vs_eps_figure(budgets, list(values.values()), self.attacks[0].norm,
                                        title=f"PGD-{self.attacks[0].steps} ε sweep")
        return {f"robust_acc_vs_eps/{self.name}": figure}


def _checked_attack(attack: PGDAttack, flat: dict[str, object]) -> PGDAttack:
    if not isinstance(attack, PGDAttack):
        raise TypeError(
            f"PGDEvaluator(attack=...) takes a lit_robust.attacks.PGDAttack, got "
            f"{type(attack).__name__}; in YAML: attack: {{class_path: lit_robust.attacks."
            "PGDAttack, init_args: {eps: 0.031372549, steps: 10}}"
        )
    given = [key for key, value in flat.items() if value is not None]
    if given:
        raise ValueError(
            f"PGDEvaluator got attack={attack!r} and the flat arguments {', '.join(given)}; "
            "give the attack's settings once: either inside attack (init_args of "
            "lit_robust.attacks.PGDAttack) or as flat arguments without attack (an eps_list "
            "sweep needs the flat arguments)"
        )
    return attack


def _flat_attacks(
    eps: float | None,
    step_size: float | None,
    steps: int | None,
    norm: Norm | None,
    restarts: int | None,
    loss: AttackLoss | None,
    random_start: bool | None,
    eps_list: Sequence[float] | None,
) -> list[PGDAttack]:
    """One attack per budget from the flat arguments, ``None`` meaning PGDAttack's default."""
    budgets = [8 / 255 if eps is None else eps] if eps_list is None else list(eps_list)
    if len(budgets) == 0:
        raise ValueError("eps_list is empty; give at least one budget or leave it None")
    settings = {"step_size": step_size, "steps": steps, "norm": norm, "restarts": restarts,
                "loss": loss, "random_start": random_start}
    given = {key: value for key, value in settings.items() if value is not None}
    return [PGDAttack(eps=e, **given) for e in budgets]


def accuracy_vs_eps_figure(
    budgets: Sequence[float], accuracies: Sequence[float], norm: str, title: str
) -> Figure:
    """A line plot of accuracy (%) against the budget ε (in /255 units for L∞)."""
    figure = Figure(figsize=(4.5, 3.2), layout="constrained")
    axes = figure.add_subplot()
    scale, unit = (255.0, "ε (×1/255)") if norm.lower() == "linf" else (1.0, "ε")
    axes.plot([scale * e for e in budgets], [100 * a for a in accuracies], marker="o")
    axes.set_xlabel(f"{norm} {unit}")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    return figure
