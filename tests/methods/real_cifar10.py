"""Fit and test a method on a class-balanced subset of the real CIFAR-10 images."""

from __future__ import annotations

from lightning.pytorch import Trainer, seed_everything

from lit_robust.data import CIFAR10DataModule
from lit_robust.methods import RobustClassifier


def fit_and_test_on_cifar10(model: RobustClassifier, samples_per_class: int,
                            test_samples_per_class: int, epochs: int,
                            seed: int = 0) -> dict[str, float]:
    """Train ``model`` (no validation split) on real CIFAR-10, test it, return its metrics;
    everything random (weights, order, attack starts) comes from ``seed``."""
    seed_everything(seed, verbose=False)
    data = CIFAR10DataModule(samples_per_class=samples_per_class, val_size=0,
                             test_samples_per_class=test_samples_per_class, batch_size=64,
                             num_workers=0)
    trainer = Trainer(max_epochs=epochs, logger=False, inference_mode=False, accelerator="cpu",
                      enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False)
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    return model.test_results
