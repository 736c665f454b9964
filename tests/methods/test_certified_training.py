"""SmoothAdv and MACER: the smoothed attack, the MACER loss by hand, bad settings."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from lit_robust.attacks import smooth_adv_pgd, smoothed_cross_entropy
from lit_robust.evaluation import CleanAccuracy, SmoothingCertification
from lit_robust.losses import macer_loss, macer_terms
from lit_robust.methods import MACER, SmoothAdv, StandardTraining
from tests.methods.real_cifar10 import fit_and_test_on_cifar10

MODEL = dict(backbone="tiny_cnn", backbone_kwargs={"width": 4}, num_classes=10,
             mean=[0.5] * 3, std=[0.25] * 3)


def built(method: type, **kwargs):
    torch.manual_seed(0)
    model = method(**MODEL, **kwargs)
    model.configure_model()
    return model


def batch(count: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(count, 3, 16, 16, generator=generator),
            torch.randint(0, 10, (count,), generator=generator))


# ---------------------------------------------------------------- SmoothAdv
def test_smoothed_cross_entropy_is_the_nll_of_the_mean_softmax() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [3.0, 0.0]]])  # (m=2, N=2, K)
    y = torch.tensor([0, 1])
    p0 = (math.exp(2) / (math.exp(2) + 1) + 0.5) / 2
    p1 = (math.e / (math.e + 1) + 1 / (math.exp(3) + 1)) / 2
    expected = torch.tensor([-math.log(p0), -math.log(p1)])
    torch.testing.assert_close(smoothed_cross_entropy(logits, y), expected)


def test_smoothadv_attack_increases_the_smoothed_loss_over_its_start() -> None:
    """Same noise draws before and after: the attack raises the soft smoothed classifier's
    loss of every image, within the L2 ball and the image box."""
    model = built(SmoothAdv).model.eval()
    x, y = batch()
    torch.manual_seed(2)
    noise = 0.25 * torch.randn(4, *x.shape)

    def loss(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = model((images.unsqueeze(0) + noise).flatten(0, 1)).view(4, len(y), -1)
        return smoothed_cross_entropy(logits, y)

    x_adv = smooth_adv_pgd(model, x, y, noise, eps=0.5, steps=5)
    assert (loss(x_adv) > loss(x) + 1e-3).all()
    assert (x_adv - x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_smoothadv_trains_on_the_noisy_adversarial_copies() -> None:
    method = built(SmoothAdv, sigma=0.25, num_noise_samples=3, eps=0.5, attack_steps=2,
                   eps_warmup_epochs=0)
    x, y = batch(4)
    torch.manual_seed(3)
    copies = method.make_adversarial(x, y)
    torch.manual_seed(3)
    noise = 0.25 * torch.randn(3, *x.shape)
    assert copies.shape == (12, *x.shape[1:])
    x_adv = smooth_adv_pgd(method.model.eval(), x, y, noise, eps=0.5, steps=2)
    torch.testing.assert_close(copies, (x_adv.unsqueeze(0) + noise).flatten(0, 1))
    method.model.train()
    loss, logits = method.training_loss(x, copies, y)
    torch.testing.assert_close(loss, F.cross_entropy(method.model(copies), y.repeat(3)))
    assert logits.shape == (4, 10)


def test_smoothadv_on_one_copy_and_its_eps_warm_up() -> None:
    method = built(SmoothAdv, num_noise_samples=4, train_on_all_copies=False, eps=0.5,
                   eps_warmup_epochs=10)
    x, y = batch(2)
    assert method.make_adversarial(x, y).shape == (2, *x.shape[1:])
    assert method.attack_eps() == pytest.approx(0.05)  # epoch 0 of 10: ε/10


# ---------------------------------------------------------------- MACER
def test_macer_terms_match_a_hand_computation() -> None:
    """Three images, m = 2 copies, K = 3: image 0 is correct and inside the hinge, image 1 is
    misclassified (no robustness term), image 2 is correct with ξ > γ (hinge inactive)."""
    logits = torch.tensor([
        [[0.20, 0.05, 0.00], [0.00, 0.30, 0.10], [3.0, 0.0, 0.0]],
        [[0.10, 0.00, 0.02], [0.05, 0.20, 0.00], [2.5, 0.0, 0.2]],
    ])
    y = torch.tensor([0, 0, 0])
    sigma, beta, gamma = 0.5, 2.0, 1.5
    soft = logits.softmax(dim=2).mean(dim=0).double()
    classification = -sum(math.log(soft[n, 0] + 1e-10) for n in range(3)) / 3
    tempered = (beta * logits).softmax(dim=2).mean(dim=0).double().numpy()
    xi = [norm.ppf(sorted(row)[-1]) - norm.ppf(sorted(row)[-2]) for row in tempered]
    assert tempered[1].argmax() != 0 and xi[0] <= gamma < xi[2]  # the cases named above
    robustness = sigma / 2 * (gamma - xi[0]) / 3
    got_c, got_r = macer_terms(logits, y, sigma, beta, gamma)
    assert got_c.item() == pytest.approx(classification, rel=1e-5)
    assert got_r.item() == pytest.approx(robustness, rel=1e-4)
    total = macer_loss(logits, y, sigma, beta, gamma, radius_weight=12.0)
    assert total.item() == pytest.approx(classification + 12.0 * robustness, rel=1e-4)


def test_macer_robustness_gradient_reaches_only_the_images_in_the_hinge() -> None:
    logits = torch.tensor([
        [[0.20, 0.05, 0.00], [0.00, 0.30, 0.10], [3.0, 0.0, 0.0]],
        [[0.10, 0.00, 0.02], [0.05, 0.20, 0.00], [2.5, 0.0, 0.2]],
    ], requires_grad=True)
    _, robustness = macer_terms(logits, torch.tensor([0, 0, 0]), 0.5, 2.0, 1.5)
    (gradient,) = torch.autograd.grad(robustness, logits)
    assert gradient[:, 0].abs().sum() > 0
    assert gradient[:, 1:].abs().sum() == 0
    # pushing the radius up: the robustness term falls when the top logit grows
    assert gradient[0, 0, 0] < 0


def test_macer_method_trains_on_k_noisy_copies() -> None:
    method = built(MACER, sigma=0.25, num_noise_samples=5)
    x, y = batch(3)
    torch.manual_seed(4)
    loss, logits = method.training_loss(x, None, y)
    torch.manual_seed(4)
    noisy = method.model(x.repeat(5, 1, 1, 1) + 0.25 * torch.randn(15, *x.shape[1:]))
    expected = macer_loss(noisy.view(5, 3, 10), y, 0.25, 16.0, 8.0, 12.0)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits.exp().sum(dim=1), torch.ones(3))  # log of p̂


@pytest.mark.parametrize("method, bad, message", [
    (SmoothAdv, {"num_noise_samples": 0}, "num_noise_samples"),
    (MACER, {"num_noise_samples": 0}, "num_noise_samples"),
    (SmoothAdv, {"eps": -0.1}, "eps >= 0"),
    (SmoothAdv, {"attack_steps": 0}, "attack_steps >= 1"),
    (SmoothAdv, {"eps_warmup_epochs": -1}, "eps_warmup_epochs >= 0"),
    (MACER, {"beta": 0.0}, "beta > 0"),
    (MACER, {"hinge": 0.0}, "hinge > 0"),
    (MACER, {"radius_weight": -1.0}, "radius_weight >= 0"),
    (MACER, {"sigma": 0.0}, "sigma"),
])
def test_bad_settings_fail_at_construction(method: type, bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        method(backbone="tiny_cnn", **bad)


# ---------------------------------------------------------------- real images
def certified_training_on_real_cifar10(seed: int) -> dict[str, dict[str, float]]:
    """Standard training, SmoothAdv (m = 1, PGD-2, ε 0.25) and MACER (k = 4) at σ = 0.25
    (tiny_cnn) on 1,000 real CIFAR-10 images for 3 epochs each; CERTIFY (n0 10, n 100) of 60
    test images."""
    def evaluators() -> list:
        return [CleanAccuracy(), SmoothingCertification(sigma=0.25, n0=10, n=100, skip=1,
                                                        max_images=None, batch_size=1100)]

    common = dict(backbone="tiny_cnn", lr=0.05, schedule="cosine", val_attack=None)
    runs = {
        "st": StandardTraining(**common, evaluators=evaluators()),
        "smoothadv": SmoothAdv(sigma=0.25, num_noise_samples=1, eps=0.25, attack_steps=2,
                               eps_warmup_epochs=0, **common, evaluators=evaluators()),
        "macer": MACER(sigma=0.25, num_noise_samples=4, **common, evaluators=evaluators()),
    }
    return {name: fit_and_test_on_cifar10(model, samples_per_class=100,
                                          test_samples_per_class=6, epochs=3, seed=seed)
            for name, model in runs.items()}


@pytest.mark.slow
def test_smoothadv_certifies_larger_radii_than_standard_training_and_macer_certifies() -> None:
    """:func:`certified_training_on_real_cifar10` with seed 0.

    Measured over seeds 0–4 (ACR): standard training 0.033–0.057, SmoothAdv 0.086–0.121 (at
    least 0.039 above standard training of the same seed), MACER 0.045–0.063. MACER at the
    paper's λ = 12 from scratch barely learns in 3 epochs (clean accuracy 12–17 %), so here
    it is only run end to end through certification, not compared. Planted bugs that fail:
    SmoothAdv training on its adversarial images without the noise (ACR 0.055, not 0.02
    above standard training's 0.043), MACER not learning (a zero loss: ACR 0.011). MACER's
    objective itself is pinned by the hand-computed loss tests of this module.
    """
    results = certified_training_on_real_cifar10(seed=0)
    print({k: {m: round(v, 3) for m, v in r.items()} for k, r in results.items()})
    acr = "smoothing_sigma0.25/acr"
    for name in ("st", "smoothadv", "macer"):
        assert results[name]["smoothing_sigma0.25/num_images"] == 60, name
    assert results["smoothadv"][acr] > results["st"][acr] + 0.02
    assert results["macer"][acr] > 0.02
