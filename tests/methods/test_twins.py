"""TWINS: batch split and losses, attack mode, gradient-ratio logging, CLI fit/test with
checkpoints, and a real-data transfer run (CIFAR-10 source, GTSRB target)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lit_robust.attacks import PGDAttack
from lit_robust.data import CIFAR10DataModule, GTSRBDataModule
from lit_robust.evaluation import CleanAccuracy, PGDEvaluator
from lit_robust.losses import trades_kl
from lit_robust.main import cli
from lit_robust.methods import AdversarialTraining
from lit_robust.methods.twins import TWINS
from lit_robust.models.dual_bn import DualBatchNorm2d, dual_batchnorms, set_wing, use_wing
from lit_robust.models.zoo import build_backbone
from tests.conf.tiny_overrides import CHEAP_ATTACK, write_tiny_overrides

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "experiments" / "twins"
NUM_CLASSES = 5


def make_twins(**kwargs) -> TWINS:
    model = TWINS(
        backbone="tiny_cnn", num_classes=NUM_CLASSES, mean=[0.5] * 3, std=[0.25] * 3,
        attack=PGDAttack(steps=2), **kwargs,
    )
    model.configure_model()
    return model.train()


def batch(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 3, 32, 32)
    x_adv = (x + 0.03 * torch.randn_like(x)).clamp(0, 1)
    return x, x_adv, torch.randint(0, NUM_CLASSES, (n,))


def test_configure_model_converts_every_batchnorm() -> None:
    model = make_twins()
    assert len(dual_batchnorms(model.model)) == 4
    plain = [m for m in model.model.modules() if type(m) is nn.BatchNorm2d]
    assert len(plain) == 8  # the two wings of each of the four layers, nothing else
    assert all(d.wing == "adaptive" for d in dual_batchnorms(model.model))


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer attached
@pytest.mark.parametrize("n", [8, 7, 1])
def test_twins_at_loss_splits_the_batch_between_the_wings(n: int) -> None:
    model = make_twins(lam=0.4)
    x, x_adv, y = batch(n)
    loss, logits = model.training_loss(x, x_adv, y)

    n_frozen = (n + 1) // 2
    with use_wing(model.model, "frozen"):
        frozen_logits = model.model(x_adv[:n_frozen])
    expected = 0.4 * F.cross_entropy(frozen_logits, y[:n_frozen])
    expected_logits = [frozen_logits]
    if n > 1:
        adaptive_logits = model.model(x_adv[n_frozen:])
        expected = expected + F.cross_entropy(adaptive_logits, y[n_frozen:])
        expected_logits.append(adaptive_logits)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logits, torch.cat(expected_logits))
    assert logits.shape == (n, NUM_CLASSES)


def test_twins_trades_loss_is_the_lambda_weighted_trades_loss_of_each_wing() -> None:
    model = make_twins(variant="trades", lam=0.4, beta=3.0)
    x, x_adv, y = batch(7)
    terms, logits = model.wing_losses(x, x_adv, y)

    expected = {}
    for wing, half, weight in (("frozen", slice(0, 4), 0.4), ("adaptive", slice(4, 7), 1.0)):
        with use_wing(model.model, wing):
            clean, adv = model.model(x[half]), model.model(x_adv[half])
        expected[wing] = weight * (F.cross_entropy(clean, y[half]) + 3.0 * trades_kl(clean, adv))
    assert set(terms) == {"frozen", "adaptive"}
    for wing in terms:
        torch.testing.assert_close(terms[wing], expected[wing])
    assert logits.shape == (7, NUM_CLASSES)


@pytest.mark.parametrize("n", [7, 1])
def test_training_step_with_odd_batches_trains_the_right_wings(n: int) -> None:
    model = make_twins()
    layers = dual_batchnorms(model.model)
    frozen_stats = [d.frozen.running_mean.clone() for d in layers]
    adaptive_stats = [d.adaptive.running_mean.clone() for d in layers]
    x, _, y = batch(n)

    with pytest.warns(UserWarning, match="self.log"):  # no Trainer attached
        loss = model.training_step((x, y), 0)
    loss.backward()

    assert torch.isfinite(loss)
    for d, before in zip(layers, frozen_stats, strict=True):
        assert torch.equal(d.frozen.running_mean, before)
        assert d.frozen.weight.grad is not None and d.frozen.weight.grad.abs().sum() > 0
    for d, before in zip(layers, adaptive_stats, strict=True):
        if n == 1:  # the single example goes to the frozen wing
            assert d.adaptive.weight.grad is None
            assert torch.equal(d.adaptive.running_mean, before)
        else:
            assert d.adaptive.weight.grad.abs().sum() > 0
            assert not torch.equal(d.adaptive.running_mean, before)


def test_attack_runs_in_eval_mode_through_the_adaptive_wing() -> None:
    seen = []

    class RecordingPGD(PGDAttack):
        def __call__(self, model, x, y, target=None):
            wings = {d.wing for d in dual_batchnorms(model)}
            seen.append((any(m.training for m in model.modules()), wings))
            return super().__call__(model, x, y, target)

    model = make_twins()
    model.attack = RecordingPGD(steps=1)
    set_wing(model.model, "frozen")
    x, _, y = batch(4)
    x_adv = model.make_adversarial(x, y)

    assert seen == [(False, {"adaptive"})]
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert model.model.training and all(m.training for m in model.model.modules())
    assert all(d.wing == "frozen" for d in dual_batchnorms(model.model))  # restored


def test_grad_ratio_logging_measures_each_wing_and_leaves_training_gradients_alone() -> None:
    model = make_twins(lam=0.5)
    logged: dict[str, torch.Tensor] = {}
    model.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    x, x_adv, y = batch(8)
    convs = [m.weight for m in model.model.modules() if isinstance(m, nn.Conv2d)]

    terms, _ = model.wing_losses(x, x_adv, y)
    model.log_grad_ratios(terms)
    sum(terms.values()).backward()
    grads_with_logging = [p.grad.clone() for p in model.model.parameters()]

    assert set(logged) == {
        f"train/grad_ratio/{kind}_{wing}"
        for kind in ("conv", "bn_weight") for wing in ("frozen", "adaptive")
    }
    for wing in ("frozen", "adaptive"):
        terms, _ = model.wing_losses(x, x_adv, y)
        gammas = [getattr(d, wing).weight for d in dual_batchnorms(model.model)]
        grads = torch.autograd.grad(terms[wing], convs + gammas)
        for kind, params, g in (("conv", convs, grads[: len(convs)]),
                                  ("bn_weight", gammas, grads[len(convs):])):
            expected = torch.cat([t.flatten() for t in g]).norm() / torch.cat(
                [p.detach().flatten() for p in params]).norm()
            torch.testing.assert_close(logged[f"train/grad_ratio/{kind}_{wing}"], expected)
            assert expected > 0

    model.zero_grad()
    terms, _ = model.wing_losses(x, x_adv, y)
    sum(terms.values()).backward()
    for with_logging, p in zip(grads_with_logging, model.model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, with_logging)


def tiny_gtsrb(**kwargs) -> GTSRBDataModule:
    return GTSRBDataModule(samples_per_class=1, val_size=0, batch_size=8, num_workers=0, **kwargs)


@pytest.mark.parametrize("every", [2, 0])
def test_trainer_writes_grad_ratios_every_n_steps_or_never(every: int, tmp_path: Path) -> None:
    model = TWINS(backbone="tiny_cnn", attack=PGDAttack(steps=1),
                  log_grad_ratio_every_n_steps=every)
    measured_at: list[int] = []
    measure = model.log_grad_ratios

    def recording_measure(terms):
        measured_at.append(model.global_step)
        measure(terms)

    model.log_grad_ratios = recording_measure
    trainer = Trainer(max_steps=4, log_every_n_steps=2, logger=CSVLogger(tmp_path),
                      inference_mode=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False,
                      default_root_dir=tmp_path)
    trainer.fit(model, tiny_gtsrb())

    (metrics_file,) = tmp_path.rglob("metrics.csv")
    rows = [row for row in csv.DictReader(metrics_file.open()) if row["train/loss_step"]]
    assert [int(row["step"]) for row in rows] == [1, 3]
    names = [f"train/grad_ratio/{kind}_{wing}"
             for kind in ("conv", "bn_weight") for wing in ("frozen", "adaptive")]
    if every:
        assert measured_at == [1, 3]  # the steps the logger writes: every value is fresh
        values = [[float(row[name]) for name in names] for row in rows]
        assert all(0 < v < float("inf") for step in values for v in step)
        assert values[0] != values[1]
    else:
        assert measured_at == []
        assert not any(name in rows[0] for name in names)
    assert {"train/loss_frozen", "train/loss_adaptive"} <= set(trainer.callback_metrics)


def test_bad_arguments_fail_early() -> None:
    with pytest.raises(ValueError, match="variant"):
        TWINS(variant="mart")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam and beta"):
        TWINS(lam=-1.0)
    with pytest.raises(ValueError, match="log_grad_ratio_every_n_steps"):
        TWINS(log_grad_ratio_every_n_steps=-5)
    model = TWINS(backbone="timm/vit_tiny_patch16_224", num_classes=3, mean=[0.5] * 3,
                  std=[0.5] * 3)
    with pytest.raises(ValueError, match="no BatchNorm2d"):
        model.configure_model()


def test_paper_defaults() -> None:
    model = TWINS()
    hp = model.hparams
    assert (hp.lr, hp.momentum, hp.weight_decay, list(hp.milestones)) == (0.003, 0.9, 1e-5,
                                                                        [30, 50])
    assert (model.variant, model.lam, model.beta) == ("at", 1.0, 6.0)
    assert (model.attack.eps, model.attack.step_size, model.attack.steps) == (8 / 255, 2 / 255,
                                                                              10)
    assert model.attack.loss == model.val_attack.loss == "ce"
    kl = TWINS(variant="trades", attack=PGDAttack(loss="kl"))
    assert kl.val_attack.loss == "ce"  # robust validation always uses the CE attack


def write_cli_overrides(tmp_path: Path, **model_args: object) -> Path:
    """The tiny CLI overrides with a cheap training attack."""
    attack = {"class_path": "lit_robust.attacks.PGDAttack", "init_args": CHEAP_ATTACK}
    return write_tiny_overrides(tmp_path, **{"attack": attack, **model_args})


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["at", "trades"])
def test_cli_fit_and_test_with_fast_dev_run(variant: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    configs = ["--config", str(CONFIGS / f"gtsrb_from_cifar10_twins_{variant}.yaml"),
               "--config", str(write_cli_overrides(tmp_path, log_grad_ratio_every_n_steps=1)),
               "--trainer.fast_dev_run", "true"]
    fit = cli(["fit", *configs])
    assert fit.model.variant == variant
    assert fit.trainer.global_step == 1
    assert {"train/grad_ratio/conv_frozen", "train/grad_ratio/bn_weight_adaptive",
            "train/loss_frozen", "val/robust_acc"} <= set(fit.trainer.callback_metrics)

    test = cli(["test", *configs])
    results = test.model.test_results
    robust = "robust_acc/pgd2_linf_eps0.03137_step0.01569"  # step 4/255, not 2.5·ε/2
    assert {"clean_acc", robust} <= set(results)
    assert len(list(tmp_path.rglob("report.json"))) == 1


@pytest.mark.slow
def test_cli_checkpoint_holds_both_wings_and_restores_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    source = build_backbone("tiny_cnn", num_classes=10)
    with torch.no_grad():
        for bn in source.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    overrides = write_cli_overrides(tmp_path, pretrained=str(tmp_path / "source.pt"))
    config = CONFIGS / "gtsrb_from_cifar10_twins_at.yaml"
    common = ["--config", str(config), "--config", str(overrides)]
    fit = cli(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
                "--trainer.limit_val_batches", "1"])
    assert fit.trainer.global_step == 3
    (last,) = tmp_path.rglob("last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    key = "model.net.layer2.bn.{}.running_mean"
    assert torch.equal(state[key.format("frozen")], source.layer2.bn.running_mean)
    assert not torch.equal(state[key.format("adaptive")], source.layer2.bn.running_mean)

    test = cli(["test", *common, "--ckpt_path", str(last)])
    restored = test.model.model.state_dict()
    for name, value in state.items():
        if name.startswith("model."):
            assert torch.equal(restored[name.removeprefix("model.")], value), name
    assert isinstance(test.model.model.net.layer1.bn, DualBatchNorm2d)
    assert "clean_acc" in test.model.test_results


REAL_ROBUST = "robust_acc/pgd10_linf_eps0.01569"


def twins_on_real_gtsrb(tmp_path: Path, seed: int) -> tuple[dict[str, float],
                                                            AdversarialTraining, TWINS]:
    """Source: tiny CNN adversarially trained on 1,000 real CIFAR-10 images (4 epochs, PGD-3
    at 4/255). Target: TWINS-AT on 860 real GTSRB images (12 epochs), tested on 215 GTSRB test
    images with PGD-10 at 4/255. Everything random comes from ``seed``."""
    seed_everything(seed, verbose=False)
    torch.set_num_threads(1)  # far faster than 2 threads on a shared, busy CPU
    eps = 4 / 255
    attack = PGDAttack(eps=eps, step_size=eps / 2, steps=3)
    fit_args = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, inference_mode=False, num_sanity_val_steps=0,
                    default_root_dir=tmp_path)
    cifar = CIFAR10DataModule(samples_per_class=100, batch_size=32, num_workers=0, val_size=0)
    source = AdversarialTraining(backbone="tiny_cnn", attack=attack, lr=0.05,
                                 weight_decay=5e-4, schedule="constant")
    Trainer(max_epochs=4, **fit_args).fit(source, cifar)
    torch.save(source.model.net.state_dict(), tmp_path / "source.pt")

    model = TWINS(
        backbone="tiny_cnn", pretrained=str(tmp_path / "source.pt"), reset_head=True,
        mean=list(cifar.mean), std=list(cifar.std), attack=attack, lr=0.05,
        schedule="constant", log_grad_ratio_every_n_steps=0,
        evaluators=[CleanAccuracy(), PGDEvaluator(eps=eps, step_size=eps / 4, steps=10)],
    )
    gtsrb = GTSRBDataModule(samples_per_class=20, batch_size=32, num_workers=0, val_size=0,
                            test_samples_per_class=5)
    trainer = Trainer(max_epochs=12, **fit_args)
    trainer.fit(model, gtsrb)
    trainer.test(model, gtsrb, verbose=False)
    return model.test_results, source, model


@pytest.mark.slow
def test_twins_transfers_a_robust_cifar10_model_to_real_gtsrb(tmp_path: Path) -> None:
    """:func:`twins_on_real_gtsrb` with seed 0 (about 50 s of CPU time in one thread).

    Seeds 0-4: clean 10.2-17.2%, PGD-10 3.7-10.7%, PGD-10 below clean by 5.6-7.4 points
    (chance is 1/43 = 2.3%; one standard error on 215 images is 2.1 points at 10%, 1.3 at
    4%). Thresholds, about 1.5 standard errors beyond the lowest seed: clean above 7%, PGD-10
    above 2% and at least 2 points below clean. Planted bugs that fail: the frozen wing
    updating its statistics (the ``torch.equal`` check), no learning (a zero loss: clean at
    chance), an evaluation attack that never moves (PGD-10 = clean). At this scale the test
    cannot tell TWINS-AT from fine-tuning on clean images (4.2% and 7.0% PGD-10 for seeds 0
    and 1, within the spread above); the training objective is pinned by the hand-computed
    loss tests of this module.
    """
    results, source, model = twins_on_real_gtsrb(tmp_path, seed=0)
    print({name: round(value, 3) for name, value in results.items()})
    assert results["clean_acc"] > 0.07
    assert results[REAL_ROBUST] > 0.02
    assert results[REAL_ROBUST] < results["clean_acc"] - 0.02
    # the frozen wing still holds the CIFAR-10 statistics; the adaptive wing learned GTSRB's
    source_bn = source.model.net.layer3.bn
    dual = model.model.net.layer3.bn
    assert torch.equal(dual.frozen.running_var, source_bn.running_var)
    assert not torch.allclose(dual.adaptive.running_var, source_bn.running_var)
