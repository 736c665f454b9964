"""Fast adversarial training as a whole: the cyclic schedule, and training on real images."""

from __future__ import annotations

import pytest

from lit_robust.methods.optim import schedule_factor


def test_linear_after_warm_up_is_the_cyclic_schedule_of_fast_at() -> None:
    """Wong et al.'s cyclic learning rate: 0 → peak at half of training → 0, piecewise linear."""
    factor = schedule_factor("linear", max_epochs=10, milestones=None, gamma=0.1,
                             warmup_epochs=5)
    expected = {0.0: 0.0, 2.5: 0.5, 5.0: 1.0, 7.5: 0.5, 9.0: 0.2, 10.0: 0.0, 11.0: 0.0}
    for epoch, value in expected.items():
        assert factor(epoch) == pytest.approx(value, abs=1e-6)
    assert schedule_factor("linear", 10, None, 0.1, 0)(2.5) == pytest.approx(0.75)
