"""AutoAttackEvaluator's bookkeeping against a scripted stand-in for the official AutoAttack
object: the arguments it is built with (norm, ε, version, attacks, seed, the per-attack
settings and their defaults), the cascade over the attacks with its exact counts and per-image
results keyed by test-set position, the class-count checks, the progress counter, the routed
log messages, and what is restored afterwards (RNG, trace function, ``requires_grad``).
The real AutoAttack runs in ``test_autoattack_adapter.py``."""

from __future__ import annotations

import logging
import math
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from lit_robust import progress as progress_module
from lit_robust.evaluation import AutoAttackEvaluator
from lit_robust.evaluation import autoattack_adapter as adapter

NUM_CLASSES = 10


class _LabelFromPixel(nn.Module):
    """Predicts class ``round(x[0, 0, 0] * 10) % NUM_CLASSES``: images are hand-labelled."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: Tensor) -> Tensor:
        label = torch.round(x[:, 0, 0, 0] * 10).long() % NUM_CLASSES
        return torch.nn.functional.one_hot(label, NUM_CLASSES).float() * self.scale


def _images(labels: list[int]) -> tuple[Tensor, Tensor]:
    x = torch.zeros(len(labels), 3, 4, 4)
    x[:, 0, 0, 0] = torch.tensor(labels, dtype=torch.float32) / 10
    return x, torch.tensor(labels)


class _FakeAutoAttack:
    """Records how it is built and called; attack ``a`` breaks the images whose (clean)
    label is in ``BREAKS[a]`` (by shifting the label pixel), as AutoAttack's
    ``run_standard_evaluation`` returns the adversarial images and their predictions."""

    BREAKS: dict[str, set[int]] = {}
    built: list[_FakeAutoAttack] = []

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        self.model, self.kwargs = model, kwargs
        self.logger = None
        self.attacks_to_run: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.apgd = SimpleNamespace(n_iter=100, n_restarts=5, logger=None)
        self.apgd_targeted = SimpleNamespace(n_iter=100, n_restarts=1, n_target_classes=9,
                                             logger=None)
        self.fab = SimpleNamespace(n_iter=100, n_restarts=5, n_target_classes=9)
        self.square = SimpleNamespace(n_queries=5000)
        _FakeAutoAttack.built.append(self)

    def run_standard_evaluation(self, x: Tensor, y: Tensor, batch_size: int) -> tuple:
        attack = self.attacks_to_run[0]
        self.calls.append({"attack": attack, "x": x.clone(), "y": y.clone(),
                           "batch_size": batch_size, "contiguous": x.is_contiguous(),
                           "dtype": x.dtype, "label_dtype": y.dtype,
                           "grad": torch.is_grad_enabled(),
                           "requires_grad": [p.requires_grad for p in self.model.parameters()],
                           "training": self.model.model.training})
        torch.rand(5)  # AutoAttack re-seeds and draws from the global generator
        sys.settrace(None)  # as its dynamic-defense check does
        broken = torch.tensor([int(label) in self.BREAKS.get(attack, set()) for label in y])
        x_adv = x.clone()
        x_adv[broken, 0, 0, 0] += 0.1
        with torch.no_grad():
            y_adv = self.model(x_adv).argmax(dim=1)
        self.kwargs.setdefault("logger_seen", self.logger)
        return x_adv, y_adv


class _FakeAPGD:
    """Records the arguments of the APGD constructors."""

    built: list[tuple[str, nn.Module, dict[str, Any]]] = []
    kind = "apgd"

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        self.model, self.kwargs, self.logger = model, kwargs, None
        self.n_iter, self.n_restarts = kwargs["n_iter"], kwargs["n_restarts"]
        self.n_target_classes = 9
        _FakeAPGD.built.append((self.kind, model, kwargs))


class _FakeAPGDTargeted(_FakeAPGD):
    kind = "apgd-t"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> type[_FakeAutoAttack]:
    _FakeAutoAttack.built = []
    _FakeAutoAttack.BREAKS = {}
    _FakeAPGD.built = []
    monkeypatch.setattr(adapter, "AutoAttack", _FakeAutoAttack)
    monkeypatch.setattr(adapter, "APGDAttack", _FakeAPGD)
    monkeypatch.setattr(adapter, "APGDAttack_targeted", _FakeAPGDTargeted)
    return _FakeAutoAttack


def test_the_standard_version_is_built_with_autoattacks_own_settings(fake: Any) -> None:
    model = _LabelFromPixel()
    x, y = _images([1, 2])
    evaluator = AutoAttackEvaluator(norm="l2", eps=0.25, seed=11, batch_size=7)
    evaluator.update(model, x, y)
    (adversary,) = fake.built
    assert adversary.kwargs == {"norm": "L2", "eps": 0.25, "version": "standard",
                                "attacks": None, "seed": 11, "device": x.device,
                                "logger_seen": adversary.logger}
    assert isinstance(adversary.model, adapter._ContiguousGradientModel)
    assert adversary.model.model is model
    assert _FakeAPGD.built == []
    assert (adversary.apgd.n_iter, adversary.apgd.n_restarts) == (100, 5)
    assert (adversary.fab.n_iter, adversary.fab.n_restarts, adversary.square.n_queries) == (
        100, 5, 5000)
    assert adversary.apgd_targeted.n_target_classes == adversary.fab.n_target_classes == 9
    assert [call["attack"] for call in adversary.calls] == list(adapter.STANDARD_ATTACKS)
    assert {call["batch_size"] for call in adversary.calls} == {7}
    assert isinstance(adversary.logger, adapter._RoutedLog)
    assert adversary.apgd.logger is adversary.apgd_targeted.logger is adversary.logger
    assert adversary.logger.prefix == "autoattack_standard_l2_eps0.25"


def test_custom_settings_reach_the_attacks_and_unset_ones_keep_the_defaults(fake: Any) -> None:
    model = _LabelFromPixel()
    x, y = _images([1, 2])
    evaluator = AutoAttackEvaluator(
        norm="Linf", eps=4 / 255, version="custom", attacks_to_run=["square", "apgd-ce"],
        apgd_n_iter=7, apgd_t_n_restarts=3, apgd_t_n_target_classes=4, fab_n_iter=6,
        fab_n_restarts=2, fab_n_target_classes=5, square_n_queries=50, seed=2)
    evaluator.update(model, x, y)
    (adversary,) = fake.built
    assert adversary.kwargs["attacks"] == ["square", "apgd-ce"]
    assert adversary.kwargs["version"] == "custom"
    assert [call["attack"] for call in adversary.calls] == ["square", "apgd-ce"]
    common = {"eps": 4 / 255, "norm": "Linf", "eot_iter": 1, "rho": 0.75, "seed": 2,
              "device": x.device}
    assert [(kind, kwargs) for kind, _, kwargs in _FakeAPGD.built] == [
        ("apgd", {"n_iter": 7, "n_restarts": 5, **common}),
        ("apgd-t", {"n_iter": 100, "n_restarts": 3, **common}),
    ]
    assert all(built_model is adversary.model for _, built_model, _ in _FakeAPGD.built)
    assert adversary.apgd.kind == "apgd" and adversary.apgd_targeted.kind == "apgd-t"
    assert adversary.apgd_targeted.n_target_classes == 4
    assert (adversary.fab.n_iter, adversary.fab.n_restarts, adversary.fab.n_target_classes) == (
        6, 2, 5)
    assert adversary.square.n_queries == 50
    assert adversary.apgd.logger is adversary.apgd_targeted.logger is adversary.logger


def test_apgd_restarts_alone_keep_the_default_iterations(fake: Any) -> None:
    model = _LabelFromPixel()
    x, y = _images([1])
    AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"], apgd_n_restarts=2,
                        apgd_t_n_iter=9).update(model, x, y)
    assert [(kind, kwargs["n_iter"], kwargs["n_restarts"]) for kind, _, kwargs in
            _FakeAPGD.built] == [("apgd", 100, 2), ("apgd-t", 9, 1)]
    adversary = fake.built[0]
    assert (adversary.fab.n_iter, adversary.fab.n_restarts, adversary.square.n_queries) == (
        100, 5, 5000)


@pytest.mark.parametrize(("classes", "capped"), [(3, 2), (10, 9), (12, 9)])
def test_target_classes_are_capped_at_the_other_classes(
    fake: Any, monkeypatch: pytest.MonkeyPatch, classes: int, capped: int
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "NUM_CLASSES", classes)
    x, y = _images([1, 2])
    AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"]).update(
        _LabelFromPixel(), x, y)
    adversary = fake.built[0]
    assert adversary.apgd_targeted.n_target_classes == adversary.fab.n_target_classes == capped


def test_the_cascade_attacks_only_the_images_still_robust(fake: Any) -> None:
    """Labels 0..7, image 3 misclassified: apgd-ce breaks labels {1, 2}, apgd-t breaks
    {2, 5}, square breaks {6}; each attack sees only the images still robust."""
    model = _LabelFromPixel()
    x, y = _images([0, 1, 2, 3, 4, 5, 6, 7])
    y[3] = 9  # a clean error: the first attack reports it as not robust
    fake.BREAKS = {"apgd-ce": {1, 2}, "apgd-t": {2, 5}, "square": {6}}
    evaluator = AutoAttackEvaluator(version="custom",
                                    attacks_to_run=["apgd-ce", "apgd-t", "square"], name="aa")
    evaluator.update(model, x, y)
    calls = fake.built[0].calls
    assert [call["y"].tolist() for call in calls] == [
        [0, 1, 2, 9, 4, 5, 6, 7], [0, 4, 5, 6, 7], [0, 4, 6, 7]]
    assert torch.equal(calls[1]["x"], x[[0, 4, 5, 6, 7]])
    assert _FakeAPGD.built == []  # no per-attack setting: AutoAttack's own APGD objects
    assert evaluator.robust_count.tolist() == [5, 4, 3]
    assert int(evaluator.total) == 8
    assert evaluator.compute() == {"robust_acc/aa": 3 / 8, "robust_acc/aa/apgd-ce": 5 / 8,
                                   "robust_acc/aa/apgd-t": 4 / 8, "robust_acc/aa/square": 3 / 8}
    per_image = evaluator.per_image()
    assert list(per_image) == ["robust_acc/aa", "robust_acc/aa/apgd-ce", "robust_acc/aa/apgd-t",
                               "robust_acc/aa/square"]
    assert per_image["robust_acc/aa"].index.tolist() == list(range(8))
    assert per_image["robust_acc/aa"].values.tolist() == [1, 0, 0, 0, 1, 0, 0, 1]
    assert per_image["robust_acc/aa/apgd-ce"].values.tolist() == [1, 0, 0, 0, 1, 1, 1, 1]
    assert per_image["robust_acc/aa/apgd-t"].values.tolist() == [1, 0, 0, 0, 1, 0, 1, 1]


def test_no_attack_runs_once_every_image_is_broken(fake: Any) -> None:
    x, y = _images([1, 2])
    fake.BREAKS = {"apgd-ce": {1, 2}}
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce", "square"])
    evaluator.update(_LabelFromPixel(), x, y)
    assert [call["attack"] for call in fake.built[0].calls] == ["apgd-ce"]
    assert evaluator.robust_count.tolist() == [0, 0]
    assert evaluator.robust_count.dtype == evaluator.total.dtype == torch.long


def test_counts_and_per_image_positions_span_batches_and_skip_padding(fake: Any) -> None:
    model = _LabelFromPixel()
    fake.BREAKS = {"apgd-ce": {2}}
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"], name="aa")
    evaluator.set_dataset_size(5)
    for labels in ([1, 2, 3], [2, 4, 1], [3]):  # the last image of batch 2 and batch 3 pad
        evaluator.update(model, *_images(labels))
    assert int(evaluator.total) == 5
    assert evaluator.compute() == {"robust_acc/aa": 3 / 5, "robust_acc/aa/apgd-ce": 3 / 5}
    result = evaluator.per_image()["robust_acc/aa"]
    assert result.index.tolist() == [0, 1, 2, 3, 4]
    assert result.values.tolist() == [1, 0, 1, 0, 1]
    assert [call["y"].tolist() for call in fake.built[-1].calls] == [[2, 4]]
    assert len(fake.built) == 2  # the all-padding batch built no attack


def test_a_single_image_batch_is_attacked(fake: Any) -> None:
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"], name="aa")
    evaluator.update(_LabelFromPixel(), *_images([4]))
    assert evaluator.compute() == {"robust_acc/aa": 1.0, "robust_acc/aa/apgd-ce": 1.0}


def test_the_attack_sees_contiguous_float32_images_in_eval_mode_with_frozen_weights(
    fake: Any,
) -> None:
    model = _LabelFromPixel().train()
    x, y = _images([1, 2, 3])
    x = x.double().contiguous(memory_format=torch.channels_last)
    AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"]).update(
        model, x, y.to(torch.int32))
    (call,) = fake.built[0].calls
    assert call["contiguous"] and call["dtype"] == torch.float32
    assert call["label_dtype"] == torch.long
    assert call["requires_grad"] == [False] and not call["training"] and call["grad"]
    assert model.training and model.scale.requires_grad


def test_parameters_are_unfrozen_even_when_the_attack_fails(
    fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(self: Any, x: Tensor, y: Tensor, batch_size: int) -> None:
        raise RuntimeError("attack failed")

    monkeypatch.setattr(fake, "run_standard_evaluation", fail)
    model = _LabelFromPixel()
    model.frozen = nn.Parameter(torch.ones(1), requires_grad=False)
    with pytest.raises(RuntimeError, match="attack failed"):
        AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"]).update(
            model, *_images([1]))
    assert model.scale.requires_grad and not model.frozen.requires_grad


def test_rng_and_trace_function_are_restored(fake: Any) -> None:
    def tracer(frame: Any, event: str, arg: Any) -> None:
        return None

    torch.manual_seed(5)
    state = torch.get_rng_state()
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce", "square"]).update(
            _LabelFromPixel(), *_images([1, 2]))
        restored = sys.gettrace()
    finally:
        sys.settrace(previous)
    assert restored is tracer
    assert torch.equal(torch.get_rng_state(), state)


def test_progress_counts_attack_runs_over_the_batches(fake: Any) -> None:
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce", "square"],
                                    name="aa")
    evaluator.set_dataset_size(7)
    evaluator.update(_LabelFromPixel(), *_images([1, 2, 3]))
    progress = evaluator.progress(None, "ignored")
    assert (progress.total, progress.done, progress.unit) == (math.ceil(7 / 3) * 2, 2,
                                                              "attack runs")
    single = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"])
    single.set_dataset_size(7)
    single.update(_LabelFromPixel(), *_images([1]))
    assert single.progress(None, "ignored").total == 7
    unknown = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce"])
    unknown.update(_LabelFromPixel(), *_images([1, 2]))
    assert unknown.progress(5, "x").total is None


def test_progress_lines_name_each_attack(
    fake: Any, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress_module, "MIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress_module, "_GROWTH", 0.0)
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=["apgd-ce", "square"],
                                    name="aa")
    evaluator.progress_enabled = True
    evaluator.set_dataset_size(2)
    evaluator.update(_LabelFromPixel(), *_images([1, 2]))
    printed = capsys.readouterr().out
    assert [line.split(",")[0] for line in printed.splitlines()] == [
        "aa: 1/2 attack runs", "aa: 2/2 attack runs"]
    assert "(apgd-ce)" in printed and "(square)" in printed


@pytest.mark.parametrize(
    ("attacks", "classes", "too_few"),
    [(["apgd-dlr", "fab-t", "square"], 3, "apgd-dlr"), (["apgd-t"], 3, "apgd-t"),
     (["fab-t", "apgd-ce"], 1, "fab-t"), (["apgd-dlr", "fab-t"], 1, "apgd-dlr, fab-t")],
)
def test_too_few_classes_name_the_attacks_that_need_more(
    fake: Any, monkeypatch: pytest.MonkeyPatch, attacks: list[str], classes: int, too_few: str
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "NUM_CLASSES", classes)
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=attacks)
    with pytest.raises(ValueError) as error:
        evaluator.update(_LabelFromPixel(), *_images([0]))
    assert str(error.value) == (
        f"{too_few} cannot attack a {classes}-class model (the DLR loss needs at least 4 "
        "classes, targeted attacks at least 2); use version='custom' with attacks_to_run="
        "['apgd-ce', 'square']")
    assert fake.built == []


@pytest.mark.parametrize(("attacks", "classes"), [(["fab-t", "fab", "square"], 2),
                                                  (["apgd-dlr", "apgd-t"], 4),
                                                  (["apgd-ce", "fab", "square"], 1)])
def test_enough_classes_are_accepted(
    fake: Any, monkeypatch: pytest.MonkeyPatch, attacks: list[str], classes: int
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "NUM_CLASSES", classes)
    evaluator = AutoAttackEvaluator(version="custom", attacks_to_run=attacks)
    evaluator.update(_LabelFromPixel(), *_images([0]))
    assert int(evaluator.total) == 1


def test_the_wrapped_model_gives_contiguous_input_gradients() -> None:
    torch.manual_seed(0)
    model = nn.Conv2d(3, 2, 1).to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 4, 4).requires_grad_()
    (plain,) = torch.autograd.grad(model(x).sum(), x)
    assert not plain.is_contiguous()  # the channels_last model's gradient: what .view rejects
    net = adapter._ContiguousGradientModel(model)
    assert net.model is model
    out = net(x)
    assert torch.equal(out, model(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.is_contiguous()
    assert torch.allclose(grad, plain)
    assert torch.allclose(grad, model.weight.sum(dim=(0, 2, 3)).view(1, 3, 1, 1).expand_as(x))


def test_routed_messages_are_printed_with_the_prefix_when_verbose(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    routed = adapter._RoutedLog(verbose=True, prefix="aa")
    with caplog.at_level(logging.DEBUG, logger=adapter.logger.name):
        routed.info("robust accuracy: %.2f%%", 12.5)
        routed.debug("plain %s")
    assert capsys.readouterr().out.splitlines() == ["aa: robust accuracy: 12.50%",
                                                    "aa: plain %s"]
    assert caplog.records == []
    assert routed.logger is adapter.logger


def test_routed_messages_are_logged_at_debug_level_when_quiet(
    capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    routed = adapter._RoutedLog(verbose=False, prefix="aa")
    with caplog.at_level(logging.DEBUG, logger=adapter.logger.name):
        routed.info("robust accuracy: %.2f%%", 12.5, stack_info=True)
        routed.warning("zero gradients in %d points", 3)
    assert capsys.readouterr().out == ""
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "robust accuracy: 12.50%"), (logging.WARNING, "zero gradients in 3 points")]
    assert caplog.records[0].stack_info is not None  # keyword arguments reach the logger


def test_settings_of_one_and_l2_budgets_above_one_are_accepted() -> None:
    evaluator = AutoAttackEvaluator(norm="L2", eps=1.5, version="custom",
                                    attacks_to_run=["apgd-ce", "fab"], apgd_n_iter=1,
                                    apgd_n_restarts=1, fab_n_restarts=1, batch_size=1)
    assert (evaluator.norm, evaluator.eps, evaluator.batch_size) == ("L2", 1.5, 1)
    assert evaluator.attacks == ["apgd-ce", "fab"]
    assert evaluator.settings["fab_n_restarts"] == 1 and evaluator.settings["fab_n_iter"] is None
    with pytest.raises(ValueError, match=r"^batch_size and every per-attack setting must be "
                                         r">= 1, got batch_size=0 and \{"):
        AutoAttackEvaluator(batch_size=0)
    with pytest.raises(ValueError, match="L-inf eps=1.5"):
        AutoAttackEvaluator(norm="LINF", eps=1.5)


def test_defaults_are_autoattacks_linf_budget_batch_and_seed(fake: Any) -> None:
    evaluator = AutoAttackEvaluator()
    assert (evaluator.norm, evaluator.eps, evaluator.version, evaluator.batch_size,
            evaluator.seed, evaluator.verbose) == ("Linf", 8 / 255, "standard", 250, 0, False)
    evaluator.update(_LabelFromPixel(), *_images([1]))
    assert fake.built[0].kwargs["seed"] == 0
    assert {call["batch_size"] for call in fake.built[0].calls} == {250}


def test_counts_are_summed_across_processes(fake: Any) -> None:
    """Two shards merged as the DDP reduction merges them give the one-process counts."""
    fake.BREAKS = {"apgd-ce": {1}, "square": {3}}
    x, y = _images([0, 1, 2, 3, 4, 1])
    whole, first, second = (AutoAttackEvaluator(version="custom", name="aa",
                                                attacks_to_run=["apgd-ce", "square"])
                            for _ in range(3))
    whole.update(_LabelFromPixel(), x, y)
    first.update(_LabelFromPixel(), x[:2], y[:2])
    second.update(_LabelFromPixel(), x[2:], y[2:])
    first.merge_state(second)
    assert first.robust_count.tolist() == whole.robust_count.tolist() == [4, 3]
    assert int(first.total) == 6
    assert first.compute() == whole.compute() == {
        "robust_acc/aa": 3 / 6, "robust_acc/aa/apgd-ce": 4 / 6, "robust_acc/aa/square": 3 / 6}


def test_names_of_the_standard_and_custom_versions() -> None:
    standard = AutoAttackEvaluator(eps=4 / 255)
    assert standard.name == "autoattack_standard_linf_eps0.01569"
    assert standard.attacks == ["apgd-ce", "apgd-t", "fab-t", "square"]
    custom = AutoAttackEvaluator(norm="l2", eps=0.5, version="custom",
                                 attacks_to_run=("square", "apgd-dlr"))
    assert custom.name == "autoattack_square+apgd-dlr_l2_eps0.5"
    assert custom.metric_names() == ["robust_acc/autoattack_square+apgd-dlr_l2_eps0.5",
                                     "robust_acc/autoattack_square+apgd-dlr_l2_eps0.5/square",
                                     "robust_acc/autoattack_square+apgd-dlr_l2_eps0.5/apgd-dlr"]
    assert AutoAttackEvaluator(name="aa").metric_names()[0] == "robust_acc/aa"


@pytest.mark.filterwarnings("ignore:.*called before the ``update``")
def test_compute_before_any_image_names_the_evaluator() -> None:
    with pytest.raises(RuntimeError, match=r"^AutoAttackEvaluator \('aa'\) saw no test examples"):
        AutoAttackEvaluator(name="aa").compute()


def test_the_error_messages_of_bad_versions_and_attacks() -> None:
    with pytest.raises(ValueError) as error:
        AutoAttackEvaluator(apgd_n_iter=5, square_n_queries=9)
    assert str(error.value) == (
        "attacks_to_run and per-attack settings (apgd_n_iter, square_n_queries) apply to "
        "version='custom' only; the standard version uses AutoAttack's fixed settings")
    with pytest.raises(ValueError, match=r"settings \(none\) apply"):
        AutoAttackEvaluator(attacks_to_run=["square"])
    with pytest.raises(ValueError) as error:
        AutoAttackEvaluator(version="custom", attacks_to_run=[])
    assert str(error.value) == (
        "version='custom' needs attacks_to_run, e.g. ['apgd-ce', 'square'], from apgd-ce, "
        "apgd-dlr, fab, square, apgd-t, fab-t")
    with pytest.raises(ValueError) as error:
        AutoAttackEvaluator(version="custom", attacks_to_run=["fab", "pgd"])
    assert str(error.value) == (
        "attacks_to_run=['fab', 'pgd'] has unknown or repeated attacks; choose each at most "
        "once from apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t")
    with pytest.raises(ValueError, match=r"^version must be 'standard' or 'custom', got 'Custom'"):
        AutoAttackEvaluator(version="Custom")
    with pytest.raises(ValueError, match=r"^norm must be 'Linf' or 'L2', got 'L1'$"):
        AutoAttackEvaluator(norm="L1")
