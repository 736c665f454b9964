"""Deterministic, class-aware index selection: held-out validation splits and subsets.

Every function takes the labels of a split and returns sorted indices into it. Randomness comes
from ``numpy.random.default_rng([seed, stream, class])``: the choice for one class depends only on
the seed, the purpose (``stream``) and that class's indices, so changing the subset size of the
training part never moves the validation split, and a smaller ``samples_per_class`` selects a
subset of what a larger one selects.
"""

from __future__ import annotations

import numpy as np

VALIDATION_STREAM = 0
TRAIN_STREAM = 1
VAL_SUBSET_STREAM = 2
TEST_SUBSET_STREAM = 3


def _class_permutations(labels: np.ndarray, seed: int, stream: int) -> dict[int, np.ndarray]:
    """Each class's indices in a seeded random order."""
    return {
        int(c): np.random.default_rng([seed, stream, int(c)]).permutation(
            np.flatnonzero(labels == c))
        for c in np.unique(labels)
    }


def _allocate(counts: np.ndarray, total: int, seed: int, stream: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, seeded ties)."""
    quotas = counts * (total / counts.sum())
    allocation = np.floor(quotas).astype(np.int64)
    fractions = quotas - allocation
    tie_break = np.random.default_rng([seed, stream]).random(len(counts))
    order = np.lexsort((tie_break, -fractions))
    allocation[order[: total - int(allocation.sum())]] += 1
    return allocation


def resolve_size(size: int | float, population: int, what: str) -> int:
    """Turn a count (int) or a fraction (float in [0, 1]) of ``population`` into a count.

    A positive fraction always yields at least one element.

    Raises:
        ValueError: when the count exceeds the population.
    """
    if isinstance(size, float):
        count = round(size * population)
        count = max(count, 1) if size > 0 else 0
    else:
        count = size
    if count > population:
        raise ValueError(f"{what}={size} asks for {count} of only {population} images")
    return count


def stratified_split(
    labels: np.ndarray, held_out: int, seed: int, stream: int = VALIDATION_STREAM
) -> tuple[np.ndarray, np.ndarray]:
    """Hold ``held_out`` images out, keeping each class's share (the rest is returned first).

    Args:
        labels: integer labels of the split, shape ``(N,)``.
        held_out: number of images to hold out, in ``[0, N]``.
        seed: split seed.
        stream: which independent random stream to draw from.

    Returns:
        ``(kept, held)``: two sorted, disjoint index arrays that together cover ``range(N)``.
    """
    permutations = _class_permutations(labels, seed, stream)
    counts = np.array([len(p) for p in permutations.values()])
    allocation = _allocate(counts, held_out, seed, stream) if held_out else np.zeros_like(counts)
    held = [p[:n] for p, n in zip(permutations.values(), allocation, strict=True)]
    kept = [p[n:] for p, n in zip(permutations.values(), allocation, strict=True)]
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int, stream: int) -> np.ndarray:
    """Keep ``fraction`` of the images with every class keeping its share; sorted indices."""
    _, subset = stratified_split(labels, resolve_size(fraction, len(labels), "fraction"), seed,
                                 stream)
    return subset


def balanced_subset(
    labels: np.ndarray, per_class: int, seed: int, stream: int, strict: bool
) -> np.ndarray:
    """Up to ``per_class`` images of every class present in ``labels``; sorted indices.

    Args:
        labels: integer labels, shape ``(N,)``.
        per_class: images to keep per class.
        seed: split seed.
        stream: which independent random stream to draw from.
        strict: raise when a class has fewer than ``per_class`` images (otherwise keep all of
            that class's images).

    Raises:
        ValueError: in strict mode, naming the classes that are too small.
    """
    permutations = _class_permutations(labels, seed, stream)
    if strict:
        short = {c: len(p) for c, p in permutations.items() if len(p) < per_class}
        if short:
            raise ValueError(
                f"samples_per_class={per_class}, but these classes have fewer images "
                f"(class: count) {short}; lower samples_per_class or val_size"
            )
    return np.sort(np.concatenate([p[:per_class] for p in permutations.values()]))
