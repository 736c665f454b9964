"""Dual BatchNorm wings (TWINS): conversion, routing, frozen statistics, export, state dicts."""

from __future__ import annotations

import copy
import io

import pytest
import timm
import torch
import torchvision
from timm.layers import BatchNormAct2d
from torch import nn

from lit_robust.models.dual_bn import (
    DualBatchNorm2d,
    convert_to_dual_bn,
    dual_batchnorms,
    export_adaptive,
    set_wing,
    use_wing,
)
from lit_robust.models.zoo import build_backbone


def pretend_pretrained(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters, as after training."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                bn.weight.copy_(1 + 0.2 * torch.randn(c, generator=generator))
                bn.bias.copy_(0.1 * torch.randn(c, generator=generator))
    return model.eval()


def plain_batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """BatchNorm2d layers that are not a wing of a dual layer."""
    wings = {id(w) for d in dual_batchnorms(model) for w in (d.frozen, d.adaptive)}
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in wings]


def stats(bn: nn.BatchNorm2d) -> list[torch.Tensor]:
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


ARCHITECTURES = {
    "tiny_cnn": (lambda: build_backbone("tiny_cnn", num_classes=10), 32),
    "cifar_resnet18": (lambda: build_backbone("resnet18", num_classes=10), 32),
    "wrn_28_4": (lambda: build_backbone("wrn_28_4", num_classes=10), 32),
    "tv_resnet18": (lambda: torchvision.models.resnet18(weights=None, num_classes=10), 64),
    "tv_resnet50": (lambda: torchvision.models.resnet50(weights=None, num_classes=10), 64),
    "timm_resnet18": (lambda: timm.create_model("resnet18", pretrained=False, num_classes=10), 64),
}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_conversion_covers_every_batchnorm_and_preserves_outputs(arch: str) -> None:
    factory, size = ARCHITECTURES[arch]
    original = pretend_pretrained(factory())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in original.modules())
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        expected = original(x)

    dual = convert_to_dual_bn(copy.deepcopy(original)).eval()

    assert len(dual_batchnorms(dual)) == n_bn
    assert plain_batchnorms(dual) == []
    names = [n for n, m in dual.named_modules() if isinstance(m, DualBatchNorm2d)]
    if arch.startswith(("tv_", "timm_")):
        assert any("downsample" in n for n in names)
        assert "bn1" in names  # the stem
    with torch.no_grad():
        adaptive = dual(x)
        with use_wing(dual, "frozen"):
            frozen = dual(x)
    torch.testing.assert_close(adaptive, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(frozen, expected, rtol=0, atol=1e-5)


def test_frozen_wing_keeps_pretraining_statistics_through_training() -> None:
    steps = 20
    model = convert_to_dual_bn(pretend_pretrained(build_backbone("tiny_cnn", num_classes=4)))
    layers = dual_batchnorms(model)
    frozen_before = [stats(d.frozen) for d in layers]
    adaptive_before = [stats(d.adaptive) for d in layers]
    affine_before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(steps):
        x, y = torch.rand(8, 3, 16, 16) * 2, torch.randint(0, 4, (8,))  # shifted statistics
        with use_wing(model, "frozen"):
            loss_frozen = nn.functional.cross_entropy(model(x[:4]), y[:4])
        loss_adaptive = nn.functional.cross_entropy(model(x[4:]), y[4:])
        optimizer.zero_grad()
        (loss_frozen + loss_adaptive).backward()
        for d in layers:
            for wing in (d.frozen, d.adaptive):
                assert wing.weight.grad is not None and wing.weight.grad.abs().sum() > 0
                assert wing.bias.grad is not None and wing.bias.grad.abs().sum() > 0
        optimizer.step()

    for d, before in zip(layers, frozen_before, strict=True):
        for now, then in zip(stats(d.frozen), before, strict=True):
            assert torch.equal(now, then)  # bit-identical
    for d, before in zip(layers, adaptive_before, strict=True):
        assert not torch.allclose(d.adaptive.running_mean, before[0])
        assert not torch.allclose(d.adaptive.running_var, before[1])
        assert int(d.adaptive.num_batches_tracked) == int(before[2]) + steps
    for name, param in model.named_parameters():
        if ".frozen." in name or ".adaptive." in name:
            assert not torch.equal(param, affine_before[name]), name
    # the wings' affine parameters moved apart: they are separate parameters
    assert not torch.equal(layers[0].frozen.weight, layers[0].adaptive.weight)


def test_frozen_wing_normalizes_with_running_statistics_in_train_mode() -> None:
    bn = pretend_pretrained(nn.Sequential(nn.BatchNorm2d(5)))[0]
    dual = DualBatchNorm2d(bn).train()
    dual.wing = "frozen"
    x = 3 + torch.randn(6, 5, 4, 4)
    torch.testing.assert_close(dual(x), bn.eval()(x))
    assert dual.frozen.training  # the module's mode is untouched; only the computation is eval
    dual.wing = "adaptive"
    out = dual(x)  # batch statistics: per-channel mean ≈ β
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), dual.adaptive.bias, atol=1e-5, rtol=0)


def test_timm_batchnorm_act_keeps_its_activation() -> None:
    net = nn.Sequential(nn.Conv2d(3, 6, 3), BatchNormAct2d(6, act_layer=nn.ReLU))
    net = pretend_pretrained(net)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
    dual = convert_to_dual_bn(copy.deepcopy(net)).eval()
    assert isinstance(dual[1], DualBatchNorm2d)
    assert isinstance(dual[1].frozen, BatchNormAct2d)
    with torch.no_grad():
        torch.testing.assert_close(dual(x), expected)
        with use_wing(dual, "frozen"):
            torch.testing.assert_close(dual(x), expected)
    assert bool((expected >= 0).all()) and bool((expected == 0).any())  # ReLU applied
    before = stats(dual[1].frozen)
    dual.train()
    with use_wing(dual, "frozen"):
        dual(x).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(stats(dual[1].frozen), before, strict=True))


def trained_dual_tiny_cnn() -> nn.Module:
    """A dual tiny CNN whose two wings differ (statistics and affine parameters)."""
    model = convert_to_dual_bn(pretend_pretrained(build_backbone("tiny_cnn", num_classes=3)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(3):
        x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 3, (6,))
        with use_wing(model, "frozen"):
            loss = nn.functional.cross_entropy(model(x), y)
        loss = loss + nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_export_adaptive_gives_a_plain_model_with_the_same_outputs() -> None:
    dual = trained_dual_tiny_cnn()
    dual_state = copy.deepcopy(dual.state_dict())
    x = torch.rand(5, 3, 16, 16)
    plain = export_adaptive(dual)

    assert dual_batchnorms(plain) == []
    bns = [m for m in plain.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == 4 and all(type(m) is nn.BatchNorm2d for m in bns)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), dual(x), rtol=0, atol=0)
        with use_wing(dual, "frozen"):
            assert not torch.allclose(plain(x), dual(x))
    # the dual model is untouched and the export loads into the original architecture
    assert len(dual_batchnorms(dual)) == 4
    assert all(torch.equal(v, dual.state_dict()[k]) for k, v in dual_state.items())
    fresh = build_backbone("tiny_cnn", num_classes=3).eval()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), dual(x), rtol=0, atol=0)


def test_state_dict_round_trip_into_a_freshly_converted_model() -> None:
    dual = trained_dual_tiny_cnn()
    buffer = io.BytesIO()
    torch.save(dual.state_dict(), buffer)
    buffer.seek(0)
    fresh = convert_to_dual_bn(build_backbone("tiny_cnn", num_classes=3)).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    keys = list(fresh.state_dict())
    assert "layer1.bn.frozen.running_mean" in keys and "layer1.bn.adaptive.weight" in keys
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        for wing in ("adaptive", "frozen"):
            with use_wing(dual, wing), use_wing(fresh, wing):
                torch.testing.assert_close(fresh(x), dual(x), rtol=0, atol=0)


def test_use_wing_restores_and_rejects_unknown_names() -> None:
    model = convert_to_dual_bn(build_backbone("tiny_cnn", num_classes=3))
    layers = dual_batchnorms(model)
    assert all(d.wing == "adaptive" for d in layers)
    with pytest.raises(RuntimeError, match="boom"), use_wing(model, "frozen"):
        assert all(d.wing == "frozen" for d in layers)
        raise RuntimeError("boom")
    assert all(d.wing == "adaptive" for d in layers)
    set_wing(model, "frozen")
    assert all(d.wing == "frozen" for d in layers)
    with pytest.raises(ValueError, match="'frozen' or 'adaptive'"):
        set_wing(model, "pretrained")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'frozen' or 'adaptive'"):
        layers[0].wing = "both"  # type: ignore[assignment]


def test_conversion_is_idempotent_and_keeps_shared_layers_shared() -> None:
    shared = nn.BatchNorm2d(3)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    convert_to_dual_bn(net)
    assert isinstance(net[0], DualBatchNorm2d) and net[0] is net[2]
    convert_to_dual_bn(net)
    assert isinstance(net[0].frozen, nn.BatchNorm2d) and not isinstance(
        net[0].frozen, DualBatchNorm2d
    )
    assert isinstance(convert_to_dual_bn(nn.BatchNorm2d(2)), DualBatchNorm2d)


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="track_running_stats=False"):
        convert_to_dual_bn(nn.Sequential(nn.BatchNorm2d(3, track_running_stats=False)))
    with pytest.raises(ValueError, match="no BatchNorm2d"):
        convert_to_dual_bn(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="convert_to_dual_bn first"):
        set_wing(nn.Sequential(nn.BatchNorm2d(3)), "frozen")
    with pytest.raises(ValueError, match="nothing to export"):
        export_adaptive(nn.Sequential(nn.BatchNorm2d(3)))
    with pytest.raises(TypeError, match="BatchNorm2d"):
        DualBatchNorm2d(nn.BatchNorm1d(3))  # type: ignore[arg-type]
