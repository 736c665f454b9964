"""AutoAttack (Croce & Hein, ICML 2020) through the official code of the ``pyautoattack`` package.

The adapter only prepares what the official code needs and records its results:

- the model runs in eval mode with its parameters frozen for the attack (FAB calls
  ``backward`` and would otherwise fill the parameters' ``.grad``); every submodule's mode and
  every parameter's ``requires_grad`` are restored afterwards;
- AutoAttack receives contiguous NCHW float32 tensors, and the model is wrapped so that the
  input gradient is contiguous too: the official code reshapes gradients with ``.view``, which
  fails on channels_last or otherwise non-contiguous batches (DESIGN §7);
- the seed is fixed and the caller's random number generators are restored afterwards
  (AutoAttack re-seeds the global generators before every attack);
- AutoAttack's progress messages are printed on rank 0 with ``verbose`` (else logged at DEBUG
  level to the ``lit_robust.evaluation.autoattack_adapter`` logger), its warnings are logged
  at WARNING level there, and the trace function that its dynamic-defense check clears (a
  debugger's, coverage's) is restored;
- with progress lines on (:func:`~lit_robust.evaluation.base.enable_progress`), rank 0 prints
  ``<name>: i/N attack runs, elapsed, ETA`` after each attack on each batch
  (:mod:`lit_robust.progress`).

Bookkeeping: the attacks run one at a time in AutoAttack's order, each through
``AutoAttack.run_standard_evaluation`` with ``attacks_to_run=[attack]`` on the points that are
still robust (clean-correct and not yet broken) — the same cascade AutoAttack runs, with the
cumulative robust accuracy after every attack recorded.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from pyautoattack import AutoAttack
from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
from torch import Tensor, nn

from lit_robust.attacks.pgd import check_budget
from lit_robust.evaluation.accuracy import accuracy
from lit_robust.evaluation.base import Evaluator
from lit_robust.evaluation.runner import attack_mode
from lit_robust.progress import is_rank_zero, write_line

logger = logging.getLogger(__name__)

AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
STANDARD_ATTACKS = ("apgd-ce", "apgd-t", "fab-t", "square")
_DLR_ATTACKS = {"apgd-dlr", "apgd-t"}
_TARGETED_ATTACKS = {"apgd-t", "fab-t"}
_NORMS = {"linf": "Linf", "l2": "L2"}


class _ContiguousGradient(torch.autograd.Function):
    """Identity whose backward returns a contiguous gradient."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.contiguous()


class _ContiguousGradientModel(nn.Module):
    """``model`` whose input gradients are contiguous whatever its internal memory format."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(_ContiguousGradient.apply(x))


class _RoutedLog(logging.LoggerAdapter):
    """AutoAttack's logger: its progress messages (``debug`` and ``info`` calls) are printed
    as ``<prefix>: <message>`` on rank 0 when verbose, else logged at DEBUG level; warnings
    and errors are logged as they are."""

    def __init__(self, verbose: bool, prefix: str) -> None:
        super().__init__(logger, {})
        self.verbose = verbose
        self.prefix = prefix

    def _progress(self, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.verbose:
            self.log(logging.DEBUG, msg, *args, **kwargs)
        elif is_rank_zero():
            write_line(f"{self.prefix}: {str(msg) % args if args else msg}")

    debug = info = _progress


@contextmanager
def _frozen_parameters(model: nn.Module) -> Iterator[None]:
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, requires_grad in flags:
            parameter.requires_grad_(requires_grad)


@contextmanager
def _kept_tracer() -> Iterator[None]:
    """Restore the trace function (debugger, coverage) that AutoAttack's dynamic-defense check
    resets with ``sys.settrace(None)``."""
    tracer = sys.gettrace()
    try:
        yield
    finally:
        sys.settrace(tracer)


class AutoAttackEvaluator(Evaluator):
    """Robust accuracy under AutoAttack, run by the official ``pyautoattack`` code.

    Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
    parameter-free attacks", ICML 2020. ``version="standard"`` runs APGD-CE, APGD-T, FAB-T and
    Square with AutoAttack's fixed settings; ``version="custom"`` runs ``attacks_to_run`` with
    AutoAttack's constructor defaults, overridden by the per-attack arguments (e.g. the
    transfer-learning study's APGD-CE 100 iterations × 5 restarts plus Square with 5,000
    queries: ``attacks_to_run=["apgd-ce", "square"]``, which are the defaults). The targeted
    attacks use at most ``num_classes - 1`` target classes.

    Metric names: ``robust_acc/<name>`` (the final robust accuracy) and
    ``robust_acc/<name>/<attack>`` (cumulative robust accuracy after each attack, in run
    order). The default name is ``autoattack_<version>_<norm>_eps<ε>`` for the standard
    version and ``autoattack_<attack+attack>_<norm>_eps<ε>`` for a custom one, e.g.
    ``robust_acc/autoattack_standard_linf_eps0.03137``.

    Args:
        norm: ``"Linf"`` or ``"L2"`` (lower case accepted).
        eps: radius in [0, 1] pixel units (L∞ 8/255, L2 0.5).
        version: ``"standard"`` or ``"custom"``.
        attacks_to_run: the attacks of a custom version, in run order, from ``apgd-ce``,
            ``apgd-dlr``, ``fab``, ``square``, ``apgd-t``, ``fab-t``.
        apgd_n_iter: iterations of APGD-CE/APGD-DLR (custom; default 100).
        apgd_n_restarts: restarts of APGD-CE/APGD-DLR (custom; default 5).
        apgd_t_n_iter: iterations of APGD-T per target class (custom; default 100).
        apgd_t_n_restarts: restarts of APGD-T per target class (custom; default 1).
        apgd_t_n_target_classes: target classes of APGD-T (custom; default 9).
        fab_n_iter: iterations of FAB and FAB-T (custom; default 100).
        fab_n_restarts: restarts of untargeted FAB (custom; default 5; FAB-T always uses 1).
        fab_n_target_classes: target classes of FAB-T (custom; default 9).
        square_n_queries: query budget of Square (custom; default 5,000).
        batch_size: examples per attack call inside one test batch.
        seed: seed of AutoAttack's random starts (the same for every batch, as in AutoAttack).
        verbose: print AutoAttack's own progress messages (rank 0) instead of logging them
            at DEBUG level; its warnings (e.g. a randomized defense or zero gradients) are
            always logged at WARNING level.
        name: metric name (see above).

    Raises:
        ValueError: for an unknown norm or attack, a budget not in pixel units, a custom
            version without attacks, attacks or per-attack settings given to the standard
            version, or a non-positive setting.
    """

    def __init__(
        self,
        norm: Literal["Linf", "L2"] = "Linf",
        eps: float = 8 / 255,
        version: Literal["standard", "custom"] = "standard",
        attacks_to_run: Sequence[str] | None = None,
        apgd_n_iter: int | None = None,
        apgd_n_restarts: int | None = None,
        apgd_t_n_iter: int | None = None,
        apgd_t_n_restarts: int | None = None,
        apgd_t_n_target_classes: int | None = None,
        fab_n_iter: int | None = None,
        fab_n_restarts: int | None = None,
        fab_n_target_classes: int | None = None,
        square_n_queries: int | None = None,
        batch_size: int = 250,
        seed: int = 0,
        verbose: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(name=name)
        if norm.lower() not in _NORMS:
            raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
        self.norm = _NORMS[norm.lower()]
        check_budget(eps, None, norm.lower())  # type: ignore[arg-type]
        self.eps = eps
        self.version = version
        self.settings = {
            "apgd_n_iter": apgd_n_iter, "apgd_n_restarts": apgd_n_restarts,
            "apgd_t_n_iter": apgd_t_n_iter, "apgd_t_n_restarts": apgd_t_n_restarts,
            "apgd_t_n_target_classes": apgd_t_n_target_classes, "fab_n_iter": fab_n_iter,
            "fab_n_restarts": fab_n_restarts, "fab_n_target_classes": fab_n_target_classes,
            "square_n_queries": square_n_queries,
        }
        self.attacks = self._check_attacks(version, attacks_to_run)
        if min([batch_size, *[v for v in self.settings.values() if v is not None]]) < 1:
            raise ValueError(
                f"batch_size and every per-attack setting must be >= 1, got batch_size="
                f"{batch_size} and {self.settings}"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.verbose = verbose
        self.add_state("robust_count", default=torch.zeros(len(self.attacks), dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.keep_per_image()

    def per_image_names(self) -> list[str]:
        return self.metric_names()

    def _check_attacks(self, version: str, attacks_to_run: Sequence[str] | None) -> list[str]:
        if version == "standard":
            given = [key for key, value in self.settings.items() if value is not None]
            if attacks_to_run is not None or given:
                raise ValueError(
                    "attacks_to_run and per-attack settings "
                    f"({', '.join(given) or 'none'}) apply to version='custom' only; the "
                    "standard version uses AutoAttack's fixed settings"
                )
            return list(STANDARD_ATTACKS)
        if version != "custom":
            raise ValueError(f"version must be 'standard' or 'custom', got {version!r}")
        if not attacks_to_run:
            raise ValueError(
                "version='custom' needs attacks_to_run, e.g. ['apgd-ce', 'square'], from "
                f"{', '.join(AUTOATTACK_ATTACKS)}"
            )
        unknown = [a for a in attacks_to_run if a not in AUTOATTACK_ATTACKS]
        if unknown or len(set(attacks_to_run)) != len(attacks_to_run):
            raise ValueError(
                f"attacks_to_run={list(attacks_to_run)} has unknown or repeated attacks; "
                f"choose each at most once from {', '.join(AUTOATTACK_ATTACKS)}"
            )
        return list(attacks_to_run)

    def default_name(self) -> str:
        label = self.version if self.version == "standard" else "+".join(self.attacks)
        return f"autoattack_{label}_{self.norm.lower()}_eps{self.eps:.4g}"

    def metric_names(self) -> list[str]:
        """The final robust accuracy's name, then one per attack (cumulative)."""
        base = f"robust_acc/{self.name}"
        return [base] + [f"{base}/{attack}" for attack in self.attacks]

    def _adversary(self, model: nn.Module, num_classes: int, device: torch.device) -> AutoAttack:
        """An AutoAttack object with this evaluator's settings, logging to our logger."""
        custom = self.version == "custom"
        adversary = AutoAttack(model, norm=self.norm, eps=self.eps, version=self.version,
                               attacks=self.attacks if custom else None, seed=self.seed,
                               device=device)
        routed = _RoutedLog(self.verbose, self.name)
        adversary.logger = routed
        s = self.settings
        if custom and (s["apgd_n_iter"] is not None or s["apgd_n_restarts"] is not None):
            # The APGD constructors derive their step-size checkpoints from n_iter.
            adversary.apgd = APGDAttack(
                model, n_iter=s["apgd_n_iter"] or adversary.apgd.n_iter,
                n_restarts=s["apgd_n_restarts"] or adversary.apgd.n_restarts, eps=self.eps,
                norm=self.norm, eot_iter=1, rho=0.75, seed=self.seed, device=device,
            )
        if custom and (s["apgd_t_n_iter"] is not None or s["apgd_t_n_restarts"] is not None):
            adversary.apgd_targeted = APGDAttack_targeted(
                model, n_iter=s["apgd_t_n_iter"] or adversary.apgd_targeted.n_iter,
                n_restarts=s["apgd_t_n_restarts"] or adversary.apgd_targeted.n_restarts,
                eps=self.eps, norm=self.norm, eot_iter=1, rho=0.75, seed=self.seed,
                device=device,
            )
        if custom:
            for attack, field, key in (
                (adversary.apgd_targeted, "n_target_classes", "apgd_t_n_target_classes"),
                (adversary.fab, "n_target_classes", "fab_n_target_classes"),
                (adversary.fab, "n_iter", "fab_n_iter"),
                (adversary.fab, "n_restarts", "fab_n_restarts"),
                (adversary.square, "n_queries", "square_n_queries"),
            ):
                if s[key] is not None:
                    setattr(attack, field, s[key])
        adversary.apgd.logger = adversary.apgd_targeted.logger = routed
        for targeted in (adversary.apgd_targeted, adversary.fab):
            targeted.n_target_classes = min(targeted.n_target_classes, num_classes - 1)
        return adversary

    def _check_num_classes(self, num_classes: int) -> None:
        needs = {a: 4 for a in self.attacks if a in _DLR_ATTACKS}
        needs.update({a: 2 for a in self.attacks if a in _TARGETED_ATTACKS - _DLR_ATTACKS})
        too_few = [a for a, minimum in needs.items() if num_classes < minimum]
        if too_few:
            raise ValueError(
                f"{', '.join(too_few)} cannot attack a {num_classes}-class model (the DLR loss "
                "needs at least 4 classes, targeted attacks at least 2); use version='custom' "
                "with attacks_to_run=['apgd-ce', 'square']"
            )

    def update(self, model: nn.Module, x: Tensor, y: Tensor) -> None:  # type: ignore[override]
        images = self.images_on_this_rank()
        batches = None if images is None else math.ceil(images / max(len(y), 1))
        progress = self.progress(None if batches is None else batches * len(self.attacks),
                                 "attack runs")
        x, y, positions = self.real_images_indexed(x, y)
        if y.numel() == 0:
            return
        x = x.detach().to(torch.float32).contiguous()
        y = y.detach().long()
        cuda = [x.device.index or 0] if x.device.type == "cuda" else []
        with (
            attack_mode(model), _frozen_parameters(model), _kept_tracer(),
            torch.random.fork_rng(cuda),
        ):
            net = _ContiguousGradientModel(model)
            with torch.no_grad():
                num_classes = net(x[:1]).shape[1]
            self._check_num_classes(num_classes)
            adversary = self._adversary(net, num_classes, x.device)
            robust = torch.ones_like(y, dtype=torch.bool)
            per_attack = []
            for index, attack in enumerate(self.attacks):
                if bool(robust.any()):
                    remaining = robust.nonzero().squeeze(1)
                    adversary.attacks_to_run = [attack]
                    _, y_adv = adversary.run_standard_evaluation(
                        x[remaining], y[remaining], batch_size=self.batch_size
                    )
                    robust[remaining] = y_adv == y[remaining]
                self.robust_count[index] += robust.sum()
                per_attack.append(robust.clone())
                progress.advance(detail=attack)
        self.total += y.numel()
        self.record_per_image(positions, torch.stack([per_attack[-1], *per_attack], dim=1))

    def compute(self) -> dict[str, float]:
        values = [accuracy(count, self.total, self) for count in self.robust_count]
        return dict(zip(self.metric_names(), [values[-1], *values], strict=True))
