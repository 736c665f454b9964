"""AT / TRADES objectives and defaults, the robust-validation metric, and the LR schedules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.methods import TRADES, AdversarialTraining, StandardTraining
from lit_robust.methods.optim import schedule_factor

NORM = dict(num_classes=4, mean=[0.0] * 3, std=[1.0] * 3)


class _BNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(4 * 6 * 6, 4))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _with_model(method: StandardTraining) -> StandardTraining:
    method.model = _BNNet()
    method._build_metrics(4)
    return method


def _batch() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.rand(6, 3, 8, 8, generator=g), torch.randint(0, 4, (6,), generator=g)


def test_adversarial_training_loss_is_ce_on_the_adversarial_logits() -> None:
    method = _with_model(AdversarialTraining(**NORM))
    x, y = _batch()
    x_adv = (x + 0.03).clamp(0, 1)
    loss, logits = method.training_loss(x, x_adv, y)
    expected_logits = method.model(x_adv)
    torch.testing.assert_close(logits, expected_logits)
    torch.testing.assert_close(loss, F.cross_entropy(expected_logits, y))
    assert not torch.allclose(loss, F.cross_entropy(method.model(x), y))


@pytest.mark.parametrize("beta", [0.0, 1.0, 6.0])
def test_trades_loss_is_clean_ce_plus_beta_kl(beta: float) -> None:
    method = _with_model(TRADES(beta=beta, **NORM))
    x, y = _batch()
    x_adv = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    loss, logits = method.training_loss(x, x_adv, y)
    clean, adv = method.model(x), method.model(x_adv)
    p, log_q = torch.softmax(clean, 1), torch.log_softmax(adv, 1)
    kl = (p * (p.log() - log_q)).sum(1).mean()  # KL(f(x) ‖ f(x')) per image, batch mean
    torch.testing.assert_close(loss, F.cross_entropy(clean, y) + beta * kl)
    torch.testing.assert_close(logits, adv)
    assert kl > 1e-3  # the β term matters in this batch


def test_defaults_follow_the_papers() -> None:
    trades = TRADES()
    assert trades.beta == 6.0
    assert (trades.attack.loss, trades.attack.start) == ("kl", "normal")
    assert (trades.val_attack.loss, trades.val_attack.start) == ("ce", "ball")
    at = AdversarialTraining()
    assert at.attack_in_eval_mode
    attack = at.attack
    assert (attack.eps, attack.steps, attack.norm, attack.loss, attack.start) == (
        8 / 255, 10, "linf", "ce", "ball")
    assert attack.step_size == pytest.approx(2 / 255)
    assert at.val_attack is at.attack


@pytest.mark.parametrize("method_class", [AdversarialTraining, TRADES])
def test_attack_in_eval_mode_leaves_bn_statistics_and_modes_unchanged(method_class) -> None:
    method = _with_model(method_class(attack=PGDAttack(steps=2), **NORM))
    method.model.train()
    bn = method.model.body[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    seen_training = []
    bn.register_forward_pre_hook(lambda module, _: seen_training.append(module.training))
    x, y = _batch()
    method.make_adversarial(x, y)
    assert seen_training and not any(seen_training)
    torch.testing.assert_close(bn.running_mean, before[0], rtol=0, atol=0)
    torch.testing.assert_close(bn.running_var, before[1], rtol=0, atol=0)
    assert int(bn.num_batches_tracked) == before[2]
    assert bn.training  # the training mode is restored afterwards


def test_attack_in_train_mode_updates_bn_statistics() -> None:
    method = _with_model(AdversarialTraining(attack=PGDAttack(steps=2),
                                             attack_in_eval_mode=False, **NORM))
    method.model.train()
    bn = method.model.body[1]
    method.make_adversarial(*_batch())
    assert int(bn.num_batches_tracked) == 2


class _ProbabilityNet(nn.Module):
    """Logits log(x): each 3-pixel input is the probability vector the model outputs."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1).clamp_min(1e-6).log()


class _FixedAttack(PGDAttack):
    def __init__(self, x_adv: Tensor) -> None:
        super().__init__()
        self.x_adv = x_adv

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target=None) -> Tensor:
        return self.x_adv


def test_validation_robust_accuracy_needs_the_clean_prediction_correct_too() -> None:
    x = torch.tensor([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]]).view(3, 3, 1, 1)
    x_adv = torch.tensor([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.3, 0.6, 0.1]]).view(3, 3, 1, 1)
    y = torch.zeros(3, dtype=torch.long)
    # image 0: wrong clean, right under attack; image 1: right both; image 2: broken
    method = StandardTraining(val_attack=_FixedAttack(x_adv), num_classes=3, mean=[0.0] * 3,
                              std=[1.0] * 3)
    method.model = _ProbabilityNet()
    method._build_metrics(3)
    with pytest.warns(UserWarning, match="self.log"):
        method.validation_step((x, y), 0)
    assert method.val_robust_acc.compute().item() == pytest.approx(1 / 3)
    assert method.val_metrics["acc"].compute().item() == pytest.approx(2 / 3)


def test_multistep_applies_gamma_at_each_milestone_epoch() -> None:
    factor = schedule_factor("multistep", 60, [30, 50], 0.1, 0.0)
    values = [factor(e) for e in (0, 29.99, 30, 49.99, 50, 59.9)]
    assert values == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    default = schedule_factor("multistep", 100, None, 0.5, 0.0)
    assert [default(e) for e in (49.9, 50, 74.9, 75)] == pytest.approx([1, 0.5, 0.5, 0.25])


def test_cosine_and_warmup_factors() -> None:
    cosine = schedule_factor("cosine", 10, None, 0.1, 0.0)
    assert [cosine(e) for e in (0, 2.5, 5, 10, 12)] == pytest.approx(
        [1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0, 0], abs=1e-12)
    warm = schedule_factor("multistep", 10, [5], 0.1, 2.0)
    assert [warm(e) for e in (0.5, 1.0, 1.9, 2.0, 5.0)] == pytest.approx(
        [0.25, 0.5, 0.95, 1.0, 0.1], abs=1e-7)
    constant = schedule_factor("constant", 10, None, 0.1, 0.0)
    assert constant(9.9) == 1.0
    with pytest.raises(ValueError, match="increasing"):
        schedule_factor("multistep", 10, [6, 3], 0.1, 0.0)


class _LRRecorder(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_optimizer_sees_the_decay_from_the_first_step_of_the_milestone_epoch(
    tmp_path: Path,
) -> None:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,)))
    recorder = _LRRecorder()
    method = StandardTraining(backbone="tiny_cnn", lr=0.1, milestones=[2], gamma=0.1,
                              backbone_kwargs={"width": 2}, **NORM)
    trainer = Trainer(max_epochs=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[recorder], default_root_dir=tmp_path)
    trainer.fit(method, DataLoader(data, batch_size=4))
    assert recorder.lrs == pytest.approx([0.1] * 8 + [0.01] * 4)


def test_train_lr_is_logged_every_step_and_follows_the_warmup(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, 3, 8, 8, generator=g), torch.randint(0, 4, (16,)))
    method = StandardTraining(backbone="tiny_cnn", lr=0.1, schedule="constant",
                              warmup_epochs=1, backbone_kwargs={"width": 2}, **NORM)
    logger = CSVLogger(tmp_path, name="lr")
    trainer = Trainer(max_epochs=2, logger=logger, log_every_n_steps=1,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(method, DataLoader(data, batch_size=4))
    rows = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/lr")
    logged = [float(row.split(",")[column]) for row in rows[1:] if row.split(",")[column]]
    # linear warm-up over the 4 steps of epoch 0 (step s uses factor s/4), then constant
    assert logged == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1], abs=1e-6)


def test_test_tells_the_evaluators_the_test_set_size(tmp_path: Path) -> None:
    from lit_robust.evaluation import CleanAccuracy

    evaluator = CleanAccuracy()
    method = StandardTraining(backbone="tiny_cnn", backbone_kwargs={"width": 2},
                              evaluators=[evaluator], **NORM)
    data = TensorDataset(torch.rand(7, 3, 8, 8), torch.randint(0, 4, (7,)))
    trainer = Trainer(logger=False, inference_mode=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.test(method, DataLoader(data, batch_size=3), verbose=False)
    assert evaluator.dataset_size == 7
