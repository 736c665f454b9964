"""Last-layer-only fine-tuning: training changes the head and, with the source's BatchNorm
statistics, nothing else bit for bit; with the official target statistics, the running
statistics move and every frozen parameter stays."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer

from lit_robust.data import CIFAR10DataModule
from lit_robust.methods import LastLayerFineTuning
from lit_robust.models import TinyCNN, get_head


def _source(tmp_path) -> TinyCNN:
    source = TinyCNN(num_classes=10)
    generator = torch.Generator().manual_seed(0)
    for name, buffer in source.named_buffers():  # statistics that a batch would move
        if name.endswith(("running_mean", "running_var")):
            buffer.uniform_(0.5, 1.5, generator=generator)
    torch.save(source.state_dict(), tmp_path / "source.pt")
    return source


def _method(tmp_path, bn_statistics: str) -> LastLayerFineTuning:
    method = LastLayerFineTuning(backbone="tiny_cnn", num_classes=10,
                                 pretrained=str(tmp_path / "source.pt"), reset_head=True, lr=0.5,
                                 mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26],
                                 bn_statistics=bn_statistics)
    method.configure_model()
    return method


def _fit(method: LastLayerFineTuning, tmp_path) -> None:
    data = CIFAR10DataModule(samples_per_class=4, val_size=20, batch_size=8, num_workers=0)
    trainer = Trainer(max_steps=6, val_check_interval=2, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, inference_mode=False, accelerator="cpu",
                      default_root_dir=tmp_path)
    trainer.fit(method, data)


def _fit_recording_modes(method: LastLayerFineTuning, tmp_path) -> list[tuple[bool, ...]]:
    """Fit ``method`` and return, per training step, the train/eval mode of every module
    but the head (the head itself must be training)."""
    _, head = get_head(method.model)
    modes: list[tuple[bool, ...]] = []
    step = method.training_step

    def recording_step(batch, batch_idx):
        modes.append(tuple(m.training for m in method.model.modules() if m is not head))
        assert head.training
        return step(batch, batch_idx)

    method.training_step = recording_step
    _fit(method, tmp_path)
    return modes


def test_source_statistics_change_only_the_head_bit_for_bit(tmp_path):
    source = _source(tmp_path)
    method = _method(tmp_path, "source")
    head_name, _ = get_head(method.model)
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    modes = _fit_recording_modes(method, tmp_path)
    after = method.model.state_dict()
    # validation ran between the steps and did not put the frozen network back in train mode
    assert [any(step) for step in modes] == [False] * 6
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"{head_name}.weight", f"{head_name}.bias"}
    trainable = {n for n, p in method.model.named_parameters() if p.requires_grad}
    assert trainable == {f"{head_name}.weight", f"{head_name}.bias"}
    for key, value in source.state_dict().items():  # the features are the checkpoint's
        if not key.startswith("linear."):
            assert torch.equal(after[f"net.{key}"], value), key


def test_target_statistics_reestimate_batchnorm_and_keep_every_frozen_parameter(tmp_path):
    """The official ablation: the frozen network trains in train mode, so its BatchNorm
    running statistics move to the target's while its weights (and BN affine) stay."""
    source = _source(tmp_path)
    method = _method(tmp_path, "target")
    head_name, _ = get_head(method.model)
    before = {k: v.clone() for k, v in method.model.state_dict().items()}
    modes = _fit_recording_modes(method, tmp_path)
    after = method.model.state_dict()
    assert [all(step) for step in modes] == [True] * 6
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    statistics = {k for k in before if k.endswith(("running_mean", "running_var",
                                                   "num_batches_tracked"))}
    assert changed == statistics | {f"{head_name}.weight", f"{head_name}.bias"}
    for key, value in source.state_dict().items():  # every frozen parameter is the source's
        if not key.startswith("linear.") and f"net.{key}" not in statistics:
            assert torch.equal(after[f"net.{key}"], value), key


def test_unknown_bn_statistics_is_refused():
    with pytest.raises(ValueError, match="bn_statistics must be 'target'"):
        LastLayerFineTuning(backbone="tiny_cnn", bn_statistics="frozen")
