"""The DataModules inside Lightning: configs, Trainer fit/validate/test, no validation split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch import nn

import lit_robust.data
from lit_robust.data import CIFAR10DataModule, RobustDataModule

CONFIGS = sorted((Path(__file__).parents[2] / "configs" / "data").glob("*.yaml"))


def test_every_datamodule_has_a_config():
    configured = {path.read_text().split("class_path: lit_robust.data.")[1].split()[0]
                  for path in CONFIGS}
    exported = {name for name in lit_robust.data.__all__
                if name.endswith("DataModule") and name != "RobustDataModule"}
    assert exported <= configured


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_data_config_instantiates(config, shared_data):
    parser = ArgumentParser()
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(LightningDataModule, "data")
    parsed = parser.parse_args(["--config", str(config)])
    datamodule = parser.instantiate_classes(parsed).data
    assert isinstance(datamodule, RobustDataModule)
    assert datamodule.root == shared_data
    assert datamodule.batch_size == parsed.data.init_args.batch_size
    assert len(datamodule.mean) == len(datamodule.std) == 3


class TinyClassifier(LightningModule):
    """Normalize with the DataModule's statistics, then a linear layer."""

    def configure_model(self) -> None:
        datamodule = self.trainer.datamodule
        size, classes = datamodule.image_size, datamodule.num_classes
        self.register_buffer("mean", torch.tensor(datamodule.mean).view(3, 1, 1))
        self.register_buffer("std", torch.tensor(datamodule.std).view(3, 1, 1))
        self.linear = nn.Linear(3 * size * size, classes)

    def _loss(self, batch):
        images, labels = batch
        assert 0 <= images.min() and images.max() <= 1
        return nn.functional.cross_entropy(self.linear(((images - self.mean) / self.std)
                                                       .flatten(1)), labels)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def test_step(self, batch, batch_idx):
        self.log("test_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer() -> Trainer:
    return Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


@pytest.mark.parametrize("val_size", [0.1, 0])
def test_fit_and_test_with_and_without_validation(shared_data, val_size):
    datamodule = CIFAR10DataModule(
        root=str(shared_data), samples_per_class=4, val_size=val_size,
        val_samples_per_class=2 if val_size else None, test_samples_per_class=2,
        num_workers=0, batch_size=16,
    )
    trainer, model = _trainer(), TinyClassifier()
    trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 3  # 40 images in batches of 16
    assert ("val_loss" in trainer.callback_metrics) == bool(val_size)
    results = trainer.test(model, datamodule=datamodule, verbose=False)
    assert results[0]["test_loss"] > 0
