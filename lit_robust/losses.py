"""Pure training losses, each unit-tested against hand computations.

References:
    TRADES: Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def trades_kl(logits_clean: Tensor, logits_adv: Tensor) -> Tensor:
    """TRADES robustness term KL(f(x) ‖ f(x')) summed over classes, averaged over the batch.

    This is ``KLDivLoss(reduction="sum")(log_softmax(adv), softmax(clean)) / batch_size`` of
    the official TRADES code. Gradients flow through both arguments.

    Args:
        logits_clean: logits on clean inputs, shape (N, K).
        logits_adv: logits on adversarial inputs, shape (N, K).

    Returns:
        A scalar tensor.
    """
    log_p_adv = F.log_softmax(logits_adv.float(), dim=1)
    p_clean = F.softmax(logits_clean.float(), dim=1)
    return F.kl_div(log_p_adv, p_clean, reduction="sum") / logits_clean.shape[0]
