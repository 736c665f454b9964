"""Exact values of the augmentations, preparations, seeded splits and the resumable sampler on
hand-built inputs (a 4x4 image, a handful of labels), where a plausible wrong implementation
(an off-by-one crop window, a flip at u = 0.5, a different seed stream) gives other numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lit_robust.data import transforms
from lit_robust.data.sampling import ResumableRandomSampler, SampleKey
from lit_robust.data.splits import (
    TEST_SUBSET_STREAM,
    TRAIN_STREAM,
    VAL_SUBSET_STREAM,
    VALIDATION_STREAM,
    _allocate,
    balanced_subset,
    resolve_size,
    stratified_split,
    stratified_subset,
)
from lit_robust.data.transforms import (
    KeepSize,
    RandomCropFlip,
    Resize,
    ResizeCenterCrop,
    Unchanged,
    preparations,
    to_float,
    training_augmentation,
)

# one channel, pixel (r, c) = 4 r + c
GRID = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4)


def test_reflect_index_mirrors_without_repeating_the_edge():
    assert transforms._reflect_index(4, 2).tolist() == [2, 1, 0, 1, 2, 3, 2, 1]
    assert transforms._reflect_index(3, 1).tolist() == [1, 0, 1, 2, 1]
    assert transforms._reflect_index(5, 0).tolist() == [0, 1, 2, 3, 4]


def _fixed_rand(monkeypatch, values):
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: torch.tensor(values))


def test_random_crop_window_and_flip_from_the_three_uniforms(monkeypatch):
    # padding 1 → padded rows/cols index [1, 0, 1, 2, 3, 2]; 3 possible offsets per axis
    _fixed_rand(monkeypatch, [0.99, 0.0, 0.3])          # top = 2, left = 0, flip
    out = RandomCropFlip(4, padding=1, flip=True)(GRID)
    rows, cols = [1, 2, 3, 2], [2, 1, 0, 1]
    expected = torch.tensor([[4 * r + c for c in cols] for r in rows]) / 255
    assert out.dtype == torch.float32 and torch.equal(out[0], expected.float())
    _fixed_rand(monkeypatch, [0.5, 0.7, 0.3])           # top = 1, left = 2, flip off
    out = RandomCropFlip(4, padding=1, flip=False)(GRID)
    rows, cols = [0, 1, 2, 3], [1, 2, 3, 2]
    assert torch.equal(out[0], (torch.tensor([[4 * r + c for c in cols] for r in rows]) / 255
                                ).float())
    _fixed_rand(monkeypatch, [0.0, 0.0, 0.5])           # u_flip = 0.5 is not a flip
    out = RandomCropFlip(2, padding=1, flip=True)(GRID)
    assert (out[0] * 255).round().tolist() == [[5, 4], [1, 0]]
    _fixed_rand(monkeypatch, [0.0, 0.0, 0.49])
    out = RandomCropFlip(2, padding=1, flip=True)(GRID)
    assert (out[0] * 255).round().tolist() == [[4, 5], [0, 1]]


def test_random_crop_limits_are_the_reflect_padding_limits():
    wide = torch.zeros(3, 4, 6, dtype=torch.uint8)
    assert RandomCropFlip(6, padding=3, flip=False)(wide).shape == (3, 6, 6)  # 4 + 2·3 - 4
    assert RandomCropFlip(10, padding=3, flip=False)(wide).shape == (3, 10, 10)  # 4 + 6
    with pytest.raises(ValueError) as error:
        RandomCropFlip(4, padding=4, flip=False)(wide)  # padding = the shorter side
    assert str(error.value) == ("cannot take a 4x4 crop with reflect padding 4 from a 4x6 "
                                "image")
    with pytest.raises(ValueError, match="cannot take a 11x11 crop with reflect padding 3 "):
        RandomCropFlip(11, padding=3, flip=False)(wide)


def test_to_float_divides_by_255():
    values = torch.tensor([0, 1, 51, 255], dtype=torch.uint8)
    assert to_float(values).tolist() == pytest.approx([0.0, 1 / 255, 0.2, 1.0])


def test_keep_size_message_and_sizes():
    with pytest.raises(ValueError) as error:
        KeepSize(5)(GRID)
    assert str(error.value) == ("an image is 4x4, but image_size=5 with resize='none' needs "
                                "5x5 images; pass resize='resize' (or 'resize_center_crop') "
                                "to resize them")
    tall = torch.zeros(1, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="an image is 4x3, but image_size=4"):
        KeepSize(4)(tall)
    assert KeepSize(9).output_size(7, 8) == (7, 8)
    assert Unchanged().output_size(7, 8) == (7, 8)
    assert Resize(9).output_size(7, 8) == (9, 9)


def test_resize_and_center_crop_are_antialiased_like_torchvision():
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 12, 18), dtype=torch.uint8, generator=generator)
    assert torch.equal(Resize(5)(image), TF.resize(image, [5, 5], antialias=True))
    assert not torch.equal(Resize(5)(image), TF.resize(image, [5, 5], antialias=False))
    crop = ResizeCenterCrop(4, resize_to=6)
    expected = TF.center_crop(TF.resize(image, 6, antialias=True), [4, 4])
    assert torch.equal(crop(image), expected) and crop(image).shape == (3, 4, 4)
    assert not torch.equal(crop(image), TF.center_crop(TF.resize(image, 6, antialias=False),
                                                       [4, 4]))


@pytest.mark.parametrize("policy", ["none", "resize"])
def test_preparations_of_the_square_policies(policy):
    kind = KeepSize if policy == "none" else Resize
    train, evaluation = preparations(policy, 24)
    assert type(train) is kind and type(evaluation) is kind
    assert train.size == evaluation.size == 24


def test_resize_center_crop_evaluates_at_256_over_224():
    train, evaluation = preparations("resize_center_crop", 32)
    assert type(train) is Unchanged and type(evaluation) is ResizeCenterCrop
    assert evaluation.size == 32 and evaluation.resize_to == 37  # round(36.57)
    assert preparations("resize_center_crop", 224)[1].resize_to == 256


def test_training_augmentation_steps():
    with pytest.raises(ValueError) as error:
        training_augmentation("none", 4, 1, True, rotation=-1.0)
    assert str(error.value) == "rotation must be >= 0 degrees, got -1.0"
    crop = training_augmentation("resize", 8, 2, True, rotation=0.0)
    assert type(crop) is RandomCropFlip and (crop.size, crop.padding, crop.flip) == (8, 2, True)
    turned = training_augmentation("none", 8, 3, False, rotation=15.0)
    first, second = turned.transforms
    assert type(first) is RandomCropFlip and (first.size, first.padding, first.flip) == (8, 3,
                                                                                        False)
    assert type(second) is v2.RandomRotation and second.degrees == [-15.0, 15.0]
    for flip in (True, False):
        steps = training_augmentation("resize_center_crop", 8, 2, flip).transforms
        assert type(steps[0]) is v2.RandomResizedCrop and steps[0].size == (8, 8)
        assert steps[0].antialias is True
        assert any(type(s) is v2.RandomHorizontalFlip for s in steps) is flip
        assert type(steps[-1]) is v2.ToDtype and steps[-1].scale is True
        assert steps[-1].dtype == torch.float32 and len(steps) == 2 + flip
    rotated = training_augmentation("resize_center_crop", 8, 2, True, rotation=10.0).transforms
    assert [type(s) for s in rotated] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip,
                                          v2.RandomRotation, v2.ToDtype]
    out = training_augmentation("resize_center_crop", 8, 2, True)(
        torch.full((3, 20, 30), 255, dtype=torch.uint8))
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(3, 8, 8))


# ---- splits -----------------------------------------------------------------------------------

def _permutation(labels, seed, stream, c):
    return np.random.default_rng([seed, stream, c]).permutation(np.flatnonzero(labels == c))


def test_stream_numbers():
    assert (VALIDATION_STREAM, TRAIN_STREAM, VAL_SUBSET_STREAM, TEST_SUBSET_STREAM) == (0, 1, 2,
                                                                                       3)


def test_allocate_largest_remainder_with_seeded_ties():
    # quotas 2.5, 1.5, 1.0 → floors 2, 1, 1 and one left for the tie between classes 0 and 1
    allocation = _allocate(np.array([5, 3, 2]), 5, seed=4, stream=1)
    tie = np.random.default_rng([4, 1]).random(3)
    winner = 0 if tie[0] < tie[1] else 1
    expected = [2, 1, 1]
    expected[winner] += 1
    assert allocation.tolist() == expected and allocation.dtype == np.int64
    # no ties: quotas 3.9, 1.5, 0.6 → floors 3, 1, 0; remainders .9 and .6 win
    assert _allocate(np.array([13, 5, 2]), 6, seed=0, stream=0).tolist() == [4, 1, 1]
    assert _allocate(np.array([13, 5, 2]), 4, seed=0, stream=0).tolist() == [3, 1, 0]
    assert _allocate(np.array([2, 2]), 4, seed=0, stream=0).tolist() == [2, 2]
    # ten equal classes, five images: every remainder ties, the seeded draw picks the five
    for seed, stream in [(0, 0), (3, 2)]:
        tie = np.random.default_rng([seed, stream]).random(10)
        expected = np.zeros(10, dtype=np.int64)
        expected[np.argsort(tie)[:5]] = 1
        assert _allocate(np.ones(10, dtype=np.int64), 5, seed, stream).tolist() == expected.tolist()


def test_stratified_split_takes_each_class_prefix_of_its_seeded_permutation():
    labels = np.array([0, 1, 0, 2, 1, 0, 0, 2, 1, 0])  # 5, 3, 2 images
    for seed, stream in [(0, VALIDATION_STREAM), (7, TRAIN_STREAM)]:
        kept, held = stratified_split(labels, 5, seed=seed, stream=stream)
        allocation = _allocate(np.array([5, 3, 2]), 5, seed, stream)
        expected = np.sort(np.concatenate([_permutation(labels, seed, stream, c)[:n]
                                           for c, n in zip(range(3), allocation, strict=True)]))
        assert held.tolist() == expected.tolist()
        assert kept.tolist() == sorted(set(range(10)) - set(expected.tolist()))
    kept, held = stratified_split(labels, 0, seed=0)
    assert held.tolist() == [] and kept.tolist() == list(range(10))
    kept, held = stratified_split(labels, 10, seed=0)
    assert held.tolist() == list(range(10)) and kept.tolist() == []
    default = stratified_split(labels, 3, seed=2)[1]
    assert default.tolist() == stratified_split(labels, 3, seed=2, stream=VALIDATION_STREAM)[1
                                                                                           ].tolist()


def test_stratified_subset_rounds_the_fraction():
    labels = np.array([0] * 6 + [1] * 4)
    subset = stratified_subset(labels, 0.25, seed=1, stream=TEST_SUBSET_STREAM)  # round(2.5) = 2
    assert subset.tolist() == stratified_split(labels, 2, 1, TEST_SUBSET_STREAM)[1].tolist()
    assert len(stratified_subset(labels, 0.01, seed=1, stream=2)) == 1
    with pytest.raises(ValueError, match=r"^fraction=1.5 asks for 15 of only 10 images$"):
        stratified_subset(labels, 1.5, seed=1, stream=2)


def test_resolve_size():
    assert resolve_size(0.26, 10, "x") == 3
    assert resolve_size(0.24, 10, "x") == 2
    assert resolve_size(0.01, 10, "x") == 1
    assert resolve_size(0.0, 10, "x") == 0
    assert resolve_size(1.0, 10, "x") == 10
    assert resolve_size(10, 10, "x") == 10 and resolve_size(1, 10, "x") == 1
    with pytest.raises(ValueError) as error:
        resolve_size(11, 10, "val_size")
    assert str(error.value) == "val_size=11 asks for 11 of only 10 images"


def test_balanced_subset_counts_and_members():
    labels = np.array([2, 0, 2, 1, 0, 2, 0, 2])  # 3, 1, 4 images
    subset = balanced_subset(labels, 2, seed=5, stream=VAL_SUBSET_STREAM, strict=False)
    expected = np.sort(np.concatenate([_permutation(labels, 5, VAL_SUBSET_STREAM, c)[:2]
                                       for c in range(3)]))
    assert subset.tolist() == expected.tolist()
    assert np.bincount(labels[subset]).tolist() == [2, 1, 2]
    assert balanced_subset(labels, 1, seed=5, stream=2, strict=True).size == 3
    with pytest.raises(ValueError) as error:
        balanced_subset(labels, 4, seed=5, stream=2, strict=True)
    assert str(error.value) == ("samples_per_class=4, but these classes have fewer images "
                                "(class: count) {0: 3, 1: 1}; lower samples_per_class or "
                                "val_size")
    assert balanced_subset(labels, 3, seed=5, stream=2, strict=False).size == 7


# ---- the resumable sampler -------------------------------------------------------------------

def _reference_epoch(num_samples, seed, epoch):
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(num_samples, generator=generator).tolist()
    seeds = torch.randint(0, 2**62, (num_samples,), generator=generator).tolist()
    return [SampleKey(i, s) for i, s in zip(order, seeds, strict=True)]


def test_sampler_order_and_seeds_per_epoch():
    sampler = ResumableRandomSampler(7, seed=3)
    assert len(sampler) == 7 and sampler.epoch == 0
    assert list(sampler) == _reference_epoch(7, 3, 0)
    sampler.set_epoch(2)
    assert list(sampler) == _reference_epoch(7, 3, 2)
    assert sampler.state_dict() == {"seed": 3, "epoch": 2}
    keys = list(ResumableRandomSampler(7, seed=4))
    assert keys == _reference_epoch(7, 4, 0) and keys[0].index == keys[0][0]


def test_sampler_start_at_skips_once():
    sampler = ResumableRandomSampler(6, seed=1)
    sampler.start_at(3, 4)
    assert sampler.epoch == 3
    assert list(sampler) == _reference_epoch(6, 1, 3)[4:]
    assert list(sampler) == _reference_epoch(6, 1, 3)
    sampler.start_at(1, 6)
    assert list(sampler) == []
    sampler.start_at(1, 0)
    assert list(sampler) == _reference_epoch(6, 1, 1)
    for position in (-1, 7):
        with pytest.raises(ValueError) as error:
            sampler.start_at(1, position)
        assert str(error.value) == f"position {position} is outside 0..6"


def test_sampler_needs_a_sample():
    assert list(ResumableRandomSampler(1, seed=0)) == _reference_epoch(1, 0, 0)
    with pytest.raises(ValueError) as error:
        ResumableRandomSampler(0, seed=0)
    assert str(error.value) == "num_samples must be >= 1, got 0"
