"""Spectral scaling W* = β·W/σ(W) and CARTL's non-expansive fine-tuning (NEFT) surgery.

Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021. σ(W) is
the largest singular value of the weight reshaped to C_out × (C_in·k·k) (a linear layer's
weight as it is), estimated by power iteration with persistent vectors ``u``, ``v``. The
scaling is a :mod:`torch.nn.utils.parametrize` parametrization: the trainable tensor is
``<module>.parametrizations.weight.original`` and the parametrization's buffers ``u``, ``v``
and ``beta`` live in the state dict, so a checkpoint holds everything its weights depend on.

The forward pass only *reads* ``u`` and ``v`` (σ = uᵀ·W·v, differentiable in W);
:func:`power_iteration_step` advances them, once per training step (the methods call it
before each step). Train and eval mode therefore compute the same function, and the model
that is evaluated is exactly the one that was trained.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lit_robust.models.blocks import backbone_of, blocks, last_blocks, set_average_branches

INITIAL_ITERATIONS = 20
_PARAMETRIZED = ".parametrizations.weight."


def _scaled(weight: Tensor, u: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    sigma = torch.dot(u, weight.flatten(1) @ v)
    return beta * weight / sigma


class SpectralScaling(nn.Module):
    """The parametrization ``W ↦ β·W/σ(W)`` with power-iteration vectors as buffers.

    Args:
        weight: the weight it will parametrize (shape and device of the buffers, and the
            starting point of ``initial_iterations`` power iterations).
        beta: target spectral norm β in (0, 1].
        initial_iterations: power iterations run once at construction, so σ is accurate
            from the first step.

    Raises:
        ValueError: for β outside (0, 1] or a weight with fewer than 2 dimensions.
    """

    def __init__(self, weight: Tensor, beta: float,
                 initial_iterations: int = INITIAL_ITERATIONS) -> None:
        super().__init__()
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta must be in (0, 1], got {beta}")
        if weight.dim() < 2:
            raise ValueError(f"spectral scaling needs a weight matrix, got shape "
                             f"{tuple(weight.shape)}")
        matrix = weight.detach().flatten(1)
        u = F.normalize(torch.randn(matrix.shape[0], device=weight.device,
                                    dtype=weight.dtype), dim=0)
        v = F.normalize(torch.randn(matrix.shape[1], device=weight.device,
                                    dtype=weight.dtype), dim=0)
        self.register_buffer("u", u)
        self.register_buffer("v", v)
        self.register_buffer("beta", torch.tensor(float(beta), device=weight.device,
                                                  dtype=weight.dtype))
        self.power_iteration(weight, initial_iterations)

    @torch.no_grad()
    def power_iteration(self, weight: Tensor, steps: int = 1) -> None:
        """Advance ``u`` and ``v`` by ``steps`` power iterations on ``weight`` (in place)."""
        matrix = weight.detach().flatten(1)
        for _ in range(steps):
            self.v.copy_(F.normalize(matrix.t() @ self.u, dim=0, eps=1e-12))
            self.u.copy_(F.normalize(matrix @ self.v, dim=0, eps=1e-12))

    def sigma(self, weight: Tensor) -> Tensor:
        """The current estimate uᵀ·W·v of the largest singular value."""
        return torch.dot(self.u, weight.flatten(1) @ self.v)

    def forward(self, weight: Tensor) -> Tensor:
        return _scaled(weight, self.u, self.v, self.beta)


def add_spectral_scaling(module: nn.Module, beta: float) -> SpectralScaling:
    """Parametrize ``module.weight`` (a conv or linear layer) as β·W/σ(W).

    The weight keeps its identity (now ``module.parametrizations.weight.original``) and its
    ``requires_grad``.

    Raises:
        ValueError: when the module has no weight or its weight is already scaled.
    """
    if not isinstance(getattr(module, "weight", None), Tensor):
        raise ValueError(f"{type(module).__name__} has no weight to scale")
    if any(spectral_parametrizations(module, recurse=False)):
        raise ValueError(f"the weight of this {type(module).__name__} is already scaled")
    scaling = SpectralScaling(module.weight, beta)
    parametrize.register_parametrization(module, "weight", scaling)
    return scaling


def spectral_parametrizations(
    model: nn.Module, recurse: bool = True
) -> Iterator[tuple[nn.Module, SpectralScaling]]:
    """``(module, its SpectralScaling)`` for every spectrally scaled weight in ``model``."""
    for module in model.modules() if recurse else [model]:
        if parametrize.is_parametrized(module, "weight"):
            for parametrization in module.parametrizations.weight:
                if isinstance(parametrization, SpectralScaling):
                    yield module, parametrization


@torch.no_grad()
def power_iteration_step(model: nn.Module, steps: int = 1) -> int:
    """Advance the power iteration of every scaled weight in ``model``; returns their number."""
    count = 0
    for module, scaling in spectral_parametrizations(model):
        scaling.power_iteration(module.parametrizations.weight.original, steps)
        count += 1
    return count


def apply_neft(model: nn.Module, k: int, beta: float) -> list[nn.Module]:
    """Non-expansive fine-tuning surgery on the last ``k`` blocks of ``model``.

    Every ``Conv2d`` (shortcut convs included) and ``Linear`` inside those blocks gets
    :class:`SpectralScaling` with ``beta``, and every residual block among them averages its
    branches (½·shortcut + ½·residual).

    Returns:
        The last ``k`` blocks.

    Raises:
        ValueError: for ``k`` out of range or β outside (0, 1].
        TypeError: for a backbone without block enumeration.
    """
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    tuned = last_blocks(model, k)
    for block in tuned:
        for layer in block.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                add_spectral_scaling(layer, beta)
        set_average_branches(block, True)
    return tuned


def fold_spectral_scaling(model: nn.Module) -> nn.Module:
    """Replace every scaled weight by the plain weight β·W/σ(W) it currently computes.

    The model then has no parametrizations and gives the same outputs; residual blocks keep
    averaging their branches (that is part of the fine-tuned architecture). In place.
    """
    modules = {id(m): m for m, _ in spectral_parametrizations(model)}
    for module in modules.values():
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def fold_spectral_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Fold the spectral parametrizations of a saved state dict into plain weights.

    ``<m>.parametrizations.weight.original`` with its ``.0.u``, ``.0.v`` and ``.0.beta``
    become ``<m>.weight`` = β·W/σ(W), computed exactly as the live parametrization does.

    Returns:
        ``(plain state dict, names of the modules that were scaled)``; a state dict without
        parametrizations comes back unchanged with no names.
    """
    names = sorted({key.split(_PARAMETRIZED)[0] for key in state if _PARAMETRIZED in key})
    if not names:
        return dict(state), []
    plain = {key: value for key, value in state.items() if _PARAMETRIZED not in key}
    for name in names:
        prefix = f"{name}{_PARAMETRIZED}"
        try:
            original = state[f"{prefix}original"]
            u, v, beta = (state[f"{prefix}0.{b}"] for b in ("u", "v", "beta"))
        except KeyError as error:
            raise ValueError(
                f"the spectral parametrization of {name} is incomplete: {error} missing "
                f"(expected {prefix}original and {prefix}0.u / .v / .beta)"
            ) from error
        plain[f"{name}.weight"] = _scaled(original, u, v, beta)
    return plain, names


def restore_branch_averaging(model: nn.Module, scaled_modules: list[str]) -> list[nn.Module]:
    """Make the residual blocks that contain any of ``scaled_modules`` average their branches.

    A NEFT state dict (:func:`fold_spectral_state_dict`) names its scaled layers; the blocks
    they belong to were fine-tuned with ½·shortcut + ½·residual, and need it to compute the
    same function.

    Args:
        model: the backbone the state dict was loaded into (or its classifier).
        scaled_modules: module names relative to the backbone.

    Returns:
        The blocks that now average their branches.
    """
    net = backbone_of(model)
    wanted = {id(net.get_submodule(name)) for name in scaled_modules}
    restored = []
    for block in blocks(net):
        if any(id(m) in wanted for m in block.modules()) and set_average_branches(block, True):
            restored.append(block)
    return restored
