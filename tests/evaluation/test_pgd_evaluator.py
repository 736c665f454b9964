"""PGDEvaluator: worst case over restarts, robust ≤ clean, ε sweeps, metric names (with the
step size when it is not the default) and the attack given as a PGDAttack."""

from __future__ import annotations

import pytest
import torch
import yaml
from jsonargparse import ArgumentParser
from matplotlib.figure import Figure
from torch import nn

from lit_robust.attacks import PGDAttack, pgd
from lit_robust.evaluation import CleanAccuracy, Evaluator, PGDEvaluator, evaluate
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
    robust = evaluator.compute()["robust_acc/pgd1x3_linf_eps0.007843_step0.001961"]

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


def test_a_non_default_step_size_is_part_of_the_metric_name() -> None:
    default = "robust_acc/pgd10_linf_eps0.03137"
    assert PGDEvaluator(eps=8 / 255, steps=10).metric_names() == [default]
    # 2/255 is the default 2.5·ε/steps for 10 steps, also as written in the configs
    assert PGDEvaluator(eps=8 / 255, step_size=2 / 255, steps=10).metric_names() == [default]
    assert PGDEvaluator(eps=0.031372549, step_size=0.007843137).metric_names() == [default]
    assert PGDEvaluator(eps=8 / 255, step_size=1 / 255, steps=10).metric_names() == [
        "robust_acc/pgd10_linf_eps0.03137_step0.003922"]
    # the same step is not the default for 20 steps (1/255) and for L2 0.5 (0.125)
    assert PGDEvaluator(eps=8 / 255, step_size=2 / 255, steps=20, restarts=3).metric_names() == [
        "robust_acc/pgd20x3_linf_eps0.03137_step0.007843"]
    assert PGDEvaluator(eps=0.5, norm="l2", step_size=0.1).metric_names() == [
        "robust_acc/pgd10_l2_eps0.5_step0.1"]
    assert PGDEvaluator(eps_list=[1 / 255, 2 / 255], step_size=0.5 / 255,
                        steps=2).metric_names() == [
        "robust_acc/pgd2_linf_eps0.003922_step0.001961",
        "robust_acc/pgd2_linf_eps0.007843_step0.001961"]


def test_the_attack_can_be_given_as_a_pgd_attack() -> None:
    model, x, y = self_labelled_batch(16)
    attack = PGDAttack(eps=2 / 255, step_size=1 / 255, steps=2, restarts=2, start="ball")
    given = PGDEvaluator(attack=attack)
    assert given.attacks == [attack]
    assert given.metric_names() == ["robust_acc/pgd2x2_linf_eps0.007843_step0.003922"]
    flat = PGDEvaluator(eps=2 / 255, step_size=1 / 255, steps=2, restarts=2)
    torch.manual_seed(3)
    given.update(model, x, y)
    torch.manual_seed(3)
    flat.update(model, x, y)
    assert list(given.compute().values()) == list(flat.compute().values())


def test_the_attack_is_configured_in_yaml_as_the_methods_attacks_are() -> None:
    parser = ArgumentParser()
    parser.add_argument("--evaluators", type=list[Evaluator])
    config = parser.parse_string(yaml.safe_dump({"evaluators": [
        {"class_path": "lit_robust.evaluation.PGDEvaluator", "init_args": {"attack": {
            "class_path": "lit_robust.attacks.PGDAttack",
            "init_args": {"eps": 0.031372549, "steps": 20, "restarts": 2, "start": "ball"}}}},
        {"class_path": "lit_robust.evaluation.PGDEvaluator",
         "init_args": {"eps": 0.031372549, "step_size": 0.007843137, "steps": 10}},
    ]}))
    given, flat = parser.instantiate_classes(config).evaluators
    assert isinstance(given.attacks[0], PGDAttack)
    assert (given.attacks[0].steps, given.attacks[0].restarts) == (20, 2)
    assert given.metric_names() == ["robust_acc/pgd20x2_linf_eps0.03137"]
    assert flat.metric_names() == ["robust_acc/pgd10_linf_eps0.03137"]


def test_the_attack_and_flat_arguments_together_are_refused() -> None:
    with pytest.raises(ValueError, match="and the flat arguments steps, restarts; give"):
        PGDEvaluator(attack=PGDAttack(), steps=20, restarts=3)
    with pytest.raises(ValueError, match="flat arguments eps_list;.*eps_list sweep"):
        PGDEvaluator(attack=PGDAttack(), eps_list=[0.0, 8 / 255])
    with pytest.raises(TypeError, match="takes a lit_robust.attacks.PGDAttack, got float"):
        PGDEvaluator(8 / 255)  # type: ignore[arg-type]
