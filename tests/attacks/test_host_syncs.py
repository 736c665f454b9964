"""No host–device synchronization inside the attack loop or the smoothing sampling loop.

A sync stalls the host until the accelerator has drained its queue, so one per PGD step costs a
pipeline bubble per step. The CPU has no queue to drain, so these tests count the *calls* that
synchronize when the tensor lives on an accelerator: reading a value on the host (``item``,
``tolist``, ``numpy``, ``cpu``, ``bool``/``float``/``int`` of a tensor), an explicit
``torch.cuda.synchronize``, and the operations whose output size depends on the data
(``nonzero``, ``unique``, ``masked_select``, boolean-mask indexing, ``bincount``). With CUDA,
the same calls also run under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from lit_robust.attacks import pgd
from lit_robust.evaluation.smoothing import SmoothedClassifier
from lit_robust.models.normalize import NormalizedClassifier

_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
          "nonzero", "unique", "masked_select", "bincount")
_FUNCTIONS = ("nonzero", "unique", "masked_select", "bincount")
pgd_module = importlib.import_module("lit_robust.attacks.pgd")  # the package exports pgd()


@contextlib.contextmanager
def count_host_syncs() -> Iterator[list[str]]:
    """Record, as ``"<call> at <file>:<line>"``, every host-synchronizing call in the block."""
    calls: list[str] = []

    def counting(name, original):
        def wrapper(*args, **kwargs):
            frame = traceback.extract_stack(limit=2)[0]
            calls.append(f"{name} at {frame.filename}:{frame.lineno}")
            return original(*args, **kwargs)
        return wrapper

    def counting_getitem(original):
        def getitem(self, index):
            indices = index if isinstance(index, tuple) else (index,)
            if any(isinstance(i, Tensor) and i.dtype == torch.bool for i in indices):
                frame = traceback.extract_stack(limit=2)[0]
                calls.append(f"boolean-mask indexing at {frame.filename}:{frame.lineno}")
            return original(self, index)
        return getitem

    with pytest.MonkeyPatch.context() as patch:
        for name in _READS:
            patch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
        for name in _FUNCTIONS:
            patch.setattr(torch, name, counting(f"torch.{name}", getattr(torch, name)))
        patch.setattr(torch.Tensor, "__getitem__", counting_getitem(torch.Tensor.__getitem__))
        patch.setattr(torch.cuda, "synchronize",
                      counting("torch.cuda.synchronize", torch.cuda.synchronize))
        yield calls


def _model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))
    return NormalizedClassifier(net, mean=[0.5] * 3, std=[0.25] * 3).eval()


def _batch(device: str = "cpu") -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 16, 16, generator=generator)
    return x.to(device), torch.randint(0, 10, (8,), generator=generator).to(device)


@pytest.mark.parametrize("settings", [
    dict(norm="linf"), dict(norm="l2", eps=0.5), dict(loss="kl"), dict(restarts=3),
    dict(norm="l2", eps=0.5, start="sphere", restarts=2), dict(start="normal"),
], ids=lambda settings: "-".join(f"{k}={v}" for k, v in settings.items()))
def test_pgd_never_synchronizes(settings) -> None:
    model, (x, y) = _model(), _batch()
    with count_host_syncs() as calls:
        pgd(model, x, y, steps=5, **settings)
    assert calls == []


def test_the_counter_catches_an_item_planted_in_the_loop(monkeypatch) -> None:
    step = pgd_module._ascent_step

    def step_with_item(grad: Tensor, step_size: float, norm) -> Tensor:
        grad.abs().max().item()  # e.g. a debugging print of the gradient's size
        return step(grad, step_size, norm)

    monkeypatch.setattr(pgd_module, "_ascent_step", step_with_item)
    model, (x, y) = _model(), _batch()
    with count_host_syncs() as calls:
        pgd(model, x, y, steps=4)
    assert len(calls) == 4 and all(c.startswith("item at ") for c in calls)
    with count_host_syncs() as calls:  # the other kinds, each counted once
        t = torch.arange(4.0)
        bool(t[0]), float(t[1]), t.tolist(), t[t > 1], torch.nonzero(t), t.long().bincount()
    assert [c.split(" at ")[0] for c in calls] == [
        "__bool__", "__float__", "tolist", "boolean-mask indexing", "torch.nonzero",
        "bincount"]


def test_smoothing_samples_without_synchronizing_and_reads_back_once() -> None:
    smoothed = SmoothedClassifier(_model(), num_classes=10, sigma=0.25)
    x, _ = _batch()
    generator = torch.Generator().manual_seed(0)
    with count_host_syncs() as calls:
        counts = smoothed.sample_counts(x[:3], num=50, batch_size=16, generator=generator)
    assert calls == [] and counts.sum(1).tolist() == [50, 50, 50]
    with count_host_syncs() as calls:
        smoothed.certify_batch(x[:3], n0=10, n=50, alpha=0.001, batch_size=16,
                               generator=generator)
    # the documented single read-back of (candidate, n_A) after all forward passes
    assert [c.split(" at ")[0] for c in calls] == ["cpu", "numpy"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_loops_pass_sync_debug_mode_error() -> None:
    model, (x, y) = _model().cuda(), _batch("cuda")
    smoothed = SmoothedClassifier(model, num_classes=10, sigma=0.25)
    generator = torch.Generator("cuda").manual_seed(0)
    torch.cuda.set_sync_debug_mode("error")
    try:
        pgd(model, x, y, steps=5, restarts=2)
        smoothed.sample_counts(x[:3], num=50, batch_size=16, generator=generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
