"""The RiFT LightningModule's parts on hand-built cases, with a stand-in trainer: which images
the search and the sweep read, what reaches the search and the cache, which entries train and
which BatchNorms stay in eval, the clean / robust counts of the sweep, the sweep's choice and
the weights it loads, what is logged and written, and the checkpoint record."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch import Tensor, nn

import lit_robust.methods.rift.method as rift_method
from lit_robust.attacks import PGDAttack
from lit_robust.methods.rift import RiFT
from lit_robust.methods.rift.cache import fingerprint
from lit_robust.methods.rift.criticality import CriticalityRow

CONVS = ["layer1.conv", "layer2.conv", "layer3.conv", "layer4.conv", "linear"]
BNS = ["layer1.bn", "layer2.bn", "layer3.bn", "layer4.bn"]


class _Metrics(Logger):
    """A logger that keeps every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict, int]] = []

    @property
    def name(self) -> str:
        return "metrics"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.calls.append((dict(metrics), step))

    def log_hyperparams(self, params: object, *args: object, **kwargs: object) -> None:
        pass


def _loader(n: int = 10, batch_size: int = 4) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(n, 3, 8, 8, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)]


def _rift(**kwargs: object) -> RiFT:
    model = RiFT(backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, **kwargs)
    model.configure_model()
    return model


def _attach(model: RiFT, loader: object = None, **settings: object) -> SimpleNamespace:
    broadcasts: list[object] = []

    def broadcast(value: object, src: int = 0) -> object:
        broadcasts.append((value, src))
        return value

    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(val_dataloader=lambda: loader), fast_dev_run=False,
        strategy=SimpleNamespace(broadcast=broadcast), is_global_zero=True, logger=None,
        progress_bar_callback=None, global_step=7, checkpoint_callbacks=[], log_dir=None,
        broadcasts=broadcasts, saved=[],
    )
    trainer.save_checkpoint = lambda path: trainer.saved.append(str(path))
    trainer.__dict__.update(settings)
    model._trainer = trainer
    return trainer


# --------------------------------------------------------------------------- held-out data


def test_held_out_batches_stop_at_the_limit_and_at_one_batch_in_fast_dev_run() -> None:
    loader = _loader()
    model = _rift()
    trainer = _attach(model, loader)
    sizes = [len(y) for _, y in model._held_out_batches(6)]
    assert sizes == [4, 2]
    first = next(model._held_out_batches(6))
    assert torch.equal(first[0], loader[0][0]) and torch.equal(first[1], loader[0][1])
    assert [len(y) for _, y in model._held_out_batches(None)] == [4, 4, 2]
    assert [len(y) for _, y in model._held_out_batches(4)] == [4]
    trainer.fast_dev_run = True

    class Batched(list):
        batch_size = 4

    trainer.datamodule.val_dataloader = lambda: Batched(loader)
    assert [len(y) for _, y in model._held_out_batches(None)] == [4]
    assert [len(y) for _, y in model._held_out_batches(3)] == [3]
    trainer.datamodule.val_dataloader = lambda: loader  # no batch_size: one image
    assert [len(y) for _, y in model._held_out_batches(None)] == [1]


def test_missing_or_empty_validation_data_is_a_clear_error() -> None:
    model = _rift()
    held_out = ("RiFT chooses the module and α on a held-out validation split, but the data has "
                "none; train with a DataModule that holds out images (data.val_size > 0)")
    for loader in ([], None):
        _attach(model, loader)
        with pytest.raises(ValueError) as error:
            list(model._held_out_batches(None))
        assert str(error.value) == held_out
    _attach(model).datamodule = None
    with pytest.raises(ValueError) as error:
        model._held_out_loader()
    assert str(error.value) == held_out
    x, y = _loader()[0]
    _attach(model, [(x[:0], y[:0])])
    with pytest.raises(ValueError) as error:
        list(model._held_out_batches(None))
    assert str(error.value) == "the validation split is empty; raise data.val_size"


# --------------------------------------------------------------------------- the search


def test_the_search_gets_the_settings_and_the_cache_gets_the_table(tmp_path, monkeypatch) -> None:
    searched: list[dict] = []
    attacked: list[tuple] = []
    rows = [CriticalityRow(m, 0.1 * i, 1.0, 1.0 + 0.1 * i, 0.5, 0.4, 1)
            for i, m in enumerate(CONVS)]

    def attack_set(model: nn.Module, batches: list, attack: object) -> tuple[Tensor, Tensor]:
        attacked.append((model, [len(y) for _, y in batches], attack))
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    def search(model: nn.Module, adv: Tensor, labels: Tensor, **kwargs: object) -> list:
        searched.append(dict(kwargs, model=model, n=len(labels)))
        return rows

    monkeypatch.setattr(rift_method, "generate_adversarial_set", attack_set)
    monkeypatch.setattr(rift_method, "module_robust_criticality", search)
    cache = tmp_path / "mrc.json"
    attack = PGDAttack(steps=3)
    model = _rift(mrc_epsilon=0.2, mrc_epochs=3, mrc_lr=0.5, mrc_batch_size=5,
                  mrc_project_every_step=True, mrc_samples=6, mrc_attack=attack,
                  mrc_cache=str(cache), mrc_reuse_prefix=False)
    loader = _loader()
    trainer = _attach(model, loader, progress_bar_callback=object())
    assert model._criticality_table() == rows
    assert attacked == [(model.model, [4, 2], attack)]
    assert searched == [dict(model=model.model, n=6, epsilon=0.2, epochs=3, lr=0.5, batch_size=5,
                             project_every_step=True, reuse_prefix=False, progress=True)]
    settings = {"epsilon": 0.2, "epochs": 3, "lr": 0.5, "batch_size": 5,
                "project_every_step": True, "attack": repr(attack)}
    images = torch.cat([loader[0][0], loader[1][0][:2]])
    labels = torch.cat([loader[0][1], loader[1][1][:2]])
    key = fingerprint(model.model, [images, labels], settings)
    entries = json.loads(cache.read_text())["entries"]
    assert list(entries) == [key] and entries[key]["settings"] == settings
    assert model._criticality_table() == rows and len(searched) == 1  # read from the cache
    trainer.progress_bar_callback = None
    cache.unlink()
    trainer.fast_dev_run = True  # no cache in a fast_dev_run, and progress follows the bar
    model._criticality_table()
    assert not cache.exists() and searched[-1]["progress"] is False


def test_the_default_search_attack_is_pgd10_and_the_modules_follow_the_scope() -> None:
    assert repr(_rift().mrc_attack) == repr(PGDAttack())
    rows = [CriticalityRow(m, mrc, 1.0, 1.0 + mrc, 0.5, 0.4, 1)
            for m, mrc in zip(CONVS, [0.3, 0.1, 0.5, 0.2, 0.4], strict=True)]
    expected = {"least_critical": ["layer2.conv"], "most_critical": ["layer3.conv"],
                "top_k_least": ["layer2.conv", "layer4.conv", "layer1.conv"],
                "last_layer": ["linear"],
                "all": ["layer1.conv", "layer1.bn", "layer2.conv", "layer2.bn", "layer3.conv",
                        "layer3.bn", "layer4.conv", "layer4.bn", "linear"]}
    for scope, modules in expected.items():
        model = _rift(finetune=scope, top_k=3)
        model.mrc_table = rows
        assert model._choose_modules() == modules, scope
        assert model._needs_search() == (scope in ("least_critical", "top_k_least",
                                                   "most_critical"))
    named = _rift(module="layer3.conv")
    assert named._choose_modules() == ["layer3.conv"] and not named._needs_search()


# --------------------------------------------------------------------------- fine-tuning


def test_trainable_entries_training_batchnorms_and_the_mutable_state() -> None:
    model = _rift()
    model.finetuned_modules = ["layer2.conv", "linear"]
    assert model._trainable_names() == {"net.layer2.conv.weight", "net.linear.weight",
                                        "net.linear.bias"}
    assert model._training_bn_names() == []
    model._freeze()
    assert {n for n, p in model.model.named_parameters() if p.requires_grad} == \
        model._trainable_names()
    assert model._frozen_bns == [model.model.net.get_submodule(n) for n in BNS]
    assert list(model._mutable_state()) == ["net.layer2.conv.weight", "net.linear.bias",
                                            "net.linear.weight"]
    model.finetuned_modules = ["layer3.bn"]
    assert model._trainable_names() == {"net.layer3.bn.weight", "net.layer3.bn.bias"}
    assert model._training_bn_names() == ["layer3.bn"]
    model._freeze()
    assert model._frozen_bns == [model.model.net.get_submodule(n) for n in BNS if n != "layer3.bn"]
    state = model._mutable_state()
    assert list(state) == [f"net.layer3.bn.{k}" for k in
                           ("bias", "num_batches_tracked", "running_mean", "running_var",
                            "weight")]
    assert torch.equal(state["net.layer3.bn.running_var"],
                       model.model.net.layer3.bn.running_var)
    train_mode = _rift(bn_train_mode=True)
    train_mode.finetuned_modules = ["linear"]
    assert train_mode._training_bn_names() == BNS
    train_mode._freeze()
    assert train_mode._frozen_bns == []
    nothing = _rift()
    assert nothing._trainable_names() == set() and nothing._training_bn_names() == []


def test_the_network_itself_as_module_trains_its_own_parameters_only() -> None:
    model = _rift()
    model.model.net.register_parameter("temperature", nn.Parameter(torch.ones(1)))
    model.finetuned_modules = [""]
    assert model._trainable_names() == {"net.temperature"}


def test_each_batch_puts_the_frozen_batchnorms_back_in_eval() -> None:
    model = _rift()
    model.finetuned_modules = ["layer2.bn"]
    model._freeze()
    model.model.train()
    model.on_train_batch_start(None, 0)
    modes = {n: model.model.net.get_submodule(n).training for n in BNS}
    assert modes == {"layer1.bn": False, "layer2.bn": True, "layer3.bn": False,
                     "layer4.bn": False}
    assert model.model.net.layer2.conv.training


# --------------------------------------------------------------------------- the sweep


class _Lookup(nn.Module):
    """Logits = the first 3 pixels; an image's class is where its largest pixel is."""

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1)[:, :3]


class _Flipper:
    """Moves the largest pixel to the next class for the marked images; records the calls."""

    def __init__(self, flip: list[bool]) -> None:
        self.flip = flip
        self.calls: list[tuple] = []
        self.seen = 0

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        self.calls.append((model.training, torch.is_grad_enabled(), float(torch.rand(()))))
        flip = torch.tensor(self.flip[self.seen:self.seen + len(y)])
        self.seen += len(y)
        return torch.where(flip[:, None], x.roll(1, dims=1), x)


def _hand_batches() -> list[tuple[Tensor, Tensor]]:
    x = torch.zeros(5, 3)
    for i, c in enumerate([0, 1, 2, 0, 1]):
        x[i, c] = 1.0
    y = torch.tensor([0, 1, 0, 0, 1])  # image 2 wrong on clean images
    return [(x[:3], y[:3]), (x[3:], y[3:])]


def test_sweep_accuracies_count_clean_and_robust_images_by_hand() -> None:
    model = _rift()
    model.model = _Lookup()
    _attach(model)
    # clean: 4 of 5; image 0 broken, image 2 (clean wrong) made "right": robust = 3 of 5
    attack = _Flipper([True, False, True, False, False])
    model.interpolation_attack = attack
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert model._accuracies(_hand_batches()) == (0.8, 0.6)
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is left alone
    torch.manual_seed(0)
    first = float(torch.rand(()))
    assert attack.calls[0] == (False, True, first)  # eval mode, gradients, seed 0
    assert model.model.training  # the mode is restored


def test_sweep_attack_falls_back_to_the_validation_attack_then_to_pgd10(monkeypatch) -> None:
    model = _rift()
    model.model = _Lookup()
    _attach(model)
    val = _Flipper([True] * 5)
    model.val_attack = val
    assert model._accuracies(_hand_batches()) == (0.8, 0.0)
    assert len(val.calls) == 2
    model.val_attack = None
    seen: list[str] = []

    def record(self, net, x, y):  # noqa: ANN001, ANN202
        seen.append(repr(self))
        return x

    monkeypatch.setattr(PGDAttack, "__call__", record)
    assert model._accuracies(_hand_batches()) == (0.8, 0.8)
    assert seen == [repr(PGDAttack())] * 2


def test_the_sweep_evaluates_each_alpha_once_and_loads_the_chosen_weights(monkeypatch) -> None:
    model = _rift(alphas=[1.0, 0.0, 0.5, 0.5, 0.25], alpha_tolerance=10.0, sweep_samples=3)
    model.finetuned_modules = ["linear"]
    model._freeze()
    model._base_state = {k: v.clone() for k, v in model._mutable_state().items()}
    with torch.no_grad():
        model.model.net.linear.bias.add_(4.0)
    finetuned = model.model.net.linear.bias.detach().clone()
    base = model._base_state["net.linear.bias"]
    table = {0.0: (0.5, 0.40), 0.25: (0.6, 0.35), 0.5: (0.7, 0.31), 1.0: (0.9, 0.20)}
    limits: list[int | None] = []

    def held_out(limit: int | None) -> str:
        limits.append(limit)
        return "batches"

    def accuracies(batches: object) -> tuple[float, float]:
        assert batches == "batches"
        alpha = float((model.model.net.linear.bias[0] - base[0]) / 4.0)
        return table[round(alpha, 2)]

    monkeypatch.setattr(model, "_held_out_batches", held_out)
    monkeypatch.setattr(model, "_accuracies", accuracies)
    logged: list[str] = []
    monkeypatch.setattr(model, "_log_sweep", lambda: logged.append("sweep"))
    monkeypatch.setattr(model, "_write_outputs", lambda: logged.append("outputs"))
    trainer = _attach(model)
    model.on_train_end()
    assert limits == [3] * 4
    assert model.sweep == [{"alpha": a, "clean_acc": c, "robust_acc": r}
                           for a, (c, r) in sorted(table.items())]
    assert model.alpha == 0.5  # 0.31 ≥ 0.40 − 0.10; 0.20 is not
    assert trainer.broadcasts == [((0.5, model.sweep), 0)]
    torch.testing.assert_close(model.model.net.linear.bias, 0.5 * base + 0.5 * finetuned)
    assert logged == ["sweep", "outputs"]


# --------------------------------------------------------------------------- logs and files


def _finished(**kwargs: object) -> RiFT:
    model = _rift(**kwargs)
    model.finetuned_modules = ["layer2.conv"]
    model.mrc_table = [CriticalityRow(m, 0.5 - 0.1 * i, 1.0, 1.5, 0.5, 0.25, 2)
                       for i, m in enumerate(CONVS)]
    model.alpha = 0.5
    model.sweep = [{"alpha": 0.0, "clean_acc": 0.5, "robust_acc": 0.3},
                   {"alpha": 0.5, "clean_acc": 0.6, "robust_acc": 0.3}]
    return model


def test_the_summary_names_everything_the_run_chose() -> None:
    model = _finished(alpha_tolerance=0.5)
    assert model.summary() == {
        "finetune": "least_critical", "modules": ["layer2.conv"], "alpha": 0.5,
        "alpha_tolerance_points": 0.5, "sweep": model.sweep,
        "mrc_table": [row.to_dict() for row in model.mrc_table]}
    model.mrc_table = []
    assert model.summary()["mrc_table"] is None


def test_logged_metrics_of_the_search_and_the_sweep() -> None:
    model = _finished()
    logger = _Metrics()
    _attach(model, logger=logger)
    model._log_search()
    assert logger.calls == [({f"rift/mrc/{r.module}": r.mrc for r in model.mrc_table}, 0)]
    logger.calls.clear()
    model._log_sweep()
    assert logger.calls == [
        ({"rift/sweep/clean_acc": 0.5, "rift/sweep/robust_acc": 0.3, "rift/sweep/alpha": 0.0}, 0),
        ({"rift/sweep/clean_acc": 0.6, "rift/sweep/robust_acc": 0.3, "rift/sweep/alpha": 0.5}, 1),
        ({"rift/alpha": 0.5}, 7)]
    logger.calls.clear()
    model.mrc_table = None
    model._log_search()
    assert logger.calls == []
    _attach(model)  # no logger: nothing, no error
    model._log_search()
    model._log_sweep()


def test_tensorboard_gets_the_modules_figures_and_summary(monkeypatch) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    texts: list[tuple] = []
    figures: list[tuple] = []
    made: list[tuple] = []
    experiment = SimpleNamespace(add_text=lambda *a: texts.append(a),
                                 add_figure=lambda *a: figures.append(a))

    class Recording(TensorBoardLogger):
        @property
        def experiment(self) -> SimpleNamespace:
            return experiment

        def log_metrics(self, metrics: dict, step: int | None = None) -> None:
            pass

    monkeypatch.setattr(rift_method, "criticality_figure",
                        lambda *a: made.append(("mrc", *a)) or "mrc figure")
    monkeypatch.setattr(rift_method, "interpolation_figure",
                        lambda *a: made.append(("sweep", *a)) or "sweep figure")
    model = _finished(alpha_tolerance=0.2)
    model.finetuned_modules = ["layer2.conv", "linear"]
    _attach(model, logger=Recording("unused"))
    model._log_search()
    assert texts == [("rift/finetuned_modules", "layer2.conv, linear", 0)]
    assert figures == [("rift/mrc_per_module", "mrc figure", 0)]
    assert made == [("mrc", model.mrc_table, ["layer2.conv", "linear"])]
    texts.clear(), figures.clear(), made.clear()
    model._log_sweep()
    assert made == [("sweep", [0.0, 0.5], [0.5, 0.6], [0.3, 0.3], 0.5, 0.2)]
    assert figures == [("rift/interpolation", "sweep figure", 7)]
    assert texts == [("rift/summary", f"```\n{json.dumps(model.summary(), indent=1)}\n```", 7)]


def test_outputs_are_the_summary_the_final_checkpoint_and_a_rewritten_last(tmp_path) -> None:
    model = _finished()
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    callback = ModelCheckpoint(dirpath=str(folder))
    target = folder / "epoch=1.ckpt"
    target.write_text("old")
    callback.last_model_path = str(folder / "last.ckpt")
    (folder / "last.ckpt").symlink_to(target)
    trainer = _attach(model, logger=_Metrics(), log_dir=str(tmp_path / "logs" / "v0"),
                      checkpoint_callbacks=[callback])
    model._write_outputs()
    summary = json.loads((tmp_path / "logs" / "v0" / "rift_summary.json").read_text())
    assert summary == json.loads(json.dumps(model.summary()))
    assert trainer.saved == [str(folder / "rift_final.ckpt"), str(folder / "last.ckpt")]
    assert not (folder / "last.ckpt").exists() and target.read_text() == "old"


def test_outputs_without_a_checkpoint_folder_or_the_final_checkpoint(tmp_path) -> None:
    model = _finished()
    trainer = _attach(model, logger=_Metrics(), log_dir=str(tmp_path),
                      checkpoint_callbacks=[ModelCheckpoint(dirpath=None)])
    model._write_outputs()
    assert trainer.saved == [str(tmp_path / "rift_final.ckpt")]
    quiet = _finished(save_final_checkpoint=False)
    callback = ModelCheckpoint(dirpath=str(tmp_path / "c"))
    callback.last_model_path = str(tmp_path / "c" / "last.ckpt")
    trainer = _attach(quiet, logger=_Metrics(), log_dir=str(tmp_path / "q"),
                      checkpoint_callbacks=[callback])
    quiet._write_outputs()
    assert trainer.saved == [] and (tmp_path / "q" / "rift_summary.json").is_file()
    trainer = _attach(model, logger=None, log_dir=str(tmp_path / "n"),
                      checkpoint_callbacks=[callback])
    model._write_outputs()  # no logger: no summary, the final checkpoint beside the others
    assert trainer.saved == [str(tmp_path / "c" / "rift_final.ckpt"), callback.last_model_path]
    assert not (tmp_path / "n").exists()
    trainer = _attach(model, logger=_Metrics(), log_dir=str(tmp_path / "f"), fast_dev_run=True,
                      checkpoint_callbacks=[callback])
    model._write_outputs()  # fast_dev_run: only last.ckpt is rewritten
    assert trainer.saved == [callback.last_model_path] and not (tmp_path / "f").exists()
    trainer = _attach(model, logger=_Metrics(), log_dir=str(tmp_path / "r1"),
                      is_global_zero=False, checkpoint_callbacks=[])
    model._write_outputs()  # other processes write no summary
    assert not (tmp_path / "r1").exists()
    assert trainer.saved == [str(tmp_path / "r1" / "rift_final.ckpt")]


def test_the_checkpoint_record_round_trips_and_freezes_on_load() -> None:
    model = _finished()
    model._freeze()
    model._base_state = {k: v.clone().requires_grad_(v.is_floating_point())
                         for k, v in model._mutable_state().items()}
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    record = checkpoint["rift"]
    assert {k: v for k, v in record.items() if k != "base_state"} == model.summary()
    assert list(record["base_state"]) == ["net.layer2.conv.weight"]
    assert not record["base_state"]["net.layer2.conv.weight"].requires_grad
    restored = _rift()
    restored.on_load_checkpoint(checkpoint)
    assert restored.finetuned_modules == ["layer2.conv"] and restored.alpha == 0.5
    assert restored.sweep == model.sweep and restored.mrc_table == model.mrc_table
    assert torch.equal(restored._base_state["net.layer2.conv.weight"],
                       model._base_state["net.layer2.conv.weight"])
    assert {n for n, p in restored.model.named_parameters() if p.requires_grad} == {
        "net.layer2.conv.weight"}
    plain = _rift()
    plain.on_load_checkpoint({})
    assert plain.finetuned_modules is None and all(p.requires_grad
                                                   for p in plain.model.parameters())
    empty = _rift()
    empty.on_load_checkpoint({"rift": {"modules": None, "mrc_table": [], "base_state": {}}})
    assert empty.mrc_table is None and empty._base_state is None
    assert all(p.requires_grad for p in empty.model.parameters())
    unsaved = _rift()
    record = {}
    unsaved.on_save_checkpoint(record)
    assert record["rift"]["base_state"] == {}


# --------------------------------------------------------------------------- fit start


def test_only_process_zero_searches_and_the_others_take_its_choice(monkeypatch) -> None:
    rows = [CriticalityRow(m, 0.1, 1.0, 1.1, 0.5, 0.4, 1) for m in CONVS]
    searches: list[int] = []
    model = _rift()
    monkeypatch.setattr(model, "_criticality_table", lambda: searches.append(1) or rows)
    trainer = _attach(model)
    model._search_on_first_process()
    assert searches == [1] and model.mrc_table == rows
    assert model.finetuned_modules == ["layer1.conv"]
    assert trainer.broadcasts == [((rows, ["layer1.conv"]), 0)]
    other = _rift()
    monkeypatch.setattr(other, "_criticality_table", lambda: searches.append(2) or rows)
    sent: list[object] = []
    trainer = _attach(other, is_global_zero=False)
    trainer.strategy.broadcast = lambda value, src=0: sent.append((value, src)) or (rows, ["x"])
    other._search_on_first_process()
    assert searches == [1] and sent == [(None, 0)]
    assert other.mrc_table == rows and other.finetuned_modules == ["x"]
    named = _rift(module="layer4.conv")
    monkeypatch.setattr(named, "_criticality_table", lambda: searches.append(3) or rows)
    _attach(named)
    named._search_on_first_process()
    assert searches == [1] and named.mrc_table is None
    assert named.finetuned_modules == ["layer4.conv"]


def test_fit_start_searches_freezes_and_rebuilds_the_optimizer_unless_restored(monkeypatch,
                                                                              tmp_path) -> None:
    model = _rift(module="linear")
    setups: list[object] = []
    logs: list[str] = []
    trainer = _attach(model, [(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))])
    trainer.strategy.setup_optimizers = setups.append
    monkeypatch.setattr(model, "_log_search", lambda: logs.append("search"))
    model.on_fit_start()
    assert model.finetuned_modules == ["linear"] and setups == [trainer]
    assert logs == ["search"]
    assert set(model._base_state) == {"net.linear.weight", "net.linear.bias"}
    assert torch.equal(model._base_state["net.linear.bias"], model.model.net.linear.bias)
    assert model._base_state["net.linear.bias"] is not model.model.net.linear.bias
    assert {n for n, p in model.model.named_parameters() if p.requires_grad} == set(
        model._base_state)
    restored = _rift()
    restored.finetuned_modules = ["layer2.conv"]
    kept = {"net.layer2.conv.weight": torch.zeros(1)}
    restored._base_state = kept
    trainer = _attach(restored, [(torch.rand(2, 3, 8, 8), torch.tensor([0, 1]))])
    trainer.strategy.setup_optimizers = setups.append
    monkeypatch.setattr(restored, "_search_on_first_process",
                        lambda: pytest.fail("a restored run searched again"))
    monkeypatch.setattr(restored, "_log_search", lambda: logs.append("restored"))
    restored.on_fit_start()
    assert restored._base_state is kept and setups == [model.trainer]
    assert logs == ["search", "restored"]
    assert {n for n, p in restored.model.named_parameters() if p.requires_grad} == {
        "net.layer2.conv.weight"}
    fresh = _rift(module="linear")
    _attach(fresh, [])
    with pytest.raises(ValueError, match="held-out validation split"):
        fresh.on_fit_start()


def test_ddp_wraps_the_model_again_after_freezing() -> None:
    from lightning.pytorch.strategies import DDPStrategy

    class Recording(DDPStrategy):
        configured = 0

        def configure_ddp(self) -> None:
            self.configured += 1

    model = _rift()
    strategy = Recording()
    strategy.model = nn.Linear(1, 1)  # the earlier wrapper
    _attach(model, strategy=strategy)
    model._wrap_ddp_again()
    assert strategy.model is model and strategy.configured == 1
    model._wrap_ddp_again()  # already the module: nothing to do
    assert strategy.configured == 1
    _attach(model)  # a plain strategy: nothing to do (it has no configure_ddp)
    model._wrap_ddp_again()
