"""AutoLoRa: each loss reaches only its own parameters, λ1/λ2 from the natural accuracy, and
the automatic learning rate halves and reloads exactly when its rule says."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lit_robust.main import cli, main
from lit_robust.methods.auto_lr import AutomaticLearningRate
from lit_robust.methods.autolora import AutoLoRa, autolora_lambdas
from lit_robust.models.lora import lora_layers
from tests.methods.test_roli import CHEAP_EVALUATORS
from tests.test_configs import fit_args

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config", str(REPO / "tests/conf/tiny_model.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--model", "AutoLoRa", "--model.backbone", "tiny_cnn", "--model.rank", "2",
        "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false"]


def _method(**kwargs) -> AutoLoRa:
    torch.manual_seed(0)
    method = AutoLoRa(backbone="tiny_cnn", num_classes=10, mean=[0.0] * 3, std=[1.0] * 3,
                      rank=2, **kwargs)
    method.configure_model()
    with torch.no_grad():  # non-zero B, so that the branch changes the natural path
        for layer in lora_layers(method.model):
            layer.lora_B.normal_()
    method.train()
    return method


def _gradients(method: AutoLoRa, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    method.zero_grad(set_to_none=True)
    loss.backward()
    return {name: p.grad for name, p in method.model.named_parameters()}


def _nonzero(grad: torch.Tensor | None) -> bool:
    return grad is not None and bool(grad.abs().sum() > 0)


BATCH = (torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.arange(6))


def test_the_natural_loss_reaches_only_the_lora_factors_and_the_head() -> None:
    method = _method()
    x, y = BATCH
    grads = _gradients(method, F.cross_entropy(method.natural_logits(x), y))
    lora = {n for n in grads if "lora_" in n}
    head = {"net.linear.weight", "net.linear.bias"}
    assert lora and all(_nonzero(grads[n]) for n in lora | head)
    base = set(grads) - lora - head  # convolution weights (stem too) and BatchNorm affine
    assert {"net.layer1.conv.weight", "net.layer2.conv.base.weight", "net.layer2.bn.weight"} <= base
    assert all(grads[n] is None for n in base)  # exactly zero: not even a zero tensor


def test_the_adversarial_loss_never_reaches_the_lora_factors() -> None:
    method = _method()
    x, y = BATCH
    grads = _gradients(method, F.cross_entropy(method.adversarial_logits(x), y))
    assert all(grads[n] is None for n in grads if "lora_" in n)
    assert _nonzero(grads["net.layer2.conv.base.weight"])
    assert _nonzero(grads["net.layer2.bn.weight"]) and _nonzero(grads["net.linear.weight"])


def test_natural_trains_bn_lets_the_natural_loss_reach_the_batchnorms() -> None:
    method = _method(natural_trains_bn=True)
    x, y = BATCH
    grads = _gradients(method, F.cross_entropy(method.natural_logits(x), y))
    assert _nonzero(grads["net.layer2.bn.weight"]) and grads["net.layer2.conv.base.weight"] is None


def test_the_full_loss_weights_the_paths_by_the_lambdas() -> None:
    method = _method()
    method.lambda1, method.lambda2 = autolora_lambdas(0.25)
    x, y = BATCH
    loss, logits = method.training_loss(x, x.flip(0), y)
    nat, adv = method.natural_logits(x), method.adversarial_logits(x.flip(0))
    kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(nat, 1), reduction="sum") / 6
    expected = 0.75 * F.cross_entropy(nat, y) + 0.25 * F.cross_entropy(adv, y) + 1.5 * kl
    assert torch.allclose(loss, expected) and torch.equal(logits, adv)
    # gradient level: the KL term reaches the LoRA factors through the natural logits too
    got, want = _gradients(method, loss), _gradients(method, expected)
    assert got.keys() == want.keys()
    for name in got:
        assert (got[name] is None) == (want[name] is None), name
        if got[name] is not None:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7)


def test_lambdas_from_a_known_accuracy() -> None:
    assert autolora_lambdas(0.8) == pytest.approx((0.2, 4.8))
    assert autolora_lambdas(0.0) == (1.0, 0.0) and autolora_lambdas(1.0) == (0.0, 6.0)
    with pytest.raises(ValueError, match="fraction in"):
        autolora_lambdas(80.0)


def test_the_method_sets_the_lambdas_from_the_natural_branch_accuracy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli(["fit", *TINY, "--trainer.fast_dev_run", "true"])
    method = run.model
    accuracy = method.natural_train_accuracy()
    assert (method.lambda1, method.lambda2) == pytest.approx(autolora_lambdas(accuracy))


# A scripted validation curve and what the rule must do at each check (epochs 4, 8, 12, 16).
CURVE = [0.10, 0.20, 0.30, 0.40, 0.50,  # 4 improvements of 4, new best: keep going
         0.60, 0.55, 0.50, 0.58,        # 2 of 4 improved (< 3): halve at epoch 8
         0.52, 0.54, 0.56, 0.58,        # 3 of 4 improved, best 0.60 unchanged since 8
         0.53, 0.55, 0.57, 0.59]        # again 3 of 4 and best unchanged


@pytest.mark.parametrize(("rule", "reductions"), [("paper", [8, 16]), ("code", [8, 12, 16])])
def test_auto_lr_rule_on_a_scripted_curve(rule, reductions) -> None:
    schedule = AutomaticLearningRate(lr=0.01, rule=rule)
    decisions = [schedule.update(accuracy) for accuracy in CURVE]
    assert [e for e, d in enumerate(decisions) if d.reduce] == reductions
    assert [e for e, d in enumerate(decisions) if d.new_best] == [0, 1, 2, 3, 4, 5]
    assert schedule.lr == pytest.approx(0.01 / 2 ** len(reductions))
    assert "2 of the last 4 epochs improved" in decisions[8].reason
    assert decisions[16].reason.startswith("the best validation robust accuracy did not change")


def test_the_method_halves_and_reloads_the_best_weights_exactly_when_the_rule_says(
        tmp_path, monkeypatch) -> None:
    """Nine epochs on the scripted curve: the best epoch is 5 and the halving at epoch 8
    reloads its weights, so the final weights are epoch 5's, bit for bit."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    lrs: list[float] = []

    def scripted(self: AutoLoRa) -> None:
        if not self.trainer.sanity_checking:
            self._val_robust = CURVE[self.current_epoch]

    original_end = AutoLoRa.on_train_epoch_end

    def recording_end(self: AutoLoRa) -> None:
        snapshots[self.current_epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
        original_end(self)
        lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    monkeypatch.setattr(AutoLoRa, "on_validation_epoch_end", scripted)
    monkeypatch.setattr(AutoLoRa, "on_train_epoch_end", recording_end)
    run = cli(["fit", *TINY, "--trainer.max_epochs", "9", "--trainer.limit_train_batches", "1",
               "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"])
    assert lrs == [0.01] * 8 + [0.005]
    final = run.model.model.state_dict()
    assert all(torch.equal(final[k], snapshots[5][k]) for k in final)
    assert not all(torch.equal(final[k], snapshots[8][k]) for k in final)


def test_training_without_a_validation_split_is_refused_before_the_first_step(
        tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *TINY, "--data.init_args.val_size", "0",
              "--data.init_args.val_samples_per_class", "null", "--trainer.fast_dev_run", "true"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lit-robust: error: AutoLoRa's automatic learning rate follows")
    assert "set data.val_size > 0" in error and "\n" not in error


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rank must be a positive integer"):
        AutoLoRa(rank=0)
    with pytest.raises(ValueError, match="auto_lr sets the learning rate itself"):
        AutoLoRa(schedule="cosine")
    with pytest.raises(ValueError, match="drop model.peft"):
        AutoLoRa(peft=object())


@pytest.mark.parametrize("config", sorted((REPO / "configs/experiments/autolora").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_shipped_config_tests_through_the_cli(config, tmp_path, monkeypatch) -> None:
    """``test`` with fast_dev_run (``tests/test_configs.py`` runs ``fit`` of every config)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    args = fit_args(config, tmp_path)
    run = cli(["test", *args[1:], "--model.init_args.evaluators", CHEAP_EVALUATORS])
    assert isinstance(run.model, AutoLoRa) and "clean_acc" in run.model.test_results
