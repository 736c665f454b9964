"""GTSRB, the German Traffic Sign Recognition Benchmark (Stallkamp et al., 2012).

Images are 15–250 px photographs of one sign each; they are resized to 32×32 by default
(``resize="resize"``) and not mirrored during augmentation (mirroring turns "keep left" into
"keep right").
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision import datasets

from lit_robust.data.base import RobustDataModule
from lit_robust.data.images import ImageSplit
from lit_robust.data.layouts import DatasetLayout, Split
from lit_robust.data.listings import entry_error, integer, table_rows

GTSRB_CLASSES = (
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution",
    "Dangerous curve to the left", "Dangerous curve to the right", "Double curve", "Bumpy road",
    "Slippery road", "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians",
    "Children crossing", "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing",
    "End of all speed and passing limits", "Turn right ahead", "Turn left ahead", "Ahead only",
    "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)


def _split_from_rows(folder: Path, rows: list[tuple[str, int]]) -> ImageSplit:
    files = [str(folder / path) for path, _ in rows]
    labels = torch.tensor([label for _, label in rows], dtype=torch.int64)
    return ImageSplit(labels, files=files)


def _class_id(path: Path, number: int, line: str, row: dict[str, str]) -> int:
    expected = "an integer ClassId in 0..42"
    class_id = integer(path, row["ClassId"], expected, line, number)
    if not 0 <= class_id < len(GTSRB_CLASSES):
        raise entry_error(path, expected, line, number)
    return class_id


def read_gtsrb_official(folder: Path, split: Split) -> ImageSplit:
    """torchvision's layout: ``GTSRB/Training/<class>/*.ppm`` and ``GTSRB/Final_Test/Images``
    labelled by ``GT-final_test.csv`` (``;``-separated, columns ``Filename``, ``ClassId``)."""
    if split == "train":
        training = folder / "GTSRB" / "Training"
        rows = [
            (str(Path("GTSRB", "Training", name, file)), int(name))
            for name in sorted(entry.name for entry in os.scandir(training)
                               if entry.is_dir() and entry.name.isdigit())
            for file in sorted(os.listdir(training / name)) if file.lower().endswith(".ppm")
        ]
    else:
        path = folder / "GT-final_test.csv"
        rows = [(str(Path("GTSRB", "Final_Test", "Images", row["Filename"])),
                 _class_id(path, number, line, row))
                for number, line, row in table_rows(path, ("Filename", "ClassId"),
                                                    delimiter=";")]
    return _split_from_rows(folder, rows)


def read_gtsrb_kaggle(folder: Path, split: Split) -> ImageSplit:
    """Kaggle's layout: ``Train.csv``/``Test.csv`` with columns ``ClassId`` and ``Path``."""
    path = folder / f"{split.capitalize()}.csv"
    return _split_from_rows(folder, [(row["Path"], _class_id(path, number, line, row))
                                     for number, line, row in table_rows(
                                         path, ("Path", "ClassId"), delimiter=",")])


class GTSRBDataModule(RobustDataModule):
    """GTSRB: 43 traffic-sign classes, 39,209 training and 12,630 test images.

    Reads torchvision's official layout (``gtsrb/GTSRB/Training/<00000..00042>/*.ppm``,
    ``gtsrb/GTSRB/Final_Test/Images/*.ppm``, ``gtsrb/GT-final_test.csv``) or Kaggle's
    (``Train.csv``, ``Test.csv``, ``Train/<ClassId>/*.png``, ``Test/*.png``);
    ``download=True`` fetches the official files with torchvision. Whole images are used (the
    sign's bounding box is not cropped). See :class:`RobustDataModule` for the arguments.
    """

    dataset_name = "GTSRB"
    class_names = GTSRB_CLASSES
    # measured on every 6th training image of each class, whole images resized to 32×32
    mean = (0.3389, 0.3107, 0.3192)
    std = (0.2706, 0.2582, 0.2639)
    default_image_size = 32
    default_resize = "resize"
    horizontal_flip = False
    layouts = (
        DatasetLayout("torchvision's official GTSRB layout",
                      "{GTSRB/Training/<00000..00042>/*.ppm, GTSRB/Final_Test/Images/*.ppm, "
                      "GT-final_test.csv}", ("gtsrb", "GTSRB"),
                      ("GTSRB/Training/", "GTSRB/Final_Test/Images/", "GT-final_test.csv"),
                      read_gtsrb_official),
        DatasetLayout("Kaggle's GTSRB layout",
                      "{Train.csv, Test.csv, Train/<ClassId>/*.png, Test/*.png} (CSV columns "
                      "include ClassId and Path)", ("gtsrb", "GTSRB", "gtsrb-german-traffic-sign"),
                      ("Train.csv", "Test.csv"), read_gtsrb_kaggle),
    )

    def download_to(self, root: Path) -> None:
        for split in ("train", "test"):
            datasets.GTSRB(str(root), split=split, download=True)
