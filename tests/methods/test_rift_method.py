"""The RiFT LightningModule: module choice, freezing, interpolation, logs and checkpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

import lit_robust.methods.rift.method as rift_method
from lit_robust.attacks import PGDAttack
from lit_robust.main import cli
from lit_robust.methods.rift import RiFT, interpolate_state_dicts, rank_modules
from lit_robust.models.zoo import build_backbone

REPO = Path(__file__).resolve().parents[2]
ONE_STEP = {"eps": 8 / 255, "step_size": 8 / 255, "steps": 1}


class RandomImages(LightningDataModule):
    """Random [0, 1] images with a train and a held-out validation split."""

    num_classes = 10
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, n_train: int = 32, n_val: int = 16, size: int = 16,
                 with_val: bool = True) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(7)
        self.train = TensorDataset(torch.rand(n_train, 3, size, size, generator=generator),
                                   torch.randint(0, 10, (n_train,), generator=generator))
        self.val = TensorDataset(torch.rand(n_val, 3, size, size, generator=generator),
                                 torch.randint(0, 10, (n_val,), generator=generator))
        self.with_val = with_val

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=8, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return DataLoader(self.val, batch_size=8) if self.with_val else []


class Snapshots(Callback):
    """θ_AT when fitting starts and θ_FT before RiFT interpolates (callbacks run first)."""

    def on_fit_start(self, trainer: Trainer, pl_module: RiFT) -> None:
        self.base = {k: v.clone() for k, v in pl_module.model.state_dict().items()}

    def on_train_end(self, trainer: Trainer, pl_module: RiFT) -> None:
        self.finetuned = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def _rift(**kwargs: object) -> RiFT:
    defaults = dict(backbone="tiny_cnn", mrc_epochs=2, mrc_batch_size=8, lr=0.5,
                    mrc_attack=PGDAttack(**ONE_STEP), interpolation_attack=PGDAttack(**ONE_STEP),
                    alphas=[0.0, 0.5, 1.0])
    defaults.update(kwargs)
    return RiFT(**defaults)


def _trainer(tmp_path: Path, callbacks: list[Callback] | None = None, **kwargs: object) -> Trainer:
    defaults = dict(max_epochs=2, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, inference_mode=False,
                    accelerator="cpu", devices=1, default_root_dir=str(tmp_path),
                    num_sanity_val_steps=0)
    defaults.update(kwargs)
    return Trainer(callbacks=callbacks or [], **defaults)


def _changed(a: dict[str, Tensor], b: dict[str, Tensor]) -> set[str]:
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_only_the_least_critical_module_trains_and_frozen_bn_statistics_stay(tmp_path) -> None:
    model, snapshots = _rift(), Snapshots()
    _trainer(tmp_path, [snapshots]).fit(model, RandomImages())
    table = model.mrc_table
    assert table is not None and len(table) == 5 and any(r.mrc > 0 for r in table)
    chosen = rank_modules(table, 1)
    assert model.finetuned_modules == chosen
    trained = {f"net.{chosen[0]}.weight"} | (
        {f"net.{chosen[0]}.bias"} if f"net.{chosen[0]}.bias" in snapshots.base else set())
    assert _changed(snapshots.base, snapshots.finetuned) == trained  # BN buffers included
    # the final weights are θ(α*) on the fine-tuned entries and θ_AT everywhere else
    final = model.model.state_dict()
    expected = interpolate_state_dicts({k: snapshots.base[k] for k in trained},
                                       {k: snapshots.finetuned[k] for k in trained}, model.alpha)
    for key in final:
        assert torch.equal(final[key], expected.get(key, snapshots.base[key])), key
    assert [p["alpha"] for p in model.sweep] == [0.0, 0.5, 1.0]


def test_bn_train_mode_updates_the_frozen_layers_statistics_like_the_reference(tmp_path) -> None:
    model, snapshots = _rift(bn_train_mode=True, module="layer2.conv"), Snapshots()
    _trainer(tmp_path, [snapshots], max_epochs=1).fit(model, RandomImages())
    changed = _changed(snapshots.base, snapshots.finetuned)
    assert "net.layer2.conv.weight" in changed
    assert "net.layer4.bn.running_mean" in changed  # a frozen layer's statistics moved
    assert not any(k.endswith(("bn.weight", "bn.bias")) for k in changed)
    assert model.mrc_table is None  # a named module skips the search


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"finetune": "last_layer"}, ["linear"]),
        ({"finetune": "top_k_least", "top_k": 2}, "two least critical"),
        ({"finetune": "most_critical"}, "most critical"),
        ({"finetune": "all"}, "everything"),
    ],
)
def test_ablation_scopes_choose_their_modules(tmp_path, options: dict, expected: object) -> None:
    model = _rift(alphas=[0.0, 1.0], **options)
    _trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(model, RandomImages())
    trainable = {n for n, p in model.model.named_parameters() if p.requires_grad}
    if expected == "everything":
        assert trainable == {n for n, _ in model.model.named_parameters()}
        assert model.mrc_table is None
        return
    if expected == "two least critical":
        expected = rank_modules(model.mrc_table, 2)
    elif expected == "most critical":
        expected = rank_modules(model.mrc_table, 1, most=True)
    assert model.finetuned_modules == expected
    assert trainable == {f"net.{m}.{p}" for m in expected for p in ("weight", "bias")
                         if f"net.{m}.{p}" in dict(model.model.named_parameters())}


def test_bad_settings_fail_before_training(tmp_path) -> None:
    with pytest.raises(ValueError, match="only goes with finetune='least_critical'"):
        _rift(finetune="all", module="linear")
    with pytest.raises(ValueError, match="contain 0"):
        _rift(alphas=[0.5, 1.0])
    with pytest.raises(ValueError, match="unknown module 'layer7.conv'"):
        _trainer(tmp_path).fit(_rift(module="layer7.conv"), RandomImages())
    with pytest.raises(ValueError, match="held-out validation split"):
        _trainer(tmp_path).fit(_rift(), RandomImages(with_val=False))


def test_checkpoints_logs_cache_and_resume(tmp_path, monkeypatch) -> None:
    base = tmp_path / "base.pt"
    torch.save(build_backbone("tiny_cnn", 10).state_dict(), base)
    cache = tmp_path / "mrc.json"
    logger = TensorBoardLogger(str(tmp_path), name="rift")
    checkpoints = ModelCheckpoint(save_last=True, save_top_k=-1)
    model = _rift(pretrained=str(base), mrc_cache=str(cache))
    _trainer(tmp_path, [checkpoints], logger=logger, enable_checkpointing=True).fit(
        model, RandomImages())
    folder = Path(checkpoints.dirpath)
    final_state = {f"model.{k}": v for k, v in model.model.state_dict().items()}
    for name in ("rift_final.ckpt", "last.ckpt"):  # both hold the interpolated weights
        checkpoint = torch.load(folder / name, map_location="cpu", weights_only=False)
        for key, value in final_state.items():
            assert torch.equal(checkpoint["state_dict"][key], value), (name, key)
        record = checkpoint["rift"]
        assert record["alpha"] == model.alpha and record["modules"] == model.finetuned_modules
        assert len(record["mrc_table"]) == 5 and len(record["sweep"]) == 3
        assert set(record["base_state"]) == {f"net.{model.finetuned_modules[0]}.weight"} | (
            {f"net.{model.finetuned_modules[0]}.bias"}
            if f"net.{model.finetuned_modules[0]}.bias" in final_state else set())
    summary = json.loads((Path(logger.log_dir) / "rift_summary.json").read_text())
    assert summary["alpha"] == model.alpha and summary["sweep"] == model.sweep
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0}).Reload()
    assert {"rift/mrc_per_module", "rift/interpolation"} <= set(events.Tags()["images"])
    assert "rift/alpha" in events.Tags()["scalars"]
    assert json.loads(cache.read_text())["entries"]

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the MRC search ran although its result was available")

    monkeypatch.setattr(rift_method, "module_robust_criticality", no_search)
    # the same base model, data and settings: the table comes from the cache
    again = _rift(pretrained=str(base), mrc_cache=str(cache))
    _trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(again, RandomImages())
    assert again.mrc_table == model.mrc_table
    # resuming a run from its first epoch's checkpoint keeps the module and θ_AT
    resumed, snapshots = _rift(pretrained=str(base)), Snapshots()
    epoch_zero = next(folder.glob("epoch=0-*.ckpt"))
    _trainer(tmp_path, [snapshots]).fit(resumed, RandomImages(), ckpt_path=str(epoch_zero))
    assert resumed.finetuned_modules == model.finetuned_modules
    assert resumed.current_epoch == 2
    first = torch.load(epoch_zero, map_location="cpu", weights_only=False)["rift"]["base_state"]
    assert all(torch.equal(first[k], resumed._base_state[k]) for k in first)


def _cli_args(tmp_path: Path) -> list[str]:
    evaluators = json.dumps([
        {"class_path": "lit_robust.evaluation.CleanAccuracy"},
        {"class_path": "lit_robust.evaluation.PGDEvaluator", "init_args": {"steps": 1}},
    ])
    return [
        "--config", str(REPO / "configs/experiments/rift/cifar10_resnet18_shared_robust.yaml"),
        "--config", str(REPO / "tests/conf/tiny_cifar10.yaml"),
        "--model.init_args.backbone", "tiny_cnn",
        "--model.init_args.pretrained", "null",
        "--model.init_args.mrc_epochs", "1",
        "--model.init_args.evaluators", evaluators,
        "--trainer.accelerator", "cpu",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
    ]


def test_cli_fit_and_test_with_fast_dev_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli(["fit", *_cli_args(tmp_path), "--trainer.fast_dev_run", "true",
                "--test_after_fit", "true"])
    model = run.model
    assert isinstance(model, RiFT) and run.trainer.global_step == 1
    assert model.alpha is not None and model.finetuned_modules and len(model.mrc_table) == 5
    assert {"clean_acc", "robust_acc/pgd1_linf_eps0.03137"} <= set(model.test_results)
    assert not (tmp_path / "checkpoints" / "rift_mrc_cache.json").exists()  # no cache written
    last = tmp_path / "checkpoints" / "last.ckpt"  # Lightning saves it even in fast_dev_run
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    for key, value in model.model.state_dict().items():
        assert torch.equal(state[f"model.{key}"], value), key


def test_cli_test_of_the_final_checkpoint_sees_the_interpolated_model(tmp_path,
                                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
              "--trainer.limit_val_batches", "1", "--model.init_args.alphas", "[0.0, 0.5, 1.0]"]
    fitted = cli(["fit", *_cli_args(tmp_path), *limits, "--test_after_fit", "true"])
    folder = Path(fitted.trainer.checkpoint_callback.dirpath)
    assert (folder / "rift_final.ckpt").is_file() and (folder / "last.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "rift_mrc_cache.json").is_file()
    tested = cli(["test", *_cli_args(tmp_path), "--ckpt_path", str(folder / "rift_final.ckpt")])
    assert tested.model.alpha == fitted.model.alpha
    assert tested.model.test_results["clean_acc"] == fitted.model.test_results["clean_acc"]
    final = fitted.model.model.state_dict()
    for key, value in tested.model.model.state_dict().items():
        assert torch.equal(value, final[key]), key


def _adversarially_trained_tiny_cnn(tmp_path: Path, data: LightningDataModule) -> Path:
    from lit_robust.methods import AdversarialTraining

    model = AdversarialTraining(backbone="tiny_cnn", lr=0.05, schedule="cosine",
                                attack=PGDAttack(eps=8 / 255, step_size=10 / 255, steps=1))
    _trainer(tmp_path, max_epochs=4, limit_val_batches=0).fit(model, data)
    path = tmp_path / "at.ckpt"
    model.trainer.save_checkpoint(path)
    return path


def rift_on_real_cifar10(tmp_path: Path, seed: int) -> tuple[RiFT, Snapshots, list[dict]]:
    """RiFT on a tiny CNN adversarially trained (FGSM-RS-like PGD-1, 4 epochs) on 1,000 real
    CIFAR-10 images: MRC on 200 validation images, 3 fine-tuning epochs, the α sweep; returns
    the method, its weight snapshots and the logged sweep. Everything random comes from
    ``seed``."""
    from lit_robust.data import CIFAR10DataModule

    seed_everything(seed, verbose=False)
    data = CIFAR10DataModule(samples_per_class=100, val_size=200, val_samples_per_class=20,
                             test_samples_per_class=10, batch_size=64, num_workers=0)
    base = _adversarially_trained_tiny_cnn(tmp_path, data)
    model = RiFT(backbone="tiny_cnn", pretrained=str(base), mrc_batch_size=100,
                 mrc_attack=PGDAttack(steps=5), interpolation_attack=PGDAttack(steps=5),
                 lr=0.01, milestones=[2])
    snapshots = Snapshots()
    logger = TensorBoardLogger(str(tmp_path), name="rift")
    _trainer(tmp_path, [snapshots], max_epochs=3, logger=logger).fit(model, data)
    sweep = json.loads((Path(logger.log_dir) / "rift_summary.json").read_text())["sweep"]
    return model, snapshots, sweep


@pytest.mark.slow
def test_rift_end_to_end_on_real_cifar10(tmp_path) -> None:
    """:func:`rift_on_real_cifar10` with seed 0.

    Seeds 0-4: PGD-5 accuracy of the base model (α = 0) on the 200 validation images
    14.5-18.5% (one standard error 2.5 points); chosen α 0, 0.1, 1, 0.6, 0. Threshold: the base
    model above 10%. A selection that ignores robustness (a planted bug: the best clean α)
    chose α 0.6 and 0.8 for seeds 0 and 1, whose robust accuracy fell 1-2 points below α = 0's,
    and fails.
    """
    model, snapshots, sweep = rift_on_real_cifar10(tmp_path, seed=0)
    # 1. the search ran over every module and chose the least critical one
    rows = model.mrc_table
    assert [r.module for r in rows] == ["layer1.conv", "layer2.conv", "layer3.conv",
                                        "layer4.conv", "linear"]
    assert model.finetuned_modules == rank_modules(rows, 1)
    assert max(r.mrc for r in rows) > 0 and max(r.robust_acc_drop for r in rows) > 0
    # 2. fine-tuning changed that module only
    assert _changed(snapshots.base, snapshots.finetuned) <= {
        f"net.{model.finetuned_modules[0]}.weight", f"net.{model.finetuned_modules[0]}.bias"}
    # 3. the selected α keeps the validation robustness of α = 0 (read from the logged sweep)
    assert len(sweep) == 11 and sweep[0]["alpha"] == 0.0
    robust_at_zero = sweep[0]["robust_acc"]
    assert robust_at_zero > 0.10  # the base model is robust on real images
    qualifying = [p for p in sweep if p["robust_acc"] >= robust_at_zero - 0.001]
    chosen = next(p for p in sweep if p["alpha"] == model.alpha)
    assert chosen in qualifying
    assert chosen["clean_acc"] == max(p["clean_acc"] for p in qualifying)
