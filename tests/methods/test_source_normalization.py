"""A method that keeps source layers normalizes as its source did, or says why not.

Frozen blocks and reused BatchNorm statistics compute what they learned only on inputs
normalized as during pre-training; CARTL's official code normalizes source and target with the
same statistics. A checkpoint that carries its normalization is adopted (mean/std unset) or
compared (mean/std given); mixing is an error unless allowed on purpose.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_robust.methods import StandardTraining
from lit_robust.methods.cartl import NEFTTransfer, VanillaTransfer
from lit_robust.models.checkpoint import read_normalization
from lit_robust.models.zoo import build_classifier

SOURCE_MEAN, SOURCE_STD = [0.507, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]
TARGET = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]}


@pytest.fixture
def source_checkpoint(tmp_path: Path) -> Path:
    """A lit_robust classifier's state dict (``normalize.*`` + ``net.*``), 5 classes."""
    model = build_classifier("tiny_cnn", 5, SOURCE_MEAN, SOURCE_STD)
    torch.save(model.state_dict(), tmp_path / "source.pt")
    return tmp_path / "source.pt"


def _built(method_class: type, path: Path, **kwargs: object):
    method = method_class(backbone="tiny_cnn", num_classes=5, pretrained=str(path), **kwargs)
    method.configure_model()
    return method


def test_a_method_keeping_source_layers_adopts_the_source_normalization(
    source_checkpoint: Path,
) -> None:
    method = _built(VanillaTransfer, source_checkpoint, k=2)
    normalize = method.model.normalize
    torch.testing.assert_close(normalize.mean.flatten(), torch.tensor(SOURCE_MEAN))
    torch.testing.assert_close(normalize.std.flatten(), torch.tensor(SOURCE_STD))
    assert method.hparams.mean == pytest.approx(SOURCE_MEAN)  # a resumed run keeps it


def test_mixing_is_an_error_that_names_both(source_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match=r"mean=\[0.4914.*trained with mean=\[0.507"):
        _built(NEFTTransfer, source_checkpoint, k=2, **TARGET)
    with pytest.warns(UserWarning, match="trained with mean"):
        method = _built(NEFTTransfer, source_checkpoint, k=2, allow_normalization_change=True,
                        **TARGET)
    assert method.model.normalize.mean.flatten()[0] == pytest.approx(0.4914)
    _built(NEFTTransfer, source_checkpoint, k=2, mean=SOURCE_MEAN, std=SOURCE_STD)  # same: fine


def test_full_fine_tuning_may_normalize_differently_but_says_so(source_checkpoint: Path) -> None:
    with pytest.warns(UserWarning, match="it fine-tunes those layers"):
        _built(StandardTraining, source_checkpoint, **TARGET)


def test_normalization_is_read_from_every_format_that_carries_it(tmp_path: Path) -> None:
    mean, std = torch.tensor(SOURCE_MEAN), torch.tensor(SOURCE_STD)
    weights = {"conv.weight": torch.zeros(2, 3, 1, 1)}
    formats = {
        "lightning": {"pytorch-lightning_version": "2.4", "state_dict": {
            "model.normalize.mean": mean.view(1, 3, 1, 1),
            "model.normalize.std": std.view(1, 3, 1, 1),
            **{f"model.net.{k}": v for k, v in weights.items()}}},
        "robustness": {"model": {"module.normalizer.new_mean": mean.view(3, 1, 1),
                                 "module.normalizer.new_std": std.view(3, 1, 1),
                                 "module.attacker.normalize.mean": torch.zeros(3),
                                 "module.attacker.normalize.std": torch.ones(3),
                                 **{f"module.model.{k}": v for k, v in weights.items()}}},
        "robustbench": {"mu": mean.view(1, 3, 1, 1), "sigma": std.view(1, 3, 1, 1), **weights},
    }
    for name, content in formats.items():
        torch.save(content, tmp_path / f"{name}.pt")
        found = read_normalization(tmp_path / f"{name}.pt")
        assert found is not None, name
        torch.testing.assert_close(torch.tensor(found[0]), mean)
        torch.testing.assert_close(torch.tensor(found[1]), std)
    torch.save(weights, tmp_path / "plain.pt")  # the official codes' plain state dicts
    assert read_normalization(tmp_path / "plain.pt") is None
