"""SanityChecks and check_metrics: honest attacks pass, broken attacks fail loudly."""

from __future__ import annotations

import pytest
from torch import Tensor, nn

from lit_robust.attacks import pgd
from lit_robust.evaluation import SanityCheckError, SanityChecks, check_metrics, evaluate
from lit_robust.evaluation.sanity import SanityCheckWarning
from tests.evaluation.toy_models import self_labelled_batch


def _ignores_eps(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Broken: always attacks with 4/255, whatever budget it is given."""
    return pgd(model, x, y, eps=4 / 255, steps=2)


def _gives_up_on_large_budgets(model: nn.Module, x: Tensor, y: Tensor, eps: float) -> Tensor:
    """Broken: stays in budget but does nothing above 1/255 (e.g. a mis-scaled step size)."""
    return pgd(model, x, y, eps=eps, steps=2) if eps <= 1 / 255 else x.clone()


EPS = [1 / 255, 2 / 255, 4 / 255]


def test_honest_pgd_passes_every_check() -> None:
    model, x, y = self_labelled_batch()
    results = evaluate(model, [(x, y)], [SanityChecks(eps_list=EPS, steps=3)])
    assert {k: v for k, v in results.items() if k.startswith("sanity/")} == {
        "sanity/eps0_matches_clean": 1.0, "sanity/within_budget": 1.0,
        "sanity/monotone_in_eps": 1.0, "sanity/sweep_le_clean": 1.0,
    }
    sweep = [results[f"eps_sweep/sanity/eps{e:.4g}"] for e in [0.0, *EPS]]
    assert sweep[0] == 1.0 and sweep[-1] < 0.5


def test_attack_that_ignores_eps_fails_loudly() -> None:
    model, x, y = self_labelled_batch()
    with pytest.raises(SanityCheckError) as failure:
        evaluate(model, [(x, y)], [SanityChecks(eps_list=EPS, attack=_ignores_eps)])
    message = str(failure.value)
    assert "sanity/eps0_matches_clean" in message and "sanity/within_budget" in message
    assert failure.value.results["sanity/eps0_matches_clean"] == 0.0
    assert failure.value.results["sanity/within_budget"] == 0.0


def test_attack_that_weakens_with_eps_fails_monotonicity() -> None:
    model, x, y = self_labelled_batch()
    evaluator = SanityChecks(eps_list=EPS, attack=_gives_up_on_large_budgets, strict=False)
    with pytest.warns(SanityCheckWarning, match="accuracy rises with eps"):
        results = evaluate(model, [(x, y)], [evaluator])
    assert results["sanity/monotone_in_eps"] == 0.0
    assert results["sanity/eps0_matches_clean"] == 1.0
    assert results["sanity/within_budget"] == 1.0


def test_check_metrics_compares_every_robust_accuracy_with_clean() -> None:
    good = {"clean_acc": 0.8, "robust_acc/pgd": 0.4, "robust_acc/aa": 0.3}
    assert check_metrics(good) == {"sanity/robust_le_clean": 1.0}
    assert check_metrics({"robust_acc/pgd": 0.4}) == {}
    bad = {"clean_acc": 0.5, "robust_acc/pgd": 0.6}
    with pytest.raises(SanityCheckError, match="robust_acc/pgd = 0.6000 exceeds clean_acc"):
        check_metrics(bad)
    with pytest.warns(SanityCheckWarning):
        assert check_metrics(bad, strict=False) == {"sanity/robust_le_clean": 0.0}


def test_zero_is_always_in_the_sweep_and_names_follow_the_name() -> None:
    checks = SanityChecks(eps_list=[0.5, 0.25], norm="l2", steps=1, name="sanity_l2")
    assert checks.eps_list == [0.0, 0.25, 0.5]
    model, x, y = self_labelled_batch(8)
    checks.update(model, x, y)
    assert "sanity_l2/within_budget" in checks.compute()
    assert set(checks.figures()) == {"eps_sweep/sanity_l2"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"eps_list": [8.0]}, "pixel units"), ({"norm": "l1"}, "norm must be"),
     ({"steps": 0}, "steps >= 1"), ({"tolerance": 1.0}, "tolerance")],
)
def test_bad_arguments_fail_early(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SanityChecks(**kwargs)
