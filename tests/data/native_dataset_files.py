"""Writers of small dataset files in each dataset's native format (used by the data tests)."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def random_images(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random uint8 images, shape (count, 3, size, size)."""
    return np.random.default_rng(seed).integers(0, 256, (count, 3, size, size), dtype=np.uint8)


def write_cifar_pickles(
    folder: Path, files: dict[str, int], label_key: str, num_classes: int
) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write CIFAR python pickles (``{b'data': N×3072 uint8, b'<label_key>': [...]}``).

    Returns ``{file name: (images (N, 3, 32, 32), labels)}``.
    """
    folder.mkdir(parents=True)
    written = {}
    for seed, (name, count) in enumerate(files.items()):
        images = random_images(count, 32, seed)
        labels = [int(i % num_classes) for i in range(count)]
        entry = {b"data": images.reshape(count, 3072), label_key.encode(): labels}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
        written[name] = (images, labels)
    return written


def write_svhn_mat(
    folder: Path, split: str, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Write ``<split>_32x32.mat`` as torchvision's SVHN reads it: ``X`` (32, 32, 3, N) and
    ``y`` (N, 1) with labels 1..10 (10 is the digit 0). Returns (images NCHW, y)."""
    folder.mkdir(parents=True, exist_ok=True)
    images = random_images(count, 32, seed)
    y = (np.arange(count) % 10 + 1).reshape(count, 1).astype(np.uint8)
    scipy.io.savemat(str(folder / f"{split}_32x32.mat"),
                     {"X": np.transpose(images, (2, 3, 1, 0)), "y": y})
    return images, y


def write_gtsrb_official(root: Path, classes: int, per_class: int, test_count: int) -> Path:
    """Write the official GTSRB layout torchvision reads under ``root/gtsrb``; images are
    PPM files of different sizes whose colour encodes the class. Returns ``root/gtsrb``."""
    base = root / "gtsrb"
    for label in range(classes):
        folder = base / "GTSRB" / "Training" / f"{label:05d}"
        folder.mkdir(parents=True)
        rows = []
        for index in range(per_class):
            size = 20 + 5 * index
            name = f"00000_{index:05d}.ppm"
            Image.new("RGB", (size, size + 3), color=(label * 5, 100, 200)).save(folder / name)
            rows.append([name, size, size + 3, 1, 1, size - 1, size + 2, label])
        with open(folder / f"GT-{label:05d}.csv", "w", newline="") as handle:
            writer = csv.writer(handle, delimiter=";")
            writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2",
                             "Roi.Y2", "ClassId"])
            writer.writerows(rows)
    images = base / "GTSRB" / "Final_Test" / "Images"
    images.mkdir(parents=True)
    rows = []
    for index in range(test_count):
        label = (3 * index) % classes
        name = f"{index:05d}.ppm"
        Image.new("RGB", (40, 30), color=(label * 5, 100, 200)).save(images / name)
        rows.append([name, 40, 30, 1, 1, 39, 29, label])
    with open(base / "GT-final_test.csv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=";")
        writer.writerow(["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2",
                         "ClassId"])
        writer.writerows(rows)
    return base
