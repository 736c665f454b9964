"""The transfer loaders' less common checks, each on a hand-made file: an entry of the wrong
type, a listing of the wrong shape, a missing ``.mat`` variable; every message names the file,
the entry and what was expected. Also the Caltech split's smallest size and its description,
SUN397's lower-case folder name, and the layouts Birdsnap and SUN397 say they looked for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from lit_robust.data import (
    BirdsnapDataModule,
    Caltech101DataModule,
    Caltech256DataModule,
    DTDDataModule,
    Flowers102DataModule,
    Food101DataModule,
    StanfordCarsDataModule,
    SUN397DataModule,
)
from lit_robust.data.images import DataFileError
from lit_robust.data.layouts import DatasetNotFoundError
from tests.data import transfer_files as files

ADVICE = "; fix the entry or replace the file with the dataset's original"


def _refusal(cls: type, root: Path, split: str) -> str:
    """The message of the error reading ``split`` of the dataset under ``root`` raises."""
    with pytest.raises(DataFileError) as error:
        cls(root=str(root))._read(split)
    return str(error.value)


def test_a_coop_entry_that_is_not_a_list_names_the_file_and_the_entry(tmp_path) -> None:
    folder = files.write_dtd(tmp_path, coop=True)
    path = folder / "split_zhou_DescribableTextures.json"
    document = json.loads(path.read_text())
    document["train"][2] = "banded/banded_0001.jpg"
    path.write_text(json.dumps(document))
    message = _refusal(DTDDataModule, tmp_path, "train")
    assert message == (f"{path}, entry train[2]: expected [<category>/<file>, label, "
                                f"category], got 'banded/banded_0001.jpg'{ADVICE}")


def test_a_coop_path_that_is_not_a_string_names_the_file_and_the_entry(tmp_path) -> None:
    folder = files.write_dtd(tmp_path, coop=True)
    path = folder / "split_zhou_DescribableTextures.json"
    document = json.loads(path.read_text())
    document["test"][0][0] = 17
    path.write_text(json.dumps(document))
    message = _refusal(DTDDataModule, tmp_path, "test")
    assert message == (f"{path}, entry test[0]: expected '<category>/<file>' with a "
                                f"category folder of images/ (banded, cracked, zigzagged), "
                                f"got 17{ADVICE}")


def test_a_food101_listing_that_is_not_an_object_names_the_file(tmp_path) -> None:
    folder = files.write_food101(tmp_path)
    path = folder / "meta" / "train.json"
    path.write_text(json.dumps(["apple_pie/00"]))
    message = _refusal(Food101DataModule, tmp_path, "train")
    assert message == (f"{path}: expected an object mapping each class to its images, "
                                f"got 'list'{ADVICE}")


def test_a_missing_split_variable_names_the_file_and_what_it_holds(tmp_path) -> None:
    folder = files.write_flowers102(tmp_path)
    scipy.io.savemat(str(folder / "setid.mat"), {"trnid": np.array([[1, 2]], dtype=np.uint16)})
    message = _refusal(Flowers102DataModule, tmp_path, "test")
    assert message.startswith(f"{folder / 'setid.mat'} has no variable tstid")
    assert "expected the image numbers of each split in 'trnid', 'valid' and 'tstid'" in message


@pytest.mark.parametrize("cls", [Caltech101DataModule, Caltech256DataModule])
def test_one_training_image_per_class_is_allowed_and_none_is_refused(tmp_path, cls) -> None:
    cls(root=str(tmp_path), train_per_class=1)
    with pytest.raises(ValueError, match=r"^train_per_class must be a positive integer, got 0$"):
        cls(root=str(tmp_path), train_per_class=0)


def test_the_per_class_layout_says_which_images_train(tmp_path) -> None:
    first = Caltech101DataModule(root=str(tmp_path), train_per_class=3)
    seeded = Caltech101DataModule(root=str(tmp_path), train_per_class=3, train_selection="seeded")
    assert first.layouts[1].description == ("torchvision's Caltech-101 layout (the first 3 per "
                                            "class train, the rest test)")
    assert seeded.layouts[1].description == ("torchvision's Caltech-101 layout (seeded random 3 "
                                             "per class train, the rest test)")
    assert Caltech256DataModule(root=str(tmp_path), train_per_class=4).layouts[0].description \
        == "torchvision's Caltech-256 layout (the first 4 per class train, the rest test)"


@pytest.mark.parametrize("selection", ["first", "seeded"])
def test_a_class_too_small_for_the_split_names_the_dataset(tmp_path, selection: str) -> None:
    files.write_caltech101(tmp_path, per_class=5)
    data = Caltech101DataModule(root=str(tmp_path), train_per_class=5, train_selection=selection)
    with pytest.raises(ValueError, match=r"^Caltech-101: class \d+ has 5 images, but the split "
                                         r"takes train_per_class=5 of them for training"):
        data._read("train")


def test_a_class_that_is_not_an_integer_names_the_annotation(tmp_path) -> None:
    folder = files.write_stanford_cars(tmp_path)
    path = folder / "devkit" / "cars_train_annos.mat"
    annotations = files._annotations([("00001.jpg", 1), ("00002.jpg", 2)])
    annotations[0, 1]["class"] = "x"
    scipy.io.savemat(str(path), {"annotations": annotations})
    message = _refusal(StanfordCarsDataModule, tmp_path, "train")
    assert message == (f"{path}, annotations[1]: expected a class in 1..3, got 'class x of "
                       f"00002.jpg'{ADVICE}")


def test_a_species_id_that_is_not_an_integer_names_the_line(tmp_path) -> None:
    folder = files.write_birdsnap(tmp_path)
    path = folder / "species.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("2", "two", 1)
    path.write_text("\n".join(lines) + "\n")
    message = _refusal(BirdsnapDataModule, tmp_path, "train")
    assert message == (f"{path}, line 3: expected an integer species id in the column "
                                f"id, got {lines[2]!r}{ADVICE}")


def test_annotations_without_a_class_field_name_the_file_and_the_fields(tmp_path) -> None:
    folder = files.write_stanford_cars(tmp_path)
    path = folder / "devkit" / "cars_train_annos.mat"
    annotations = np.zeros((1, 2), dtype=[("fname", object), ("label", object)])
    scipy.io.savemat(str(path), {"annotations": annotations})
    message = _refusal(StanfordCarsDataModule, tmp_path, "train")
    assert message == (f"{path}: expected an 'annotations' struct array with the "
                                f"fields fname and class, got \"annotations with the fields "
                                f"['fname', 'label']\"{ADVICE}")


def test_a_lower_case_sun397_folder_is_found(tmp_path) -> None:
    files.write_sun397(tmp_path).rename(tmp_path / "sun397")
    data = SUN397DataModule(root=str(tmp_path))
    assert data._locate()[1] == tmp_path / "sun397"
    assert len(data._read("train").labels) > 0


@pytest.mark.parametrize(("cls", "descriptions"), [
    (BirdsnapDataModule, ["the official Birdsnap archive, images under download/images/",
                          "the official Birdsnap archive, images under images/"]),
    (SUN397DataModule, ["torchvision's SUN397 layout with the official partition files beside "
                        "ClassName.txt",
                        "torchvision's SUN397 layout with the official partition files in "
                        "Partitions/"]),
])
def test_a_missing_dataset_names_each_layout_it_looked_for(tmp_path, cls, descriptions) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        cls(root=str(tmp_path))._locate()
    looked_for = [line.split(", in one of: ")[0].removeprefix("  - ")
                  for line in str(error.value).splitlines() if line.startswith("  - ")]
    assert looked_for == descriptions


def test_an_image_species_id_that_is_not_an_integer_names_the_line(tmp_path) -> None:
    folder = files.write_birdsnap(tmp_path)
    path = folder / "images.txt"
    line = "http://x\t0\tBlue_Jay/9.jpg\tjay\t1\t1\t2\t2\t1\t1"
    path.write_text(path.read_text() + line + "\n")
    number = len(path.read_text().splitlines())
    message = _refusal(BirdsnapDataModule, tmp_path, "train")
    assert message.startswith(f"{path}, line {number}: expected ")
    assert message.endswith(f"got {line!r}{ADVICE}")


@pytest.mark.parametrize(("document", "found"), [({"val": []}, "dict"), ([], "list")])
def test_a_coop_file_without_the_split_names_the_file_and_what_it_holds(
        tmp_path, document: object, found: str) -> None:
    folder = files.write_dtd(tmp_path, coop=True)
    path = folder / "split_zhou_DescribableTextures.json"
    path.write_text(json.dumps(document))
    message = _refusal(DTDDataModule, tmp_path, "train")
    assert message == (f"{path}: expected an object with a list 'train' of [<category>/<file>, "
                       f"label, category] entries, got '{found} without it'{ADVICE}")


def test_a_single_annotation_is_one_image(tmp_path) -> None:
    folder = files.write_stanford_cars(tmp_path)
    scipy.io.savemat(str(folder / "devkit" / "cars_train_annos.mat"),
                     {"annotations": files._annotations([("00004.jpg", 3)])})
    split = StanfordCarsDataModule(root=str(tmp_path))._read("train")
    assert split.labels.tolist() == [2]
    assert split.files == [str(folder / "cars_train" / "00004.jpg")]


def test_caltech101_in_torchvisions_nested_folder_is_found(tmp_path) -> None:
    files.write_caltech101(tmp_path / "caltech101")
    data = Caltech101DataModule(root=str(tmp_path), train_per_class=2)
    assert data._locate()[1] == tmp_path / "caltech101" / "caltech101"


def test_annotations_missing_from_the_mat_file_say_what_was_expected(tmp_path) -> None:
    folder = files.write_stanford_cars(tmp_path)
    path = folder / "devkit" / "cars_train_annos.mat"
    scipy.io.savemat(str(path), {"notes": np.arange(3)})
    message = _refusal(StanfordCarsDataModule, tmp_path, "train")
    assert message.startswith(f"{path} has no variable annotations (it holds notes); expected "
                              "an 'annotations' struct array with the fields fname and class")
