"""Writers of small files in the native layouts of the transfer study's downstream sets.

Every writer builds a few tiny JPEG images per class under ``root`` in the layout users have
(torchvision's, the official archive's, or the layout of the shared subsets) and returns the
dataset folder. Image ``k`` of class ``c`` has the solid colour ``(40 * c, 10 * k, 128)``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image


def write_image(path: Path, label: int, index: int) -> None:
    """A 20×14 solid-colour JPEG (colour from the class and the image number)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 14), color=(40 * label, 10 * index, 128)).save(path, quality=95)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


FOOD_CLASSES = ("apple_pie", "baklava", "churros")


def write_food101(root: Path, listing: str = "json") -> Path:
    """``food-101/{images/<class>/<id>.jpg, meta/}``: 4 train and 2 test images per class;
    ``listing`` ``"json"`` writes torchvision's ``meta/{train,test}.json``, ``"txt"`` the
    archive's ``meta/{classes,train,test}.txt``. Ids are ``<class index><k>``, ``k`` < 4
    train."""
    folder = root / "food-101"
    splits: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for label, name in enumerate(FOOD_CLASSES):
        for k in range(6):
            write_image(folder / "images" / name / f"{label}{k}.jpg", label, k)
            splits["train" if k < 4 else "test"].setdefault(name, []).append(f"{name}/{label}{k}")
    for split, entries in splits.items():
        if listing == "json":
            (folder / "meta").mkdir(parents=True, exist_ok=True)
            (folder / "meta" / f"{split}.json").write_text(json.dumps(entries))
        else:
            _write_lines(folder / "meta" / f"{split}.txt", [e for v in entries.values() for e in v])
    if listing == "txt":
        _write_lines(folder / "meta" / "classes.txt", list(FOOD_CLASSES))
    return folder


BIRDSNAP_SPECIES = (("Acadian Flycatcher", "Acadian_Flycatcher"), ("Blue Jay", "Blue_Jay"),
                    ("Snowy Owl", "Snowy_Owl"))


def write_birdsnap(root: Path) -> Path:
    """The official archive ``birdsnap/{species.txt, images.txt, test_images.txt}`` with
    images in ``download/images/<dir>/<k>.jpg``: 5 per species, ``k`` in {3, 4} test; species
    ids are 1, 2, 3. The file ``Blue_Jay/2.jpg`` is listed but missing (never downloaded)."""
    folder = root / "birdsnap"
    folder.mkdir(parents=True)
    with open(folder / "species.txt", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["id", "common", "scientific", "dir"])
        for species_id, (common, directory) in enumerate(BIRDSNAP_SPECIES, start=1):
            writer.writerow([species_id, common, f"Avis {directory.lower()}", directory])
    columns = ["url", "md5", "path", "species_id", "bb_x1", "bb_y1", "bb_x2", "bb_y2",
               "back_x", "back_y"]
    tests = []
    with open(folder / "images.txt", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(columns)
        for species_id, (_, directory) in enumerate(BIRDSNAP_SPECIES, start=1):
            for k in range(5):
                path = f"{directory}/{k}.jpg"
                writer.writerow([f"http://example.org/{k}.jpg", "0" * 32, path, species_id,
                                 1, 1, 10, 10, 5, 5])
                if path != "Blue_Jay/2.jpg":
                    write_image(folder / "download" / "images" / path, species_id - 1, k)
                if k >= 3:
                    tests.append(path)
    _write_lines(folder / "test_images.txt", ["path", *tests])
    return folder


SUN_CATEGORIES = ("/a/abbey", "/a/apartment_building/outdoor", "/b/bedroom")


def write_sun397(root: Path, partitions_folder: str = "Partitions") -> Path:
    """torchvision's ``SUN397/{ClassName.txt, <letter>/<category>/sun_<k>.jpg}`` with 5 images
    per category: partition 1 lists ``k`` 0, 1 for training and 2, 3 for testing (``k`` = 4 is
    in no partition-1 list); partition 2 lists are written too."""
    folder = root / "SUN397"
    _write_lines(folder / "ClassName.txt", list(SUN_CATEGORIES))
    lists: dict[str, list[str]] = {}
    for label, category in enumerate(SUN_CATEGORIES):
        for k in range(5):
            write_image(folder / category.lstrip("/") / f"sun_{k}.jpg", label, k)
            name = {0: "Training_01", 1: "Training_01", 2: "Testing_01", 3: "Testing_01",
                    4: "Training_02"}[k]
            lists.setdefault(name, []).append(f"{category}/sun_{k}.jpg")
    for name, lines in lists.items():
        _write_lines(folder / partitions_folder / f"{name}.txt", lines)
    return folder


CALTECH101_CATEGORIES = ("BACKGROUND_Google", "Faces", "accordion", "yin_yang")


def write_caltech101(root: Path, per_class: int = 5, lists: bool = False) -> Path:
    """torchvision's ``caltech101/101_ObjectCategories/<category>/image_<nnnn>.jpg``
    (``per_class`` images each, the background included); with ``lists``, ``train.txt`` /
    ``test.txt`` put image 1 of every category in the test split and the rest in training."""
    folder = root / "caltech101"
    train, test = [], []
    for index, name in enumerate(CALTECH101_CATEGORIES):
        for k in range(1, per_class + 1):
            write_image(folder / "101_ObjectCategories" / name / f"image_{k:04d}.jpg",
                        max(index - 1, 0), k)  # the label once the background is removed
            (test if k == 1 else train).append(f"{name}/image_{k:04d}.jpg")
    if lists:
        _write_lines(folder / "train.txt", train)
        _write_lines(folder / "test.txt", test)
    return folder


CALTECH256_FOLDERS = ("001.ak47", "002.american-flag", "257.clutter")


def write_caltech256(root: Path, per_class: int = 5) -> Path:
    """torchvision's ``caltech256/256_ObjectCategories/<nnn>.<name>/<nnn>_<mmmm>.jpg``,
    ``per_class`` images per folder (the clutter folder included)."""
    folder = root / "caltech256"
    for label, name in enumerate(CALTECH256_FOLDERS):
        number = name.split(".")[0]
        for k in range(1, per_class + 1):
            write_image(folder / "256_ObjectCategories" / name / f"{number}_{k:04d}.jpg", label, k)
    return folder


CAR_NAMES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi R8 Coupe 2012")


def _annotations(rows: list[tuple[str, int]]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    table = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (fname, class_id) in enumerate(rows):
        table[0, i] = (np.uint8(1), np.uint8(1), np.uint8(19), np.uint8(13), np.uint8(class_id),
                       fname)
    return table


def write_stanford_cars(root: Path) -> Path:
    """torchvision's ``stanford_cars/{cars_train/, cars_test/, devkit/cars_meta.mat,
    devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat}``: classes 1..3, training
    images ``0000<k>.jpg`` of class ``k % 3 + 1`` (k < 6), test images ``1000<k>.jpg`` of class
    ``k % 3 + 1`` (k < 3)."""
    folder = root / "stanford_cars"
    train = [(f"0000{k}.jpg", k % 3 + 1) for k in range(6)]
    test = [(f"1000{k}.jpg", k % 3 + 1) for k in range(3)]
    for directory, rows in (("cars_train", train), ("cars_test", test)):
        for k, (name, class_id) in enumerate(rows):
            write_image(folder / directory / name, class_id - 1, k)
    (folder / "devkit").mkdir()
    names = np.empty((1, len(CAR_NAMES)), dtype=object)
    names[0, :] = CAR_NAMES
    scipy.io.savemat(str(folder / "devkit" / "cars_meta.mat"), {"class_names": names})
    scipy.io.savemat(str(folder / "devkit" / "cars_train_annos.mat"),
                     {"annotations": _annotations(train)})
    scipy.io.savemat(str(folder / "cars_test_annos_withlabels.mat"),
                     {"annotations": _annotations(test)})
    return folder


def write_stanford_cars_folders(root: Path) -> Path:
    """The shared subset's layout ``stanford_cars/{train,test}/<001..003>/*.jpg`` +
    ``classes.txt``: 2 training and 1 test image per class (file ``<class><k>.jpg``)."""
    folder = root / "stanford_cars"
    for label in range(3):
        for k in range(3):
            write_image(folder / ("train" if k < 2 else "test") / f"{label + 1:03d}"
                        / f"{label}{k}.jpg", label, k)
    _write_lines(folder / "classes.txt", [f"{i + 1:03d}\t{n}" for i, n in enumerate(CAR_NAMES)])
    return folder


AIRCRAFT_VARIANTS = ("707-320", "Cessna 172", "F-16A/B")


def write_fgvc_aircraft(root: Path) -> Path:
    """torchvision's ``fgvc-aircraft-2013b/data/{images/<id>.jpg, variants.txt,
    images_variant_{train,val,trainval,test}.txt}``: per variant ``v`` the ids ``<v>0``,
    ``<v>1`` train, ``<v>2`` val, ``<v>3``, ``<v>4`` test (ids are 7 digits)."""
    data = root / "fgvc-aircraft-2013b" / "data"
    _write_lines(data / "variants.txt", list(AIRCRAFT_VARIANTS))
    lists: dict[str, list[str]] = {"train": [], "val": [], "trainval": [], "test": []}
    for label, variant in enumerate(AIRCRAFT_VARIANTS):
        for k in range(5):
            image_id = f"10000{label}{k}"
            write_image(data / "images" / f"{image_id}.jpg", label, k)
            split = "train" if k < 2 else "val" if k == 2 else "test"
            lists[split].append(f"{image_id} {variant}")
            if split != "test":
                lists["trainval"].append(f"{image_id} {variant}")
    for split, lines in lists.items():
        _write_lines(data / f"images_variant_{split}.txt", lines)
    return root / "fgvc-aircraft-2013b"


DTD_CATEGORIES = ("banded", "cracked", "zigzagged")


def write_dtd(root: Path, coop: bool = False) -> Path:
    """``dtd/dtd/images/<category>/<category>_<nnnn>.jpg`` (torchvision's nesting), 6 per
    category: partition 1 puts images 1, 2 in train1, 3 in val1 and 4, 5 in test1 (image 6 is
    in no partition-1 list; partition 2 swaps train and test). With ``coop`` the same split
    is written as CoOp's ``split_zhou_DescribableTextures.json`` instead of ``labels/``."""
    folder = root / "dtd" / "dtd"
    lists: dict[str, list[str]] = {}
    for label, name in enumerate(DTD_CATEGORIES):
        for k in range(1, 7):
            path = f"{name}/{name}_{k:04d}.jpg"
            write_image(folder / "images" / path, label, k)
            split = {1: "train", 2: "train", 3: "val", 4: "test", 5: "test", 6: None}[k]
            if split:
                lists.setdefault(split, []).append(path)
    if coop:
        entries = {split: [[path, DTD_CATEGORIES.index(path.split("/")[0]), path.split("/")[0]]
                           for path in paths] for split, paths in lists.items()}
        (folder / "split_zhou_DescribableTextures.json").write_text(json.dumps(entries))
    else:
        for split, paths in lists.items():
            _write_lines(folder / "labels" / f"{split}1.txt", paths)
        _write_lines(folder / "labels" / "train2.txt", lists["test"])
        _write_lines(folder / "labels" / "val2.txt", lists["val"])
        _write_lines(folder / "labels" / "test2.txt", lists["train"])
    return folder


PET_BREEDS = (("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 6, 1))


def write_oxford_pets(root: Path) -> Path:
    """torchvision's ``oxford-iiit-pet/{images/<breed>_<k>.jpg, annotations/{list,trainval,
    test}.txt}`` for breeds with class ids 1, 2 and 6 (a subset): ``k`` 1..3 trainval,
    4..5 test."""
    folder = root / "oxford-iiit-pet"
    header = ["#Image CLASS-ID SPECIES BREED ID", "#ID: 1:37 Class ids"]
    trainval, test = [], []
    for label, (breed, class_id, species) in enumerate(PET_BREEDS):
        for k in range(1, 6):
            write_image(folder / "images" / f"{breed}_{k}.jpg", label, k)
            (trainval if k <= 3 else test).append(f"{breed}_{k} {class_id} {species} {k}")
    _write_lines(folder / "annotations" / "list.txt", header + trainval + test)
    _write_lines(folder / "annotations" / "trainval.txt", trainval)
    _write_lines(folder / "annotations" / "test.txt", test)
    return folder


def write_flowers102(root: Path) -> Path:
    """torchvision's ``flowers-102/{jpg/image_<nnnnn>.jpg, imagelabels.mat, setid.mat}``:
    12 images, image ``n`` (1-based) of class id ``(n - 1) % 3 + 1``; ``trnid`` images 1–6,
    ``valid`` 7–9, ``tstid`` 10–12."""
    folder = root / "flowers-102"
    labels = np.array([[(n - 1) % 3 + 1 for n in range(1, 13)]], dtype=np.uint8)
    for n in range(1, 13):
        write_image(folder / "jpg" / f"image_{n:05d}.jpg", int(labels[0, n - 1]) - 1, n)
    scipy.io.savemat(str(folder / "imagelabels.mat"), {"labels": labels})
    scipy.io.savemat(str(folder / "setid.mat"), {
        "trnid": np.arange(1, 7, dtype=np.uint16)[None],
        "valid": np.arange(7, 10, dtype=np.uint16)[None],
        "tstid": np.arange(10, 13, dtype=np.uint16)[None],
    })
    return folder
