"""evaluate(): plain-Python evaluation of a tiny model with several evaluators."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.evaluation import CleanAccuracy, PGDEvaluator, SanityChecks, evaluate
from lit_robust.models.tiny import TinyCNN


def _model_and_loader() -> tuple[nn.Module, DataLoader, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyCNN(num_classes=4, width=4)
    x = torch.rand(20, 3, 32, 32)
    y = torch.randint(0, 4, (20,))
    return model, DataLoader(TensorDataset(x, y), batch_size=8), x


def test_evaluate_merges_every_evaluator_and_restores_train_mode() -> None:
    model, loader, x = _model_and_loader()
    model.train()
    with torch.no_grad():
        expected = (model.eval()(x).argmax(1) == loader.dataset.tensors[1]).float().mean()
    model.train()
    evaluators = [CleanAccuracy(), PGDEvaluator(steps=1), SanityChecks(eps_list=[2 / 255],
                                                                        steps=1)]
    results = evaluate(model, loader, evaluators)
    assert results["clean_acc"] == pytest.approx(float(expected))
    assert results["eps_sweep/sanity/eps0"] == results["clean_acc"]
    assert results["sanity/within_budget"] == 1.0
    assert model.training and all(m.training for m in model.modules())
    assert evaluate(model, loader, [CleanAccuracy()]) == {"clean_acc": results["clean_acc"]}


def test_dict_batches_are_accepted() -> None:
    model, loader, _ = _model_and_loader()
    batches = [{"image": x, "label": y} for x, y in loader]
    assert evaluate(model, batches, [CleanAccuracy()]) == evaluate(model, loader,
                                                                    [CleanAccuracy()])


def test_duplicate_metric_names_and_empty_lists_are_rejected() -> None:
    model, loader, _ = _model_and_loader()
    with pytest.raises(ValueError, match="distinct name"):
        evaluate(model, loader, [PGDEvaluator(steps=1), PGDEvaluator(steps=1)])
    with pytest.raises(ValueError, match="at least one evaluator"):
        evaluate(model, loader, [])
