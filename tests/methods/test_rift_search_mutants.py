"""RiFT's search parts on hand-built cases: every field of an MRC row against a restatement of
the ascent, the input checks and their whole messages, the prefix-reuse plan of a hand-built
network (which outputs are stored, which replaced by zeros), the cache file and the
interpolation's edge cases."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lit_robust.methods.rift.criticality as criticality
from lit_robust.attacks import PGDAttack
from lit_robust.methods.rift import interpolate_state_dicts, select_alpha
from lit_robust.methods.rift.cache import (
    CACHE_FORMAT_VERSION,
    fingerprint,
    load_table,
    store_table,
)
from lit_robust.methods.rift.criticality import (
    CriticalityRow,
    backbone_of,
    candidate_module_names,
    generate_adversarial_set,
    module_robust_criticality,
    project_weight_,
    rank_modules,
    resolve_modules,
)
from lit_robust.methods.rift.prefix_reuse import (
    ForwardRunner,
    PrefixReuseRunner,
    _agree,
    _replaced_forwards,
    build_runner,
)
from lit_robust.models.normalize import NormalizedClassifier

# --------------------------------------------------------------------------- criticality


def _linear_model(seed: int = 0, features: int = 6, classes: int = 3) -> NormalizedClassifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(features, 5), nn.Tanh(), nn.Linear(5, classes))
    return NormalizedClassifier(net, mean=[0.0], std=[1.0])


def _linear_data(n: int = 10, features: int = 6, classes: int = 3) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(4)
    return (torch.rand(n, 1, 2, features // 2, generator=generator),
            torch.randint(0, classes, (n,), generator=generator))


def _mean_loss_and_acc(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    with torch.no_grad():
        logits = model(x).double()
    return (float(F.cross_entropy(logits, y)),
            float((logits.argmax(1) == y).double().mean()))


def _reference_row(model: nn.Module, name: str, x: Tensor, y: Tensor, *, epsilon: float,
                   epochs: int, lr: float, batch_size: int, every_step: bool,
                   generator: torch.Generator) -> CriticalityRow:
    """The ascent restated on a copy: W += lr·∇L per batch, projection, evaluation per pass."""
    weight = model.net.get_submodule(name).weight
    origin = weight.detach().clone()

    def project() -> None:
        delta = weight.detach().double() - origin.double()
        radius = epsilon * float(origin.double().norm())
        if float(delta.norm()) > radius:
            weight.copy_(origin + (delta * radius / delta.norm()).float())

    before = _mean_loss_and_acc(model, x, y)
    worst = (*before, 0)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), weight)
            with torch.no_grad():
                weight += lr * grad
                if every_step:
                    project()
        with torch.no_grad():
            project()
        loss, acc = _mean_loss_and_acc(model, x, y)
        if loss > worst[0]:
            worst = (loss, acc, epoch)
    with torch.no_grad():
        weight.copy_(origin)
    return CriticalityRow(module=name, mrc=worst[0] - before[0], loss_before=before[0],
                          loss_after=worst[0], robust_acc_before=before[1],
                          robust_acc_after=worst[1], worst_epoch=worst[2])


def _assert_rows_match(rows: list[CriticalityRow], expected: list[CriticalityRow]) -> None:
    assert [r.module for r in rows] == [r.module for r in expected]
    for row, ref in zip(rows, expected, strict=True):
        for field in ("mrc", "loss_before", "loss_after"):
            assert getattr(row, field) == pytest.approx(getattr(ref, field), rel=1e-4,
                                                        abs=1e-6), (row.module, field)
        assert row.robust_acc_before == ref.robust_acc_before, row.module
        assert row.robust_acc_after == ref.robust_acc_after, row.module
        assert row.worst_epoch == ref.worst_epoch, row.module


@pytest.mark.parametrize("every_step", [False, True])
@pytest.mark.parametrize("reuse_prefix", [False, True])
def test_every_field_of_the_rows_matches_the_restated_ascent(every_step: bool,
                                                             reuse_prefix: bool) -> None:
    model = _linear_model()
    x, y = _linear_data()
    settings = dict(epsilon=0.3, epochs=3, lr=2.0, batch_size=4)
    rows = module_robust_criticality(model, x, y, project_every_step=every_step,
                                     reuse_prefix=reuse_prefix, seed=5, progress=False,
                                     **settings)
    generator = torch.Generator().manual_seed(5)
    expected = [_reference_row(model.eval(), name, x, y, every_step=every_step,
                               generator=generator, **settings) for name in ("1", "3")]
    _assert_rows_match(rows, expected)
    assert all(r.worst_epoch > 0 and r.loss_after > r.loss_before for r in rows)


@pytest.mark.parametrize(("reuse_prefix", "reused"), [(False, [False, False]),
                                                     (True, [True, True])])
def test_reuse_prefix_holds_for_every_module(monkeypatch, reuse_prefix: bool,
                                             reused: list[bool]) -> None:
    built: list[bool] = []
    build = criticality.build_runner

    def recording(*args, **kwargs) -> ForwardRunner:  # noqa: ANN002, ANN003
        runner = build(*args, **kwargs)
        built.append(runner.reuses_prefix)
        return runner

    monkeypatch.setattr(criticality, "build_runner", recording)
    x, y = _linear_data()
    module_robust_criticality(_linear_model(), x, y, reuse_prefix=reuse_prefix, epochs=1,
                              batch_size=4, progress=False)
    assert built == reused


def test_the_default_settings_are_the_papers_and_the_default_seed_is_zero() -> None:
    model = _linear_model()
    x, y = _linear_data()
    rows = module_robust_criticality(model, x, y, progress=False)
    generator = torch.Generator().manual_seed(0)
    expected = [_reference_row(model.eval(), name, x, y, epsilon=0.1, epochs=10, lr=1.0,
                               batch_size=128, every_step=False, generator=generator)
                for name in ("1", "3")]
    for row, ref in zip(rows, expected, strict=True):  # late passes tie within rounding
        assert row.mrc == pytest.approx(ref.mrc, rel=1e-4)
    small = dict(epsilon=0.3, epochs=2, lr=2.0, batch_size=3, progress=False)
    default_seed = module_robust_criticality(model, x, y, **small)
    assert module_robust_criticality(model, x, y, seed=0, **small) == default_seed
    assert module_robust_criticality(model, x, y, seed=1, **small) != default_seed


def test_a_pass_that_lowers_the_loss_does_not_count_and_the_model_mode_is_restored() -> None:
    model = _linear_model()
    x, y = _linear_data()
    model.train()
    # a negative-gradient world: lr tiny, the loss barely moves; rows still match exactly
    rows = module_robust_criticality(model, x, y, modules=["3"], epsilon=0.5, epochs=2,
                                     lr=1e-3, batch_size=3, seed=1, progress=False)
    generator = torch.Generator().manual_seed(1)
    expected = _reference_row(model.eval(), "3", x, y, epsilon=0.5, epochs=2, lr=1e-3,
                              batch_size=3, every_step=False, generator=generator)
    _assert_rows_match(rows, [expected])


def test_progress_counts_the_modules_and_only_when_asked(monkeypatch) -> None:
    made: list[tuple] = []
    details: list[str | None] = []

    class Spy:
        def __init__(self, task: str, total: int, unit: str, enabled: bool) -> None:
            made.append((task, total, unit, enabled))

        def advance(self, count: int = 1, detail: str | None = None) -> None:
            details.append(detail)

    monkeypatch.setattr(criticality, "Progress", Spy)
    model = _linear_model()
    x, y = _linear_data()
    module_robust_criticality(model, x, y, epochs=1, progress=False)
    module_robust_criticality(model, x, y, epochs=1)
    assert made == [("MRC search", 2, "modules", False), ("MRC search", 2, "modules", True)]
    assert details == ["1", "3", "1", "3"]


@pytest.mark.parametrize(
    ("settings", "values"),
    [({"epsilon": 0.0}, "epsilon=0.0, epochs=10, lr=1.0, batch_size=128"),
     ({"epochs": 0}, "epsilon=0.1, epochs=0, lr=1.0, batch_size=128"),
     ({"lr": 0.0}, "epsilon=0.1, epochs=10, lr=0.0, batch_size=128"),
     ({"batch_size": 0}, "epsilon=0.1, epochs=10, lr=1.0, batch_size=0")],
)
def test_each_bad_search_setting_is_refused_with_the_whole_message(settings: dict,
                                                                   values: str) -> None:
    model = _linear_model()
    x, y = _linear_data()
    message = f"need epsilon > 0, epochs >= 1, lr > 0 and batch_size >= 1, got {values}"
    with pytest.raises(ValueError) as error:
        module_robust_criticality(model, x, y, **settings)
    assert str(error.value) == message


def test_the_smallest_valid_settings_are_accepted() -> None:
    model = _linear_model()
    x, y = _linear_data(2)
    rows = module_robust_criticality(model, x, y, epsilon=1e-9, epochs=1, lr=1e-9, batch_size=1,
                                     progress=False)
    assert len(rows) == 2


def test_inputs_and_labels_must_match_and_not_be_empty() -> None:
    model = _linear_model()
    x, y = _linear_data()
    with pytest.raises(ValueError) as error:
        module_robust_criticality(model, x, y[:9])
    assert str(error.value) == ("need as many labels as inputs (and at least one), got 10 inputs "
                                "and 9 labels")
    with pytest.raises(ValueError, match="got 0 inputs and 0 labels"):
        module_robust_criticality(model, x[:0], y[:0])


def test_rows_round_trip_through_plain_dicts() -> None:
    row = CriticalityRow(module="a.b", mrc=0.5, loss_before=1.0, loss_after=1.5,
                         robust_acc_before=0.75, robust_acc_after=0.25, worst_epoch=3)
    assert row.robust_acc_drop == 0.5
    data = row.to_dict()
    assert data == {"module": "a.b", "mrc": 0.5, "loss_before": 1.0, "loss_after": 1.5,
                    "robust_acc_before": 0.75, "robust_acc_after": 0.25, "worst_epoch": 3,
                    "robust_acc_drop": 0.5}
    assert CriticalityRow.from_dict(data) == row


def test_names_are_relative_to_the_backbone_and_checked() -> None:
    wrapped = _linear_model()
    assert backbone_of(wrapped) is wrapped.net
    assert backbone_of(wrapped.net) is wrapped.net
    assert candidate_module_names(wrapped.net) == ["1", "3"]
    assert resolve_modules(wrapped, None) == ["1", "3"]
    assert resolve_modules(wrapped, ("3",)) == ["3"]
    for bad in ("2", "7"):  # Tanh has no weight; "7" does not exist
        with pytest.raises(ValueError) as error:
            resolve_modules(wrapped, [bad])
        assert str(error.value) == (f"unknown module {bad!r} (or it has no weight parameter); "
                                    "candidate modules: 1, 3")


def test_a_weight_that_is_not_a_parameter_is_refused() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    del net[0].weight
    net[0].weight = torch.ones(2, 2)  # a plain tensor attribute
    with pytest.raises(ValueError, match="unknown module '0'"):
        resolve_modules(net, ["0"])


class _Recorder:
    """An attack that records the mode and inputs it sees and returns ``x + 0.25``."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, int, bool]] = []

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        self.calls.append((model.training, len(y), torch.is_grad_enabled()))
        return x + 0.25


def test_the_adversarial_set_stops_at_max_samples_and_attacks_in_eval_mode() -> None:
    model = _linear_model().train()
    x, y = _linear_data(12)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in range(0, 12, 4)]

    class Endless:
        def __iter__(self):
            yield from batches[:2]
            raise AssertionError("read a batch past max_samples")

    attack = _Recorder()
    with torch.no_grad():
        adv, labels = generate_adversarial_set(model, Endless(), attack, max_samples=8)
    assert torch.equal(adv, x[:8] + 0.25) and torch.equal(labels, y[:8])
    assert attack.calls == [(False, 4, True), (False, 4, True)]
    assert model.training
    adv, labels = generate_adversarial_set(model, batches, _Recorder())
    assert torch.equal(adv, x + 0.25) and torch.equal(labels, y)
    with pytest.raises(ValueError) as error:
        generate_adversarial_set(model, [(x[:0], y[:0])], attack)
    assert str(error.value) == ("no images to build the adversarial set from; the data loader "
                                "is empty")


def test_a_last_batch_of_one_image_is_kept() -> None:
    model = _linear_model()
    x, y = _linear_data(3)
    adv, labels = generate_adversarial_set(model, [(x[:2], y[:2]), (x[2:], y[2:])], _Recorder())
    assert torch.equal(adv, x + 0.25) and torch.equal(labels, y)


def test_the_default_adversarial_attack_is_pgd10_at_8_255(monkeypatch) -> None:
    seen: list[str] = []

    def record(self, model, x, y):  # noqa: ANN001, ANN202
        seen.append(repr(self))
        return x

    monkeypatch.setattr(PGDAttack, "__call__", record)
    model = _linear_model()
    x, y = _linear_data(4)
    generate_adversarial_set(model, [(x, y)])
    assert seen == [repr(PGDAttack())]


def test_projection_scales_the_difference_onto_the_sphere_exactly() -> None:
    origin = torch.tensor([3.0, 4.0])  # norm 5: radius 0.5 at ε = 0.1
    weight = torch.tensor([3.0, 5.0])  # distance 1
    project_weight_(weight, origin, epsilon=0.1)
    torch.testing.assert_close(weight, torch.tensor([3.0, 4.5]))
    on_sphere = torch.tensor([3.0, 4.5])
    project_weight_(on_sphere, origin, epsilon=0.1)
    assert torch.equal(on_sphere, torch.tensor([3.0, 4.5]))
    half = torch.tensor([3.0, 6.0], dtype=torch.float16)
    project_weight_(half, origin.half(), epsilon=0.2)  # radius 1, distance 2
    assert half.dtype == torch.float16 and torch.equal(half, torch.tensor([3.0, 5.0]).half())


def test_ranking_ties_and_bounds() -> None:
    def row(name: str, mrc: float) -> CriticalityRow:
        return CriticalityRow(name, mrc, 0.0, mrc, 0.5, 0.5, 0)

    rows = [row("a", 0.2), row("b", 0.1), row("c", 0.1), row("d", 0.2)]
    assert rank_modules(rows) == ["b"]
    assert rank_modules(rows, 3) == ["b", "c", "a"]
    assert rank_modules(rows, 1, most=True) == ["a"]
    assert rank_modules(rows, 4, most=True) == ["a", "d", "b", "c"]
    for k in (0, 5):
        with pytest.raises(ValueError) as error:
            rank_modules(rows, k)
        assert str(error.value) == f"k must be in [1, 4] (the number of modules), got {k}"


# --------------------------------------------------------------------------- prefix reuse


class _Branchy(nn.Module):
    """A side branch computed and dropped, a ReLU called twice, then two 1×1 convs."""

    def __init__(self) -> None:
        super().__init__()
        self.side = nn.Linear(3 * 4 * 4, 2)
        self.a = nn.Conv2d(3, 4, 1)
        self.act = nn.ReLU()
        self.b = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        self.side(x.flatten(1))
        h = self.act(self.b(self.act(self.a(x))))
        return self.head(h.mean(dim=(2, 3)))


def _branchy() -> tuple[NormalizedClassifier, Tensor]:
    torch.manual_seed(0)
    model = NormalizedClassifier(_Branchy(), mean=[0.5], std=[0.25]).eval()
    return model, torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(2))


def test_the_plan_stores_only_what_the_rest_reads_and_zeros_the_rest() -> None:
    model, x = _branchy()
    net = model.net
    runner = build_runner(model, net.b, x, batch_size=2)
    assert isinstance(runner, PrefixReuseRunner) and runner.reuses_prefix
    assert set(runner.live) == {net.a}
    assert set(runner.dead) == {model.normalize, net.side}
    assert runner.dead[net.side] == (torch.Size([2]), torch.float32)
    assert runner.dead[model.normalize] == (torch.Size([3, 4, 4]), torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(runner.live[net.a], net.a(model.normalize(x)))
    idx = torch.tensor([3, 1])
    side_outputs: list[Tensor] = []
    net.side.register_forward_hook(lambda _m, _a, out: side_outputs.append(out))
    with torch.no_grad():
        expected = model(x[idx])
    with runner.active() as active, torch.no_grad():
        assert active is runner
        torch.testing.assert_close(runner(idx), expected)
    assert runner._indices is None
    assert torch.equal(side_outputs[-1], torch.zeros(2, 2))  # the replaced forward's zeros
    head = build_runner(model, net.head, x, batch_size=3)
    assert set(head.live) == {net.b}  # the twice-called ReLU is never stored
    assert set(head.dead) == {model.normalize, net.side, net.a}


def test_reuse_falls_back_to_plain_passes_when_it_cannot_or_must_not_help() -> None:
    model, x = _branchy()
    net = model.net
    per_example = 4 * 4 * 4 * 4  # net.a's output: 4 channels of 4×4 float32
    assert build_runner(model, net.b, x, 2, memory_limit=per_example * 5).reuses_prefix
    for runner in (build_runner(model, net.b, x, 2, memory_limit=per_example * 5 - 1),
                   build_runner(model, net.b, x, 2, reuse_prefix=False),
                   build_runner(model, net.b, x[:1], 1),
                   build_runner(net, net.side, x, 2),  # nothing runs before the first module
                   build_runner(model, nn.Linear(2, 2), x, 2)):  # never runs
        assert type(runner) is ForwardRunner and not runner.reuses_prefix
        idx = torch.tensor([len(runner.inputs) - 1, 0])
        with runner.active() as active, torch.no_grad():
            assert active is runner
            assert torch.equal(runner(idx), runner.model(runner.inputs[idx]))


def test_a_reuse_runner_is_only_callable_while_active() -> None:
    model, x = _branchy()
    runner = build_runner(model, model.net.b, x, batch_size=2)
    with pytest.raises(RuntimeError) as error, runner.active():
        runner._current()
    assert str(error.value) == ("a PrefixReuseRunner is only callable inside "
                                "`with runner.active()`")


def test_replaced_forwards_put_back_a_forward_set_on_the_instance() -> None:
    module = nn.Linear(2, 2)

    def own(x: Tensor) -> Tensor:
        return x * 7

    module.forward = own
    with _replaced_forwards({module: lambda x: x * 0}):
        assert torch.equal(module(torch.ones(1, 2)), torch.zeros(1, 2))
    assert vars(module)["forward"] is own


def test_a_chain_of_runners_is_right_after_the_previous_one_was_used() -> None:
    model, x = _branchy()
    first = build_runner(model, model.net.b, x, batch_size=2)
    second = build_runner(model, model.net.head, x, batch_size=2, previous=first)
    with torch.no_grad():
        expected = model(x)
    with second.active(), torch.no_grad():
        torch.testing.assert_close(second(torch.arange(5)), expected)
    torch.testing.assert_close(second.live[model.net.b],
                               model.net.b(model.net.act(model.net.a(model.normalize(x)))))


def test_a_chained_runner_computes_its_stores_through_the_previous_one() -> None:
    model, x = _branchy()
    first = build_runner(model, model.net.b, x, batch_size=2)
    rows: list[int] = []
    convolve = model.net.a.forward

    def counted(inputs: Tensor) -> Tensor:  # replaced while a runner skips net.a, not hooked
        rows.append(len(inputs))
        return convolve(inputs)

    model.net.a.forward = counted
    build_runner(model, model.net.head, x, batch_size=2, previous=first)
    with_previous = sum(rows)
    rows.clear()
    build_runner(model, model.net.head, x, batch_size=2)
    assert (with_previous, sum(rows)) == (2, 2 + 5)  # the probe's trace; then the 5 inputs


def test_stores_that_disagree_anywhere_are_refused() -> None:
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    probe = {a: torch.ones(2, 3), b: torch.zeros(2, 3)}
    assert _agree({a: torch.ones(4, 3), b: torch.zeros(4, 3)}, probe)
    assert not _agree({a: torch.ones(4, 3) + 1, b: torch.zeros(4, 3)}, probe)
    assert not _agree({a: torch.ones(4, 3), b: torch.ones(4, 3)}, probe)
    assert not _agree(None, probe)


class _ScaledInput(nn.Module):
    """A forward that computes on its input before the first submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.b(self.a(x * 2.0)).mean(dim=(2, 3)))


def test_reuse_works_when_the_forward_computes_on_its_input_first() -> None:
    torch.manual_seed(0)
    model = _ScaledInput().eval()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    runner = build_runner(model, model.b, x, batch_size=2)
    assert isinstance(runner, PrefixReuseRunner) and set(runner.live) == {model.a}
    idx = torch.tensor([2, 0])
    with torch.no_grad():
        expected = model(x[idx])
    with runner.active(), torch.no_grad():
        torch.testing.assert_close(runner(idx), expected)


# --------------------------------------------------------------------------- cache


def _row(name: str = "m", mrc: float = 0.25) -> CriticalityRow:
    return CriticalityRow(name, mrc, 1.0, 1.0 + mrc, 0.5, 0.25, 2)


def test_the_fingerprint_sees_names_dtypes_shapes_and_settings() -> None:
    a = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        a.weight.copy_(torch.arange(4.0).reshape(2, 2))
    key = fingerprint(a, [], {"x": 1})
    assert len(key) == 64 and key == fingerprint(a, [], {"x": 1})
    reshaped = torch.arange(4.0)
    assert fingerprint(a, [reshaped], {}) != fingerprint(a, [reshaped.reshape(2, 2)], {})
    assert fingerprint(a, [torch.zeros(2)], {}) != fingerprint(a, [torch.zeros(2).double()], {})
    assert fingerprint(a, [torch.zeros(0)], {}) != fingerprint(a, [], {})
    assert fingerprint(a, [], {"x": 1, "y": 2}) == fingerprint(a, [], {"y": 2, "x": 1})
    assert fingerprint(a, [], {"x": PGDAttack()}) == fingerprint(a, [], {"x": str(PGDAttack())})
    renamed = nn.Sequential(a)  # the same tensor under another name
    assert fingerprint(renamed, [], {"x": 1}) != key


def test_the_cache_file_format_and_its_errors(tmp_path) -> None:
    path = tmp_path / "two" / "deeper" / "mrc.json"
    store_table(path, "k1", [_row()], {"epsilon": 0.1, "attack": PGDAttack()})
    content = json.loads(path.read_text())
    assert content == {"version": CACHE_FORMAT_VERSION, "entries": {"k1": {
        "settings": {"epsilon": 0.1, "attack": str(PGDAttack())},
        "rows": [_row().to_dict()]}}}
    store_table(path, "k2", [_row("n")], {})
    store_table(path, "k1", [_row(mrc=0.5)], {})  # replaced
    assert load_table(path, "k1") == [_row(mrc=0.5)]
    assert load_table(path, "k2") == [_row("n")]
    assert sorted(p.name for p in path.parent.iterdir()) == ["mrc.json"]  # no temporary left
    for content in ({"version": CACHE_FORMAT_VERSION + 1, "entries": {}}, {"version": 1}):
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError) as error:
            load_table(path, "k1")
        assert str(error.value) == (f"the MRC cache {path} has an unknown format (expected "
                                    f"version {CACHE_FORMAT_VERSION}); delete it or point "
                                    "mrc_cache at another file")
    path.write_text("{")
    with pytest.raises(ValueError) as error:
        store_table(path, "k", [], {})
    assert str(error.value).startswith(f"the MRC cache {path} is not valid JSON (")
    assert str(error.value).endswith("); delete it or point mrc_cache at another file")


def test_a_failed_write_leaves_the_file_and_no_temporary(tmp_path) -> None:
    path = tmp_path / "mrc.json"
    store_table(path, "k", [_row()], {})
    before = path.read_text()

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("cannot encode")

    with pytest.raises(RuntimeError, match="cannot encode"):
        store_table(path, "k2", [_row()], {"bad": Unprintable()})
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mrc.json"]


# --------------------------------------------------------------------------- interpolation


def test_interpolation_messages_and_non_float_entries() -> None:
    a = {"w": torch.zeros(2), "mask": torch.tensor([True, False]),
         "z": torch.tensor([1 + 1j, 0j])}
    b = {"w": torch.ones(2), "mask": torch.tensor([False, True]),
         "z": torch.tensor([3 + 1j, 2j])}
    mid = interpolate_state_dicts(a, b, 0.25)
    assert torch.equal(mid["w"], torch.full((2,), 0.25))
    assert torch.equal(mid["mask"], a["mask"]) and mid["mask"] is not a["mask"]
    assert torch.allclose(mid["z"], torch.tensor([1.5 + 1j, 0.5j]))
    assert torch.equal(interpolate_state_dicts(a, b, 1.0)["mask"], b["mask"])
    for alpha in (-0.1, 1.1):
        with pytest.raises(ValueError) as error:
            interpolate_state_dicts(a, b, alpha)
        assert str(error.value) == f"alpha must be in [0, 1], got {alpha}"
    with pytest.raises(ValueError) as error:
        interpolate_state_dicts({"w": a["w"]}, {"w": b["w"], "v": b["w"]}, 0.5)
    assert str(error.value) == ("the state dicts have different keys: only in the first [], "
                                "only in the second ['v']")
    with pytest.raises(ValueError) as error:
        interpolate_state_dicts({"w": a["w"]}, {"w": b["w"].double()}, 0.5)
    assert str(error.value) == ("'w' differs in shape or dtype: (2,) torch.float32 vs (2,) "
                                "torch.float64")


def test_selection_at_the_exact_threshold_and_its_messages() -> None:
    # robust(0) = 0.5; tolerance 25 points: 0.25 qualifies exactly at the threshold
    assert select_alpha([0.0, 1.0], [0.1, 0.9], [0.5, 0.25], tolerance=25.0) == 1.0
    assert select_alpha([0.0, 1.0], [0.1, 0.9], [0.5, 0.2499], tolerance=25.0) == 0.0
    assert select_alpha([1.0, 0.0], [0.0, 1.0], [1.0, 0.0]) == 0.0  # accuracies 0 and 1 valid
    assert select_alpha((0,), [1.0], [1.0]) == 0.0
    with pytest.raises(ValueError) as error:
        select_alpha([], [], [])
    assert str(error.value) == ("need one clean and one robust accuracy per alpha, got 0 alphas, "
                                "0 clean and 0 robust accuracies")
    with pytest.raises(ValueError) as error:
        select_alpha([0.5], [0.5], [0.3])
    assert str(error.value) == "alphas must contain 0 (the robust model itself), got [0.5]"
    with pytest.raises(ValueError) as error:
        select_alpha([0.0, 1.0], [0.5, 1.5], [0.3, 0.3])
    assert str(error.value) == ("clean accuracies must be fractions in [0, 1], got [1.5]; "
                                "divide percentages by 100")
    with pytest.raises(ValueError) as error:
        select_alpha([0.0, 1.0], [0.5, 0.5], [0.3, -0.1])
    assert str(error.value) == ("robust accuracies must be fractions in [0, 1], got [-0.1]; "
                                "divide percentages by 100")
    with pytest.raises(ValueError) as error:
        select_alpha([0.0], [0.5], [0.3], tolerance=-0.5)
    assert str(error.value) == "tolerance must be >= 0 percentage points, got -0.5"


def test_the_cache_is_replaced_from_a_hidden_temporary_beside_it(tmp_path, monkeypatch) -> None:
    import tempfile

    calls: list[dict] = []
    original = tempfile.mkstemp

    def recording(**kwargs: object) -> tuple[int, str]:
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", recording)
    path = tmp_path / "mrc.json"
    store_table(path, "k", [_row()], {})
    assert calls == [{"dir": tmp_path, "prefix": ".mrc.json.", "suffix": ".tmp"}]
