"""A malformed entry in a dataset's list or annotation file is an error that names the file,
the line (or entry) and what was expected, never a bare ``KeyError: 99``; ``lit-robust``
shows it as one line."""

from __future__ import annotations

import json
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from lit_robust.data import (
    BirdsnapDataModule,
    Caltech101DataModule,
    CIFAR100DataModule,
    DTDDataModule,
    FGVCAircraftDataModule,
    Flowers102DataModule,
    Food101DataModule,
    GTSRBDataModule,
    OxfordPetsDataModule,
    StanfordCarsDataModule,
    SUN397DataModule,
    TinyImageNetDataModule,
)
from lit_robust.data.images import DataFileError
from lit_robust.main import main
from tests.data import transfer_files as files
from tests.data.native_dataset_files import write_cifar_pickles, write_gtsrb_official


def append_line(path: Path, line: str) -> int:
    """Append ``line`` to a text file; its 1-based line number."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, line]) + "\n")
    return len(lines) + 1


def replace_line(path: Path, number: int, line: str) -> int:
    lines = path.read_text().splitlines()
    lines[number - 1] = line
    path.write_text("\n".join(lines) + "\n")
    return number


def _food_json(folder: Path) -> tuple[Path, str, str]:
    path = folder / "meta" / "train.json"
    listing = json.loads(path.read_text())
    listing["baklava"][1] = "pizza/17"
    path.write_text(json.dumps(listing))
    return path, "entry baklava[1]", "'pizza/17'"


def _birdsnap(folder: Path) -> tuple[Path, str, str]:
    path = folder / "images.txt"
    line = "http://x\t0\tBlue_Jay/9.jpg\t99\t1\t1\t2\t2\t1\t1"
    return path, f"line {append_line(path, line)}", repr(line)


def _cars_devkit(folder: Path) -> tuple[Path, str, str]:
    path = folder / "devkit" / "cars_train_annos.mat"
    annotations = scipy.io.loadmat(str(path))["annotations"]
    annotations[0, 2]["class"] = np.uint8(9)
    scipy.io.savemat(str(path), {"annotations": annotations})
    return path, "annotations[2]", "'class 9 of 00002.jpg'"


def _flowers(folder: Path) -> tuple[Path, str, str]:
    path = folder / "setid.mat"
    scipy.io.savemat(str(path), {"trnid": np.array([[1, 2, 99]], dtype=np.uint16),
                                 "valid": np.array([[7]], dtype=np.uint16),
                                 "tstid": np.array([[10]], dtype=np.uint16)})
    return path, "trnid[2]", "99"


def _dtd_coop(folder: Path) -> tuple[Path, str, str]:
    path = folder / "split_zhou_DescribableTextures.json"
    document = json.loads(path.read_text())
    document["train"][3][0] = "woven/woven_0001.jpg"
    path.write_text(json.dumps(document))
    return path, "entry train[3]", "'woven/woven_0001.jpg'"


def _in_text(relative: str, line: str, replace: int | None = None
             ) -> Callable[[Path], tuple[Path, str, str]]:
    def corrupt(folder: Path) -> tuple[Path, str, str]:
        path = folder / relative
        number = replace_line(path, replace, line) if replace else append_line(path, line)
        return path, f"line {number}", repr(line)
    return corrupt


def _tiny_imagenet(root: Path) -> Path:
    folder = root / "tiny-imagenet-200"
    for wnid in ("n01443537", "n01629819"):
        (folder / "train" / wnid / "images").mkdir(parents=True)
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("n01443537\nn01629819\n")
    (folder / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn01443537\t0\t0\t9\t9\nval_1.JPEG\tn01629819\t0\t0\t9\t9\n")
    return folder


def _gtsrb(root: Path) -> Path:
    return write_gtsrb_official(root, classes=2, per_class=1, test_count=2)


# (id, writer, DataModule, extra arguments, split read, corruption, expected)
CASES = [
    ("food101-txt", lambda r: files.write_food101(r, "txt"), Food101DataModule, {}, "train",
     _in_text("meta/train.txt", "pizza/17"),
     "'<class>/<image id>' with a class of meta/classes.txt (apple_pie, baklava, churros)"),
    ("food101-json", files.write_food101, Food101DataModule, {}, "train", _food_json,
     "'<class>/<image id>' with a class of meta/train.json (apple_pie, baklava, churros)"),
    ("birdsnap", files.write_birdsnap, BirdsnapDataModule, {}, "train", _birdsnap,
     "a species_id of species.txt (1, 2, 3)"),
    ("sun397", files.write_sun397, SUN397DataModule, {}, "train",
     _in_text("Partitions/Training_01.txt", "/z/zoo/sun_0.jpg"),
     "'<category>/<file>.jpg' with a category of ClassName.txt (/a/abbey, "),
    ("caltech101-lists", lambda r: files.write_caltech101(r, lists=True), Caltech101DataModule,
     {}, "train", _in_text("train.txt", "kangaroo/image_0001.jpg"),
     "'<category>/<file>' with a category folder of 101_ObjectCategories/ (Faces, accordion, "
     "yin_yang)"),
    ("stanford-cars-devkit", files.write_stanford_cars, StanfordCarsDataModule, {}, "train",
     _cars_devkit, "a class in 1..3"),
    ("stanford-cars-folders", files.write_stanford_cars_folders, StanfordCarsDataModule, {},
     "train", _in_text("classes.txt", "002 Acura RL Sedan 2012", replace=2),
     "'<class folder>\\t<class name>'"),
    ("fgvc-aircraft", files.write_fgvc_aircraft, FGVCAircraftDataModule, {}, "train",
     _in_text("data/images_variant_train.txt", "1000009 Boeing 999"),
     "'<image id> <variant>' with a variant of variants.txt (707-320, Cessna 172, F-16A/B)"),
    ("dtd-partition1", files.write_dtd, DTDDataModule, {}, "test",
     _in_text("labels/test1.txt", "woven/woven_0001.jpg"),
     "'<category>/<file>' with a category folder of images/ (banded, cracked, zigzagged)"),
    ("dtd-coop", lambda r: files.write_dtd(r, coop=True), DTDDataModule, {}, "train", _dtd_coop,
     "'<category>/<file>' with a category folder of images/ (banded, cracked, zigzagged)"),
    ("oxford-pets-class-id", files.write_oxford_pets, OxfordPetsDataModule, {}, "train",
     _in_text("annotations/trainval.txt", "Abyssinian_9 99 1 1"),
     "a class id of annotations/list.txt (1, 2, 6)"),
    ("oxford-pets-line", files.write_oxford_pets, OxfordPetsDataModule, {}, "test",
     _in_text("annotations/test.txt", "Abyssinian_9"),
     "'<image id> <class id> <species> <breed id>' with an integer class id"),
    ("flowers102", files.write_flowers102, Flowers102DataModule, {}, "train", _flowers,
     "an image number in 1..12 (the images imagelabels.mat labels)"),
    ("gtsrb", _gtsrb, GTSRBDataModule, {}, "test",
     _in_text("GT-final_test.csv", "00009.ppm;7;7;1;1;6;6;x"), "an integer ClassId in 0..42"),
    ("tiny-imagenet", _tiny_imagenet, TinyImageNetDataModule, {}, "test",
     _in_text("val/val_annotations.txt", "val_2.JPEG\tn99999999\t0\t0\t9\t9"),
     "'<file>\\t<wnid>\\t<box>' with a wnid of wnids.txt (n01443537, n01629819)"),
]


@pytest.mark.parametrize(("writer", "cls", "kwargs", "split", "corrupt", "expected"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_entry_names_the_file_the_line_and_what_was_expected(
        tmp_path, writer, cls, kwargs, split, corrupt, expected) -> None:
    folder = writer(tmp_path)
    path, where, found = corrupt(folder)
    with pytest.raises(DataFileError) as error:
        cls(root=str(tmp_path), **kwargs)._read(split)
    message = str(error.value)
    assert message.startswith(f"{path}, {where}: expected {expected}")
    assert f"got {found}" in message


def test_a_cifar_pickle_without_labels_names_the_file_and_the_keys(tmp_path) -> None:
    folder = tmp_path / "cifar-100-python"
    write_cifar_pickles(folder, {"train": 4, "test": 2}, "fine_labels", 100)
    with open(folder / "train", "rb") as handle:
        batch = pickle.load(handle, encoding="latin1")
    del batch[b"fine_labels"]
    with open(folder / "train", "wb") as handle:
        pickle.dump(batch, handle)
    with pytest.raises(DataFileError, match=r"train is not a CIFAR batch: expected the keys data "
                                            r"and fine_labels, found \['data'"):
        CIFAR100DataModule(root=str(tmp_path))._read("train")


def test_a_missing_mat_variable_names_the_file_and_what_it_holds(tmp_path) -> None:
    folder = files.write_flowers102(tmp_path)
    scipy.io.savemat(str(folder / "imagelabels.mat"), {"classes": np.arange(3)})
    with pytest.raises(DataFileError, match=r"imagelabels.mat has no variable labels \(it holds "
                                            r"classes\); expected the class id of every image"):
        Flowers102DataModule(root=str(tmp_path))._read("train")


def test_the_cli_shows_an_unknown_pets_class_id_as_one_line(tmp_path, capsys,
                                                            monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit-robust"])
    folder = files.write_oxford_pets(tmp_path / "data")
    number = append_line(folder / "annotations" / "trainval.txt", "Abyssinian_9 99 1 1")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model", "StandardTraining", "--model.backbone", "tiny_cnn",
              "--data", "OxfordPetsDataModule", "--data.root", str(tmp_path / "data"),
              "--data.image_size", "32", "--data.num_workers", "0",
              "--trainer.fast_dev_run", "true", "--trainer.accelerator", "cpu"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error == (f"lit-robust: error: {folder / 'annotations' / 'trainval.txt'}, line "
                     f"{number}: expected a class id of annotations/list.txt (1, 2, 6), got "
                     "'Abyssinian_9 99 1 1'; fix the entry or replace the file with the "
                     "dataset's original\n")
