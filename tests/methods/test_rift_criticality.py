"""RiFT's module robust criticality search: projection, MRC properties, reuse, cache."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.methods.rift import (
    candidate_module_names,
    generate_adversarial_set,
    module_robust_criticality,
    project_weight_,
    rank_modules,
)
from lit_robust.methods.rift.cache import fingerprint, load_table, store_table
from lit_robust.methods.rift.prefix_reuse import build_runner
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.zoo import build_backbone

SOME_RESNET_MODULES = ["conv1", "layer1.1.conv2", "layer2.0.shortcut.0", "layer4.1.conv1", "linear"]


def _model(backbone: str = "tiny_cnn", **kwargs: object) -> NormalizedClassifier:
    net = build_backbone(backbone, num_classes=10, **kwargs)
    return NormalizedClassifier(net, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


def _data(n: int = 24, size: int = 16) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, size, size, generator=generator), torch.randint(0, 10, (n,),
                                                                          generator=generator)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("scale", [0.001, 0.05, 1.0, 30.0])
def test_projection_keeps_the_perturbation_inside_the_relative_ball(scale: float) -> None:
    origin = torch.randn(16, 8, 3, 3)
    weight = origin + scale * torch.randn_like(origin)
    inside = float((weight - origin).norm()) <= 0.1 * float(origin.norm())
    before = weight.clone()
    project_weight_(weight, origin, epsilon=0.1)
    radius = 0.1 * float(origin.double().norm())
    distance = float((weight.double() - origin.double()).norm())
    assert distance <= radius * (1 + 1e-6)
    if inside:
        assert torch.equal(weight, before)
    else:  # projected onto the sphere, along the original direction
        assert distance == pytest.approx(radius, rel=1e-5)
        cosine = F.cosine_similarity((weight - origin).flatten(), (before - origin).flatten(), 0)
        assert float(cosine) == pytest.approx(1.0, abs=1e-5)


def test_mrc_is_nonnegative_and_every_weight_is_restored_bit_for_bit() -> None:
    model = _model()
    x, y = _data()
    before = _state(model)
    rows = module_robust_criticality(model, x, y, epochs=3, batch_size=8)
    assert [r.module for r in rows] == candidate_module_names(model)
    assert [r.module for r in rows] == ["layer1.conv", "layer2.conv", "layer3.conv",
                                        "layer4.conv", "linear"]
    for row in rows:
        assert row.mrc == pytest.approx(row.loss_after - row.loss_before)
        assert row.worst_epoch in (0, 1, 2, 3)
        if row.worst_epoch == 0:  # no pass raised the loss: the unperturbed values stand
            assert (row.mrc, row.robust_acc_after) == (0.0, row.robust_acc_before)
        else:
            assert row.mrc > 0
    assert any(row.mrc > 0 for row in rows)  # the ascent does raise the loss
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())
    assert model.training  # the model's mode is restored


class _WithUnusedBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.unused = nn.Conv2d(3, 4, 1)
        self.linear = nn.Linear(4, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(F.relu(self.conv(x)).mean(dim=(2, 3)))


def test_a_module_the_output_does_not_depend_on_has_zero_mrc() -> None:
    model = NormalizedClassifier(_WithUnusedBranch(), mean=[0.5], std=[0.25])
    x, y = _data(16, 8)
    rows = {r.module: r for r in module_robust_criticality(model, x, y, epochs=2, batch_size=8)}
    assert rows["unused"].mrc == 0.0
    assert rows["unused"].worst_epoch == 0
    assert rows["unused"].robust_acc_after == rows["unused"].robust_acc_before
    assert rows["conv"].mrc > 0 and rows["linear"].mrc > 0


def _reference_mrc(model: nn.Module, x: Tensor, y: Tensor, name: str, epochs: int,
                   batch_size: int, generator: torch.Generator) -> float:
    """The paper's code, restated: deep copy, SGD(lr=1) on −CE, projection, eval per epoch."""
    clone = copy.deepcopy(model).eval()
    weight = clone.net.get_submodule(name).weight
    for p in clone.parameters():
        p.requires_grad_(p is weight)
    origin = weight.detach().clone()
    optimizer = torch.optim.SGD(clone.parameters(), lr=1.0)

    def loss_of(m: nn.Module) -> float:
        with torch.no_grad():
            return float(sum(F.cross_entropy(m(x[i:i + batch_size]), y[i:i + batch_size],
                                             reduction="sum") for i in range(0, len(y),
                                                                             batch_size))) / len(y)

    start = worst = loss_of(clone)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            optimizer.zero_grad()
            (-F.cross_entropy(clone(x[idx]), y[idx])).backward()
            optimizer.step()
        diff = weight.detach() - origin
        ratio = diff.norm() / origin.norm()
        if ratio > 0.1:
            with torch.no_grad():
                weight.copy_(origin + diff / ratio * 0.1)
        worst = max(worst, loss_of(clone))
    return worst - start


@pytest.mark.parametrize("backbone", ["tiny_cnn", "resnet18"])
def test_search_matches_a_direct_restatement_of_the_papers_loop(backbone: str) -> None:
    model = _model(backbone).eval()
    x, y = _data(12, 8)
    modules = None if backbone == "tiny_cnn" else SOME_RESNET_MODULES
    rows = module_robust_criticality(model, x, y, modules, epochs=2, batch_size=4, seed=3)
    generator = torch.Generator().manual_seed(3)
    for row in rows:  # the shuffling stream is consumed module by module, epoch by epoch
        expected = _reference_mrc(model, x, y, row.module, 2, 4, generator)
        assert row.mrc == pytest.approx(expected, rel=1e-3, abs=1e-5), row.module


def test_prefix_reuse_covers_every_resnet_module_and_changes_nothing() -> None:
    model = _model("resnet18").eval()
    x, y = _data(6, 8)
    names = candidate_module_names(model)
    idx = torch.tensor([4, 0, 2])
    with torch.no_grad():
        plain = model(x[idx])
    # built alone, and each through the previous module's runner, in and against model order
    for order, chained in ((names, False), (names, True), (names[::-1], True)):
        runner = None
        for name in order:
            runner = build_runner(model, model.net.get_submodule(name), x, batch_size=4,
                                  previous=runner if chained else None)
            assert runner.reuses_prefix, name
            with runner.active(), torch.no_grad():
                reused = runner(idx)
            torch.testing.assert_close(reused, plain, rtol=1e-4, atol=1e-5)
    assert all(vars(m).get("forward") is None for m in model.modules())  # forwards restored
    plain_rows = module_robust_criticality(model, x, y, SOME_RESNET_MODULES, epochs=2,
                                           batch_size=3, reuse_prefix=False)
    reused_rows = module_robust_criticality(model, x, y, SOME_RESNET_MODULES, epochs=2,
                                            batch_size=3)
    for a, b in zip(plain_rows, reused_rows, strict=True):
        assert a.mrc == pytest.approx(b.mrc, rel=1e-3, abs=1e-5), a.module
    reversed_rows = module_robust_criticality(model, x, y, SOME_RESNET_MODULES[::-1], epochs=2,
                                              batch_size=3)
    assert [r.module for r in reversed_rows] == SOME_RESNET_MODULES[::-1]


def test_projection_every_step_and_unknown_modules() -> None:
    model = _model()
    x, y = _data(16, 8)
    rows = module_robust_criticality(model, x, y, modules=["linear"], epochs=2, batch_size=4,
                                     project_every_step=True, lr=100.0)
    assert [r.module for r in rows] == ["linear"] and rows[0].mrc > 0
    with pytest.raises(ValueError, match="unknown module 'layer9.conv'.*layer1.conv"):
        module_robust_criticality(model, x, y, modules=["layer9.conv"])
    with pytest.raises(ValueError, match="epsilon > 0"):
        module_robust_criticality(model, x, y, epsilon=0)


def test_ranking_picks_least_and_most_critical() -> None:
    model = _model()
    x, y = _data(16, 8)
    rows = module_robust_criticality(model, x, y, epochs=1, batch_size=8)
    by_mrc = sorted(rows, key=lambda r: r.mrc)
    assert rank_modules(rows, 1) == [by_mrc[0].module]
    assert rank_modules(rows, 2) == [r.module for r in by_mrc[:2]]
    assert rank_modules(rows, 1, most=True) == [by_mrc[-1].module]
    with pytest.raises(ValueError, match="k must be in"):
        rank_modules(rows, 0)


def test_adversarial_set_is_made_once_in_eval_mode_within_budget() -> None:
    model = _model()
    x, y = _data(20, 8)
    batches = [(x[i:i + 8], y[i:i + 8]) for i in range(0, 20, 8)]
    adv, labels = generate_adversarial_set(model, batches, PGDAttack(steps=2), max_samples=13)
    assert adv.shape == (13, 3, 8, 8) and torch.equal(labels, y[:13])
    assert float((adv - x[:13]).abs().max()) <= 8 / 255 + 1e-6
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="empty"):
        generate_adversarial_set(model, [], PGDAttack(steps=1))


def test_cache_round_trip_and_fingerprint(tmp_path) -> None:
    model = _model()
    x, y = _data(8, 8)
    rows = module_robust_criticality(model, x, y, epochs=1, batch_size=4)
    settings = {"epsilon": 0.1, "epochs": 1}
    key = fingerprint(model, [x, y], settings)
    assert key == fingerprint(model, [x, y], dict(settings))
    assert key != fingerprint(model, [x, y], {"epsilon": 0.2, "epochs": 1})
    assert key != fingerprint(model, [x[:4], y[:4]], settings)
    changed = _model()
    with torch.no_grad():
        changed.load_state_dict(model.state_dict())
        changed.net.linear.bias[0] += 1e-3
    assert key != fingerprint(changed, [x, y], settings)
    path = tmp_path / "mrc.json"
    assert load_table(path, key) is None
    store_table(path, key, rows, settings)
    assert load_table(path, key) == rows
    assert load_table(path, "another key") is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_table(path, key)
