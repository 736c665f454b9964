"""Consistency-regularization loss and NT-Xent against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lit_robust.losses import consistency_loss, nt_xent


def _softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def test_consistency_loss_matches_a_hand_computation() -> None:
    # m = 2 copies of one image with label 0: logits (2, 0) and (0, 1).
    p1, p2 = _softmax([2.0, 0.0]), _softmax([0.0, 1.0])
    mean = [(a + b) / 2 for a, b in zip(p1, p2, strict=True)]
    cross_entropy = (-math.log(p1[0]) - math.log(p2[0])) / 2
    kl = sum(sum(q * math.log(q / p[k]) for k, q in enumerate(mean)) for p in (p1, p2)) / 2
    entropy = -sum(q * math.log(q) for q in mean)
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])
    loss = consistency_loss(logits, torch.tensor([0]), consistency_weight=5.0, entropy_weight=0.5)
    assert loss.item() == pytest.approx(cross_entropy + 5.0 * kl + 0.5 * entropy, rel=1e-6)
    assert kl > 0.05 and entropy > 0.5  # both terms matter in this example


def test_consistency_loss_averages_over_the_batch() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 4, 5), torch.tensor([0, 1, 2, 3])
    whole = consistency_loss(logits, targets, 2.0, 0.3)
    parts = [consistency_loss(logits[:, i:i + 1], targets[i:i + 1], 2.0, 0.3) for i in range(4)]
    assert whole.item() == pytest.approx(sum(p.item() for p in parts) / 4, rel=1e-6)


def test_consistency_loss_without_weights_is_the_mean_cross_entropy_of_the_copies() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 4, 5), torch.tensor([4, 1, 0, 2])
    expected = sum(F.cross_entropy(logits[i], targets) for i in range(3)) / 3
    loss = consistency_loss(logits, targets, consistency_weight=0.0, entropy_weight=0.0)
    torch.testing.assert_close(loss, expected)


def test_kl_term_vanishes_when_all_copies_agree() -> None:
    torch.manual_seed(0)
    one_copy, targets = torch.randn(4, 5), torch.tensor([4, 1, 0, 2])
    agreeing = one_copy.expand(3, 4, 5)
    loss = consistency_loss(agreeing, targets, consistency_weight=5.0, entropy_weight=0.0)
    torch.testing.assert_close(loss, F.cross_entropy(one_copy, targets))
    disagreeing = agreeing + torch.randn(3, 4, 5)
    assert consistency_loss(disagreeing, targets, 5.0, 0.0) > consistency_loss(
        disagreeing, targets, 0.0, 0.0) + 0.1


def test_consistency_loss_clamps_the_mean_before_its_log() -> None:
    logits = torch.tensor([[[0.0, 200.0]], [[0.0, 200.0]]], requires_grad=True)
    loss = consistency_loss(logits, torch.tensor([1]), 5.0, 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_consistency_loss_rejects_wrong_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(m, N, K\)"):
        consistency_loss(torch.randn(4, 5), torch.zeros(4, dtype=torch.long), 1.0, 1.0)


def test_nt_xent_matches_a_hand_computation() -> None:
    # Views a0 = (1, 0), a1 = (0, 1) and b0 = (2, 0), b1 = (0, -3) (normalized inside):
    # a0/b0 are positives with similarity 1, a1/b1 with similarity -1; all other pairs 0.
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[2.0, 0.0], [0.0, -3.0]])
    tau = 0.5
    aligned = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    opposed = -math.log(math.exp(-1 / tau) / (math.exp(-1 / tau) + 2))
    assert nt_xent(z1, z2, tau).item() == pytest.approx((aligned + opposed) / 2, rel=1e-6)


def test_nt_xent_counts_every_other_view_as_a_negative() -> None:
    # Three images, each view identical to its partner; the views of different images at
    # cosine 0.5: each view has 1 positive at 1/tau and 4 negatives at 0.5/tau.
    angle = math.acos(0.5)
    basis = [(1.0, 0.0, 0.0), (math.cos(angle), math.sin(angle), 0.0)]
    third_y = (0.5 - 0.5 * basis[1][0]) / basis[1][1]
    basis.append((0.5, third_y, math.sqrt(1 - 0.25 - third_y ** 2)))
    z = torch.tensor(basis)
    tau = 0.2
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 4 * math.exp(0.5 / tau)))
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, rel=1e-5)


def test_nt_xent_is_invariant_to_the_order_of_the_batch() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(6, 8), torch.randn(6, 8)
    order = torch.randperm(6)
    torch.testing.assert_close(nt_xent(z1[order], z2[order], 0.5), nt_xent(z1, z2, 0.5))
    torch.testing.assert_close(nt_xent(z2, z1, 0.5), nt_xent(z1, z2, 0.5))
    mismatched = nt_xent(z1, z2[order.roll(1)], 0.5)
    assert not torch.allclose(mismatched, nt_xent(z1, z2, 0.5))


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(torch.randn(4, 8), torch.randn(3, 8), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(4, 8), torch.randn(4, 8), 0.0)
