"""The 12 downstream DataModules of the transfer study on small native files and on the real
subsets in the shared data folder."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_robust.data import (
    BirdsnapDataModule,
    Caltech101DataModule,
    Caltech256DataModule,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DatasetNotFoundError,
    DTDDataModule,
    FGVCAircraftDataModule,
    Flowers102DataModule,
    Food101DataModule,
    OxfordPetsDataModule,
    StanfordCarsDataModule,
    SUN397DataModule,
)
from tests.data import transfer_files as files
from tests.data.native_dataset_files import write_cifar_pickles

# (id, writer, DataModule, extra arguments, classes, training images (validation included),
#  test images, {file relative to the dataset folder: (split, label)})
NATIVE_CASES = [
    ("food101-json", files.write_food101, Food101DataModule, {}, 3, 12, 6,
     {"images/baklava/11.jpg": ("train", 1), "images/churros/25.jpg": ("test", 2)}),
    ("food101-txt", lambda root: files.write_food101(root, "txt"), Food101DataModule, {}, 3, 12,
     6, {"images/apple_pie/03.jpg": ("train", 0), "images/churros/24.jpg": ("test", 2)}),
    ("birdsnap", files.write_birdsnap, BirdsnapDataModule, {}, 3, 8, 6,
     {"download/images/Blue_Jay/1.jpg": ("train", 1),
      "download/images/Snowy_Owl/4.jpg": ("test", 2)}),
    ("sun397-partitions", files.write_sun397, SUN397DataModule, {}, 3, 6, 6,
     {"a/apartment_building/outdoor/sun_1.jpg": ("train", 1), "b/bedroom/sun_3.jpg": ("test", 2)}),
    ("sun397-flat", lambda root: files.write_sun397(root, ""), SUN397DataModule, {}, 3, 6, 6,
     {"a/abbey/sun_0.jpg": ("train", 0), "a/abbey/sun_2.jpg": ("test", 0)}),
    ("caltech101-first", files.write_caltech101, Caltech101DataModule,
     {"train_per_class": 3}, 3, 9, 6,
     {"101_ObjectCategories/Faces/image_0003.jpg": ("train", 0),
      "101_ObjectCategories/yin_yang/image_0004.jpg": ("test", 2)}),
    ("caltech101-seeded", files.write_caltech101, Caltech101DataModule,
     {"train_per_class": 3, "train_selection": "seeded"}, 3, 9, 6, {}),
    ("caltech101-lists", lambda root: files.write_caltech101(root, lists=True),
     Caltech101DataModule, {}, 3, 12, 3,
     {"101_ObjectCategories/Faces/image_0002.jpg": ("train", 0),
      "101_ObjectCategories/yin_yang/image_0001.jpg": ("test", 2)}),
    ("caltech256", files.write_caltech256, Caltech256DataModule, {"train_per_class": 3}, 3, 9,
     6, {"256_ObjectCategories/001.ak47/001_0003.jpg": ("train", 0),
         "256_ObjectCategories/257.clutter/257_0004.jpg": ("test", 2)}),
    ("caltech256-without-clutter", files.write_caltech256, Caltech256DataModule,
     {"train_per_class": 3, "keep_clutter": False}, 2, 6, 4, {}),
    ("stanford-cars-devkit", files.write_stanford_cars, StanfordCarsDataModule, {}, 3, 6, 3,
     {"cars_train/00004.jpg": ("train", 1), "cars_test/10002.jpg": ("test", 2)}),
    ("stanford-cars-folders", files.write_stanford_cars_folders, StanfordCarsDataModule, {}, 3,
     6, 3, {"train/002/11.jpg": ("train", 1), "test/003/22.jpg": ("test", 2)}),
    ("fgvc-aircraft", files.write_fgvc_aircraft, FGVCAircraftDataModule, {}, 3, 9, 6,
     {"data/images/1000012.jpg": ("train", 1), "data/images/1000024.jpg": ("test", 2)}),
    ("dtd-partition1", files.write_dtd, DTDDataModule, {}, 3, 9, 6,
     {"images/cracked/cracked_0003.jpg": ("train", 1),
      "images/zigzagged/zigzagged_0005.jpg": ("test", 2)}),
    ("dtd-coop", lambda root: files.write_dtd(root, coop=True), DTDDataModule, {}, 3, 9, 6,
     {"images/banded/banded_0001.jpg": ("train", 0),
      "images/cracked/cracked_0004.jpg": ("test", 1)}),
    ("oxford-pets", files.write_oxford_pets, OxfordPetsDataModule, {}, 3, 9, 6,
     {"images/american_bulldog_2.jpg": ("train", 1), "images/Bengal_4.jpg": ("test", 2)}),
    ("flowers102", files.write_flowers102, Flowers102DataModule, {}, 3, 9, 3,
     {"jpg/image_00005.jpg": ("train", 1), "jpg/image_00008.jpg": ("train", 1),
      "jpg/image_00012.jpg": ("test", 2)}),
]


def split_files(dm, folder: Path) -> dict[str, list[tuple[str, int]]]:
    """``{split: [(file relative to folder, label)]}`` after setup."""
    dm.setup("fit")
    dm.setup("test")
    test = dm._read("test").subset(dm.test_indices)
    parts = {"train": dm._full_train.subset(dm.train_indices),
             "val": dm._full_train.subset(dm.val_indices), "test": test}
    return {name: [(str(Path(f).relative_to(folder)), int(label))
                   for f, label in zip(part.files, part.labels.tolist(), strict=True)]
            for name, part in parts.items()}


def module(cls, root: Path, **kwargs):
    return cls(root=str(root), batch_size=4, num_workers=0, val_size=0.25, **kwargs)


@pytest.mark.parametrize(("writer", "cls", "kwargs", "classes", "train_total", "test_total",
                          "named"), [case[1:] for case in NATIVE_CASES],
                         ids=[case[0] for case in NATIVE_CASES])
def test_native_layout(tmp_path, writer, cls, kwargs, classes, train_total, test_total, named):
    folder = writer(tmp_path)
    missing = cls is BirdsnapDataModule
    with pytest.warns(UserWarning, match="1 of the 9 listed") if missing else nullcontext():
        dm = module(cls, tmp_path, **kwargs)
        parts = split_files(dm, folder)
    assert dm.num_classes == classes
    assert len(parts["train"]) + len(parts["val"]) == train_total
    assert len(parts["val"]) == round(0.25 * train_total)
    assert len(parts["test"]) == test_total
    names = {split: {name for name, _ in rows} for split, rows in parts.items()}
    assert not names["train"] & names["val"]
    assert not (names["train"] | names["val"]) & names["test"]
    labels = {name: (("test" if split == "test" else "train"), label)
              for split, rows in parts.items() for name, label in rows}
    for name, expected in named.items():
        assert labels[name] == expected, name
    # every image's colour encodes its class: the loaders pair images with their labels
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape[1:] == (3, 224, 224)
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal((x[:, 0].mean(dim=(1, 2)) * 255 / 40).round().long(), y)



def test_class_names_follow_the_files(tmp_path):
    pets = module(OxfordPetsDataModule, files.write_oxford_pets(tmp_path / "pets").parent)
    assert pets.class_names == ("Abyssinian", "American Bulldog", "Bengal")
    sun = module(SUN397DataModule, files.write_sun397(tmp_path / "sun").parent)
    assert sun.class_names == ("abbey", "apartment_building/outdoor", "bedroom")
    caltech = module(Caltech256DataModule, files.write_caltech256(tmp_path / "c256").parent)
    assert caltech.class_names == ("ak47", "american-flag", "clutter")
    caltech = module(Caltech256DataModule, tmp_path / "c256", keep_clutter=False)
    assert caltech.class_names == ("ak47", "american-flag")
    cars = module(StanfordCarsDataModule, files.write_stanford_cars(tmp_path / "cars").parent)
    assert cars.class_names == files.CAR_NAMES
    aircraft = module(FGVCAircraftDataModule, files.write_fgvc_aircraft(tmp_path / "air").parent)
    assert aircraft.class_names == files.AIRCRAFT_VARIANTS
    birds = module(BirdsnapDataModule, files.write_birdsnap(tmp_path / "birds").parent)
    assert birds.class_names == ("Acadian Flycatcher", "Blue Jay", "Snowy Owl")


def test_caltech_split_is_fixed_and_seeded(tmp_path):
    files.write_caltech101(tmp_path, per_class=6)

    def split(**kwargs):
        dm = Caltech101DataModule(root=str(tmp_path), train_selection="seeded", **kwargs)
        return dm._read("train").files, dm._read("test").files

    train, test = split(train_per_class=4)
    assert len(train) == 12 and len(test) == 6 and not set(train) & set(test)
    assert not any("BACKGROUND_Google" in f for f in train + test)
    assert split(train_per_class=4, split_seed=3) == (train, test)  # not the validation seed
    smaller, _ = split(train_per_class=2)
    assert len(smaller) == 6
    # each class draws its own permutation of its sorted files (numpy, seed [0, label])
    faces = sorted(f"image_{k:04d}.jpg" for k in range(1, 7))
    order = np.random.default_rng([0, 0]).permutation(6)
    expected = sorted(faces[i] for i in order[:4])
    assert [Path(f).name for f in train if "/Faces/" in f] == expected
    # so the classes, which hold the same file names, do not all train on the same ones
    chosen = {category: [Path(f).name for f in train if f"/{category}/" in f]
              for category in files.CALTECH101_CATEGORIES[1:]}
    assert len({tuple(names) for names in chosen.values()}) > 1, chosen
    with pytest.raises(ValueError, match="class 0 has 6 images, but .* train_per_class=6"):
        split(train_per_class=6)
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        Caltech101DataModule(root=str(tmp_path), train_per_class=0)


@pytest.mark.parametrize(("cls", "writer", "folder", "names"), [
    (Caltech101DataModule, files.write_caltech101, "101_ObjectCategories",
     files.CALTECH101_CATEGORIES[1:]),
    (Caltech256DataModule, files.write_caltech256, "256_ObjectCategories",
     files.CALTECH256_FOLDERS),
])
def test_caltech_default_trains_on_the_first_images_of_every_class(tmp_path, cls, writer, folder,
                                                                    names):
    """The transfer study's official split: the first N files of every class (in file-number
    order) train, the rest test; Caltech-256 keeps its clutter class."""
    dataset_folder = writer(tmp_path, per_class=6)
    dm = cls(root=str(tmp_path), train_per_class=4)
    train, test = dm._read("train"), dm._read("test")
    for label, name in enumerate(names):
        in_train = sorted(Path(f).name for f, y in zip(train.files, train.labels.tolist(),
                                                       strict=True) if y == label)
        in_test = sorted(Path(f).name for f, y in zip(test.files, test.labels.tolist(),
                                                      strict=True) if y == label)
        files_of_class = sorted(p.name for p in (dataset_folder / folder / name).iterdir())
        assert in_train == files_of_class[:4] and in_test == files_of_class[4:], name
    with pytest.raises(ValueError, match="train_selection must be 'first'"):
        cls(root=str(tmp_path), train_selection="random")


@pytest.mark.parametrize(("writer", "cls", "val_names"), [
    (files.write_flowers102, Flowers102DataModule,
     {"jpg/image_00007.jpg", "jpg/image_00008.jpg", "jpg/image_00009.jpg"}),
    (files.write_dtd, DTDDataModule, {f"images/{c}/{c}_0003.jpg" for c in files.DTD_CATEGORIES}),
    (lambda root: files.write_dtd(root, coop=True), DTDDataModule,
     {f"images/{c}/{c}_0003.jpg" for c in files.DTD_CATEGORIES}),
    (files.write_fgvc_aircraft, FGVCAircraftDataModule,
     {f"data/images/10000{v}2.jpg" for v in range(3)}),
], ids=["flowers102", "dtd-partition1", "dtd-coop", "fgvc-aircraft"])
def test_official_validation_split(tmp_path, writer, cls, val_names):
    folder = writer(tmp_path)
    dm = cls(root=str(tmp_path), val_size="official", num_workers=0)
    parts = split_files(dm, folder)
    assert {name for name, _ in parts["val"]} == val_names
    assert len(parts["train"]) == 2 * len(val_names)


def test_official_validation_needs_a_dataset_that_has_one(tmp_path):
    files.write_oxford_pets(tmp_path)
    dm = OxfordPetsDataModule(root=str(tmp_path), val_size="official")
    with pytest.raises(ValueError, match="val_size='official', but Oxford-IIIT Pets .* has no"):
        dm.setup("fit")
    with pytest.raises(ValueError, match="or 'official'"):
        OxfordPetsDataModule(root=str(tmp_path), val_size="all")


@pytest.mark.parametrize(("cls", "folder", "label_key", "classes"), [
    (CIFAR10DataModule, "cifar-10-batches-py", "labels", 10),
    (CIFAR100DataModule, "cifar-100-python", "fine_labels", 100),
])
def test_cifar_in_the_transfer_protocol(tmp_path, cls, folder, label_key, classes):
    names = ({f"data_batch_{i}": 20 for i in range(1, 6)} | {"test_batch": 20}
             if classes == 10 else {"train": 200, "test": 100})
    write_cifar_pickles(tmp_path / folder, names, label_key, classes)
    dm = cls(root=str(tmp_path), image_size=224, resize="resize_center_crop", batch_size=4,
             num_workers=0, val_size=0)
    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 224, 224)
    x, _ = next(iter(dm.test_dataloader()))
    assert x.shape == (4, 3, 224, 224)


TRANSFER_MODULES = [Food101DataModule, BirdsnapDataModule, SUN397DataModule,
                    Caltech101DataModule, Caltech256DataModule, StanfordCarsDataModule,
                    FGVCAircraftDataModule, DTDDataModule, OxfordPetsDataModule,
                    Flowers102DataModule]


@pytest.mark.parametrize("cls", TRANSFER_MODULES, ids=lambda c: c.__name__)
def test_missing_data_names_dataset_root_and_layouts(tmp_path, cls):
    dm = cls(root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert message.startswith(f"{dm.dataset_name} not found under root '{tmp_path}'")
    for layout in dm.layouts:
        assert layout.tree in message
    assert "cannot be downloaded automatically" in message


# DataModule, classes, training images (validation included), test images of the real subsets
REAL_SUBSETS = [
    (Food101DataModule, 10, 60, 30),
    (OxfordPetsDataModule, 3, 30, 15),
    (Flowers102DataModule, 102, 408, 204),
    (DTDDataModule, 10, 120, 50),
    (Caltech101DataModule, 101, 303, 202),
    (StanfordCarsDataModule, 196, 196, 196),
]


@pytest.mark.parametrize(("cls", "classes", "train_total", "test_total"), REAL_SUBSETS,
                         ids=[case[0].__name__ for case in REAL_SUBSETS])
def test_real_subset_loads_at_224_pixels(shared_data, cls, classes, train_total, test_total):
    dm = cls(root=str(shared_data), batch_size=8, num_workers=0, val_size=0,
             cache_in_memory=False)
    dm.setup("fit")
    dm.setup("test")
    assert dm.num_classes == classes
    assert len(dm.train_dataset) == train_total
    assert len(dm.test_dataset) == test_total
    for loader in (dm.train_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert x.shape == (8, 3, 224, 224) and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.05
        assert int(y.min()) >= 0 and int(y.max()) < classes
