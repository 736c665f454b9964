"""The same test image gets the same PGD attack (random starts, restarts) whatever the batch
size, the DDP shard or the number of processes: its randomness comes from a seed and its
dataset index (:mod:`lit_robust.attacks.image_noise`), not from a global generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from lit_robust.attacks import PGDAttack, pgd
from lit_robust.attacks.image_noise import ImageNoise, hash32, image_keys
from lit_robust.evaluation import PGDEvaluator, evaluate

NUM_IMAGES = 13


def _lowbias32(x: int) -> int:
    """Chris Wellons' lowbias32 in plain Python integers (the reference)."""
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    return x ^ (x >> 16)


def test_the_hash_is_lowbias32_without_overflow() -> None:
    values = torch.tensor([0, 1, 2, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                           123456789, 3141592653], dtype=torch.int64)
    assert hash32(values).tolist() == [_lowbias32(v) for v in values.tolist()]


def test_an_images_numbers_depend_on_its_key_and_stream_only() -> None:
    keys = image_keys(7, torch.tensor([3, 10, 11]))
    like = torch.empty(3, 2, 4, 4)
    first = ImageNoise(keys).randn(like)
    # the same images in another order and batch: the same rows
    again = ImageNoise(keys[[2, 0]]).randn(like[:2])
    assert torch.equal(again, first[[2, 0]])
    assert not torch.equal(ImageNoise(keys, stream=1).randn(like), first)
    assert not torch.equal(ImageNoise(image_keys(8, torch.tensor([3, 10, 11]))).randn(like),
                           first)
    # two draws of one object differ; uniform in (0, 1), normal with mean 0 and variance 1
    noise = ImageNoise(image_keys(0, torch.arange(64)))
    big = torch.empty(64, 3, 32, 32)
    uniform, normal = noise.rand(big), noise.randn(big)
    assert 0 < float(uniform.min()) and float(uniform.max()) < 1
    assert float(uniform.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(normal.mean()) == pytest.approx(0.0, abs=0.01)
    assert float(normal.std()) == pytest.approx(1.0, abs=0.01)
    assert not torch.equal(noise.rand(big), uniform)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 14 * 14, 4)).eval()


def _data() -> tuple[Tensor, Tensor]:
    """Random images labelled as the model classifies them (all clean-correct)."""
    x = torch.rand(NUM_IMAGES, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return x, _model()(x).argmax(dim=1)


ATTACKS = {
    "linf-ball-restarts": PGDAttack(eps=8 / 255, steps=3, restarts=2, seed=5),
    "l2-ball": PGDAttack(eps=0.5, steps=2, norm="l2"),
    "l2-sphere": PGDAttack(eps=0.5, steps=2, norm="l2", start="sphere"),
    "normal-kl": PGDAttack(eps=8 / 255, steps=2, start="normal", loss="kl"),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_image_gets_the_same_attack_in_batches_of_7_and_13(name: str) -> None:
    attack, model = ATTACKS[name], _model()
    x, y = _data()
    indices = torch.arange(NUM_IMAGES)
    whole = attack(model, x, y, indices=indices)
    torch.manual_seed(123)  # the global generator plays no part
    parts = torch.cat([attack(model, x[i:i + 7], y[i:i + 7], indices=indices[i:i + 7])
                       for i in range(0, NUM_IMAGES, 7)])
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6)
    # a start that is not the clean image, and another seed gives another attack
    assert not torch.equal(whole, x)
    other = PGDAttack(**{**vars(attack), "seed": attack.seed + 1})
    assert (other(model, x, y, indices=indices) - whole).abs().max() > 1e-3


def test_each_image_keeps_its_attack_when_the_batch_is_reordered() -> None:
    model, (x, y) = _model(), _data()
    order = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(2))
    whole = pgd(model, x, y, steps=2, restarts=3, indices=torch.arange(NUM_IMAGES))
    shuffled = pgd(model, x[order], y[order], steps=2, restarts=3, indices=order)
    torch.testing.assert_close(shuffled, whole[order], rtol=0, atol=1e-6)


def _evaluator() -> PGDEvaluator:
    return PGDEvaluator(attack=PGDAttack(eps=2 / 255, steps=2, restarts=2, seed=3))


def _robust_per_image(batch_size: int) -> list[int]:
    evaluator = _evaluator()
    evaluate(_model(), DataLoader(TensorDataset(*_data()), batch_size=batch_size), [evaluator])
    (result,) = evaluator.per_image().values()
    return result.values.tolist()


def test_the_evaluator_counts_the_same_robust_images_in_batches_of_7_and_32() -> None:
    small, large = _robust_per_image(7), _robust_per_image(32)
    assert small == large
    assert 0 < sum(small) < NUM_IMAGES  # the attack decides: some images fall, some hold


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    try:
        torch.manual_seed(rank)  # each process's global generator is different
        dataset = TensorDataset(*_data())
        loader = DataLoader(dataset, batch_size=3,
                            sampler=DistributedSampler(dataset, shuffle=False))
        evaluator = _evaluator()
        metrics = evaluate(_model(), loader, [evaluator])
        (result,) = evaluator.per_image().values()
        torch.save({"metrics": metrics, "per_image": result.values.tolist(),
                    "index": result.index.tolist()}, Path(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_attack_every_image_as_one_process_does(tmp_path: Path) -> None:
    """Under DDP PGD used to differ from one process by about one image in a hundred: each
    process drew its shard's random starts from its own global generator."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    single = _robust_per_image(7)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["index"] == list(range(NUM_IMAGES))
        assert result["per_image"] == single
        (value,) = result["metrics"].values()
        assert value == pytest.approx(sum(single) / NUM_IMAGES)
