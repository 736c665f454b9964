"""Edge cases of randomized-smoothing PREDICT / CERTIFY and of their binomial statistics.

Boundaries of the decision rules of Cohen et al. (ICML 2019), reproducibility through the
generator, dtypes, and the input checks.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lit_robust.evaluation.certification_stats import (
    binomial_two_sided_pvalue,
    certified_radius,
    clopper_pearson_lower,
)
from lit_robust.evaluation.smoothing import ABSTAIN, SmoothedClassifier
from tests.evaluation.toy_models import ConstantClassifier, PhaseClassifier


class RecordingLinear(nn.Module):
    """Two-class linear classifier of (C, 4, 4) images that records its inputs and logits."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(channels * 16, 2)
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.copy_(torch.tensor([0.0, 5.0]))  # class 1 far from the boundary
            self.linear.weight[1, 0] = 1.0
        self.inputs: list[Tensor] = []
        self.logit_dtypes: list[torch.dtype] = []

    def forward(self, x: Tensor) -> Tensor:
        self.inputs.append(x.clone())
        logits = self.linear(x.flatten(1))
        self.logit_dtypes.append(logits.dtype)
        return logits


def _inputs_seen(call, seed: int) -> Tensor:
    base = RecordingLinear()
    call(SmoothedClassifier(base, num_classes=2, sigma=0.5), torch.Generator().manual_seed(seed))
    return torch.cat(base.inputs)


@pytest.mark.parametrize("entry", ["sample_counts", "predict", "certify", "certify_batch"])
def test_the_generator_alone_determines_every_noise_sample(entry: str) -> None:
    x = torch.rand(3, 4, 4)
    calls = {
        "sample_counts": lambda s, g: s.sample_counts(x[None], 6, 4, g),
        "predict": lambda s, g: s.predict(x, 6, 0.01, 4, g),
        "certify": lambda s, g: s.certify(x, 5, 6, 0.01, 4, g),
        "certify_batch": lambda s, g: s.certify_batch(x[None], 5, 6, 0.01, 4, g),
    }
    first, again = _inputs_seen(calls[entry], 7), _inputs_seen(calls[entry], 7)
    assert torch.equal(first, again)
    assert not torch.equal(first, _inputs_seen(calls[entry], 8))


def test_predict_and_certify_take_a_multi_channel_image() -> None:
    base = RecordingLinear(channels=3)
    smoothed = SmoothedClassifier(base, num_classes=2, sigma=0.25)
    x = torch.rand(3, 4, 4)
    assert smoothed.predict(x, n=20, alpha=0.001, batch_size=8) == 1
    prediction, radius = smoothed.certify(x, n0=10, n=20, alpha=0.001, batch_size=8)
    assert prediction == 1 and radius > 0
    assert {tuple(batch.shape[1:]) for batch in base.inputs} == {(3, 4, 4)}


def test_predict_tests_the_top_class_against_the_runner_up() -> None:
    # 15 of 20 samples say class 2, 5 say class 0: the two-sided p-value is
    # 2 * P(Bin(20, 1/2) >= 15) = 0.0414.
    x = torch.rand(1, 2, 2)

    def predict(alpha: float) -> int:
        smoothed = SmoothedClassifier(PhaseClassifier(15, first=2, then=0), num_classes=3,
                                      sigma=0.25)
        return smoothed.predict(x, n=20, alpha=alpha, batch_size=8)

    assert predict(0.05) == 2
    assert predict(0.04) == ABSTAIN


def test_predict_answers_when_the_p_value_equals_alpha() -> None:
    # 10 unanimous samples have p-value 2 * 0.5**10 = 2**-9 exactly; "at most alpha" answers.
    smoothed = SmoothedClassifier(ConstantClassifier(3, 1), num_classes=3, sigma=0.25)
    assert smoothed.predict(torch.rand(1, 2, 2), n=10, alpha=2.0**-9, batch_size=4) == 1


def test_certify_certifies_radius_zero_when_the_bound_is_exactly_one_half() -> None:
    # One sample, alpha = 1/2: the lower bound is the median of Beta(1, 1), exactly 1/2.
    # CERTIFY abstains only below 1/2 (Cohen et al.'s `if pABar < 0.5`).
    smoothed = SmoothedClassifier(ConstantClassifier(3, 2), num_classes=3, sigma=0.25)
    assert smoothed.certify(torch.rand(1, 2, 2), n0=1, n=1, alpha=0.5, batch_size=1) == (2, 0.0)


def test_base_runs_in_full_precision_unless_bf16_is_asked_for() -> None:
    x = torch.rand(1, 3, 4, 4)
    full, half = RecordingLinear(), RecordingLinear()
    SmoothedClassifier(full, num_classes=2, sigma=0.25).sample_counts(x, 4, 4)
    SmoothedClassifier(half, num_classes=2, sigma=0.25, bf16=True).sample_counts(x, 4, 4)
    assert full.logit_dtypes == [torch.float32]
    assert half.logit_dtypes == [torch.bfloat16]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_noisy_images_keep_the_dtype_of_the_images(dtype: torch.dtype) -> None:
    seen: list[Tensor] = []

    class Recorder(ConstantClassifier):
        def forward(self, x: Tensor) -> Tensor:
            seen.append(x)
            return super().forward(x)

    SmoothedClassifier(Recorder(2, 0), num_classes=2, sigma=0.5).sample_counts(
        torch.rand(2, 1, 4, 4).to(dtype), num=3, batch_size=4)
    assert {batch.dtype for batch in seen} == {dtype}


def test_counts_are_integers() -> None:
    smoothed = SmoothedClassifier(ConstantClassifier(2, 1), num_classes=2, sigma=0.25)
    counts = smoothed.sample_counts(torch.rand(1, 1, 2, 2), num=1, batch_size=1)
    assert counts.dtype == torch.long
    assert counts.tolist() == [[0, 1]]  # one sample in batches of one is allowed


def test_bad_sampling_arguments_name_the_argument_before_any_forward_pass() -> None:
    base = RecordingLinear(channels=1)
    smoothed = SmoothedClassifier(base, num_classes=2, sigma=0.25)
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match="num"):
        smoothed.sample_counts(x, num=0, batch_size=4)
    with pytest.raises(ValueError, match="batch_size"):
        smoothed.sample_counts(x, num=4, batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        smoothed.sample_counts(x[0], num=4, batch_size=4)
    with pytest.raises(ValueError, match="n0"):
        smoothed.certify_batch(x, n0=0, n=10, alpha=0.01, batch_size=4)
    with pytest.raises(ValueError, match=r"\bn\b"):
        smoothed.certify_batch(x, n0=10, n=0, alpha=0.01, batch_size=4)
    for alpha in (0.0, 1.0):
        with pytest.raises(ValueError, match="alpha"):
            smoothed.predict(x[0], n=10, alpha=alpha, batch_size=4)
    assert base.inputs == []
    with pytest.raises(ValueError, match="num_classes"):
        SmoothedClassifier(base, num_classes=1, sigma=0.25)


def test_generator_on_another_device_than_the_images_is_rejected() -> None:
    smoothed = SmoothedClassifier(ConstantClassifier(2, 0), num_classes=2, sigma=0.25)
    images = torch.empty(1, 1, 4, 4, device="meta")
    with pytest.raises(ValueError, match=r"torch\.Generator\(device='meta'\)"):
        smoothed.sample_counts(images, num=4, batch_size=4, generator=torch.Generator())


def test_clopper_pearson_input_checks_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"\bn\b"):
        clopper_pearson_lower(0, 0, 0.1)
    with pytest.raises(ValueError, match="n_a"):
        clopper_pearson_lower(5, 4, 0.1)
    with pytest.raises(ValueError, match="alpha"):
        clopper_pearson_lower(1, 4, 1.0)


def test_binomial_pvalue_with_a_null_other_than_one_half() -> None:
    # Bin(3, 0.9): P(0) = 0.001 is the only outcome as unlikely as 0, so the p-value is 0.001.
    assert binomial_two_sided_pvalue(0, 3, 0.9) == pytest.approx(0.001, rel=1e-9)
    # The null probabilities 0 and 1 are allowed: the only possible outcome has p-value 1.
    assert binomial_two_sided_pvalue(0, 5, 0.0) == pytest.approx(1.0)
    assert binomial_two_sided_pvalue(5, 5, 1.0) == pytest.approx(1.0)


def test_binomial_pvalue_input_checks_name_the_argument() -> None:
    with pytest.raises(ValueError, match=r"\bp\b"):
        binomial_two_sided_pvalue(1, 2, 1.5)
    for n_a, total in ((3, 2), (-1, 2)):
        with pytest.raises(ValueError, match="n_a"):
            binomial_two_sided_pvalue(n_a, total)
    with pytest.raises(ValueError, match="sigma"):
        certified_radius(0.9, 0.0)
