"""Every YAML under configs/ runs ``fit`` through the CLI with ``fast_dev_run`` and a tiny model.

Configs that only name a model get a few real CIFAR-10 images; configs that only name a
DataModule get a tiny adversarially trained CNN. Datasets that have no (usable) real copy beside
the repository (CIFAR-100, SVHN, generic class folders, the transfer study's downstream sets)
are written in their native format.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from lit_robust.main import cli
from tests.data import transfer_files
from tests.data.native_dataset_files import write_cifar_pickles, write_svhn_mat

REPO = Path(__file__).resolve().parents[1]


def needs_earlier_stage(config: Path) -> bool:
    """Whether a config starts from the checkpoint of another config's run (RoLI's stage 2):
    ``tests/methods/test_roli.py`` runs each after its stage 1."""
    model = (yaml.safe_load(config.read_text()) or {}).get("model") or {}
    return "probe_checkpoint" in (model.get("init_args") or {})


CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml") if not needs_earlier_stage(p))
TINY_DATA = REPO / "tests" / "conf" / "tiny_cifar10.yaml"
TINY_MODEL = REPO / "tests" / "conf" / "tiny_model.yaml"
TRANSFER_METHODS = ("NEFTTransfer", "VanillaTransfer", "LwFTransfer")  # refuse a missing source


def write_image_folders(root: Path, classes: int = 3, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in range(classes):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


# The transfer study's downstream sets, written in a native layout (the shared subsets are too
# small for the smoke test's balanced subsets or absent), with the arguments they need here.
NATIVE_TRANSFER_SETS = {
    "Food101DataModule": (transfer_files.write_food101, []),
    "BirdsnapDataModule": (transfer_files.write_birdsnap, ["--data.init_args.samples_per_class",
                                                          "1"]),
    "SUN397DataModule": (transfer_files.write_sun397, ["--data.init_args.samples_per_class", "1"]),
    "Caltech101DataModule": (transfer_files.write_caltech101,
                             ["--data.init_args.train_per_class", "3"]),
    "Caltech256DataModule": (transfer_files.write_caltech256,
                             ["--data.init_args.train_per_class", "3"]),
    "StanfordCarsDataModule": (transfer_files.write_stanford_cars,
                               ["--data.init_args.samples_per_class", "1"]),
    "FGVCAircraftDataModule": (transfer_files.write_fgvc_aircraft, []),
    "DTDDataModule": (transfer_files.write_dtd, []),
    "OxfordPetsDataModule": (transfer_files.write_oxford_pets, []),
    "Flowers102DataModule": (transfer_files.write_flowers102, []),
}


def native_data_args(data_class: str, tmp_path: Path) -> list[str]:
    """``--data.init_args.root`` of native files (and the arguments they need) for datasets
    that have no usable real copy here; none for the others."""
    name = data_class.rsplit(".", 1)[-1]
    if name in NATIVE_TRANSFER_SETS:
        writer, extra = NATIVE_TRANSFER_SETS[name]
        writer(tmp_path / "native")
        return ["--data.init_args.root", str(tmp_path / "native"), *extra]
    root = native_root(name, tmp_path)
    return [] if root is None else ["--data.init_args.root", str(root)]


def native_root(name: str, tmp_path: Path) -> Path | None:
    """A root with native files for CIFAR-100, SVHN and class folders, else None."""
    if name == "CIFAR100DataModule":
        write_cifar_pickles(tmp_path / "native" / "cifar-100-python", {"train": 500, "test": 100},
                            "fine_labels", 100)
        return tmp_path / "native"
    if name == "SVHNDataModule":
        write_svhn_mat(tmp_path / "native" / "svhn", "train", 60, 0)
        write_svhn_mat(tmp_path / "native" / "svhn", "test", 20, 1)
        return tmp_path / "native"
    if name == "ImageFolderDataModule":
        return write_image_folders(tmp_path / "native" / "folders")
    return None


def fit_args(config: Path, tmp_path: Path) -> list[str]:
    content = yaml.safe_load(config.read_text()) or {}
    args = ["fit"]
    if "class_path" not in (content.get("model") or {}):
        args += ["--config", str(TINY_MODEL)]
    if "class_path" not in (content.get("data") or {}):
        args += ["--config", str(TINY_DATA)]
    args += ["--config", str(config)]
    data_class = (content.get("data") or {}).get("class_path", "CIFAR10DataModule")
    if "data" in content:
        args += [
            "--data.init_args.samples_per_class", "2",
            "--data.init_args.val_size", "0.2",
            "--data.init_args.test_first_n", "null",  # one subset rule at a time
            "--data.init_args.test_samples_per_class", "1",
            "--data.init_args.batch_size", "4",
            "--data.init_args.num_workers", "0",
        ]
        args += ["--data.init_args.image_size", "32"]  # also for the 224-px transfer sets
        args += native_data_args(data_class, tmp_path)
    model = content.get("model") or {}
    init_args = model.get("init_args") or {}
    if init_args.get("k") is not None:
        args += ["--model.init_args.k", "2"]  # CARTL's last-k blocks: tiny_cnn has 5
    if model.get("class_path", "").rsplit(".", 1)[-1] in TRANSFER_METHODS:
        args += ["--model.init_args.allow_random_source", "true"]  # pretrained: null below
    args += [
        "--model.init_args.backbone", "tiny_cnn",
        "--model.init_args.backbone_kwargs", "null",
        "--model.init_args.pretrained", "null",
        "--trainer.fast_dev_run", "true",
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"),
    ]
    return args


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_fits_with_fast_dev_run(config: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    run = cli(fit_args(config, tmp_path))
    assert run.trainer.state.finished
    hparams = run.model.hparams  # consistency regularization's official loop: m steps a batch
    chunks = hparams.get("training_loop") == "chunks"
    assert run.trainer.global_step == (hparams["num_noise_samples"] if chunks else 1)


ALL_CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_takes_certified_set_size_from_the_test_loader(config: Path) -> None:
    """A hard-coded ``num_test_images`` certifies a prefix of a larger split or stops a run on a
    smaller one: the size comes from the test loader, so no shipped config may set it."""
    assert "num_test_images" not in config.read_text()
