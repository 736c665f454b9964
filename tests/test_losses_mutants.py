"""Input checks and edge cases of the certified / contrastive losses."""

from __future__ import annotations

import pytest
import torch

from lit_robust.losses import consistency_loss, nt_xent


def test_consistency_loss_rejects_targets_of_the_wrong_length() -> None:
    # 3-d logits are fine on their own; targets for 5 images do not fit a batch of 4.
    with pytest.raises(ValueError, match=r"\(m, N, K\)"):
        consistency_loss(torch.randn(2, 4, 3), torch.zeros(5, dtype=torch.long), 1.0, 1.0)


def test_nt_xent_rejects_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        nt_xent(torch.empty(0, 8), torch.empty(0, 8), 0.5)


def test_nt_xent_of_a_single_image_is_zero() -> None:
    # With N = 1 each view's only candidate is its positive, so the loss is -log 1 = 0.
    z1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(0.0, abs=1e-6)
