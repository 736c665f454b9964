"""Pure training losses, each unit-tested against hand computations.

References:
    TRADES: Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019.
    Consistency regularization: Jeong and Shin, "Consistency Regularization for Certified
    Robustness of Smoothed Classifiers", NeurIPS 2020.
    NT-Xent: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), ICML 2020.
    FDM: Chen et al., "CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021.
    LwF penalty: Shafahi et al., "Adversarially Robust Transfer Learning", ICLR 2020.
    GradAlign: Andriushchenko and Flammarion, "Understanding and Improving Fast Adversarial
    Training", NeurIPS 2020.
    MACER: Zhai et al., "MACER: Attack-free and Scalable Robust Training via Maximizing
    Certified Radius", ICLR 2020.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
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


def consistency_loss(
    logits: Tensor, targets: Tensor, consistency_weight: float, entropy_weight: float
) -> Tensor:
    """Consistency-regularized loss of ``m`` noisy copies of each image (Jeong & Shin).

    ``L = (1/m)·Σᵢ CE(fᵢ, y) + λ·(1/m)·Σᵢ KL(p̂ ‖ pᵢ) + η·H(p̂)`` with ``pᵢ`` the softmax of the
    i-th copy and ``p̂`` their mean; CE and KL are averaged over the batch, KL and the entropy
    summed over classes, and ``p̂`` is clamped to 1e-20 before its logarithm, as in the
    official code. Gradients flow through ``p̂`` too.

    Args:
        logits: logits of the noisy copies, shape (m, N, K): copy i of image n at ``[i, n]``.
        targets: labels, shape (N,).
        consistency_weight: λ, weight of the KL term (5 in the transfer study).
        entropy_weight: η, weight of the entropy of ``p̂`` (0.5 in the transfer study).

    Returns:
        A scalar tensor.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[1:2]:
        raise ValueError(
            f"expected logits of shape (m, N, K) and targets of shape (N,), got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    copies, batch, classes = logits.shape
    logits = logits.float()
    cross_entropy = F.cross_entropy(logits.reshape(copies * batch, classes),
                                    targets.repeat(copies))
    log_p = F.log_softmax(logits, dim=2)
    p_mean = log_p.exp().mean(dim=0)
    log_p_mean = p_mean.clamp(min=1e-20).log()
    kl = (p_mean * (log_p_mean - log_p)).sum(dim=2).mean()
    entropy = -(p_mean * log_p_mean).sum(dim=1).mean()
    return cross_entropy + consistency_weight * kl + entropy_weight * entropy


def nt_xent(z1: Tensor, z2: Tensor, temperature: float,
            candidates: tuple[Tensor, Tensor] | None = None, offset: int = 0) -> Tensor:
    """SimCLR's normalized temperature-scaled cross-entropy over the 2N views of N images.

    The embeddings are L2-normalized; for view ``a`` of image ``n`` the positive is the
    other view of ``n`` and the negatives are the 2N − 2 views of the other images:
    ``ℓ = −log( exp(s⁺/τ) / Σ_{k ≠ a} exp(s_k/τ) )`` with cosine similarities ``s``,
    averaged over all 2N views.

    With ``candidates`` (the views of a larger batch of M images that holds this one at rows
    ``offset … offset + N − 1``, e.g. every process's batch gathered under DDP), the anchors
    are still the 2N local views, but positives and negatives come from the 2M candidates:
    the mean of this loss over the disjoint slices of a batch is the loss of the whole batch.

    Args:
        z1: projections of the first views, shape (N, D).
        z2: projections of the second views, shape (N, D), row n the same image as in ``z1``.
        temperature: τ > 0 (0.5 for CIFAR-size images, 0.1 for ImageNet in the paper).
        candidates: first and second views of the whole batch, each (M, D), or ``None``
            (the batch is ``z1``, ``z2`` themselves).
        offset: row of ``z1[0]`` in ``candidates``.

    Returns:
        A scalar tensor.
    """
    if z1.dim() != 2 or z1.shape != z2.shape or z1.shape[0] < 1:
        raise ValueError(
            f"expected two non-empty (N, D) batches of the same shape, got {tuple(z1.shape)} "
            f"and {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    c1, c2 = (z1, z2) if candidates is None else candidates
    batch, total = z1.shape[0], c1.shape[0]
    if c1.shape != c2.shape or c1.shape[1:] != z1.shape[1:] or not 0 <= offset <= total - batch:
        raise ValueError(
            f"candidates must be two (M, {z1.shape[1]}) batches holding the {batch} local "
            f"images at rows offset..offset+{batch - 1}; got {tuple(c1.shape)}, "
            f"{tuple(c2.shape)} and offset {offset}"
        )
    anchors = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    keys = F.normalize(torch.cat([c1, c2]).float(), dim=1)
    similarity = anchors @ keys.T / temperature
    rows = torch.arange(batch, device=z1.device) + offset
    own = torch.cat([rows, rows + total])  # column of each anchor itself
    self_pairs = torch.zeros_like(similarity, dtype=torch.bool)
    self_pairs[torch.arange(2 * batch, device=z1.device), own] = True
    similarity = similarity.masked_fill(self_pairs, float("-inf"))
    positives = torch.cat([rows + total, rows])
    return F.cross_entropy(similarity, positives)


def fdm_distance(features_adv: Tensor, features_clean: Tensor,
                 reduction: Literal["sum", "mean"] = "sum") -> Tensor:
    """CARTL's feature distance: ``(1/√d)·‖r(x') − r(x)‖₂`` per example, summed or averaged.

    ``r`` is the input of the first transferred block and ``d`` its size per example (C·H·W
    of a feature map); the paper's loss adds ``λ`` times the sum over the batch to the
    adversarial cross-entropy. Gradients flow through both arguments.

    Args:
        features_adv: features of the adversarial inputs, shape (N, ...).
        features_clean: features of the clean inputs, same shape.
        reduction: ``"sum"`` over the batch (the paper) or ``"mean"``.

    Returns:
        A scalar tensor.
    """
    if features_adv.shape != features_clean.shape or features_adv.dim() < 2:
        raise ValueError(
            f"expected two feature batches of the same shape (N, ...), got "
            f"{tuple(features_adv.shape)} and {tuple(features_clean.shape)}"
        )
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    difference = (features_adv.float() - features_clean.float()).flatten(1)
    distances = difference.norm(dim=1) / difference.shape[1] ** 0.5
    return distances.sum() if reduction == "sum" else distances.mean()


def lwf_penalty(features: Tensor, source_features: Tensor) -> Tensor:
    """Feature-preservation term of robust LwF transfer: ``mean_n ‖z₀(xₙ) − z(xₙ)‖₁``.

    ``z`` are the penultimate features of the model being fine-tuned, ``z₀`` those of the
    frozen source model on the same inputs (the L1 norm over features, averaged over the
    batch, as ``torch.mean(torch.norm(z0 - z, p=1, dim=1))`` in Shafahi et al.'s setting).

    Args:
        features: features of the fine-tuned model, shape (N, D).
        source_features: features of the source model, shape (N, D) (treated as constants
            by the caller: pass them detached).

    Returns:
        A scalar tensor.
    """
    if features.shape != source_features.shape or features.dim() != 2:
        raise ValueError(
            f"expected two (N, D) feature batches of the same shape, got "
            f"{tuple(features.shape)} and {tuple(source_features.shape)}"
        )
    return (source_features.float() - features.float()).abs().sum(dim=1).mean()


def gradient_alignment(grad_a: Tensor, grad_b: Tensor) -> Tensor:
    """GradAlign's regularizer ``1 − mean_n cos(∇ₓℓ(xₙ), ∇ₓℓ(xₙ + ηₙ))`` (without λ).

    Andriushchenko and Flammarion, §4: the cosine of the two input gradients of each example,
    averaged over the examples whose two gradients are both non-zero (their code drops the
    others; with none left the term is 0). Gradients flow through both arguments; pass one
    detached to differentiate through the other only.

    Args:
        grad_a: input gradients at the clean points, shape (N, ...).
        grad_b: input gradients at the randomly perturbed points, same shape.

    Returns:
        A scalar tensor in [0, 2].
    """
    if grad_a.shape != grad_b.shape or grad_a.dim() < 2:
        raise ValueError(
            f"expected two gradient batches of the same shape (N, ...), got "
            f"{tuple(grad_a.shape)} and {tuple(grad_b.shape)}"
        )
    flat_a, flat_b = grad_a.float().flatten(1), grad_b.float().flatten(1)
    norm_a, norm_b = flat_a.norm(dim=1), flat_b.norm(dim=1)
    keep = (norm_a != 0) & (norm_b != 0)
    cosine = (flat_a[keep] * flat_b[keep]).sum(dim=1) / (norm_a[keep] * norm_b[keep])
    if cosine.numel() == 0:
        return flat_b.sum() * 0.0
    return 1.0 - cosine.mean()


def macer_terms(logits: Tensor, targets: Tensor, sigma: float, beta: float,
                gamma: float) -> tuple[Tensor, Tensor]:
    """MACER's classification and robustness terms, each averaged over the batch.

    Zhai et al., §3–4 and Algorithm 1, in the form of the official ``macer.py``:

    - classification: ``−log(p̂_y + 1e-10)`` with ``p̂`` the mean softmax of the m noisy copies;
    - robustness: for the images the β-tempered smoothed classifier (mean of
      ``softmax(β·logits)``) classifies correctly, with top-2 probabilities p₁ ≥ p₂ and
      ``ξ = Φ⁻¹(p₁) − Φ⁻¹(p₂)``, the hinge ``(σ/2)·max(0, γ − ξ)``: only ``ξ ≤ γ`` and finite
      ``ξ`` contribute (the soft certified radius ``σ/2·ξ`` below ``σ/2·γ`` is pushed up).

    Both are summed over the images and divided by the batch size N (not by the number of
    correct images). The loss is ``classification + λ·robustness``
    (:func:`macer_loss`).

    Args:
        logits: logits of the noisy copies, shape (m, N, K): copy i of image n at ``[i, n]``.
        targets: labels, shape (N,).
        sigma: the noise level σ of the smoothing.
        beta: the inverse temperature β of the robustness term (16 in the paper).
        gamma: the hinge γ (8 in the paper).

    Returns:
        ``(classification, robustness)``, two scalar tensors.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[1:2] or logits.shape[2] < 2:
        raise ValueError(
            f"expected logits of shape (m, N, K) with K >= 2 and targets of shape (N,), got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    batch = logits.shape[1]
    logits = logits.float()
    p_mean = torch.softmax(logits, dim=2).mean(dim=0)
    classification = -(p_mean.gather(1, targets.view(-1, 1)) + 1e-10).log().sum() / batch
    tempered = torch.softmax(beta * logits, dim=2).mean(dim=0)
    top2, indices = tempered.topk(2, dim=1)
    p1, p2 = top2[:, 0], top2[:, 1]
    with torch.no_grad():
        xi = _normal_icdf(p1) - _normal_icdf(p2)
        keep = (indices[:, 0] == targets) & torch.isfinite(xi) & (xi <= gamma)
    xi = _normal_icdf(p1[keep]) - _normal_icdf(p2[keep])
    robustness = (gamma - xi).sum() * sigma / 2 / batch
    return classification, robustness


def macer_loss(logits: Tensor, targets: Tensor, sigma: float, beta: float, gamma: float,
               radius_weight: float) -> Tensor:
    """MACER's loss ``classification + λ·robustness`` (:func:`macer_terms`); λ =
    ``radius_weight`` (12 for σ 0.25 and 0.5 on CIFAR-10 in the paper)."""
    classification, robustness = macer_terms(logits, targets, sigma, beta, gamma)
    return classification + radius_weight * robustness


def _normal_icdf(p: Tensor) -> Tensor:
    """Φ⁻¹(p) of the standard normal (as ``torch.distributions.Normal(0, 1).icdf``)."""
    return torch.erfinv(2 * p - 1) * math.sqrt(2)
