"""PGDEvaluator: worst case over restarts, robust ≤ clean, ε sweeps and metric names."""

from __future__ import annotations

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from lit_robust.attacks import pgd
from lit_robust.evaluation import CleanAccuracy, PGDEvaluator, evaluate
from tests.evaluation.toy_models import self_labelled_batch


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1) == y


def test_restarts_keep_the_worst_case_of_each_example() -> None:
    model, x, y = self_labelled_batch()
    eps, step = 2 / 255, 0.5 / 255
    torch.manual_seed(1)
    single_runs = [
        _correct(model, pgd(model, x, y, eps=eps, step_size=step, steps=1), y) for _ in range(3)
    ]
    torch.manual_seed(1)  # the evaluator's three restarts draw the same random starts
    evaluator = PGDEvaluator(eps=eps, step_size=step, steps=1, restarts=3)
    evaluator.update(model, x, y)
    robust = evaluator.compute()["robust_acc/pgd1x3_linf_eps0.007843"]

    single_accs = [int(c.sum()) / len(c) for c in single_runs]
    worst_case = int(torch.stack(single_runs).all(dim=0).sum()) / len(y)
    assert robust == pytest.approx(worst_case)
    assert robust <= min(single_accs) <= 1.0
    assert 0.0 < robust < 1.0  # the budget is small enough for the comparison to mean something


def test_robust_accuracy_never_exceeds_clean_accuracy() -> None:
    model, x, y = self_labelled_batch()
    y = y.clone()
    y[:16] = (y[:16] + 1) % 10  # a third of the labels wrong: clean accuracy 2/3
    results = evaluate(model, [(x, y)], [CleanAccuracy(), PGDEvaluator(eps=1 / 255, steps=2)])
    assert results["clean_acc"] == pytest.approx(32 / 48)
    assert 0 < results["robust_acc/pgd2_linf_eps0.003922"] < results["clean_acc"]


def test_eps_sweep_reports_one_metric_per_budget() -> None:
    model, x, y = self_labelled_batch()
    evaluator = PGDEvaluator(eps_list=[0.0, 2 / 255, 16 / 255], step_size=None, steps=5)
    evaluator.update(model, x, y)
    results = evaluator.compute()
    assert list(results) == [
        "robust_acc/pgd5_linf_eps0", "robust_acc/pgd5_linf_eps0.007843",
        "robust_acc/pgd5_linf_eps0.06275",
    ]
    accs = list(results.values())
    assert accs[0] == 1.0  # ε = 0 reproduces clean accuracy
    assert accs[0] >= accs[1] >= accs[2]
    assert accs[2] < 0.5
    figures = evaluator.figures()
    assert isinstance(figures["robust_acc_vs_eps/pgd5_linf_eps0"], Figure)


def test_given_name_is_used_for_every_budget() -> None:
    model, x, y = self_labelled_batch(8)
    evaluator = PGDEvaluator(eps_list=[1 / 255, 2 / 255], steps=1, name="pgd_sweep")
    evaluator.update(model, x, y)
    assert list(evaluator.compute()) == [
        "robust_acc/pgd_sweep/eps0.003922", "robust_acc/pgd_sweep/eps0.007843"
    ]
    single = PGDEvaluator(steps=1, norm="l2", eps=0.5, name="l2_attack")
    single.update(model, x, y)
    assert list(single.compute()) == ["robust_acc/l2_attack"]


@pytest.mark.filterwarnings("ignore:.*called before the ``update``")
def test_counts_accumulate_over_batches_and_reset() -> None:
    model, x, y = self_labelled_batch()
    evaluator = PGDEvaluator(eps=0.0, steps=1)
    evaluator.update(model, x[:20], y[:20])
    evaluator.update(model, x[20:], (y[20:] + 1) % 10)
    assert evaluator.compute()["robust_acc/pgd1_linf_eps0"] == pytest.approx(20 / 48)
    evaluator.reset()
    with pytest.raises(RuntimeError, match="saw no test examples"):
        evaluator.compute()


def test_attack_runs_in_eval_mode_and_restores_modes() -> None:
    model, x, y = self_labelled_batch(8)
    model.train()
    model[0].eval()
    seen: list[bool] = []
    model[1].register_forward_hook(lambda module, args, out: seen.append(module.training))
    PGDEvaluator(steps=1).update(model, x, y)
    assert seen and not any(seen)
    assert model.training and model[1].training and not model[0].training


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="pixel units"):
        PGDEvaluator(eps=8)
    with pytest.raises(ValueError, match="eps_list is empty"):
        PGDEvaluator(eps_list=[])
    with pytest.raises(ValueError, match="restarts"):
        PGDEvaluator(restarts=0)


def test_inference_mode_gives_a_clear_error() -> None:
    model, x, y = self_labelled_batch(4)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode=False"):
        PGDEvaluator(steps=1).update(model, x, y)
