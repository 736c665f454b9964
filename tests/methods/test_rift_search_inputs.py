"""RiFT's search: per-step projection after every ascent step, adversarial set from validation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import lit_robust.methods.rift.method as rift_method
from lit_robust.methods.rift import module_robust_criticality
from tests.methods.test_rift_criticality import _data, _model
from tests.methods.test_rift_method import RandomImages, _rift, _trainer


def _distances_seen(project_every_step: bool) -> tuple[list[float], float]:
    """‖W − W₀‖ / ‖W₀‖ of the linear head at every forward pass of the search."""
    model = _model()
    x, y = _data(16, 8)
    head = model.net.linear
    origin = head.weight.detach().clone()
    ratios: list[float] = []

    def record(module: nn.Module, _: tuple[Tensor, ...]) -> None:
        ratios.append(float((module.weight.detach().double() - origin.double()).norm()
                            / origin.double().norm()))

    head.register_forward_pre_hook(record)
    module_robust_criticality(model, x, y, modules=["linear"], epochs=2, batch_size=4,
                              lr=100.0, epsilon=0.1, project_every_step=project_every_step,
                              reuse_prefix=False)
    return ratios, 0.1


def test_per_step_projection_keeps_every_iterate_in_the_relative_ball() -> None:
    ratios, epsilon = _distances_seen(project_every_step=True)
    assert len(ratios) > 8  # ascent and evaluation passes were all observed
    assert max(ratios) <= epsilon * (1 + 1e-6)
    assert max(ratios) == pytest.approx(epsilon, rel=1e-4)  # the ascent reaches the sphere


def test_per_epoch_projection_lets_iterates_leave_the_ball_within_an_epoch() -> None:
    ratios, epsilon = _distances_seen(project_every_step=False)
    assert max(ratios) > 2 * epsilon


def test_mrc_adversarial_set_is_built_from_the_validation_images_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = RandomImages(n_train=32, n_val=12)
    received: list[Tensor] = []
    original = rift_method.generate_adversarial_set

    def spy(model: nn.Module, batches, attack):
        batches = list(batches)
        received.extend(x for x, _ in batches)
        return original(model, batches, attack)

    monkeypatch.setattr(rift_method, "generate_adversarial_set", spy)
    _trainer(tmp_path, max_epochs=1).fit(_rift(mrc_epochs=1), data)
    images = torch.cat(received)
    validation = data.val.tensors[0]
    assert torch.equal(images, validation)
    train = data.train.tensors[0].flatten(1)
    assert not any(bool((train == image.flatten()).all(1).any()) for image in images)
