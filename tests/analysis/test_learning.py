"""The "learns at all" check: its bound by hand and its decisions."""

from __future__ import annotations

import pytest
from scipy.stats import beta

from lit_robust.analysis.learning import UNINFORMATIVE, check_learning


def test_bound_is_the_clopper_pearson_lower_bound() -> None:
    check = check_learning(174, 300, 10)
    assert check.lower_bound == pytest.approx(beta.ppf(0.001, 174, 127))
    assert check.learns and check.threshold == pytest.approx(0.2)
    assert not check.reason.startswith(UNINFORMATIVE)


@pytest.mark.parametrize(("correct", "images", "classes", "learns"), [
    (18, 430, 43, False),   # 4.2 %: the cpu-scale TWINS baseline, near chance (2.3 %)
    (43, 430, 10, False),   # one class predicted: chance exactly
    (30, 100, 10, False),   # 30 % of 100: the lower bound (16.6 %) is under 20 %
    (300, 1000, 10, True),  # 30 % of 1,000: the bound (25.5 %) clears 20 %
    (103, 812, 43, True),   # 12.7 % of 812 on 43 classes
])
def test_decisions(correct: int, images: int, classes: int, learns: bool) -> None:
    check = check_learning(correct, images, classes, what="the baseline at_ft")
    assert check.learns is learns
    assert check.reason.startswith(UNINFORMATIVE) is not learns
    assert "the baseline at_ft's clean accuracy" in check.reason


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="images >= 1"):
        check_learning(0, 0, 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        check_learning(1, 2, 1)
