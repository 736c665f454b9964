from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import norm
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler
from torchvision.io import read_image

from lit_robust.evaluation import base as evaluator_base
from lit_robust.evaluation.certify_evaluator import SmoothingCertification
from lit_robust.models.tiny import TinyCNN
from tests.evaluation.toy_models import ConstantClassifier


class PixelSign(nn.Module):
    """Class 1 where the mean pixel exceeds 0.5: a linear classifier with w = 1/d, b = -0.5."""

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1).mean(1) - 0.5
        return torch.stack([torch.zeros_like(score), score], dim=1)


def _feed(evaluator: SmoothingCertification, model: nn.Module, x: Tensor, y: Tensor,
          batch_size: int) -> None:
    for start in range(0, len(x), batch_size):
        evaluator.update(model, x[start:start + batch_size], y[start:start + batch_size])


def test_evenly_spaced_subset_and_metrics_by_hand() -> None:
    sigma, n, alpha = 0.25, 100, 0.001
    evaluator = SmoothingCertification(sigma=sigma, n0=10, n=n, alpha=alpha, batch_size=64,
                                       max_images=5, num_test_images=20, radii=[0.0, 0.25, 0.5])
    index = torch.arange(21)  # one image more than the test set: it is never certified
    y = (index // 4) % 2  # labels 0, 1, 0, 1, 0 at the selected indices 0, 4, 8, 12, 16
    _feed(evaluator, ConstantClassifier(3, 1), torch.rand(21, 1, 4, 4), y, batch_size=3)
    metrics = evaluator.compute()
    radius = sigma * norm.ppf(alpha ** (1 / n))  # every sample agrees: n_A = n
    assert 0.25 < radius < 0.5
    assert evaluator.stride == 4
    assert evaluator._records["index"].tolist() == [0, 4, 8, 12, 16]
    assert metrics["smoothing_sigma0.25/num_images"] == 5
    assert metrics["smoothing_sigma0.25/certified_acc@0"] == pytest.approx(0.4)
    assert metrics["smoothing_sigma0.25/certified_acc@0.25"] == pytest.approx(0.4)
    assert metrics["smoothing_sigma0.25/certified_acc@0.5"] == 0.0
    assert metrics["smoothing_sigma0.25/acr"] == pytest.approx(0.4 * radius, rel=1e-6)
    assert metrics["smoothing_sigma0.25/abstain_rate"] == 0.0
    assert metrics["smoothing_sigma0.25/seconds_per_image"] > 0.0
    figure = evaluator.figures()["smoothing_sigma0.25/certified_accuracy_vs_radius"]
    assert isinstance(figure, Figure)
    FigureCanvasAgg(figure).draw()


def test_skip_without_limit_certifies_every_skip_th_image() -> None:
    evaluator = SmoothingCertification(n0=5, n=20, skip=3, max_images=None, name="cert")
    _feed(evaluator, ConstantClassifier(2, 0), torch.rand(10, 1, 2, 2), torch.zeros(10).long(), 4)
    metrics = evaluator.compute()
    assert evaluator._records["index"].tolist() == [0, 3, 6, 9]
    assert metrics["cert/num_images"] == 4
    evaluator.reset()
    _feed(evaluator, ConstantClassifier(2, 0), torch.rand(4, 1, 2, 2), torch.zeros(4).long(), 4)
    evaluator.compute()
    assert evaluator._records["index"].tolist() == [0, 3]


def test_abstentions_count_as_wrong_with_zero_radius() -> None:
    evaluator = SmoothingCertification(sigma=0.5, n0=20, n=500, skip=1, max_images=None)
    x = torch.full((2, 1, 4, 4), 0.5)  # on the decision boundary: p_A = 1/2
    x[1] = 1.0  # far on the class-1 side
    evaluator.update(PixelSign(), x, torch.tensor([1, 1]))
    metrics = evaluator.compute()
    assert evaluator._records["prediction"].tolist() == [-1, 1]
    assert metrics["smoothing_sigma0.5/abstain_rate"] == 0.5
    assert metrics["smoothing_sigma0.5/certified_acc@0"] == 0.5
    assert metrics["smoothing_sigma0.5/acr"] == pytest.approx(evaluator._records["radius"][1] / 2)


def test_result_does_not_depend_on_batching() -> None:
    x, y = torch.rand(12, 1, 4, 4) * 0.4 + 0.3, torch.randint(0, 2, (12,))
    radii = []
    for batch_size in (5, 12):
        evaluator = SmoothingCertification(sigma=0.25, n0=20, n=300, skip=2, max_images=None)
        _feed(evaluator, PixelSign(), x, y, batch_size)
        evaluator.compute()
        radii.append(evaluator._records["radius"].tolist())
    assert radii[0] == radii[1]
    assert len(set(radii[0])) > 1


def test_rank_offsets_give_the_global_subset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rank 1 of 2 sees global indices 1, 3, 5, ... (DistributedSampler without shuffling).
    monkeypatch.setattr(evaluator_base, "rank_and_world_size", lambda: (1, 2))
    evaluator = SmoothingCertification(n0=5, n=20, skip=3, max_images=4)
    _feed(evaluator, ConstantClassifier(2, 0), torch.rand(8, 1, 2, 2), torch.zeros(8).long(), 3)
    evaluator.compute()
    assert evaluator._records["index"].tolist() == [3, 9]


def test_real_images_and_conv_net_end_to_end(data_root: Path) -> None:
    files = sorted((data_root / "cifar10-jpeg" / "test").glob("*/*.jpg"))[:6]
    x = torch.stack([read_image(str(f)).float() / 255 for f in files])
    model = TinyCNN(num_classes=10, width=4)
    evaluator = SmoothingCertification(sigma=0.5, n0=8, n=64, batch_size=32, skip=2,
                                       max_images=2)
    evaluator.update(model, x[:4], torch.zeros(4, dtype=torch.long))
    evaluator.update(model, x[4:], torch.zeros(2, dtype=torch.long))
    metrics = evaluator.compute()
    assert evaluator.num_classes == 10
    assert evaluator._records["index"].tolist() == [0, 2]
    assert metrics["smoothing_sigma0.5/num_images"] == 2
    assert 0.0 <= metrics["smoothing_sigma0.5/acr"] <= 0.5 * 3.0


def test_spacing_needs_skip_or_the_test_set_size() -> None:
    evaluator = SmoothingCertification(n0=5, n=20)
    with pytest.raises(ValueError, match="needs its size"):
        evaluator.update(ConstantClassifier(2, 0), torch.rand(3, 1, 2, 2), torch.zeros(3).long())
    with pytest.raises(ValueError, match="alpha"):
        SmoothingCertification(skip=1, alpha=0.0)


@pytest.mark.parametrize("size", [23, 1880, 10_001])
def test_spread_subset_reaches_the_last_class_of_a_class_sorted_split(size: int) -> None:
    """The old stride size // max_images (4 for 23 images and 5 at most) certified only
    indices < 20, never the class-sorted split's last classes."""
    max_images = 5 if size == 23 else 500
    evaluator = SmoothingCertification(n0=5, n=20, max_images=max_images)
    evaluator.set_dataset_size(size)
    chosen = torch.nonzero(evaluator.selected(torch.arange(size))).flatten()
    assert len(chosen) <= max_images
    assert int(chosen[-1]) >= size - evaluator.stride  # the tail of the split is covered
    assert torch.all(chosen.diff() == evaluator.stride)
    assert evaluator.images_to_certify() == len(chosen)


def test_skip_certifies_every_skip_th_image_of_the_whole_split() -> None:
    evaluator = SmoothingCertification(n0=5, n=20, skip=3, max_images=None)
    evaluator.set_dataset_size(1880)
    chosen = torch.nonzero(evaluator.selected(torch.arange(1880))).flatten()
    assert chosen.tolist() == list(range(0, 1880, 3))


def test_a_subset_that_would_be_a_prefix_is_refused() -> None:
    evaluator = SmoothingCertification(n0=5, n=20, skip=3, max_images=500)
    with pytest.raises(ValueError, match=r"selects 627 of the 1880 .* skip >= 4"):
        evaluator.set_dataset_size(1880)


def test_a_size_that_contradicts_the_test_loader_is_refused() -> None:
    evaluator = SmoothingCertification(n0=5, n=20, num_test_images=10_000)
    with pytest.raises(ValueError, match="num_test_images=10000.* has 1880 images"):
        evaluator.set_dataset_size(1880)
    evaluator = SmoothingCertification(n0=5, n=20, num_test_images=1880)
    evaluator.set_dataset_size(1880)
    assert evaluator.stride == 4


@pytest.mark.parametrize(("alpha", "smallest"), [(0.001, 10), (0.01, 7), (0.5, 2)])
def test_settings_that_can_never_certify_are_refused(alpha: float, smallest: int) -> None:
    with pytest.raises(ValueError, match=f"use n >= {smallest}$"):
        SmoothingCertification(n0=5, n=smallest - 1, alpha=alpha, skip=1)
    evaluator = SmoothingCertification(sigma=0.5, n0=5, n=smallest, alpha=alpha, skip=1)
    evaluator.update(ConstantClassifier(2, 0), torch.rand(1, 1, 2, 2), torch.zeros(1).long())
    assert evaluator.compute()["smoothing_sigma0.5/abstain_rate"] == 0.0  # n votes certify


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                                         world_size=world_size)
    try:
        x, y = _ddp_data()
        sampler = DistributedSampler(TensorDataset(x, y), shuffle=False)
        loader = DataLoader(TensorDataset(x, y), batch_size=4, sampler=sampler)
        evaluator = SmoothingCertification(sigma=0.25, n0=20, n=300, max_images=6,
                                           num_test_images=len(x))
        for xb, yb in loader:
            evaluator.update(PixelSign(), xb, yb)
        metrics = evaluator.compute()
        records = {key: value.tolist() for key, value in evaluator._records.items()}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps([metrics, records]))
    finally:
        torch.distributed.destroy_process_group()


def _ddp_data() -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(25, 1, 4, 4, generator=generator) * 0.4 + 0.3
    return x, torch.randint(0, 2, (25,), generator=generator)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)),
                                nprocs=2, join=True)
    x, y = _ddp_data()
    single = SmoothingCertification(sigma=0.25, n0=20, n=300, max_images=6, num_test_images=25)
    _feed(single, PixelSign(), x, y, 4)
    metrics = single.compute()
    records = {key: value.tolist() for key, value in single._records.items()}
    assert records["index"] == [0, 5, 10, 15, 20]  # stride ceil(25 / 6) = 5
    for rank in range(2):
        ddp_metrics, ddp_records = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert ddp_records["index"] == records["index"]
        assert ddp_records["radius"] == pytest.approx(records["radius"])
        assert ddp_records["prediction"] == records["prediction"]
        for key, value in metrics.items():
            if not key.endswith("seconds_per_image"):
                assert ddp_metrics[key] == pytest.approx(value), key
