"""AutoAttack ≤ PGD ≤ clean accuracy for the real ResNet-18 shipped with pyautoattack.

The model is standard-trained (about 94% clean accuracy on the original CIFAR-10 test set,
less on the JPEG re-encoded copy) and expects [0, 1] inputs without normalization
(``pyautoattack/examples/eval.py`` only applies ``ToTensor``).
"""

from __future__ import annotations

from pathlib import Path

import pyautoattack
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from lit_robust.evaluation import (
    AutoAttackEvaluator,
    CleanAccuracy,
    PGDEvaluator,
    evaluate,
)
from lit_robust.models.cifar_resnet import resnet18
from lit_robust.models.normalize import NormalizedClassifier
from tests.shared_paths import shared_data_root

PER_CLASS = 10


def _cifar10_test_subset(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` files (sorted by name) of every class of cifar10-jpeg/test."""
    root = shared_data_root() / "cifar10-jpeg" / "test"
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 JPEG test images not found at {root}; set "
                                "LIT_ROBUST_DATA to the shared data folder")
    images, labels = [], []
    for label, class_dir in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):
        for path in sorted(class_dir.iterdir())[:per_class]:
            images.append(to_tensor(Image.open(path).convert("RGB")))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def _pyautoattack_resnet18() -> NormalizedClassifier:
    path = Path(pyautoattack.__file__).parent / "examples" / "model_test.pt"
    net = resnet18(num_classes=10)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return NormalizedClassifier(net, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@pytest.mark.slow
def test_autoattack_is_at_most_pgd_is_at_most_clean_on_real_images() -> None:
    x, y = _cifar10_test_subset(PER_CLASS)
    torch.manual_seed(0)
    autoattack = AutoAttackEvaluator(
        norm="Linf", eps=8 / 255, version="custom", attacks_to_run=["apgd-ce", "apgd-t"],
        apgd_n_iter=5, apgd_n_restarts=1, apgd_t_n_iter=5, apgd_t_n_target_classes=2,
    )
    results = evaluate(
        _pyautoattack_resnet18(), [(x[:50], y[:50]), (x[50:], y[50:])],
        [CleanAccuracy(), PGDEvaluator(eps=8 / 255, step_size=2 / 255, steps=5), autoattack],
    )
    clean = results["clean_acc"]
    pgd = results["robust_acc/pgd5_linf_eps0.03137_step0.007843"]
    aa = results["robust_acc/autoattack_apgd-ce+apgd-t_linf_eps0.03137"]
    print(f"clean {clean:.3f}  PGD-5 {pgd:.3f}  AutoAttack(APGD-CE+APGD-T) {aa:.3f}")
    assert 0.7 <= clean <= 0.95  # a real, working classifier on these JPEG images
    assert pgd <= 0.05  # a standard-trained model collapses under an 8/255 attack
    assert aa <= pgd
