"""SimCLR under DDP: with ``gather_negatives`` two processes with half batches give the loss
and the gradients of one process with the whole batch (gloo, CPU); without it they do not.
Also NT-Xent over slices of a batch against the whole batch, without processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lit_robust.losses import nt_xent
from lit_robust.methods import SimCLR

BATCH = 6  # the global batch; each of the 2 processes holds 3 images


def _projector_and_views(gather: bool = True) -> tuple[SimCLR, torch.Tensor, torch.Tensor]:
    """The projection head of a SimCLR module (eval mode: BN with fixed statistics, so the
    per-process BN statistics cannot differ) and the features of two views of 6 images."""
    torch.manual_seed(0)
    model = SimCLR(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
                   projection_dim=8, temperature=0.5, gather_negatives=gather)
    model.configure_model()
    model.projector.eval()
    generator = torch.Generator().manual_seed(1)
    features = model.projector[0].in_features
    h1 = torch.randn(BATCH, features, generator=generator)
    h2 = torch.randn(BATCH, features, generator=generator)
    return model, h1, h2


def _loss_and_gradients(model: SimCLR, projector: torch.nn.Module, h1: torch.Tensor,
                        h2: torch.Tensor) -> dict:
    loss = model.nt_xent(projector(h1), projector(h2))
    loss.backward()
    return {"loss": loss.item(),
            "grads": {name: p.grad.tolist() for name, p in model.projector.named_parameters()}}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    try:
        half = slice(rank * BATCH // 2, (rank + 1) * BATCH // 2)
        result = {}
        for gather in (True, False):
            model, h1, h2 = _projector_and_views(gather)
            ddp = torch.nn.parallel.DistributedDataParallel(model.projector)  # averages grads
            result[str(gather)] = _loss_and_gradients(model, ddp, h1[half], h2[half])
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("simclr_ddp")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=2,
                                join=True)
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def _single_process() -> dict:
    model, h1, h2 = _projector_and_views()
    return _loss_and_gradients(model, model.projector, h1, h2)


@pytest.mark.slow
def test_gathered_negatives_give_the_full_batch_loss_and_gradients(two_processes) -> None:
    single = _single_process()
    ranks = [result["True"] for result in two_processes]
    assert ranks[0]["loss"] != pytest.approx(ranks[1]["loss"])  # each rank: its own anchors
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(single["loss"], rel=1e-5)
    for rank in ranks:
        for name, grad in single["grads"].items():
            torch.testing.assert_close(torch.tensor(rank["grads"][name]), torch.tensor(grad),
                                       rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.slow
def test_without_gathering_each_process_contrasts_its_own_half(two_processes) -> None:
    model, h1, h2 = _projector_and_views()
    with torch.no_grad():
        z1, z2 = model.projector(h1), model.projector(h2)
        halves = [nt_xent(z1[s], z2[s], 0.5).item() for s in (slice(0, 3), slice(3, 6))]
    ranks = [result["False"] for result in two_processes]
    assert [rank["loss"] for rank in ranks] == pytest.approx(halves, rel=1e-5)
    single = _single_process()
    weight = "3.weight"
    assert not torch.allclose(torch.tensor(ranks[0]["grads"][weight]),
                              torch.tensor(single["grads"][weight]), rtol=1e-3)


def test_slices_against_the_whole_batch_average_to_the_whole_batch_loss() -> None:
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(6, 5, generator=generator, requires_grad=True)
    z2 = torch.randn(6, 5, generator=generator, requires_grad=True)
    whole = nt_xent(z1, z2, 0.3)
    parts = [nt_xent(z1[i:i + 2], z2[i:i + 2], 0.3, (z1, z2), offset=i) for i in (0, 2, 4)]
    torch.testing.assert_close(sum(parts) / 3, whole)
    torch.testing.assert_close(nt_xent(z1, z2, 0.3, (z1, z2), offset=0), whole)
    # a wrong offset pairs the anchors with other images' views
    assert not torch.allclose(nt_xent(z1[:2], z2[:2], 0.3, (z1, z2), offset=2), parts[0])
    grad_whole = torch.autograd.grad(whole, [z1, z2])
    grad_parts = torch.autograd.grad(sum(parts) / 3, [z1, z2])
    for a, b in zip(grad_parts, grad_whole, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("candidates, offset", [
    ((torch.randn(6, 5), torch.randn(5, 5)), 0),
    ((torch.randn(6, 4), torch.randn(6, 4)), 0),
    ((torch.randn(6, 5), torch.randn(6, 5)), 5),
])
def test_bad_candidates_fail_with_the_expected_layout(candidates, offset) -> None:
    with pytest.raises(ValueError, match="candidates must be"):
        nt_xent(torch.randn(2, 5), torch.randn(2, 5), 0.5, candidates, offset)
