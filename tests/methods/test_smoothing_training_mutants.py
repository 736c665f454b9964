"""Gaussian augmentation, consistency regularization, SmoothAdv and MACER on hand-built
cases: which noisy copy the returned logits are, the validation certificate against a hand
computation, the chunked loop's logging and checks, SmoothAdv's ε warm-up and single copy,
MACER's logged term."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from scipy.stats import norm
from torch import Tensor, nn

from lit_robust.attacks import smooth_adv_pgd
from lit_robust.errors import NonFiniteLossError
from lit_robust.evaluation import SmoothedClassifier
from lit_robust.losses import macer_terms
from lit_robust.methods import MACER, ConsistencyRegularization, GaussianAugmentation, SmoothAdv
from tests.methods.test_certified_training import built

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer


def batch(count: int = 4) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(count, 3, 16, 16, generator=generator),
            torch.randint(0, 10, (count,), generator=generator))


def recorded_logs(method) -> dict:
    logs: dict = {}

    def log(name, value, **kwargs):
        logs[name] = (value, kwargs)

    method.log = log
    return logs


# ---------------------------------------------------------------- Gaussian augmentation
def test_gaussian_augmentation_averages_over_all_copies_and_returns_the_first() -> None:
    method = built(GaussianAugmentation, sigma=0.3, num_noise_samples=3)
    x, y = batch()
    torch.manual_seed(7)
    loss, logits = method.training_loss(x, None, y)
    torch.manual_seed(7)
    copies = x.repeat(3, 1, 1, 1)
    all_logits = method.model(copies + 0.3 * torch.randn_like(copies))
    torch.testing.assert_close(loss, F.cross_entropy(all_logits, y.repeat(3)))
    torch.testing.assert_close(logits, all_logits[:4])
    torch.testing.assert_close(method.noisy_logits(x).shape, torch.Size([3, 4, 10]))


def test_noisy_copies_are_copy_major() -> None:
    method = built(GaussianAugmentation, sigma=1e-4, num_noise_samples=2)
    x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    copies = method.noisy_copies(x)
    assert copies.shape == (6, 3, 2, 2)
    torch.testing.assert_close(copies, torch.cat([x, x]), atol=1e-3, rtol=0)


class Constant(nn.Module):
    """Class 0 by a wide margin for every input; counts the images it sees."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes, self.calls = classes, []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append(x.detach().clone())
        logits = torch.zeros(x.shape[0], self.classes)
        logits[:, 0] = 10.0
        return logits


class FirstPixel(nn.Module):
    """Class 0 when the first pixel exceeds 0.4, else class 1: noise makes it a coin."""

    def forward(self, x: Tensor) -> Tensor:
        score = 20 * (x[:, 0, 0, 0] - 0.4)
        return torch.stack([score, -score, torch.full_like(score, -50.0)], dim=1)


def validated(model: nn.Module, x: Tensor, y: Tensor, batch_idx: int = 0, **kwargs):
    method = GaussianAugmentation(backbone="tiny_cnn", num_classes=3, mean=[0.5] * 3,
                                  std=[0.25] * 3, **kwargs)
    method.configure_model()
    method.model = model
    logs = recorded_logs(method)
    torch.manual_seed(0)
    method.validation_step((x, y), batch_idx)
    return method, logs


def test_validation_certificate_of_a_constant_classifier_by_hand() -> None:
    """All n samples vote class 0: p̲_A = α^(1/n) and the radius σ·Φ⁻¹(α^(1/n)); n0 + n
    samples per certified image, in one forward batch; only the first images certified."""
    model = Constant()
    x, y = torch.full((5, 3, 4, 4), 0.5), torch.tensor([0, 0, 1, 0, 0])
    method, logs = validated(model, x, y, sigma=0.4, val_certify_images=3, val_certify_n0=7,
                             val_certify_n=30, val_certify_alpha=0.05)
    radius = 0.4 * norm.ppf(0.05 ** (1 / 30))
    assert method.val_acr.compute().item() == pytest.approx(radius * 2 / 3, rel=1e-5)
    assert method.val_certified_acc.compute().item() == pytest.approx(2 / 3)
    sizes = [len(c) for c in model.calls]
    assert sizes[:2] == [5, 5]  # the clean and the noisy validation passes
    assert sum(sizes[2:]) == 3 * (7 + 30) and max(sizes[2:]) <= 3 * 30
    assert max(sizes[2:]) == 90  # batch_size = max(n, n0) · images
    assert {"val/noisy_acc", "val/certified_acc", "val/acr"} <= set(logs)
    assert logs["val/noisy_acc"][0] is method.val_noisy_acc
    assert logs["val/noisy_acc"][1] == {"prog_bar": True}
    assert logs["val/certified_acc"][0] is method.val_certified_acc
    assert logs["val/acr"][0] is method.val_acr
    assert method.val_noisy_acc.compute().item() == pytest.approx(4 / 5)


def test_validation_certificate_uses_generator_seed_zero_and_every_setting() -> None:
    x, y = torch.full((4, 3, 2, 2), 0.5), torch.tensor([0, 0, 1, 0])
    settings = dict(sigma=0.3, val_certify_images=4, val_certify_n0=10, val_certify_n=40,
                    val_certify_alpha=0.2)
    method, _ = validated(FirstPixel(), x, y, **settings)

    def direct(seed: int) -> tuple[float, float]:
        smoothed = SmoothedClassifier(FirstPixel(), 3, 0.3)
        predictions, radii = smoothed.certify_batch(
            x, 10, 40, 0.2, batch_size=160, generator=torch.Generator().manual_seed(seed))
        correct = (predictions == y) & (predictions != -1)
        return correct.double().mean().item(), torch.where(correct, radii, 0.0).mean().item()

    accuracy, acr = direct(0)
    assert acr > 0 and direct(1) != (accuracy, acr)  # the seed matters for this classifier
    assert method.val_certified_acc.compute().item() == pytest.approx(accuracy)
    assert method.val_acr.compute().item() == pytest.approx(acr, rel=1e-6)


def test_no_certificate_after_the_first_batch_or_when_disabled() -> None:
    x, y = torch.full((2, 3, 2, 2), 0.5), torch.tensor([0, 0])
    for batch_idx, images in ((1, 2), (0, 0)):
        model = Constant()
        method, logs = validated(model, x, y, batch_idx=batch_idx, val_certify_images=images)
        assert len(model.calls) == 2 and "val/acr" not in logs
        assert method.val_acr.update_count == 0
    model = Constant()
    validated(model, x, y, val_certify_images=1, val_certify_n0=3, val_certify_n=5)
    assert sum(len(c) for c in model.calls[2:]) == 8  # one image, n0 + n samples


def test_the_noisy_accuracy_sees_noise_of_sigma_on_the_validation_images() -> None:
    """FirstPixel on images at 0.45 (class 0 clean): with σ = 1 about 48 % of the noisy copies
    fall below 0.4; with σ = 0.001 none do."""
    x, y = torch.full((400, 3, 1, 1), 0.45), torch.zeros(400, dtype=torch.long)
    wide, _ = validated(FirstPixel(), x, y, sigma=1.0)
    narrow, _ = validated(FirstPixel(), x, y, sigma=0.001)
    assert narrow.val_noisy_acc.compute().item() == 1.0
    assert 0.45 < wide.val_noisy_acc.compute().item() < 0.6


# ---------------------------------------------------------------- consistency regularization
def test_consistency_returns_the_logits_of_the_first_copy() -> None:
    method = built(ConsistencyRegularization, sigma=0.2, num_noise_samples=3)
    x, y = batch()
    torch.manual_seed(3)
    _, logits = method.training_loss(x, None, y)
    torch.manual_seed(3)
    copies = x.repeat(3, 1, 1, 1)
    torch.testing.assert_close(logits, method.model(copies + 0.2 * torch.randn_like(copies))[:4])


def test_chunks_of_small_batches() -> None:
    method = built(ConsistencyRegularization, num_noise_samples=2)
    x, y = torch.arange(3.0).view(3, 1, 1, 1), torch.arange(3)
    assert method.chunks(x[:1], y[:1]) == []
    chunks = method.chunks(x[:2], y[:2])
    assert [c[1].tolist() for c in chunks] == [[0], [1]]
    assert [c[1].tolist() for c in method.chunks(x, y)] == [[0], [1]]
    three = built(ConsistencyRegularization, num_noise_samples=3)
    assert [c[1].tolist() for c in three.chunks(x, y)] == [[0], [1], [2]]
    assert three.chunks(x[:2], y[:2]) == []


def fit_chunked(images: Tensor, labels: Tensor, nan_at: int | None = None,
                loop: str = "chunks"):
    torch.manual_seed(0)
    method = ConsistencyRegularization(
        backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10, mean=[0.0] * 3,
        std=[1.0] * 3, sigma=0.1, num_noise_samples=2, lr=0.01, val_attack=None,
        training_loop=loop)
    losses: list[float] = []
    accuracies: list[float] = []
    original = method.training_loss

    def recording(x, x_adv, y):
        loss, logits = original(x, x_adv, y)
        if len(losses) == nan_at:
            loss = loss * float("nan")
        losses.append(loss.item())
        accuracies.append((logits.argmax(1) == y).float().mean().item())
        return loss, logits

    method.training_loss = recording
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels),
                                         batch_size=8)
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      inference_mode=False, accelerator="cpu", limit_val_batches=0)
    trainer.fit(method, loader)
    return trainer, losses, accuracies


def test_the_chunked_loop_logs_the_mean_loss_and_accuracy_of_its_chunks() -> None:
    images = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1] * 8)
    trainer, losses, accuracies = fit_chunked(images, labels)
    assert len(losses) == 4
    metrics = trainer.callback_metrics
    assert metrics["train/loss_epoch"].item() == pytest.approx(sum(losses) / 4, rel=1e-5)
    assert metrics["train/loss_step"].item() == pytest.approx(losses[-1], rel=1e-5)
    assert "train/loss_step" in trainer.progress_bar_metrics
    assert metrics["train/acc"].item() == pytest.approx(sum(accuracies) / 4)
    assert "train/acc_step" not in metrics


def test_the_chunked_loop_checks_the_first_batch_pixels_and_a_non_finite_loss() -> None:
    labels = torch.zeros(8, dtype=torch.long)
    for loop in ("chunks", "batch"):
        with pytest.raises(ValueError, match="pixel"):
            fit_chunked(torch.full((8, 3, 8, 8), 2.0), labels, loop=loop)
    fine = torch.full((16, 3, 8, 8), 0.5)
    with pytest.raises(NonFiniteLossError, match=r"^the training loss is nan at epoch 0, step 2 "
                                                 r"\(batch 1 of the epoch\)"):
        fit_chunked(fine, torch.zeros(16, dtype=torch.long), nan_at=2)


# ---------------------------------------------------------------- SmoothAdv
def epoch_of(method, epoch: int) -> float:
    with mock.patch.object(type(method), "current_epoch", new_callable=mock.PropertyMock,
                           return_value=epoch):
        return method.attack_eps()


def test_smoothadv_eps_warm_up_is_linear_then_flat() -> None:
    method = built(SmoothAdv, eps=0.5, eps_warmup_epochs=4)
    assert [epoch_of(method, e) for e in (0, 1, 3, 4, 9)] == pytest.approx(
        [0.125, 0.25, 0.5, 0.5, 0.5])
    flat = built(SmoothAdv, eps=0.3, eps_warmup_epochs=0)
    assert [epoch_of(flat, e) for e in (0, 5)] == [0.3, 0.3]


def test_smoothadv_single_copy_is_the_attack_plus_its_first_draw() -> None:
    method = built(SmoothAdv, sigma=0.25, num_noise_samples=3, eps=0.5, attack_steps=2,
                   eps_warmup_epochs=0, train_on_all_copies=False)
    x, y = batch(4)
    torch.manual_seed(3)
    copies = method.make_adversarial(x, y)
    assert method.model.training  # back in train mode after the attack
    torch.manual_seed(3)
    noise = 0.25 * torch.randn(3, *x.shape)
    x_adv = smooth_adv_pgd(method.model.eval(), x, y, noise, eps=0.5, steps=2)
    torch.testing.assert_close(copies, x_adv + noise[0])
    method.model.train()
    loss, logits = method.training_loss(x, copies, y)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(copies), y))
    torch.testing.assert_close(logits, method.model(copies))


def test_smoothadv_returns_the_first_copys_logits() -> None:
    method = built(SmoothAdv, sigma=0.25, num_noise_samples=2, eps=0.5, attack_steps=1,
                   eps_warmup_epochs=0)
    x, y = batch(4)
    torch.manual_seed(5)
    copies = method.make_adversarial(x, y)
    method.model.eval()
    loss, logits = method.training_loss(x, copies, y)
    torch.testing.assert_close(logits, method.model(copies[:4]))
    torch.testing.assert_close(loss, F.cross_entropy(method.model(copies), y.repeat(2)))


def test_smoothadv_attack_uses_the_warmed_up_eps_and_float64_noise() -> None:
    method = built(SmoothAdv, sigma=0.25, num_noise_samples=2, eps=1.0, attack_steps=3,
                   eps_warmup_epochs=4)
    x, y = batch(2)
    seen = {}

    def fake(model, images, labels, noise, eps, steps):
        seen.update(noise=noise, eps=eps, steps=steps, training=model.training)
        return images

    with mock.patch("lit_robust.methods.smoothadv.smooth_adv_pgd", fake):
        copies = method.make_adversarial(x.double(), y)
    assert seen["eps"] == pytest.approx(0.25) and seen["steps"] == 3
    assert not seen["training"]
    assert seen["noise"].shape == (2, *x.shape) and seen["noise"].dtype == torch.float64
    torch.testing.assert_close(copies, (x.double().unsqueeze(0) + seen["noise"]).flatten(0, 1))


# ---------------------------------------------------------------- MACER
def test_macer_returns_the_log_of_the_mean_softmax_and_logs_its_robustness_term() -> None:
    method = built(MACER, sigma=0.5, num_noise_samples=3, beta=2.0, hinge=4.0,
                   radius_weight=0.5)
    logs = recorded_logs(method)
    x, _ = batch(3)
    torch.manual_seed(4)
    y = method.training_loss(x, None, torch.zeros(3, dtype=torch.long))[1].argmax(dim=1)
    torch.manual_seed(4)
    loss, log_probs = method.training_loss(x, None, y)
    torch.manual_seed(4)
    copies = x.repeat(3, 1, 1, 1)
    logits = method.model(copies + 0.5 * torch.randn_like(copies)).view(3, 3, 10)
    classification, robustness = macer_terms(logits, y, 0.5, 2.0, 4.0)
    assert robustness > 0
    torch.testing.assert_close(loss, classification + 0.5 * robustness)
    torch.testing.assert_close(log_probs, logits.softmax(dim=2).mean(dim=0).log())
    value, kwargs = logs["train/macer_robustness"]
    torch.testing.assert_close(value, robustness)
    assert not value.requires_grad
    assert kwargs == {"on_step": False, "on_epoch": True}
