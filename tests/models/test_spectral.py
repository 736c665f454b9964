"""Spectral scaling β·W/σ(W), NEFT surgery, folding, and NEFT checkpoints as plain weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from lit_robust.models.blocks import averages_branches, blocks
from lit_robust.models.checkpoint import load_weights
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.spectral import (
    SpectralScaling,
    add_spectral_scaling,
    apply_neft,
    fold_spectral_scaling,
    fold_spectral_state_dict,
    power_iteration_step,
    spectral_parametrizations,
)
from lit_robust.models.zoo import build_backbone


def _largest_singular_value(weight: torch.Tensor) -> float:
    """σ_max of the weight reshaped to C_out × (C_in·k·k), via the smaller Gram matrix."""
    matrix = weight.detach().flatten(1).double()
    return float(torch.linalg.svdvals(matrix @ matrix.T)[0].sqrt())


def _neft_resnet18(beta: float, k: int = 3) -> NormalizedClassifier:
    model = NormalizedClassifier(build_backbone("resnet18", num_classes=10), [0.5] * 3, [0.25] * 3)
    apply_neft(model, k, beta)
    return model


def test_every_scaled_weight_has_spectral_norm_beta() -> None:
    model = _neft_resnet18(beta=0.6)
    power_iteration_step(model, steps=30)
    scaled = {name: m for name, m in model.named_modules() if parametrize.is_parametrized(m)}
    # layer4.0 (two 3x3 convs and its 1x1 shortcut conv), layer4.1 (two convs), the classifier
    assert set(scaled) == {"net.layer4.0.conv1", "net.layer4.0.conv2", "net.layer4.0.shortcut.0",
                           "net.layer4.1.conv1", "net.layer4.1.conv2", "net.linear"}
    for name, module in scaled.items():
        assert _largest_singular_value(module.weight) == pytest.approx(0.6, abs=1e-2), name
    # the stored weights themselves are not rescaled
    assert _largest_singular_value(model.net.linear.parametrizations.weight.original) != \
        pytest.approx(0.6, abs=1e-2)


def test_power_iteration_estimates_the_largest_singular_value() -> None:
    weight = torch.randn(8, 3, 3, 3)
    scaling = SpectralScaling(weight, beta=1.0, initial_iterations=0)
    assert float(scaling.sigma(weight)) != pytest.approx(_largest_singular_value(weight), rel=1e-2)
    scaling.power_iteration(weight, steps=50)
    assert float(scaling.sigma(weight)) == pytest.approx(_largest_singular_value(weight), rel=1e-3)


def test_forward_passes_do_not_move_the_power_iteration_vectors() -> None:
    model = _neft_resnet18(beta=0.5).train()
    scaling = model.net.linear.parametrizations.weight[0]
    u = scaling.u.clone()
    model(torch.rand(4, 3, 32, 32))
    assert torch.equal(scaling.u, u)
    assert power_iteration_step(model) == 6
    assert not torch.equal(scaling.u, u)


def test_neft_averages_the_residual_blocks_it_scales() -> None:
    model = _neft_resnet18(beta=0.5, k=3)
    listed = blocks(model)
    assert [averages_branches(b) for b in listed[:-1]] == [False] * 6 + [True, True]


def test_the_scaled_weight_trains_and_keeps_its_identity() -> None:
    layer = nn.Linear(5, 4)
    weight = layer.weight
    add_spectral_scaling(layer, beta=0.4)
    assert layer.parametrizations.weight.original is weight
    layer(torch.randn(3, 5)).sum().backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="already scaled"):
        add_spectral_scaling(layer, beta=0.4)


@pytest.mark.parametrize("beta", [0.0, 1.5, -0.2])
def test_beta_outside_zero_one_is_an_error(beta: float) -> None:
    with pytest.raises(ValueError, match=r"beta must be in \(0, 1\]"):
        _neft_resnet18(beta=beta)


def test_folding_gives_plain_weights_with_the_same_logits() -> None:
    model = _neft_resnet18(beta=0.4).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        fold_spectral_scaling(model)
        folded = model(x)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert not list(spectral_parametrizations(model))
    assert "net.linear.weight" in model.state_dict()
    torch.testing.assert_close(folded, expected, rtol=0, atol=1e-5)
    assert _largest_singular_value(model.net.linear.weight) == pytest.approx(0.4, abs=1e-2)


def test_a_neft_state_dict_folds_to_the_weights_the_live_model_computes() -> None:
    model = _neft_resnet18(beta=0.4)
    state, names = fold_spectral_state_dict(model.net.state_dict())
    assert names == ["layer4.0.conv1", "layer4.0.conv2", "layer4.0.shortcut.0", "layer4.1.conv1",
                     "layer4.1.conv2", "linear"]
    assert not any("parametrizations" in key for key in state)
    for name in names:
        assert torch.equal(state[f"{name}.weight"], model.net.get_submodule(name).weight)
    plain = build_backbone("resnet18", num_classes=10).state_dict()
    assert set(state) == set(plain)
    broken = {k: v for k, v in model.net.state_dict().items() if not k.endswith("linear."
              "parametrizations.weight.0.u")}
    with pytest.raises(ValueError, match="spectral parametrization of linear is incomplete"):
        fold_spectral_state_dict(broken)


@pytest.mark.parametrize("name", ["resnet18", "tv_resnet50"])
def test_a_neft_checkpoint_loads_as_plain_weights_that_compute_the_same(
    name: str, tmp_path: Path
) -> None:
    size = 32 if name == "resnet18" else 64
    source = build_backbone(name, num_classes=10).eval()
    apply_neft(source, 3, beta=0.5)
    path = tmp_path / "neft.pt"
    torch.save(source.state_dict(), path)

    target = build_backbone(name, num_classes=10).eval()
    load_weights(target, path)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=1e-5)
    assert not any(parametrize.is_parametrized(m) for m in target.modules())
    assert [averages_branches(b) for b in blocks(target)[-3:-1]] == [True, True]
    assert not averages_branches(blocks(target)[-4])
