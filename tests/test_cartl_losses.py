"""CARTL's feature distance (FDM) and the LwF feature penalty against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from lit_robust.losses import fdm_distance, lwf_penalty


def test_fdm_distance_hand_computed() -> None:
    clean = torch.zeros(2, 1, 2, 2)  # d = 4 features per example
    adv = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    # ||r' - r||_2 = 5 and 2, divided by sqrt(4) = 2: 2.5 and 1
    assert fdm_distance(adv, clean).item() == pytest.approx(3.5)
    assert fdm_distance(adv, clean, reduction="mean").item() == pytest.approx(1.75)


def test_fdm_distance_of_flat_features_and_its_gradient() -> None:
    clean = torch.tensor([[1.0, 2.0, 3.0]])
    adv = torch.tensor([[1.0, 4.0, 3.0]], requires_grad=True)
    distance = fdm_distance(adv, clean)
    assert distance.item() == pytest.approx(2 / math.sqrt(3))
    distance.backward()
    # d/dr' of ||r' - r|| / sqrt(d) is (r' - r) / (||r' - r|| sqrt(d))
    torch.testing.assert_close(adv.grad, torch.tensor([[0.0, 1 / math.sqrt(3), 0.0]]))


def test_fdm_distance_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        fdm_distance(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        fdm_distance(torch.zeros(2, 3), torch.zeros(2, 3), reduction="max")  # type: ignore[arg-type]


def test_lwf_penalty_hand_computed() -> None:
    features = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    source = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, -1.0]])
    # per-example L1 distances 3.5 and 3, averaged over the batch
    assert lwf_penalty(features, source).item() == pytest.approx(3.25)
    assert lwf_penalty(source, source).item() == 0.0
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        lwf_penalty(torch.zeros(2, 3, 1), torch.zeros(2, 3, 1))
