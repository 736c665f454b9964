"""Real pre-trained CIFAR-10 ResNet-18 checkpoints load strictly and behave as measured.

The standard-trained ResNet-18 ships inside ``pyautoattack`` (``examples/model_test.pt``); its
``examples/eval.py`` feeds raw ``ToTensor()`` images, so the model takes [0, 1] inputs without
normalization (mean 0, std 1). The FGSM-trained copy in the shared models folder uses the same
convention.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from lit_robust.attacks import pgd
from lit_robust.models import NormalizedClassifier, load_weights, resnet18
from tests.shared_paths import shared_models_root

RAW_PIXELS = {"mean": (0.0,), "std": (1.0,)}


def _first_per_class(y: Tensor, per_class: int) -> Tensor:
    """Indices of the first ``per_class`` images of each class (the subset is class-major)."""
    return torch.cat([torch.nonzero(y == c).flatten()[:per_class] for c in range(10)])


def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 250) -> float:
    with torch.no_grad():
        correct = sum(
            (model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum().item()
            for i in range(0, len(x), batch_size)
        )
    return correct / len(x)


def _classifier(path: Path) -> NormalizedClassifier:
    net = resnet18(num_classes=10)
    load_weights(net, path, strict=True)
    return NormalizedClassifier(net, **RAW_PIXELS).eval()


@pytest.fixture(scope="module")
def fgsm_rs_resnet18_path() -> Path:
    """The FGSM-trained ResNet-18 next to the shared data folder (``shared/models``)."""
    path = shared_models_root() / "cifar10_resnet18_fgsm_rs.pt"
    if not path.is_file():
        pytest.fail(f"shared robust ResNet-18 not found at {path}")
    return path


def test_resnet18_computes_what_the_reference_code_computes(autoattack_resnet18_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "autoattack_example_resnet", autoattack_resnet18_path.parent / "resnet.py"
    )
    reference_code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference_code)
    reference = reference_code.ResNet18()
    reference.load_state_dict(
        torch.load(autoattack_resnet18_path, map_location="cpu", weights_only=True)
    )
    ours = resnet18(10)
    load_weights(ours, autoattack_resnet18_path)
    assert list(ours.state_dict()) == list(reference.state_dict())
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


@pytest.mark.slow
def test_autoattack_resnet18_is_accurate_and_not_robust(
    autoattack_resnet18_path: Path, cifar10_test_1000: tuple[Tensor, Tensor]
) -> None:
    x, y = cifar10_test_1000
    model = _classifier(autoattack_resnet18_path)
    clean = _accuracy(model, x, y)
    assert clean >= 0.80, f"clean accuracy {clean:.3f} on 1,000 CIFAR-10 test images"

    subset = _first_per_class(y, per_class=10)  # PGD on CPU: 100 of the 1,000 images
    torch.manual_seed(0)
    x_adv = pgd(model, x[subset], y[subset], eps=8 / 255, step_size=2 / 255, steps=10)
    assert (x_adv - x[subset]).abs().max() <= 8 / 255 + 1e-6
    robust = _accuracy(model, x_adv, y[subset])
    assert robust < 0.05, f"PGD-10 accuracy {robust:.3f} of a standard-trained model"


@pytest.mark.slow
def test_fgsm_trained_resnet18_keeps_some_robustness(
    fgsm_rs_resnet18_path: Path, cifar10_test_1000: tuple[Tensor, Tensor]
) -> None:
    x, y = cifar10_test_1000
    model = _classifier(fgsm_rs_resnet18_path)
    clean = _accuracy(model, x, y)
    assert 0.55 <= clean < 0.80, f"clean accuracy {clean:.3f} (60.1% measured)"

    subset = _first_per_class(y, per_class=5)  # PGD on CPU: 50 of the 1,000 images
    torch.manual_seed(0)
    x_adv = pgd(model, x[subset], y[subset], eps=8 / 255, step_size=2 / 255, steps=10)
    robust = _accuracy(model, x_adv, y[subset])
    assert robust >= 0.2, f"PGD-10 accuracy {robust:.3f} (31.8% measured on 1,000)"
