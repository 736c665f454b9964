"""A certification's per-image results: for every radius, which certified images count in
``certified_acc@r``, keyed by their test-set position, so that two certified models are
compared image by image on the same subset."""

from __future__ import annotations

import numpy as np
import torch

from lit_robust.evaluation.certify_evaluator import SmoothingCertification
from tests.evaluation.toy_models import ConstantClassifier


def test_per_image_results_are_the_certified_images_correct_at_each_radius() -> None:
    evaluator = SmoothingCertification(sigma=0.25, n0=10, n=100, alpha=0.001, skip=4,
                                       max_images=None, num_test_images=20,
                                       radii=[0.0, 0.25, 0.5])
    y = (torch.arange(20) // 4) % 2  # labels 0, 1, 0, 1, 0 at the certified 0, 4, ..., 16
    x = torch.rand(20, 1, 4, 4)
    for start in range(0, 20, 3):
        evaluator.update(ConstantClassifier(3, 1), x[start:start + 3], y[start:start + 3])
    metrics = evaluator.compute()
    results = evaluator.per_image()
    assert set(results) == {f"smoothing_sigma0.25/certified_acc@{r}" for r in ("0", "0.25", "0.5")}
    for name, result in results.items():
        assert result.index.tolist() == [0, 4, 8, 12, 16] and result.maximum == 1
        assert float(np.mean(result.values)) == metrics[name]
    # the constant class 1 is right on images 4 and 12, with a radius in (0.25, 0.5)
    assert results["smoothing_sigma0.25/certified_acc@0"].values.tolist() == [0, 1, 0, 1, 0]
    assert results["smoothing_sigma0.25/certified_acc@0.5"].values.tolist() == [0] * 5
