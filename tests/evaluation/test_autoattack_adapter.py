"""AutoAttackEvaluator on small models: layouts, modes, RNG, bookkeeping and bad arguments."""

from __future__ import annotations

import logging

import pytest
import torch
from pyautoattack import AutoAttack
from torch import nn

from lit_robust.evaluation import AutoAttackEvaluator, CleanAccuracy, PGDEvaluator, evaluate

FAST = {"apgd_n_iter": 5, "apgd_n_restarts": 1, "apgd_t_n_iter": 5,
        "apgd_t_n_target_classes": 2}


def _model_and_batch(
    n: int = 24, num_classes: int = 10
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A random small conv net and images labelled with its own predictions."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(8 * 15 * 15, num_classes),
    ).eval()
    x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    return model, x, y


def test_official_code_crashes_on_channels_last_input() -> None:
    """The pitfall the adapter exists for (DESIGN §7): APGD-T reshapes gradients with .view."""
    model, x, y = _model_and_batch(8)
    adversary = AutoAttack(model, norm="Linf", eps=2 / 255, version="custom",
                           attacks=["apgd-t"], seed=0)
    adversary.verbose = False
    adversary.apgd_targeted.n_target_classes = 1
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        adversary.run_standard_evaluation(x_cl, y, batch_size=8)


@pytest.mark.parametrize("channels_last_model", [False, True])
def test_channels_last_batches_are_attacked(channels_last_model: bool) -> None:
    model, x, y = _model_and_batch(8)
    if channels_last_model:
        model = model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    evaluator = AutoAttackEvaluator(eps=2 / 255, version="custom",
                                    attacks_to_run=["apgd-ce", "apgd-t"], **FAST)
    evaluator.update(model, x_cl, y)
    results = evaluator.compute()
    name = "robust_acc/autoattack_apgd-ce+apgd-t_linf_eps0.007843"
    assert list(results) == [name, f"{name}/apgd-ce", f"{name}/apgd-t"]
    assert results[name] < 1.0


def test_cumulative_per_attack_accuracy_and_agreement_with_pgd() -> None:
    model, x, y = _model_and_batch(32)
    y = y.clone()
    y[:4] = (y[:4] + 1) % 10  # four clean errors
    aa = AutoAttackEvaluator(norm="L2", eps=0.1, version="custom",
                             attacks_to_run=["apgd-ce", "apgd-t", "square"],
                             square_n_queries=20, **FAST)
    results = evaluate(model, [(x[:16], y[:16]), (x[16:], y[16:])],
                       [CleanAccuracy(), PGDEvaluator(norm="l2", eps=0.1, steps=5), aa])
    name = "robust_acc/autoattack_apgd-ce+apgd-t+square_l2_eps0.1"
    per_attack = [results[f"{name}/{a}"] for a in ("apgd-ce", "apgd-t", "square")]
    assert results["clean_acc"] == pytest.approx(28 / 32)
    assert results["clean_acc"] >= per_attack[0] >= per_attack[1] >= per_attack[2]
    assert results[name] == per_attack[-1]
    assert 0 < results[name] < results["clean_acc"]
    assert results[name] <= results["robust_acc/pgd5_l2_eps0.1"]


def test_modes_parameters_gradients_and_rng_are_restored() -> None:
    model, x, y = _model_and_batch(8)
    model.train()
    model[0].eval()
    model[4].weight.requires_grad_(False)
    seen: list[bool] = []
    model[1].register_forward_hook(lambda module, args, out: seen.append(module.training))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    evaluator = AutoAttackEvaluator(eps=2 / 255, version="custom",
                                    attacks_to_run=["fab-t", "apgd-ce"], fab_n_iter=3,
                                    fab_n_target_classes=2, **FAST)
    evaluator.update(model, x, y)
    assert seen and not any(seen)
    assert model.training and model[1].training and not model[0].training
    assert model[0].weight.requires_grad and not model[4].weight.requires_grad
    assert all(p.grad is None for p in model.parameters())  # FAB's backward left no trace
    assert torch.equal(torch.get_rng_state(), state)


def test_seed_makes_results_reproducible() -> None:
    model, x, y = _model_and_batch(16)
    results = []
    for _ in range(2):
        evaluator = AutoAttackEvaluator(eps=1 / 255, version="custom",
                                        attacks_to_run=["apgd-ce"], apgd_n_iter=2,
                                        apgd_n_restarts=1, seed=7, name="aa")
        evaluator.update(model, x, y)
        results.append(evaluator.compute())
    assert results[0] == results[1]
    assert list(results[0]) == ["robust_acc/aa", "robust_acc/aa/apgd-ce"]


def test_target_classes_are_capped_for_few_class_models() -> None:
    model, x, y = _model_and_batch(8, num_classes=5)
    evaluator = AutoAttackEvaluator(eps=2 / 255, version="custom", attacks_to_run=["apgd-t"],
                                    apgd_t_n_iter=2, apgd_t_n_target_classes=9)
    evaluator.update(model, x, y)  # 9 target classes would index past the 5 logits
    assert "robust_acc/autoattack_apgd-t_linf_eps0.007843" in evaluator.compute()
    assert int(evaluator.total) == len(y)


def test_dlr_attacks_on_three_classes_fail_early() -> None:
    model, x, y = _model_and_batch(4, num_classes=3)
    with pytest.raises(ValueError, match="3-class model"):
        AutoAttackEvaluator().update(model, x, y)


def test_autoattack_messages_are_printed_only_when_verbose(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    model, x, y = _model_and_batch(4)
    for verbose in (False, True):
        caplog.clear()
        capsys.readouterr()
        evaluator = AutoAttackEvaluator(eps=1 / 255, version="custom",
                                        attacks_to_run=["apgd-ce"], apgd_n_iter=1,
                                        apgd_n_restarts=1, verbose=verbose, name="aa")
        with caplog.at_level(logging.DEBUG, logger="lit_robust.evaluation.autoattack_adapter"):
            evaluator.update(model, x, y)
        printed = capsys.readouterr().out
        assert ("aa: running apgd-ce" in printed) == verbose
        # quiet: AutoAttack's messages are kept at DEBUG level for a configured logger
        assert any("running apgd-ce" in r.getMessage() for r in caplog.records) != verbose


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norm": "L1"}, "norm must be"),
        ({"eps": 8}, "pixel units"),
        ({"attacks_to_run": ["apgd-ce"]}, "apply to version='custom'"),
        ({"apgd_n_iter": 10}, "apply to version='custom'"),
        ({"version": "custom"}, "needs attacks_to_run"),
        ({"version": "custom", "attacks_to_run": ["pgd"]}, "unknown or repeated"),
        ({"version": "custom", "attacks_to_run": ["square", "square"]}, "unknown or repeated"),
        ({"version": "custom", "attacks_to_run": ["square"], "square_n_queries": 0}, ">= 1"),
        ({"version": "plus"}, "version must be"),
    ],
)
def test_bad_arguments_fail_early(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutoAttackEvaluator(**kwargs)


def test_standard_version_runs_the_four_attacks_in_order() -> None:
    evaluator = AutoAttackEvaluator(norm="l2", eps=0.5)
    assert evaluator.metric_names() == [
        "robust_acc/autoattack_standard_l2_eps0.5",
        *(f"robust_acc/autoattack_standard_l2_eps0.5/{a}"
          for a in ("apgd-ce", "apgd-t", "fab-t", "square")),
    ]
