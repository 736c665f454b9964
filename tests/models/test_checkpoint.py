"""Reading checkpoint formats written here in their native layouts, and mismatch errors."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from lit_robust.models import (
    CheckpointMismatchError,
    NormalizedClassifier,
    TinyCNN,
    load_state_dict_file,
    load_weights,
)


def _trained_like(seed: int, num_classes: int = 10) -> TinyCNN:
    torch.manual_seed(seed)
    net = TinyCNN(num_classes, width=4)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.normal_()
    return net


def _assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], msg=key)


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in state.items()}


def test_plain_state_dict(tmp_path: Path) -> None:
    source = _trained_like(0)
    path = _save(source.state_dict(), tmp_path / "plain.pt")
    target = TinyCNN(10, width=4)
    load_weights(target, path)
    _assert_same_weights(source, target)
    assert list(load_state_dict_file(path)) == list(source.state_dict())


def test_data_parallel_prefix(tmp_path: Path) -> None:
    source = _trained_like(1)
    path = _save(nn.DataParallel(source).state_dict(), tmp_path / "dp.pt")
    assert next(iter(torch.load(path, weights_only=True))).startswith("module.")
    target = TinyCNN(10, width=4)
    load_weights(target, path)
    _assert_same_weights(source, target)


def test_normalized_classifier_state_dict(tmp_path: Path) -> None:
    source = _trained_like(2)
    wrapped = NormalizedClassifier(source, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    path = _save(wrapped.state_dict(), tmp_path / "wrapped.pt")
    state = load_state_dict_file(path)
    assert "mean" not in state and "layer1.conv.weight" in state
    target = TinyCNN(10, width=4)
    load_weights(target, path)
    _assert_same_weights(source, target)


def test_nested_under_state_dict_next_to_training_state(tmp_path: Path) -> None:
    source = _trained_like(3)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    checkpoint = {
        "epoch": 7, "state_dict": source.state_dict(), "optimizer": optimizer.state_dict(),
    }
    target = TinyCNN(10, width=4)
    load_weights(target, _save(checkpoint, tmp_path / "nested.pt"))
    _assert_same_weights(source, target)


@pytest.mark.parametrize("wrapper_key", ["model", "state_dict"])
def test_robustness_library_format(tmp_path: Path, wrapper_key: str) -> None:
    source, attacker_copy = _trained_like(4), _trained_like(5)
    state = {
        "module.normalizer.new_mean": torch.full((3, 1, 1), 0.5),
        "module.normalizer.new_std": torch.full((3, 1, 1), 0.25),
        **_prefixed(source.state_dict(), "module.model."),
        "module.attacker.normalize.new_mean": torch.full((3, 1, 1), 0.5),
        "module.attacker.normalize.new_std": torch.full((3, 1, 1), 0.25),
        **_prefixed(attacker_copy.state_dict(), "module.attacker.model."),
    }
    path = _save({wrapper_key: state, "epoch": 90, "schedule": None}, tmp_path / "robust.pt")
    target = TinyCNN(10, width=4)
    load_weights(target, path)
    _assert_same_weights(source, target)  # the model copy, not the attacker's


def test_lightning_checkpoint(tmp_path: Path) -> None:
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self, mean: tuple[float, ...] = (0.5, 0.4, 0.3), lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = NormalizedClassifier(TinyCNN(10, width=4), mean, (0.25, 0.25, 0.25))
            self.source = TinyCNN(10, width=4)  # another submodule that must be ignored

        def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            return nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.model.parameters(), lr=self.hparams.lr, momentum=0.9)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,)))
    module = Module()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=4))
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    target = TinyCNN(10, width=4)
    load_weights(target, path)
    _assert_same_weights(module.model.net, target)


def test_the_backbone_is_loaded_not_its_wrapper(tmp_path: Path) -> None:
    path = _save(_trained_like(9).state_dict(), tmp_path / "plain.pt")
    with pytest.raises(TypeError, match="pass the classifier's .net"):
        load_weights(NormalizedClassifier(TinyCNN(10, width=4), (0.5,), (0.5,)), path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_weights(TinyCNN(10), path)


@pytest.mark.parametrize("obj", [[torch.zeros(2)], {"epoch": 3, "note": "no weights"}])
def test_unknown_format_lists_the_understood_ones(tmp_path: Path, obj: object) -> None:
    with pytest.raises(ValueError, match="understood formats: a plain state dict.*Lightning"):
        load_state_dict_file(_save(obj, tmp_path / "odd.pt"))


def test_objects_refused_by_weights_only_loading(tmp_path: Path) -> None:
    path = _save({"state_dict": {}, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict_file(path)


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = _trained_like(6).state_dict()
    del state["layer2.bn.running_var"]
    state["extra.weight"] = torch.zeros(3)
    state["layer1.conv.weight"] = torch.zeros(5, 3, 3, 3)
    path = _save(state, tmp_path / "broken.pt")
    target = TinyCNN(10, width=4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert "1 missing key(s)" in message and "layer2.bn.running_var" in message
    assert "1 unexpected key(s)" in message and "extra.weight" in message
    assert "layer1.conv.weight: checkpoint [5, 3, 3, 3] vs network [4, 3, 3, 3]" in message
    assert info.value.missing == ["layer2.bn.running_var"]
    assert info.value.unexpected == ["extra.weight"]
    for key, value in target.state_dict().items():  # nothing was loaded
        torch.testing.assert_close(value, before[key])


def test_non_strict_loads_common_keys_with_a_warning(tmp_path: Path) -> None:
    source = _trained_like(7)
    state = source.state_dict()
    del state["linear.bias"]
    target = TinyCNN(10, width=4)
    with pytest.warns(UserWarning, match="missing key.*linear.bias"):
        load_weights(target, _save(state, tmp_path / "partial.pt"), strict=False)
    torch.testing.assert_close(target.linear.weight, source.linear.weight)


def test_other_number_of_classes_needs_skip_head(tmp_path: Path) -> None:
    source = _trained_like(8, num_classes=10)
    path = _save(source.state_dict(), tmp_path / "ten.pt")
    target = TinyCNN(100, width=4)
    with pytest.raises(CheckpointMismatchError) as error:
        load_weights(target, path)
    # the advice names the setting a CLI user has (reset_head), not only the Python argument
    assert ("set reset_head: true (--model.init_args.reset_head true; skip_head=True in "
            "load_weights) to start from a new head") in str(error.value)
    head = target.linear.weight.clone()
    load_weights(target, path, skip_head=True)
    torch.testing.assert_close(target.linear.weight, head)
    torch.testing.assert_close(target.layer4.conv.weight, source.layer4.conv.weight)
