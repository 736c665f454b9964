"""Training losses against hand computations."""

from __future__ import annotations

import math

import torch

from lit_robust.losses import trades_kl


def test_trades_kl_hand_computed() -> None:
    clean = torch.tensor([[0.0, math.log(3.0)]])  # p = (1/4, 3/4)
    adv = torch.tensor([[0.0, 0.0]])  # q = (1/2, 1/2)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert abs(trades_kl(clean, adv).item() - expected) < 1e-6


def test_trades_kl_is_batch_mean_and_zero_when_equal() -> None:
    logits = torch.randn(5, 7)
    assert trades_kl(logits, logits).abs().item() < 1e-6
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    both = trades_kl(torch.cat([a, a]), torch.cat([b, b]))
    assert abs(both.item() - trades_kl(a, b).item()) < 1e-6
