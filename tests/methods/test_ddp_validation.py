"""Under DDP, ``val/acc``, ``val/robust_acc`` and ``val/noisy_acc`` count each validation image
once, not the distributed sampler's padding copies (7 images on 2 processes: rank 1 also gets
a copy of image 0)."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from lit_robust.attacks import PGDAttack
from lit_robust.methods import AdversarialTraining, GaussianAugmentation

NUM_IMAGES = 7
# A budget so small that every correct image stays correct: robust accuracy = clean accuracy.
TINY_ATTACK = {"eps": 1e-4, "step_size": 1e-4, "steps": 1, "random_start": False}


def _method() -> AdversarialTraining:
    torch.manual_seed(0)
    method = AdversarialTraining(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3,
                                 std=[0.25] * 3, attack=PGDAttack(**TINY_ATTACK))
    method.configure_model()
    return method


def _images(method: AdversarialTraining) -> tuple[Tensor, Tensor]:
    """Random images labelled with the model's predictions, except image 0 (the padding copy),
    which is misclassified: counting it twice lowers both accuracies."""
    x = torch.rand(NUM_IMAGES, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = method.eval()(x).argmax(dim=1)
    y[0] = (y[0] + 1) % 10
    return x, y


def _validate(method: AdversarialTraining, loader: DataLoader, **trainer_args: object
              ) -> dict[str, float]:
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, **trainer_args)
    (metrics,) = trainer.validate(method, loader, verbose=False)
    return metrics


@pytest.mark.slow
def test_two_processes_validate_each_image_once() -> None:
    method = _method()
    loader = DataLoader(TensorDataset(*_images(method)), batch_size=2)
    single = _validate(method, loader, devices=1)
    assert single["val/acc"] == pytest.approx(6 / 7)
    assert single["val/robust_acc"] == pytest.approx(6 / 7)
    spawned = _validate(method, loader, devices=2, strategy="ddp_spawn")
    assert spawned["val/acc"] == pytest.approx(6 / 7)  # 6 / 8 when the copy counts
    assert spawned["val/robust_acc"] == pytest.approx(6 / 7)


@pytest.mark.slow
def test_two_processes_count_noisy_validation_accuracy_once() -> None:
    """Gaussian augmentation's own validation metric drops the copies too (noise so small that
    the noisy predictions are the clean ones)."""
    torch.manual_seed(0)
    method = GaussianAugmentation(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3,
                                  std=[0.25] * 3, sigma=1e-6)
    method.configure_model()
    loader = DataLoader(TensorDataset(*_images(method)), batch_size=2)
    assert _validate(method, loader, devices=1)["val/noisy_acc"] == pytest.approx(6 / 7)
    spawned = _validate(method, loader, devices=2, strategy="ddp_spawn")
    assert spawned["val/noisy_acc"] == pytest.approx(6 / 7)  # 6 / 8 when the copy counts


def _attacked_method() -> AdversarialTraining:
    """A validation attack with random starts over a small random CNN whose predictions vary,
    so that the random start decides some images."""
    torch.manual_seed(0)
    method = AdversarialTraining(
        backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3,
        attack=PGDAttack(**TINY_ATTACK),
        val_attack=PGDAttack(eps=2 / 255, step_size=0.5 / 255, steps=1, seed=4))
    method.configure_model()
    method.model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(8 * 30 * 30, 10))
    return method


def _predicted(method: AdversarialTraining, count: int) -> tuple[Tensor, Tensor]:
    x = torch.rand(count, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return x, method.model.eval()(x).argmax(dim=1)


def test_validation_attacks_each_image_as_it_would_alone() -> None:
    """val/robust_acc is the mean of each image attacked alone with its validation index as
    the key of its random start, in batches of 3 and of 40 alike."""
    method = _attacked_method()
    x, y = _predicted(method, 40)
    model, attack = method.model.eval(), method.val_attack
    alone = [bool(model(attack(model, x[i:i + 1], y[i:i + 1], indices=torch.tensor([i])))
                  .argmax(dim=1) == y[i]) for i in range(40)]
    expected = sum(alone) / 40
    assert 0 < expected < 1
    for batch_size in (3, 40):
        metrics = _validate(method, DataLoader(TensorDataset(x, y), batch_size=batch_size))
        assert metrics["val/robust_acc"] == pytest.approx(expected), batch_size


@pytest.mark.parametrize("rank", [0, 1])
def test_under_ddp_each_validation_image_is_attacked_by_its_position(rank: int) -> None:
    """Process r of 2 attacks its k-th validation image (position r + 2k of the split) with
    that position as the key of its random start: the image's attack in one process."""
    seen: list[list[int]] = []

    class RecordingAttack(PGDAttack):
        def __call__(self, model, x, y, target=None, indices=None):
            seen.append(indices.tolist())
            return x

    data = TensorDataset(*_predicted(_attacked_method(), 5))

    class _Trainer:
        val_dataloaders = DataLoader(data, batch_size=2, sampler=DistributedSampler(
            data, num_replicas=2, rank=rank, shuffle=False))

    method = _attacked_method()
    method.val_attack = RecordingAttack()
    method._trainer = _Trainer()  # type: ignore[assignment]
    method.log = method.log_dict = lambda *args, **kwargs: None  # type: ignore[method-assign]
    for batch_idx, (x, y) in enumerate(_Trainer.val_dataloaders):
        method.validation_step((x, y), batch_idx)
    # rank 0: images 0, 2 | 4; rank 1: images 1, 3 | the padding copy of 0 (not attacked)
    assert seen == ([[0, 2], [4]] if rank == 0 else [[1, 3]])


@pytest.mark.parametrize(("rank", "batch_idx", "expected"), [
    (0, 0, [True, True]), (0, 1, [True]), (1, 0, [True, True]), (1, 1, [False]),
])
def test_padding_copies_are_masked_by_their_position(rank: int, batch_idx: int,
                                                     expected: list[bool]) -> None:
    """5 images on 2 processes: rank 0 gets 0, 2, 4; rank 1 gets 1, 3 and a copy of 0.
    With batches of 2, rank 1's second batch holds only the copy."""

    class _Trainer:
        val_dataloaders = DataLoader(
            TensorDataset(torch.zeros(5)), batch_size=2,
            sampler=DistributedSampler(TensorDataset(torch.zeros(5)), num_replicas=2,
                                       rank=rank, shuffle=False))

    method = _method()
    method._trainer = _Trainer()  # type: ignore[assignment]
    count = len(expected)
    assert method.real_validation_images(batch_idx, count).tolist() == expected


def test_without_a_distributed_sampler_every_image_counts() -> None:
    method = _method()
    assert method.real_validation_images(3, 4).tolist() == [True] * 4
