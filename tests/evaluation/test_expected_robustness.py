"""Expected robustness: the budget grid, the mean of the per-budget accuracies, ε = 0 as clean
accuracy, against a hand-made model whose robust accuracy at each budget is known."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lit_robust.evaluation import CleanAccuracy, ExpectedRobustness
from lit_robust.evaluation.expected_robustness import budget_grid


class Threshold(nn.Module):
    """Class 1 when the mean pixel exceeds 0.5, else class 0: an image at mean m is robust at
    L∞ budget ε exactly when |m − 0.5| > ε (the attack moves every pixel by ε)."""

    def forward(self, x: Tensor) -> Tensor:
        score = x.mean(dim=(1, 2, 3)) - 0.5
        return torch.stack([-score, score], dim=1) * 100


def test_grid_includes_both_ends() -> None:
    assert budget_grid(8 / 255, 9) == pytest.approx([i / 255 for i in range(9)])
    with pytest.raises(ValueError, match="num_eps >= 2"):
        budget_grid(8 / 255, 1)
    with pytest.raises(ValueError, match="not both"):
        ExpectedRobustness(num_eps=3, eps_list=[0.0, 0.1])


def test_mean_of_the_per_budget_accuracies_on_a_known_model() -> None:
    # margins |m − 0.5| of 0.005, 0.015, 0.025, 0.035 (in pixel units): at budgets 0, 0.01,
    # 0.02, 0.03 the robust images are 4, 3, 2 and 1 of 4.
    margins = torch.tensor([0.005, 0.015, 0.025, 0.035])
    means = 0.5 + margins * torch.tensor([1.0, -1.0, 1.0, -1.0])
    x = means.view(4, 1, 1, 1).expand(4, 3, 8, 8).contiguous()
    y = (means > 0.5).long()
    evaluator = ExpectedRobustness(eps_max=0.03, num_eps=4, steps=5)
    clean = CleanAccuracy()
    model = Threshold().eval()
    with torch.enable_grad():
        evaluator.update(model, x, y)
    clean.update(model, x, y)
    values = evaluator.compute()
    per_budget = [v for k, v in values.items() if k.startswith("robust_acc/")]
    assert per_budget == pytest.approx([1.0, 0.75, 0.5, 0.25])
    assert per_budget[0] == clean.compute()["clean_acc"]
    assert values["expected_robust_acc/pgd5_linf_eps0-0.03_n4"] == pytest.approx(0.625)
