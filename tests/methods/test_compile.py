"""``compile_model``: the compiled model trains, and checkpoints load with or without it.

Inductor's C++ compilation of even the tiny CNN takes over a minute on a two-core CPU, so these
tests use ``compile_backend="aot_eager"``: the same graph capture and autograd tracing, with
PyTorch's eager kernels; the effect of inductor is measured in ``benchmarks/compile_effect.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.attacks import PGDAttack
from lit_robust.methods import AdversarialTraining

BACKEND = "aot_eager"
REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("compile_effect",
                                              REPO / "benchmarks" / "compile_effect.py")
compile_effect = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compile_effect)


def _method(**kwargs) -> AdversarialTraining:
    return AdversarialTraining(
        backbone="tiny_cnn", num_classes=10, mean=[0.5] * 3, std=[0.25] * 3, lr=0.01,
        schedule="constant", attack=PGDAttack(eps=8 / 255, steps=2), val_attack=None,
        evaluators=[], **kwargs)


def _fit(method: AdversarialTraining, root) -> Trainer:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, 3, 32, 32, generator=generator),
                         torch.randint(0, 10, (16,), generator=generator))
    trainer = Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, logger=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=root, enable_checkpointing=False)
    trainer.fit(method, DataLoader(data, batch_size=8))
    return trainer


def test_a_compiled_fit_saves_the_uncompiled_names_and_loads_both_ways(tmp_path) -> None:
    torch.manual_seed(0)
    compiled = _method(compile_model=True, compile_backend=BACKEND)
    trainer = _fit(compiled, tmp_path)
    assert compiled.model._compiled_call_impl is not None  # the forward really is compiled
    assert "compile_model" not in compiled.hparams  # a run setting, not a hyperparameter
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")

    plain = AdversarialTraining.load_from_checkpoint(tmp_path / "compiled.ckpt")
    plain.configure_model()
    assert plain.model._compiled_call_impl is None
    state = plain.model.state_dict()
    assert not any("_orig_mod" in key for key in state)
    assert state.keys() == compiled.model.state_dict().keys()
    x = torch.rand(4, 3, 32, 32)
    compiled.eval(), plain.eval()
    with torch.no_grad():
        assert torch.allclose(compiled(x), plain(x), atol=1e-5)

    again = AdversarialTraining.load_from_checkpoint(tmp_path / "compiled.ckpt",
                                                     compile_model=True,
                                                     compile_backend=BACKEND)
    again.configure_model()
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(x), plain(x), atol=1e-5)


def test_an_unknown_backend_is_an_early_error() -> None:
    with pytest.raises(ValueError, match="compile_backend='inductr' is not a torch.compile"):
        _method(compile_model=True, compile_backend="inductr")


def test_the_compile_benchmark_times_a_compiled_bf16_step() -> None:
    args = argparse.Namespace(device="cpu", model="tiny_cnn", backend="eager", batch_size=4,
                              steps=1, iterations=1, repeats=1, precision="bf16", compile=True)
    row = compile_effect.worker(args)
    assert (row["precision"], row["compiled"], row["backend"]) == ("bf16", True, "eager")
    assert row["images_per_s"] > 0 and row["first_step_seconds"] > 0
    report = compile_effect.markdown({"device": "cpu", "model": "tiny_cnn", "batch_size": 4,
                                      "pgd_steps": 1, "torch": "x", "torch_threads": 1,
                                      "cpu_count": 2, "settings": [{**row, "speedup": 1.2}]},
                                     "python benchmarks/compile_effect.py")
    assert f"| bf16 | yes (eager) | {row['images_per_s']} | 1.2 |" in report
