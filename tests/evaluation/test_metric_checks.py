"""check_metrics: robust accuracy at ε = 0 must reproduce clean accuracy (a check that can fail)."""

from __future__ import annotations

import pytest

from lit_robust.evaluation import (
    CleanAccuracy,
    PGDEvaluator,
    RobustnessReport,
    SanityCheckError,
    check_metrics,
    evaluate,
)
from lit_robust.evaluation.sanity import SanityCheckWarning
from tests.evaluation.toy_models import self_labelled_batch


def test_eps0_robust_accuracy_must_equal_clean_accuracy() -> None:
    good = {"clean_acc": 0.75, "robust_acc/pgd10_linf_eps0": 0.75,
            "robust_acc/sweep/eps0": 0.75, "robust_acc/sweep/eps0.03137": 0.5}
    assert check_metrics(good) == {"sanity/robust_le_clean": 1.0,
                                   "sanity/eps0_robust_matches_clean": 1.0}
    bad = {**good, "robust_acc/sweep/eps0": 0.7}
    with pytest.raises(SanityCheckError, match="robust_acc/sweep/eps0 = 0.7000 differs"):
        check_metrics(bad)
    with pytest.warns(SanityCheckWarning):
        assert check_metrics(bad, strict=False)["sanity/eps0_robust_matches_clean"] == 0.0


def test_only_zero_budgets_are_compared() -> None:
    metrics = {"clean_acc": 0.8, "robust_acc/pgd10_linf_eps0.03137": 0.4,
               "robust_acc/autoattack_standard_l2_eps0.5": 0.3}
    assert check_metrics(metrics) == {"sanity/robust_le_clean": 1.0}


def test_evaluators_that_saw_different_images_fail_the_eps0_check() -> None:
    model, x, y = self_labelled_batch(16)
    y = y.clone()
    y[:4] = (y[:4] + 1) % 10
    clean, sweep = CleanAccuracy(), PGDEvaluator(eps_list=[0.0, 2 / 255], steps=1, name="sweep")
    honest = evaluate(model, [(x, y)], [clean, sweep])
    assert honest["robust_acc/sweep/eps0"] == honest["clean_acc"] == 0.75
    assert check_metrics(honest)["sanity/eps0_robust_matches_clean"] == 1.0
    # the PGD evaluator counts four misclassified images twice (e.g. DDP padding): robust
    # accuracy drops below clean, which robust_le_clean cannot notice
    clean.reset(), sweep.reset()
    clean.update(model, x, y)
    sweep.update(model, x, y)
    sweep.update(model, x[:4], y[:4])
    merged = {**clean.compute(), **sweep.compute()}
    assert merged["robust_acc/sweep/eps0"] == pytest.approx(12 / 20)
    with pytest.warns(SanityCheckWarning):
        report = RobustnessReport(merged)
    assert report.failed_checks == ["sanity/eps0_robust_matches_clean"]
