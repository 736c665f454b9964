"""RiFT's weight interpolation and its robustness-preserving choice of α."""

from __future__ import annotations

import pytest
import torch

from lit_robust.methods.rift import interpolate_state_dicts, select_alpha
from lit_robust.models.normalize import NormalizedClassifier
from lit_robust.models.zoo import build_backbone

ALPHAS = [round(0.1 * i, 1) for i in range(11)]


def _two_states() -> tuple[dict, dict]:
    torch.manual_seed(0)
    a = NormalizedClassifier(build_backbone("tiny_cnn", 10), [0.5] * 3, [0.25] * 3)
    b = NormalizedClassifier(build_backbone("tiny_cnn", 10), [0.5] * 3, [0.25] * 3)
    b.train()
    b(torch.rand(4, 3, 8, 8))  # b's BN statistics and num_batches_tracked differ from a's
    b(torch.rand(4, 3, 8, 8))
    return a.state_dict(), b.state_dict()


def test_end_points_reproduce_both_state_dicts_exactly() -> None:
    sd_a, sd_b = _two_states()
    assert not torch.equal(sd_a["net.layer1.bn.running_mean"], sd_b["net.layer1.bn.running_mean"])
    at_zero = interpolate_state_dicts(sd_a, sd_b, 0.0)
    at_one = interpolate_state_dicts(sd_a, sd_b, 1.0)
    for key in sd_a:
        assert torch.equal(at_zero[key], sd_a[key]), key
        assert torch.equal(at_one[key], sd_b[key]), key
        assert at_zero[key].dtype == sd_a[key].dtype


def test_midpoints_are_linear_and_integer_buffers_come_from_the_nearer_end() -> None:
    sd_a, sd_b = _two_states()
    mid = interpolate_state_dicts(sd_a, sd_b, 0.3)
    key = "net.linear.weight"
    torch.testing.assert_close(mid[key], 0.7 * sd_a[key] + 0.3 * sd_b[key])
    counter = "net.layer1.bn.num_batches_tracked"
    assert int(sd_a[counter]) == 0 and int(sd_b[counter]) == 2
    assert torch.equal(mid[counter], sd_a[counter])
    assert torch.equal(interpolate_state_dicts(sd_a, sd_b, 0.5)[counter], sd_b[counter])
    assert mid[counter].dtype == torch.long


def test_interpolation_rejects_mismatched_inputs() -> None:
    sd_a, sd_b = _two_states()
    with pytest.raises(ValueError, match="alpha must be in"):
        interpolate_state_dicts(sd_a, sd_b, 1.5)
    missing = {k: v for k, v in sd_b.items() if k != "net.linear.bias"}
    with pytest.raises(ValueError, match="only in the first \\['net.linear.bias'\\]"):
        interpolate_state_dicts(sd_a, missing, 0.5)
    other = dict(sd_b, **{"net.linear.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match="differs in shape"):
        interpolate_state_dicts(sd_a, other, 0.5)


def test_selection_takes_the_best_clean_accuracy_that_keeps_robustness() -> None:
    clean = [0.60, 0.62, 0.64, 0.66, 0.68, 0.70, 0.72, 0.74, 0.76, 0.78, 0.80]
    robust = [0.300, 0.302, 0.305, 0.304, 0.301, 0.2995, 0.2985, 0.29, 0.28, 0.27, 0.26]
    # 0.1 points = 0.001: 0.2995 (α=0.5) still qualifies, 0.2985 (α=0.6) does not.
    assert select_alpha(ALPHAS, clean, robust, tolerance=0.1) == 0.5
    assert select_alpha(ALPHAS, clean, robust, tolerance=0.0) == 0.4
    assert select_alpha(ALPHAS, clean, robust, tolerance=5.0) == 1.0


def test_selection_falls_back_to_zero_when_no_positive_alpha_qualifies() -> None:
    clean = [0.50 + 0.01 * i for i in range(11)]
    robust = [0.40] + [0.39 - 0.01 * i for i in range(10)]
    assert select_alpha(ALPHAS, clean, robust) == 0.0


def test_selection_prefers_the_clean_maximum_and_the_smaller_alpha_on_ties() -> None:
    clean = [0.5, 0.7, 0.9, 0.9, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    robust = [0.3] * 11
    assert select_alpha(ALPHAS, clean, robust) == 0.2
    shuffled = [1.0, 0.3, 0.0, 0.2]
    assert select_alpha(shuffled, [0.9, 0.8, 0.5, 0.95], [0.2, 0.3, 0.3, 0.25]) == 0.3


def test_selection_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="must contain 0"):
        select_alpha([0.5, 1.0], [0.5, 0.6], [0.3, 0.3])
    with pytest.raises(ValueError, match="fractions in \\[0, 1\\].*divide percentages"):
        select_alpha([0.0, 1.0], [55.0, 60.0], [30.0, 29.0])
    with pytest.raises(ValueError, match="one clean and one robust"):
        select_alpha([0.0, 1.0], [0.5], [0.3, 0.3])
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        select_alpha([0.0], [0.5], [0.3], tolerance=-1)
