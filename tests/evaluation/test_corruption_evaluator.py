from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from lit_robust.evaluation import base as evaluator_base
from lit_robust.evaluation.corruptions import evaluator as corruption_evaluator
from lit_robust.evaluation.corruptions.evaluator import CorruptionRobustness
from lit_robust.evaluation.corruptions.generate import CORRUPTIONS
from tests.evaluation.corruption_files import write_cifar_c


class DetectsClean(nn.Module):
    """Class 0 for any input that differs from the stored clean batch, class 1 for it."""

    def __init__(self, clean: Tensor) -> None:
        super().__init__()
        self.clean = clean
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x)
        same = (x - self.clean[: len(x)]).abs().flatten(1).amax(1) == 0
        return torch.stack([(~same).float(), same.float()], dim=1)


class Brightness(nn.Module):
    """Class 1 when the mean pixel exceeds a threshold."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        bright = (x.flatten(1).mean(1) > self.threshold).float()
        return torch.stack([1 - bright, bright], dim=1) + self.weight


def test_generate_corrupts_every_batch_all_ways() -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = DetectsClean(x)
    evaluator = CorruptionRobustness()
    evaluator.update(model, x, torch.zeros(4, dtype=torch.long))
    metrics = evaluator.compute()
    assert len(model.inputs) == 75  # 15 corruptions × 5 severities, never the clean batch
    assert metrics["corruption_acc/mean"] == 1.0
    assert set(metrics) == ({"corruption_acc/mean"}
                            | {f"corruption_acc/{c}" for c in CORRUPTIONS}
                            | {f"corruption_acc/severity_{s}" for s in range(1, 6)})
    figure = evaluator.figures()["corruption_acc/accuracy_per_corruption"]
    assert isinstance(figure, Figure)
    FigureCanvasAgg(figure).draw()


def test_per_corruption_and_per_severity_means_by_hand() -> None:
    # Contrast pulls every pixel towards the mean and brightness adds to it: with a threshold
    # between, the brightness model is right on brightness and wrong on contrast.
    x = torch.full((2, 3, 8, 8), 0.3)
    x[:, :, :4] = 0.9  # mean 0.6
    evaluator = CorruptionRobustness(corruptions=["brightness", "contrast"], severities=[1, 5],
                                     name="c")
    evaluator.update(Brightness(0.6), x, torch.ones(2, dtype=torch.long))
    metrics = evaluator.compute()
    assert metrics == {"c/mean": 0.5, "c/brightness": 1.0, "c/contrast": 0.0,
                       "c/severity_1": 0.5, "c/severity_5": 0.5}


def test_max_images_keeps_the_first_images_across_batches_and_ranks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    evaluator = CorruptionRobustness(corruptions=["contrast"], severities=[2], max_images=5)
    for _ in range(3):
        evaluator.update(Brightness(2.0), torch.rand(2, 3, 8, 8), torch.zeros(2).long())
    evaluator.compute()
    assert evaluator.total.tolist() == [[5]]
    # rank 1 of 2 sees test images 1, 3, 5, ...: only 1 and 3 are among the first 5
    monkeypatch.setattr(corruption_evaluator, "rank_and_world_size", lambda: (1, 2))
    monkeypatch.setattr(evaluator_base, "rank_and_world_size", lambda: (1, 2))
    evaluator.reset()
    for _ in range(3):
        evaluator.update(Brightness(2.0), torch.rand(2, 3, 8, 8), torch.zeros(2).long())
    assert evaluator.total.tolist() == [[2]]


def test_generate_is_reproducible_after_reset() -> None:
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 2, (8,))
    evaluator = CorruptionRobustness(corruptions=["gaussian_noise", "snow"], severities=[5])
    results = []
    for _ in range(2):
        evaluator.reset()
        evaluator.update(Brightness(float(x.mean())), x, y)
        results.append(evaluator.compute())
    assert results[0] == results[1]


def test_files_source_reads_native_cifar_c(tmp_path: Path) -> None:
    write_cifar_c(tmp_path, corruption="fog")
    evaluator = CorruptionRobustness(corruptions=["fog"], severities=[1, 5], source="files",
                                     root=str(tmp_path), dataset="cifar10", batch_size=4)
    # pixel value 10·severity + i (i = 0..5), labels i % 3: class 1 iff the mean > 52/255
    evaluator.update(Brightness(52 / 255), torch.rand(2, 3, 32, 32), torch.zeros(2).long())
    evaluator.run_standalone(Brightness(52 / 255))
    metrics = evaluator.compute()
    assert evaluator.total.tolist() == [[6, 6]]
    # severity 1 (10..15): never bright, right for the two labels 0; severity 5 (50..55):
    # bright for i >= 3, right for i = 0 and i = 4
    assert metrics["corruption_acc/severity_1"] == pytest.approx(2 / 6)
    assert metrics["corruption_acc/severity_5"] == pytest.approx(2 / 6)
    resized = CorruptionRobustness(corruptions=["fog"], severities=[1], source="files",
                                   root=str(tmp_path), dataset="cifar10", resize=64,
                                   max_images=3)
    model = DetectsClean(torch.zeros(3, 3, 64, 64))
    resized.run_standalone(model)
    assert model.inputs[0].shape == (3, 3, 64, 64)
    assert resized.total.tolist() == [[3]]


def test_bad_configuration_fails_early() -> None:
    with pytest.raises(ValueError, match="dataset"):
        CorruptionRobustness(source="files")
    with pytest.raises(ValueError, match="unknown corruptions"):
        CorruptionRobustness(corruptions=["rain"])
    with pytest.raises(ValueError, match="severities"):
        CorruptionRobustness(severities=[0, 1])
    with pytest.raises(RuntimeError, match="run_standalone"), pytest.warns(UserWarning):
        CorruptionRobustness(corruptions=["fog"], severities=[1]).compute()
