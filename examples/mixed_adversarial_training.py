"""A user-defined method in user code: clean + adversarial cross-entropy, mixed by a weight.

It subclasses :class:`~lit_robust.methods.AdversarialTraining` and overrides one hook,
:meth:`training_loss`; the model, data, attack, optimizer, validation, test-time evaluators
and the report all come from the library. Run it from the repository root with the same CLI::

    python examples/mixed_adversarial_training.py fit --config configs/quickstart.yaml \
        --model MixedAdversarialTraining --model.init_args.adversarial_weight 0.5

The loss, L = (1 − w)·CE(f(x), y) + w·CE(f(x'), y), is the "mixed" objective of Goodfellow
et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (w = 0.5 there).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_robust.main import main
from lit_robust.methods import AdversarialTraining


class MixedAdversarialTraining(AdversarialTraining):
    """Cross-entropy on clean and on adversarial inputs, weighted by ``adversarial_weight``.

    Args:
        adversarial_weight: w in [0, 1]; 1 is PGD adversarial training, 0 standard training
            (still paying for the attack).
        **kwargs: the arguments of :class:`~lit_robust.methods.AdversarialTraining`
            (``attack``, ...) and of its base (``backbone``, ``lr``, ...).
    """

    def __init__(self, adversarial_weight: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= adversarial_weight <= 1.0:
            raise ValueError(f"adversarial_weight must be in [0, 1], got {adversarial_weight}")
        self.adversarial_weight = adversarial_weight

    def training_loss(self, x: Tensor, x_adv: Tensor | None, y: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.model(torch.cat([x, x_adv]))
        clean, adversarial = logits.split(x.shape[0])
        w = self.adversarial_weight
        loss = (1 - w) * F.cross_entropy(clean, y) + w * F.cross_entropy(adversarial, y)
        return loss, adversarial


if __name__ == "__main__":
    main()
