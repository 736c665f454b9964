"""Per-image results: the compact encoding, what each evaluator keeps, and the report file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lit_robust.analysis.paired import load_per_image
from lit_robust.evaluation import (
    AutoAttackEvaluator,
    CleanAccuracy,
    CorruptionRobustness,
    PGDEvaluator,
    RobustnessReport,
    evaluate,
)
from lit_robust.evaluation.per_image import (
    PerImageResult,
    decode,
    encode,
    expand_ranges,
    index_ranges,
)
from tests.evaluation.toy_models import self_labelled_batch


@pytest.mark.parametrize("maximum", [1, 75, 300])
def test_encoding_round_trips(maximum: int) -> None:
    rng = np.random.default_rng(0)
    index = np.concatenate([np.arange(0, 37), np.arange(40, 41), np.arange(50, 1000, 3)])
    values = rng.integers(0, maximum + 1, size=index.size)
    entry = encode({"m": PerImageResult(index, values, maximum)})
    back = decode(json.loads(json.dumps(entry)))["m"]
    np.testing.assert_array_equal(back.index, index)
    np.testing.assert_array_equal(back.values, values)
    assert back.maximum == maximum


def test_index_ranges_are_compact() -> None:
    assert index_ranges(np.arange(2000)) == [[0, 2000]]
    assert index_ranges(np.array([0, 1, 2, 5, 7, 8])) == [[0, 3], [5, 6], [7, 9]]
    assert index_ranges(np.zeros(0, dtype=np.int64)) == []
    np.testing.assert_array_equal(expand_ranges([[0, 3], [5, 6]]), [0, 1, 2, 5])
    # 2,000 binary results take 2000 / 8 bytes, about 336 characters of base64
    entry = encode({"clean_acc": PerImageResult(np.arange(2000), np.ones(2000, dtype=int))})
    assert len(entry["metrics"]["clean_acc"]["values"]) == 336


def test_bad_per_image_results_are_refused() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        PerImageResult(np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="0..1"):
        PerImageResult(np.array([0, 1]), np.array([1, 2]))
    entry = encode({"m": PerImageResult(np.arange(3), np.array([10, 0, 3]), 20)})
    entry["metrics"]["m"]["index"] = [[0, 4]]
    with pytest.raises(ValueError, match="damaged"):
        decode(entry)


def test_evaluators_keep_each_image_and_agree_with_their_accuracy() -> None:
    model, x, y = self_labelled_batch(20)
    y[::3] = (y[::3] + 1) % 10  # every third image misclassified: clean accuracy 13/20
    evaluators = [CleanAccuracy(), PGDEvaluator(eps_list=[0.0, 8 / 255], steps=2,
                                                random_start=False, name="pgd"),
                  AutoAttackEvaluator(eps=8 / 255, version="custom",
                                      attacks_to_run=["apgd-ce"], apgd_n_iter=2,
                                      apgd_n_restarts=1),
                  CorruptionRobustness(corruptions=["contrast", "fog"], severities=[1, 5])]
    metrics = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=6), evaluators,
                       progress=False)
    results = {name: result for evaluator in evaluators
               for name, result in evaluator.per_image().items()}
    assert set(results) == {"clean_acc", "robust_acc/pgd/eps0", "robust_acc/pgd/eps0.03137",
                            "robust_acc/autoattack_apgd-ce_linf_eps0.03137",
                            "robust_acc/autoattack_apgd-ce_linf_eps0.03137/apgd-ce",
                            "corruption_acc/mean"}
    expected_clean = np.ones(20, dtype=int)
    expected_clean[::3] = 0
    np.testing.assert_array_equal(results["clean_acc"].values, expected_clean)
    # ε = 0 changes nothing: image by image equal to clean
    np.testing.assert_array_equal(results["robust_acc/pgd/eps0"].values, expected_clean)
    assert results["corruption_acc/mean"].maximum == 4
    for name, result in results.items():
        np.testing.assert_array_equal(result.index, np.arange(20))
        assert result.accuracy() == pytest.approx(metrics[name]), name
    robust = results["robust_acc/pgd/eps0.03137"].values
    assert (robust <= expected_clean).all()


def test_the_report_stores_per_image_results(tmp_path: Path) -> None:
    kept = {"clean_acc": PerImageResult(np.arange(5), np.array([1, 0, 1, 1, 0]))}
    report = RobustnessReport({"clean_acc": 0.6}, per_image=kept)
    json_path, _ = report.write(tmp_path)
    back = load_per_image(json_path)
    np.testing.assert_array_equal(back["clean_acc"].values, [1, 0, 1, 1, 0])
    assert "per_image" not in RobustnessReport({"clean_acc": 0.6}).to_dict()


def test_a_reset_clears_the_kept_images() -> None:
    model, x, y = self_labelled_batch(6)
    evaluator = CleanAccuracy()
    evaluator.update(model, x, y)
    evaluator.reset()
    evaluator.update(model, x[:2], y[:2])
    assert evaluator.per_image()["clean_acc"].index.tolist() == [0, 1]
    assert torch.equal(evaluator.correct, torch.tensor(2))
