"""Under DDP every evaluator counts each test image once, not the sampler's padding copies."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from lit_robust.evaluation import (
    AutoAttackEvaluator,
    CleanAccuracy,
    CorruptionRobustness,
    Evaluator,
    PGDEvaluator,
    SanityChecks,
    SmoothingCertification,
    evaluate,
)
from lit_robust.evaluation.base import dataset_size_of

NUM_IMAGES = 7  # not divisible by 2: the sampler pads rank 1 with a copy of image 0


def _data() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(NUM_IMAGES, 3, 8, 8, generator=generator)
    # Image 0 (the padding copy) is misclassified: counting it twice lowers clean accuracy.
    with torch.no_grad():
        y = _model()(x).argmax(dim=1)
    y[0] = (y[0] + 1) % 4
    return x, y


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 4)).eval()


def _evaluators() -> list[Evaluator]:
    return [
        CleanAccuracy(),
        PGDEvaluator(eps_list=[0.0, 2 / 255], steps=2, random_start=False, name="pgd"),
        SanityChecks(eps_list=[2 / 255], steps=1, tolerance=0.5),
        AutoAttackEvaluator(eps=2 / 255, version="custom", attacks_to_run=["apgd-ce"],
                            apgd_n_iter=2, apgd_n_restarts=1),
        CorruptionRobustness(corruptions=["contrast"], severities=[1]),
        SmoothingCertification(sigma=0.25, n0=4, n=16, batch_size=16, skip=1, max_images=None,
                               num_classes=4),
    ]


def _counts(evaluators: list[Evaluator]) -> dict[str, int]:
    """Images each evaluator counted in this process (its states are unsynced after compute)."""
    clean, pgd, sanity, autoattack, corruption, certification = evaluators
    return {
        "clean": int(clean.total), "pgd": int(pgd.total), "sanity": int(sanity.total),
        "autoattack": int(autoattack.total), "corruption": int(corruption.total.sum()),
        "certification": sum(len(part) for part in certification.cert_index),
    }


def _per_image(evaluators: list[Evaluator]) -> dict[str, list[list[int]]]:
    """Every kept per-image result as ``[indices, values]`` (gathered from all ranks)."""
    return {name: [result.index.tolist(), result.values.tolist()]
            for evaluator in evaluators for name, result in evaluator.per_image().items()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=2)
    try:
        dataset = TensorDataset(*_data())
        loader = DataLoader(dataset, batch_size=2,
                            sampler=DistributedSampler(dataset, shuffle=False))
        evaluators = _evaluators()
        metrics = evaluate(_model(), loader, evaluators)
        result = {"metrics": metrics, "counts": _counts(evaluators),
                  "seen": len(loader.sampler), "per_image": _per_image(evaluators)}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_count_each_image_once(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    x, y = _data()
    single = _evaluators()
    expected = evaluate(_model(), DataLoader(TensorDataset(x, y), batch_size=2), single)
    assert expected["clean_acc"] == pytest.approx(6 / 7)
    assert _counts(single) == dict.fromkeys(_counts(single), NUM_IMAGES)
    deterministic = [k for k in expected if not k.startswith(("robust_acc/autoattack",
                                                              "smoothing_sigma0.25/seconds"))]
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    for result in results:
        assert result["seen"] == 4  # each rank sees 4 images: 7 real ones and one copy in all
        for key in deterministic:
            assert result["metrics"][key] == pytest.approx(expected[key]), key
    for key in _counts(single):
        assert [r["counts"][key] for r in results] == [4, 3], key
    # per-image results are gathered from both ranks: every image once, in index order
    kept = _per_image(single)
    assert kept["clean_acc"] == [list(range(NUM_IMAGES)), [0, 1, 1, 1, 1, 1, 1]]
    for result in results:
        assert set(result["per_image"]) == set(kept)
        for name in ("clean_acc", "robust_acc/pgd/eps0", "corruption_acc/mean"):
            assert result["per_image"][name] == kept[name], name


def test_padding_is_dropped_by_global_index(monkeypatch: pytest.MonkeyPatch) -> None:
    from lit_robust.evaluation import base

    monkeypatch.setattr(base, "rank_and_world_size", lambda: (1, 2))
    evaluator = CleanAccuracy()
    evaluator.set_dataset_size(5)
    x, y = _data()
    # Rank 1 of 2 sees test images 1, 3 and then the padding copy of image 0 at index 5.
    evaluator.update(_model(), x[[1, 3]], y[[1, 3]])
    evaluator.update(_model(), x[[0]], y[[0]])
    assert int(evaluator.total) == 2 and int(evaluator.correct) == 2
    evaluator.reset()
    evaluator.update(_model(), x[[1, 3]], y[[1, 3]])
    assert int(evaluator.total) == 2


def test_unknown_size_under_ddp_warns_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from lit_robust.evaluation import base

    monkeypatch.setattr(base, "rank_and_world_size", lambda: (0, 2))
    evaluator = CleanAccuracy()
    x, y = _data()
    with pytest.warns(UserWarning, match="set_dataset_size"):
        evaluator.update(_model(), x, y)
    assert int(evaluator.total) == NUM_IMAGES


def test_dataset_size_comes_from_the_loader() -> None:
    loader = DataLoader(TensorDataset(*_data()), batch_size=3)
    assert dataset_size_of(loader) == NUM_IMAGES
    assert dataset_size_of([loader]) == NUM_IMAGES
    assert dataset_size_of([loader, loader]) is None
    assert dataset_size_of([(torch.zeros(1), torch.zeros(1))]) is None
    with pytest.raises(ValueError, match=">= 0"):
        CleanAccuracy().set_dataset_size(-1)
