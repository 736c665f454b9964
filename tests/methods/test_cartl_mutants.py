"""CARTL's methods on hand-built cases: exactly which parameters train and which BatchNorms
re-estimate their statistics (values after one step), NEFT's scaled weights and power
iteration, the FDM and LwF terms on hand-computed features, LwF's warm-up and the errors.

Every case is small enough to compute by hand or with a plain forward pass, so a plausible
wrong implementation (an off-by-one block, a BatchNorm in the wrong mode, a warm-up that ends
one epoch late, a source network that is not a frozen copy) changes a compared value.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, Trainer
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.methods.cartl import CARTLSource, LwFTransfer, NEFTTransfer, VanillaTransfer
from lit_robust.models.blocks import BlockLayout, forward_until, register_block_layout
from lit_robust.models.normalize import NormalizedClassifier

TINY = {"backbone": "tiny_cnn", "num_classes": 5, "mean": [0.5] * 3, "std": [0.25] * 3}
RANDOM = {**TINY, "allow_random_source": True}
TINY_BLOCKS = ["layer1", "layer2", "layer3", "layer4", "linear"]  # tiny_cnn's 5 blocks
TINY_BNS = ["layer1.bn", "layer2.bn", "layer3.bn", "layer4.bn"]
MOMENTUM = 0.1  # nn.BatchNorm2d's default


# ---------------------------------------------------------------------------- helpers
class Residual(nn.Module):
    """``x + bn(conv(x))``, or ``½·x + ½·bn(conv(x))`` once NEFT averages it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.average_branches = False

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn(self.conv(x))
        return 0.5 * x + 0.5 * residual if self.average_branches else x + residual


class HandNet(nn.Module):
    """Stem (1×1 conv, 3 → 2 channels), two residual blocks, a linear head (2 → 3), with an
    optional BatchNorm inside the head."""

    def __init__(self, head_bn: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 2, 1, bias=False)
        self.block1 = Residual(2)
        self.block2 = Residual(2)
        linear = nn.Linear(2, 3)
        self.head = nn.Sequential(nn.BatchNorm1d(2), linear) if head_bn else linear

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block2(self.block1(self.stem(x))).mean(dim=(2, 3)))


@register_block_layout(HandNet)
def _hand_layout(net: HandNet) -> BlockLayout:
    return BlockLayout(stem=net.stem, blocks=[net.block1, net.block2, net.head])


def _hand_model(head_bn: bool = False) -> NormalizedClassifier:
    return NormalizedClassifier(HandNet(head_bn), mean=[0.0] * 3, std=[1.0] * 3)


def _built(method_class: type, **kwargs: object):
    method = method_class(**{**(TINY if method_class is CARTLSource else RANDOM), **kwargs})
    method.configure_model()
    return method.train()


def _trainable(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def _tiny_parameters(prefixes: list[str], without_bn: bool = False) -> set[str]:
    """tiny_cnn's parameter names under ``prefixes`` (BatchNorm affines left out if asked)."""
    names = {f"{b}.{m}.{p}" for b in TINY_BLOCKS[:4] for m, p in
             (("conv", "weight"), ("bn", "weight"), ("bn", "bias"))} | {"linear.weight",
                                                                         "linear.bias"}
    return {n for n in names if n.split(".")[0] in prefixes and not (without_bn and ".bn." in n)}


def _bns(method, names: list[str]) -> list[nn.Module]:
    return [method.model.net.get_submodule(name) for name in names]


def _perturb_statistics(model: nn.Module) -> None:
    """Running statistics far from a batch's, so eval- and train-mode outputs differ."""
    generator = torch.Generator().manual_seed(1)
    for layer in model.modules():
        if isinstance(layer, _BatchNorm):
            layer.running_mean.copy_(torch.randn(layer.running_mean.shape, generator=generator))
            layer.running_var.copy_(torch.rand(layer.running_var.shape, generator=generator) + 2)


def _bn_update(old_mean: Tensor, old_var: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    """Running statistics after one train-mode pass of ``z`` (N, C, H, W) through a BatchNorm."""
    mean = z.mean(dim=(0, 2, 3))
    var = z.transpose(0, 1).flatten(1).var(dim=1, unbiased=True)
    return ((1 - MOMENTUM) * old_mean + MOMENTUM * mean,
            (1 - MOMENTUM) * old_var + MOMENTUM * var)


def _one_step(method, x: Tensor, y: Tensor, x_adv: Tensor | None = None) -> Tensor:
    """The hooks and loss of one training step, without a Trainer."""
    method.on_train_batch_start((x, y), 0)
    loss, _ = method.training_loss(x, x_adv, y)
    return loss


class StaticImages(LightningDataModule):
    """8 random images of 5 classes, one unshuffled batch."""

    num_classes = 5
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(2)
        self.x = torch.rand(8, 3, 16, 16, generator=generator)
        self.y = torch.randint(0, 5, (8,), generator=generator)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=8, shuffle=False)


def _fit_one_step(method, tmp_path: Path) -> Trainer:
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", devices=1,
                      default_root_dir=str(tmp_path), num_sanity_val_steps=0,
                      limit_val_batches=0)
    trainer.fit(method, StaticImages())
    return trainer


class ShiftAttack(PGDAttack):
    """A deterministic stand-in for the training attack: ``x`` shifted by 0.1."""

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *args: object,
                 **kwargs: object) -> Tensor:
        return (x + 0.1).clamp(0, 1)


# ---------------------------------------------------------------------------- last-k freezing
@pytest.mark.parametrize("k", [1, 2, 3, 5])
@pytest.mark.parametrize("freeze_affine", [False, True])
@pytest.mark.parametrize("method_class", [VanillaTransfer, NEFTTransfer])
def test_exactly_the_last_k_blocks_train(method_class: type, freeze_affine: bool, k: int) -> None:
    method = _built(method_class, k=k, freeze_bn_affine=freeze_affine)
    trainable = {n.replace(".parametrizations.weight.original", ".weight")
                 for n in _trainable(method.model.net)}
    assert trainable == _tiny_parameters(TINY_BLOCKS[5 - k:], without_bn=freeze_affine)
    assert not any(p.requires_grad for p in method.model.normalize.parameters())


@pytest.mark.parametrize(("k", "extractor"), [(1, TINY_BNS), (2, TINY_BNS[:3]),
                                              (4, TINY_BNS[:1]), (5, [])])
@pytest.mark.parametrize("reuse", [True, False])
def test_the_batchnorms_kept_in_eval_are_exactly_the_extractors_when_reusing(
    k: int, extractor: list[str], reuse: bool
) -> None:
    method = _built(VanillaTransfer, k=k, reuse_source_statistics=reuse)
    expected = _bns(method, extractor) if reuse else []
    assert [id(m) for m in method.frozen_batchnorms()] == [id(m) for m in expected]
    method.train()
    method.on_train_batch_start(None, 0)
    modes = {name: method.model.net.get_submodule(name).training for name in TINY_BNS}
    assert modes == {name: not (reuse and name in extractor) for name in TINY_BNS}
    assert method.model.net.layer4.conv.training  # only BatchNorms are switched


@pytest.mark.parametrize("reuse", [True, False])
def test_batchnorm_statistics_after_one_step_reused_or_re_estimated(reuse: bool) -> None:
    """k = 2 (``layer4`` and ``linear`` train). Reusing the source statistics, the extractor's
    BatchNorms normalize with them and keep them; ``layer4.bn`` gets one momentum update with
    the batch statistics of its input, which the extractor computed in eval mode. Without
    reuse every BatchNorm gets that update from the train-mode pass."""
    method = _built(VanillaTransfer, k=2, reuse_source_statistics=reuse)
    net = method.model.net
    with torch.no_grad():
        _perturb_statistics(net)
    before = copy.deepcopy(method.model)
    old = {name: (before.net.get_submodule(name).running_mean.clone(),
                  before.net.get_submodule(name).running_var.clone()) for name in TINY_BNS}
    x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 5, (6,))
    _one_step(method, x, y)

    reference = before.net.train()
    if reuse:
        for name in TINY_BNS[:3]:
            reference.get_submodule(name).eval()
    with torch.no_grad():
        h = before.normalize(x)
        z1 = reference.layer1.conv(h)
        for layer in (reference.layer1, reference.layer2, reference.layer3):
            h = reference.pool(layer(h))
        z4 = reference.layer4.conv(h)
    for name, z in (("layer4.bn", z4), ("layer1.bn", z1)):
        new = net.get_submodule(name)
        if name == "layer1.bn" and reuse:
            assert torch.equal(new.running_mean, old[name][0])
            assert torch.equal(new.running_var, old[name][1])
            assert int(new.num_batches_tracked) == 0
            continue
        mean, var = _bn_update(*old[name], z)
        torch.testing.assert_close(new.running_mean, mean)
        torch.testing.assert_close(new.running_var, var)


# ---------------------------------------------------------------------------- vanilla transfer
class RecordingAttack(PGDAttack):
    """Returns ``x`` shifted by 0.1 and records its arguments and the BatchNorm modes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[nn.Module, Tensor, Tensor, dict[str, bool]]] = []

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *args: object,
                 **kwargs: object) -> Tensor:
        assert not args and not kwargs
        modes = {"model": model.training, "conv": model.net.layer4.conv.training,
                 **{name: model.net.get_submodule(name).training for name in TINY_BNS}}
        self.calls.append((model, x, y, modes))
        return (x + 0.1).clamp(0, 1)


@pytest.mark.parametrize(("in_eval", "reuse"), [(True, True), (False, True), (False, False)])
def test_vanilla_attacks_the_model_in_the_asked_mode(in_eval: bool, reuse: bool) -> None:
    attack = RecordingAttack()
    method = _built(VanillaTransfer, k=2, adversarial=True, attack=attack,
                    attack_in_eval_mode=in_eval, reuse_source_statistics=reuse)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    x_adv = method.make_adversarial(x, y)
    ((model, x_seen, y_seen, modes),) = attack.calls
    assert model is method.model and x_seen is x and y_seen is y
    torch.testing.assert_close(x_adv, (x + 0.1).clamp(0, 1))
    if in_eval:
        assert not any(modes.values())
    else:
        extractor_eval = reuse
        assert modes == {"model": True, "conv": True, "layer4.bn": True,
                         **{name: not extractor_eval for name in TINY_BNS[:3]}}
    # the modes are restored afterwards
    assert all(m.training for m in method.model.modules())


def test_clean_vanilla_transfer_neither_attacks_nor_uses_an_attack() -> None:
    attack = RecordingAttack()
    method = _built(VanillaTransfer, k=2, attack=attack)
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    assert method.make_adversarial(x, y) is None
    assert attack.calls == []
    assert method.val_attack is attack  # also the validation attack


def test_vanilla_loss_is_the_cross_entropy_of_the_inputs_it_trains_on() -> None:
    method = _built(VanillaTransfer, k=2).eval()
    x, y = torch.rand(4, 3, 16, 16), torch.randint(0, 5, (4,))
    x_adv = (x + 0.1).clamp(0, 1)
    for given, used in ((None, x), (x_adv, x_adv)):
        loss, logits = method.training_loss(x, given, y)
        expected = method.model(used)
        torch.testing.assert_close(logits, expected)
        torch.testing.assert_close(loss, F.cross_entropy(expected, y))
    assert not torch.allclose(method.model(x), method.model(x_adv))


# ---------------------------------------------------------------------------- NEFT
@pytest.mark.parametrize(("k", "scaled"), [(1, ["linear"]), (2, ["layer4.conv", "linear"]),
                                           (3, ["layer3.conv", "layer4.conv", "linear"])])
def test_neft_scales_exactly_the_layers_of_the_last_k_blocks(k: int, scaled: list[str]) -> None:
    method = _built(NEFTTransfer, k=k, beta=0.7)
    net = method.model.net
    assert [n for n, m in net.named_modules() if parametrize.is_parametrized(m)] == scaled
    for name in scaled:
        (scaling,) = net.get_submodule(name).parametrizations.weight
        assert float(scaling.beta) == pytest.approx(0.7)


def test_neft_weights_have_spectral_norm_beta_and_residual_blocks_average() -> None:
    """A hand-built network whose head has singular values 3 and 1 and whose last residual
    block's conv has singular values 4 and 2: with k = 2 and β = 0.5 the computed weights are
    W/6 and W/8, the last block returns ½·x + ½·bn(conv(x)), and the first block and the stem
    are untouched."""
    method = NEFTTransfer(**RANDOM, k=2, beta=0.5)
    model = _hand_model()
    net = model.net
    head = torch.tensor([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    conv = torch.tensor([[0.0, 4.0], [2.0, 0.0]])
    with torch.no_grad():
        net.head.weight.copy_(head)
        net.block2.conv.weight.copy_(conv.view(2, 2, 1, 1))
    method.model = method.transform_model(model)

    torch.testing.assert_close(net.head.weight, head / 6)
    torch.testing.assert_close(net.block2.conv.weight, conv.view(2, 2, 1, 1) / 8)
    norm = torch.linalg.matrix_norm(net.head.weight.detach(), ord=2)
    assert float(norm) == pytest.approx(0.5)
    assert net.block2.average_branches and not net.block1.average_branches
    assert not parametrize.is_parametrized(net.block1.conv)
    assert not parametrize.is_parametrized(net.stem)
    assert _trainable(net) == {"block2.conv.parametrizations.weight.original",
                               "head.parametrizations.weight.original",
                               "head.bias"}  # freeze_bn_affine by default

    h = torch.randn(3, 2, 4, 4)
    net.eval()
    with torch.no_grad():
        expected = 0.5 * h + 0.5 * net.block2.bn(F.conv2d(h, conv.view(2, 2, 1, 1) / 8))
        torch.testing.assert_close(net.block2(h), expected)


def test_neft_advances_the_power_iteration_once_per_step_and_keeps_reused_statistics() -> None:
    method = _built(NEFTTransfer, k=2, beta=0.5, reuse_source_statistics=True)
    net = method.model.net
    scalings = {name: net.get_submodule(name).parametrizations.weight[0]
                for name in ("layer4.conv", "linear")}
    with torch.no_grad():  # a fresh u, v that one iteration visibly moves
        for scaling in scalings.values():
            scaling.u.copy_(F.normalize(torch.randn_like(scaling.u), dim=0))
    vectors = {name: s.u.clone() for name, s in scalings.items()}
    method.on_train_batch_start(None, 0)
    for name, scaling in scalings.items():
        weight = net.get_submodule(name).parametrizations.weight.original.detach().flatten(1)
        v = F.normalize(weight.t() @ vectors[name], dim=0)
        u = F.normalize(weight @ v, dim=0)
        torch.testing.assert_close(scaling.v, v)
        torch.testing.assert_close(scaling.u, u)
    assert [bn.training for bn in _bns(method, TINY_BNS)] == [False, False, False, True]


def test_neft_re_estimates_every_statistic_by_default() -> None:
    method = _built(NEFTTransfer, k=2)
    with torch.no_grad():
        _perturb_statistics(method.model.net)
    before = copy.deepcopy(method.model)
    x, y = torch.rand(6, 3, 16, 16), torch.randint(0, 5, (6,))
    _one_step(method, x, y)
    with torch.no_grad():
        z1 = before.net.layer1.conv(before.normalize(x))
    mean, var = _bn_update(before.net.layer1.bn.running_mean, before.net.layer1.bn.running_var,
                           z1)
    torch.testing.assert_close(method.model.net.layer1.bn.running_mean, mean)
    torch.testing.assert_close(method.model.net.layer1.bn.running_var, var)


# ---------------------------------------------------------------------------- CARTL source
@pytest.mark.parametrize("k", [1, 2, 5])
def test_source_feature_block_is_the_first_of_the_last_k(k: int) -> None:
    method = _built(CARTLSource, k=k)
    assert method.feature_block == 5 - k


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
@pytest.mark.parametrize(("k", "reduction"), [(1, "sum"), (1, "mean"), (3, "sum")])
def test_fdm_term_on_hand_computed_features(k: int, reduction: str) -> None:
    """The hand-built network has 3 blocks: k = 1 compares the pooled features the head takes
    (d = 2), k = 3 the stem's output (d = 2·4·4 = 32), the adversarial input being the clean
    one plus a known shift."""
    method = CARTLSource(**TINY, k=k, lam=0.25, reduction=reduction)
    method.model = method.transform_model(_hand_model())
    net = method.model.net
    x = torch.rand(3, 3, 4, 4)
    x_adv = x + torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    y = torch.tensor([0, 2, 1])
    loss, logits = method.training_loss(x, x_adv, y)

    def features(images: Tensor) -> Tensor:
        h = net.stem(images)
        return h if k == 3 else net.block2(net.block1(h)).mean(dim=(2, 3))

    difference = (features(x_adv) - features(x)).flatten(1)
    per_example = difference.norm(dim=1) / difference.shape[1] ** 0.5
    distance = per_example.sum() if reduction == "sum" else per_example.mean()
    expected_logits = net(x_adv)
    expected = F.cross_entropy(expected_logits, y) + 0.25 * distance
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, expected)
    # the distance pulls both branches: neither feature batch is detached
    weights = [net.stem.weight, net.block1.conv.weight]
    for grad, expected_grad in zip(torch.autograd.grad(loss, weights),
                                   torch.autograd.grad(expected, weights), strict=True):
        torch.testing.assert_close(grad, expected_grad)


def test_source_checks_k_against_the_backbone_and_keeps_the_model() -> None:
    model = _hand_model()
    assert CARTLSource(**TINY, k=3).transform_model(model) is model  # k = L is allowed
    with pytest.raises(ValueError) as error:
        CARTLSource(**TINY, k=4).transform_model(_hand_model())
    assert str(error.value) == ("k=4 is out of range: HandNet has 3 blocks (the classifier is the "
                                "last, the stem is never trained); choose 1 <= k <= 3")


def test_source_without_adversarial_examples_is_an_error() -> None:
    method = _built(CARTLSource, k=2)
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 1])
    with pytest.raises(ValueError) as error:
        method.training_loss(x, None, y)
    assert str(error.value) == ("CARTLSource trains on adversarial examples; make_adversarial "
                                "returned None")


def test_source_logs_the_epoch_mean_distance(tmp_path: Path) -> None:
    method = CARTLSource(**TINY, k=2, lam=0.5, attack=ShiftAttack(), lr=0.01)
    method.configure_model()
    start = copy.deepcopy(method.model).train()
    trainer = _fit_one_step(method, tmp_path)
    data = StaticImages()
    with torch.no_grad():
        distance = (forward_until(start, (data.x + 0.1).clamp(0, 1), 3)
                    - forward_until(start, data.x, 3)).flatten(1)
        expected = (distance.norm(dim=1) / distance.shape[1] ** 0.5).sum()
    metrics = trainer.callback_metrics
    assert "train/fdm_distance_step" not in metrics
    torch.testing.assert_close(metrics["train/fdm_distance"], expected)


# ---------------------------------------------------------------------------- LwF
def test_lwf_source_is_a_frozen_copy_of_the_loaded_network() -> None:
    method = LwFTransfer(**RANDOM)
    method.configure_model()
    source, model = method.source_model, method.model
    assert source is not model and not source.training
    assert not any(p.requires_grad for p in source.parameters())
    for (name, a), (_, b) in zip(source.state_dict().items(), model.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), name


@pytest.mark.parametrize("freeze_affine", [False, True])
def test_lwf_end_to_end_trains_everything_after_the_warm_up(freeze_affine: bool) -> None:
    method = _built(LwFTransfer, head_only_epochs=1, freeze_bn_affine=freeze_affine)
    everything = _tiny_parameters(TINY_BLOCKS, without_bn=freeze_affine)
    assert _trainable(method.model.net) == everything
    tuned = {id(p) for p in method.param_groups()}
    assert tuned == {id(p) for p in method.model.parameters() if p.requires_grad}

    method.on_train_epoch_start()  # epoch 0 < 1: the warm-up
    assert _trainable(method.model.net) == {"linear.weight", "linear.bias"}
    assert {id(p) for p in method.param_groups()} == tuned  # the optimizer keeps them all
    method.head_only_epochs = 0
    method.on_train_epoch_start()
    assert _trainable(method.model.net) == everything


@pytest.mark.parametrize(("k", "body"), [(2, ["layer4.bn"]), (3, ["layer3.bn", "layer4.bn"])])
def test_lwf_last_k_trains_the_last_k_blocks_after_the_warm_up(k: int, body: list[str]) -> None:
    method = _built(LwFTransfer, k=k, head_only_epochs=1, reuse_source_statistics=True)
    last_k = _tiny_parameters(TINY_BLOCKS[5 - k:])
    assert _trainable(method.model.net) == last_k
    extractor = [name for name in TINY_BNS if name not in body]
    assert [id(m) for m in method.frozen_batchnorms()] == [  # warm-up: every BatchNorm
        id(m) for m in _bns(method, extractor + body)]
    method.on_train_epoch_start()
    assert _trainable(method.model.net) == {"linear.weight", "linear.bias"}
    method.head_only_epochs = 0
    method.on_train_epoch_start()
    assert _trainable(method.model.net) == last_k
    assert [id(m) for m in method.frozen_batchnorms()] == [id(m) for m in _bns(method, extractor)]


@pytest.mark.parametrize("k", [None, 3])
def test_lwf_keeps_no_batchnorm_in_eval_without_reuse(k: int | None) -> None:
    method = _built(LwFTransfer, k=k, head_only_epochs=1)
    assert method.frozen_batchnorms() == []
    method.on_train_batch_start(None, 0)
    assert all(bn.training for bn in _bns(method, TINY_BNS))


def test_lwf_end_to_end_reusing_statistics_freezes_them_only_during_the_warm_up() -> None:
    method = _built(LwFTransfer, head_only_epochs=1, reuse_source_statistics=True)
    assert [id(m) for m in method.frozen_batchnorms()] == [id(m) for m in _bns(method, TINY_BNS)]
    method.on_train_batch_start(None, 0)
    assert not any(bn.training for bn in _bns(method, TINY_BNS))
    method.head_only_epochs = 0
    assert method.frozen_batchnorms() == []
    method.on_train_epoch_start()  # back in train mode after the warm-up
    assert all(bn.training for bn in _bns(method, TINY_BNS))


@pytest.mark.parametrize(("head_only_epochs", "epoch", "head_only"), [
    (2, 0, True), (2, 1, True), (2, 2, False), (2, 3, False), (0, 0, False), (1, 0, True),
])
def test_lwf_warm_up_covers_exactly_the_first_epochs(
    head_only_epochs: int, epoch: int, head_only: bool, monkeypatch
) -> None:
    monkeypatch.setattr(LwFTransfer, "current_epoch", property(lambda self: epoch))
    method = _built(LwFTransfer, head_only_epochs=head_only_epochs)
    assert method.head_only is head_only


def test_lwf_epoch_start_puts_back_in_train_mode_only_the_tuned_body_batchnorms() -> None:
    """After the warm-up the tuned blocks' BatchNorms follow the model's mode again; the
    extractor's are left as they are; during the warm-up nothing is switched."""
    method = _built(LwFTransfer, k=3, head_only_epochs=1, reuse_source_statistics=True)
    bns = _bns(method, TINY_BNS)

    def after_epoch_start(model_training: bool) -> list[bool]:
        method.train(model_training)
        for bn in bns:
            bn.eval()
        method.on_train_epoch_start()
        return [bn.training for bn in bns]

    assert after_epoch_start(True) == [False] * 4  # the warm-up
    method.head_only_epochs = 0
    assert after_epoch_start(True) == [False, False, True, True]
    assert after_epoch_start(False) == [False] * 4


def test_lwf_batch_start_puts_the_source_back_in_eval() -> None:
    method = _built(LwFTransfer, k=2, head_only_epochs=0, reuse_source_statistics=True)
    method.source_model.train()
    method.on_train_batch_start(None, 0)
    assert not any(m.training for m in method.source_model.modules())
    assert [bn.training for bn in _bns(method, TINY_BNS)] == [False, False, False, True]


@pytest.mark.parametrize("k", [None, 2])
def test_lwf_body_batchnorms_leave_out_a_batchnorm_inside_the_head(k: int | None) -> None:
    """The head trains during the warm-up, so its BatchNorm is never held in eval mode."""
    method = LwFTransfer(**RANDOM, k=k, head_only_epochs=1, reuse_source_statistics=True)
    model = _hand_model(head_bn=True)
    method.model = method.transform_model(model)
    net = model.net
    assert [id(m) for m in method.frozen_batchnorms()] == [id(net.block1.bn), id(net.block2.bn)]
    method.on_train_epoch_start()  # the warm-up trains the whole head, its BatchNorm included
    assert _trainable(net) == {"head.0.weight", "head.0.bias", "head.1.weight", "head.1.bias"}


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_lwf_loss_and_gradient_on_a_hand_built_network() -> None:
    """CE(f(x), y) + λ·mean_n ‖z₀(xₙ) − z(xₙ)‖₁ with z the pooled features the head takes and
    z₀ those of the frozen source: the gradient reaches the tuned weights through both terms
    and never the source's."""
    method = LwFTransfer(**RANDOM, lam=0.3, head_only_epochs=0)
    method.model = method.transform_model(_hand_model())
    net, source = method.model.net, method.source_model.net
    with torch.no_grad():
        net.block2.conv.weight.add_(0.5)
    x, y = torch.rand(4, 3, 4, 4), torch.tensor([0, 1, 2, 0])
    method.on_train_batch_start((x, y), 0)
    loss, logits = method.training_loss(x, None, y)

    def pooled(network: HandNet) -> Tensor:
        return network.block2(network.block1(network.stem(x))).mean(dim=(2, 3))

    features = pooled(net)
    with torch.no_grad():
        source_features = pooled(source)
    expected = F.cross_entropy(net.head(features), y) + 0.3 * (
        source_features - features).abs().sum(dim=1).mean()
    torch.testing.assert_close(logits, net.head(features))
    torch.testing.assert_close(loss, expected)
    weights = [net.block2.conv.weight, net.head.weight]
    grads = torch.autograd.grad(loss, weights)
    expected_grads = torch.autograd.grad(expected, weights)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)
    assert all(p.grad is None for p in source.parameters())


def test_lwf_logs_the_epoch_mean_penalty(tmp_path: Path) -> None:
    method = LwFTransfer(**RANDOM, lam=0.1, head_only_epochs=0, lr=0.01)
    method.configure_model()
    with torch.no_grad():  # the source differs from the tuned network
        method.model.net.layer4.conv.weight.mul_(1.5)
    start = copy.deepcopy(method.model).train()
    source = copy.deepcopy(method.source_model).eval()
    trainer = _fit_one_step(method, tmp_path)
    data = StaticImages()
    with torch.no_grad():
        expected = (forward_until(source, data.x, -1) - forward_until(start, data.x, -1)
                    ).abs().sum(dim=1).mean()
    metrics = trainer.callback_metrics
    assert "train/lwf_penalty_step" not in metrics
    torch.testing.assert_close(metrics["train/lwf_penalty"], expected)


# ---------------------------------------------------------------------------- one-line errors
@pytest.mark.parametrize("method_class", [VanillaTransfer, NEFTTransfer, LwFTransfer])
def test_a_transfer_without_source_names_the_setting_to_change(method_class: type) -> None:
    with pytest.raises(ValueError) as error:
        method_class(**TINY)
    assert str(error.value) == (
        f"{method_class.__name__} keeps the source network's blocks but no source checkpoint "
        "was given: set model.pretrained to it (model.allow_random_source: true fine-tunes on "
        "top of a random network on purpose)")


@pytest.mark.parametrize("method_class", [VanillaTransfer, NEFTTransfer, LwFTransfer])
@pytest.mark.parametrize("k", [6, 0])
def test_k_out_of_range_is_one_line_naming_the_block_count(method_class: type, k: int) -> None:
    with pytest.raises(ValueError) as error:
        _built(method_class, k=k)
    message = str(error.value)
    assert "\n" not in message
    if k == 0:  # refused by the constructor
        assert message == "k must be a positive number of blocks, got 0"
    else:
        assert message == ("k=6 is out of range: TinyCNN has 5 blocks (the classifier is the "
                           "last, the stem is never trained); choose 1 <= k <= 5")
