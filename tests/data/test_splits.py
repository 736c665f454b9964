"""Validation splits and subsets: stratification, balance, determinism, nesting."""

from __future__ import annotations

import numpy as np
import pytest

from lit_robust.data.splits import (
    TRAIN_STREAM,
    balanced_subset,
    resolve_size,
    stratified_split,
    stratified_subset,
)

# 3 classes with 50, 30 and 20 images, interleaved
LABELS = np.array([0] * 50 + [1] * 30 + [2] * 20)[np.random.default_rng(0).permutation(100)]


def test_stratified_split_covers_everything_disjointly_and_keeps_class_shares():
    kept, held = stratified_split(LABELS, 10, seed=0)
    assert len(held) == 10 and len(kept) == 90
    assert not set(kept) & set(held)
    assert sorted(np.concatenate([kept, held])) == list(range(100))
    assert np.bincount(LABELS[held], minlength=3).tolist() == [5, 3, 2]
    assert list(held) == sorted(held)


def test_stratified_split_is_fixed_by_the_seed():
    first = stratified_split(LABELS, 17, seed=3)[1]
    assert np.array_equal(first, stratified_split(LABELS, 17, seed=3)[1])
    assert not np.array_equal(first, stratified_split(LABELS, 17, seed=4)[1])
    assert len(first) == 17


def test_largest_remainder_allocation_sums_exactly():
    labels = np.repeat(np.arange(7), 3)  # 21 images, 7 classes
    held = stratified_split(labels, 10, seed=0)[1]
    counts = np.bincount(labels[held], minlength=7)
    assert counts.sum() == 10 and set(counts.tolist()) <= {1, 2}


def test_zero_held_out_keeps_everything():
    kept, held = stratified_split(LABELS, 0, seed=0)
    assert len(held) == 0 and len(kept) == 100


def test_balanced_subset_is_balanced_nested_and_strict():
    five = balanced_subset(LABELS, 5, seed=0, stream=TRAIN_STREAM, strict=True)
    ten = balanced_subset(LABELS, 10, seed=0, stream=TRAIN_STREAM, strict=True)
    assert np.bincount(LABELS[five]).tolist() == [5, 5, 5]
    assert set(five) < set(ten)
    with pytest.raises(ValueError, match=r"samples_per_class=25.*\{2: 20\}"):
        balanced_subset(LABELS, 25, seed=0, stream=TRAIN_STREAM, strict=True)
    capped = balanced_subset(LABELS, 25, seed=0, stream=TRAIN_STREAM, strict=False)
    assert np.bincount(LABELS[capped]).tolist() == [25, 25, 20]


def test_stratified_subset_and_resolve_size():
    subset = stratified_subset(LABELS, 0.5, seed=0, stream=TRAIN_STREAM)
    assert np.bincount(LABELS[subset]).tolist() == [25, 15, 10]
    assert resolve_size(0.1, 100, "val_size") == 10
    assert resolve_size(0.001, 100, "val_size") == 1  # a positive fraction keeps one image
    assert resolve_size(0.0, 100, "val_size") == 0
    assert resolve_size(7, 100, "val_size") == 7
    with pytest.raises(ValueError, match="val_size=101"):
        resolve_size(101, 100, "val_size")
