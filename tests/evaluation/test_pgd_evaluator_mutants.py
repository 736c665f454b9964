"""PGDEvaluator on hand-built cases: the attack gets each image's test-set position (so the
random starts do not depend on the batching), a restart that succeeds breaks the image, one-
image batches count, the settings reach the attacks, the states are integer counts summed
across processes, and the ε-sweep figure's content and messages."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lit_robust.attacks import PGDAttack
from lit_robust.evaluation import PGDEvaluator
from lit_robust.evaluation.pgd_evaluator import accuracy_vs_eps_figure
from tests.evaluation.toy_models import self_labelled_batch


class _RecordingAttack(PGDAttack):
    """A PGDAttack that records the ``indices`` it is given."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seen: list[Tensor | None] = []

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, **kwargs: object) -> Tensor:
        self.seen.append(kwargs.get("indices"))
        return super().__call__(model, x, y, **kwargs)


def test_the_attack_gets_the_test_set_positions_of_the_real_images() -> None:
    model, x, y = self_labelled_batch(7)
    attack = _RecordingAttack(eps=1 / 255, steps=1)
    evaluator = PGDEvaluator(attack=attack)
    evaluator.set_dataset_size(6)
    evaluator.update(model, x[:4], y[:4])
    evaluator.update(model, x[4:], y[4:])  # the last image is padding
    assert [s.tolist() for s in attack.seen] == [[0, 1, 2, 3], [4, 5]]
    assert int(evaluator.total) == 6


def test_per_image_results_do_not_depend_on_the_batching() -> None:
    """Random starts keyed by test-set position: the same image gets the same attack."""
    model, x, y = self_labelled_batch(24)
    results = []
    for splits in ([24], [5, 11, 8], [1] * 24):
        evaluator = PGDEvaluator(eps=3 / 255, step_size=1 / 255, steps=1, restarts=2)
        start = 0
        for size in splits:
            torch.manual_seed(start)  # the global generator must play no part
            evaluator.update(model, x[start:start + size], y[start:start + size])
            start += size
        (result,) = evaluator.per_image().values()
        assert result.index.tolist() == list(range(24))
        results.append(result.values.tolist())
    assert results[0] == results[1] == results[2]
    assert 0 < sum(results[0]) < 24  # the budget makes the comparison mean something


class _ThresholdModel(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else class 0 (two logits)."""

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1).mean(dim=1) - 0.5
        return torch.stack([-score, score], dim=1) * 100


def test_an_image_counts_as_broken_when_one_restart_succeeds() -> None:
    """Image at mean 0.499 (class 0) and one negligible step (1e-6): whether the attack
    crosses 0.5 is decided by the random start in the ε = 0.02 L∞ ball (mean-pixel spread
    ≈ 0.0014), so about a quarter of the single runs succeed; with 30 restarts one does."""
    x = torch.full((1, 1, 8, 8), 0.499)
    y = torch.tensor([0])
    model = _ThresholdModel()
    single = []
    for seed in range(30):
        evaluator = PGDEvaluator(attack=PGDAttack(eps=0.02, step_size=1e-6, steps=1, seed=seed))
        evaluator.update(model, x, y)
        single.append(evaluator.compute()[evaluator.metric_names()[0]])
    assert 0.0 in single and 1.0 in single  # some runs succeed, some do not
    restarts = PGDEvaluator(attack=PGDAttack(eps=0.02, step_size=1e-6, steps=1, restarts=30))
    restarts.update(model, x, y)
    assert restarts.compute() == {restarts.metric_names()[0]: 0.0}


def test_a_one_image_batch_counts() -> None:
    model, x, y = self_labelled_batch(3)
    evaluator = PGDEvaluator(eps=0.0, steps=1)
    evaluator.update(model, x[:1], y[:1])
    assert int(evaluator.total) == 1
    assert evaluator.compute() == {"robust_acc/pgd1_linf_eps0": 1.0}


def test_an_all_padding_batch_changes_nothing() -> None:
    model, x, y = self_labelled_batch(3)
    evaluator = PGDEvaluator(eps=0.0, steps=1)
    evaluator.set_dataset_size(1)
    evaluator.update(model, x[:1], y[:1])
    evaluator.update(model, x[1:], y[1:])
    assert int(evaluator.total) == 1
    assert len(evaluator.image_index) == 1


def test_counts_are_integers_summed_across_processes() -> None:
    model, x, y = self_labelled_batch(12)
    y = y.clone()
    y[:3] = (y[:3] + 1) % 10
    whole = PGDEvaluator(eps_list=[0.0, 1 / 255], steps=1)
    first, second = (PGDEvaluator(eps_list=[0.0, 1 / 255], steps=1) for _ in range(2))
    whole.update(model, x, y)
    first.update(model, x[:5], y[:5])
    second.update(model, x[5:], y[5:])
    assert whole.correct.dtype == whole.total.dtype == torch.long
    first.merge_state(second)  # what the DDP reduction does with the states
    assert first.correct.tolist() == whole.correct.tolist()
    assert int(first.total) == 12
    assert first.compute() == whole.compute()
    assert whole.compute()["robust_acc/pgd1_linf_eps0"] == 9 / 12


def test_flat_arguments_reach_every_attack() -> None:
    evaluator = PGDEvaluator(eps_list=[1 / 255, 2 / 255], step_size=0.5 / 255, steps=3,
                             norm="linf", restarts=2, loss="kl", random_start=False)
    for attack, eps in zip(evaluator.attacks, [1 / 255, 2 / 255], strict=True):
        assert (attack.eps, attack.step_size, attack.steps, attack.norm, attack.restarts,
                attack.loss, attack.random_start) == (eps, 0.5 / 255, 3, "linf", 2, "kl", False)
    default = PGDEvaluator()
    assert default.attacks[0].eps == 8 / 255
    assert default.metric_names() == ["robust_acc/pgd10_linf_eps0.03137"]


def test_bad_arguments_give_the_whole_message() -> None:
    with pytest.raises(ValueError, match=r"^eps_list is empty; give at least one budget or "
                                         r"leave it None$"):
        PGDEvaluator(eps_list=[])
    with pytest.raises(TypeError) as error:
        PGDEvaluator(attack=0.1)  # type: ignore[arg-type]
    assert str(error.value) == (
        "PGDEvaluator(attack=...) takes a lit_robust.attacks.PGDAttack, got float; in YAML: "
        "attack: {class_path: lit_robust.attacks.PGDAttack, init_args: {eps: 0.031372549, "
        "steps: 10}}")
    with pytest.raises(ValueError) as error:
        PGDEvaluator(attack=PGDAttack(steps=2), steps=3)
    assert str(error.value).endswith(
        "and the flat arguments steps; give the attack's settings once: either inside attack "
        "(init_args of lit_robust.attacks.PGDAttack) or as flat arguments without attack (an "
        "eps_list sweep needs the flat arguments)")


def test_a_two_budget_sweep_draws_the_accuracy_against_eps() -> None:
    model, x, y = self_labelled_batch(8)
    evaluator = PGDEvaluator(eps_list=[0.0, 64 / 255], steps=4, name="sweep")
    evaluator.update(model, x, y)
    values = list(evaluator.compute().values())
    figures = evaluator.figures()
    assert list(figures) == ["robust_acc_vs_eps/sweep"]
    (axes,) = figures["robust_acc_vs_eps/sweep"].axes
    assert axes.get_title() == "PGD-4 ε sweep"
    (line,) = axes.get_lines()
    assert line.get_xdata().tolist() == pytest.approx([0.0, 64.0])
    assert line.get_ydata().tolist() == pytest.approx([100 * v for v in values])
    assert PGDEvaluator(eps=0.1, steps=1).figures() == {}


@pytest.mark.parametrize(("norm", "scale", "label"),
                         [("linf", 255.0, "linf ε (×1/255)"), ("Linf", 255.0, "Linf ε (×1/255)"),
                          ("l2", 1.0, "l2 ε")])
def test_the_accuracy_vs_eps_figure(norm: str, scale: float, label: str) -> None:
    figure = accuracy_vs_eps_figure([0.1, 0.5], [0.75, 0.25], norm, title="a title")
    assert tuple(figure.get_size_inches()) == (4.5, 3.2)
    assert figure.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
    (axes,) = figure.axes
    (line,) = axes.get_lines()
    assert line.get_xdata().tolist() == pytest.approx([0.1 * scale, 0.5 * scale])
    assert line.get_ydata().tolist() == pytest.approx([75.0, 25.0])
    assert line.get_marker() == "o"
    assert axes.get_xlabel() == label
    assert axes.get_ylabel() == "accuracy (%)"
    assert axes.get_ylim() == (0.0, 100.0)
    assert axes.get_title() == "a title"
    gridlines = axes.xaxis.get_gridlines()
    assert gridlines and gridlines[0].get_visible() and gridlines[0].get_alpha() == 0.3
