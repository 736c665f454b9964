"""What each GPU plan's bundle holds: source models and data subsets (sizes measured here).

Measured sizes that shape the choice (bytes per image as packed): CIFAR-10 JPEG files about
950 (the files of ``cifar10-jpeg``, byte for byte); Tiny-ImageNet JPEG files (64 px) about
2,150; GTSRB resized to 32×32 as PNG about 1,950;
a CIFAR ResNet-18 state dict in fp16 22.4 MB. The wheels take about 1 MB. Each plan's bundle
must stay within 60 MiB (``pack.py`` refuses more): the working tree that travels to the GPU
machine, code included, may hold 64 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Source models: the file they are read from (in $LIT_ROBUST_MODELS, or "pyautoattack" for
# the example model inside the installed package) and what they are.
MODELS = {
    "robust": {"file": "cifar10_resnet18_fgsm_rs.pt",
               "what": "the robust CIFAR-10 ResNet-18 of ../shared/models (FGSM-RS fine-tuning "
                       "of the standard model; inputs in [0, 1], no normalization)"},
    "standard": {"file": "pyautoattack",
                 "what": "the standard-trained CIFAR-10 ResNet-18 that pyautoattack ships as "
                         "examples/model_test.pt (inputs in [0, 1], no normalization)"},
}

# The file names the plans load after run.sh unpacked the models (fp32 state dicts).
UNPACKED_MODEL_FILES = {"robust": "cifar10_resnet18_fgsm_rs.pt",
                        "standard": "cifar10_resnet18_standard.pt"}


@dataclass(frozen=True)
class PlanContents:
    """Models (keys of :data:`MODELS`) and data subsets (dataset -> packing arguments)."""

    models: tuple[str, ...]
    data: dict[str, dict] = field(default_factory=dict)


CONTENTS = {
    # gpu_suite.py: the robust model for the MRC search, 2,000 CIFAR-10 training images per
    # class for the loader benchmark (its CIFAR10DataModule also needs a test folder)
    "perf": PlanContents(("robust",), {"cifar10": {"train_per_class": 2000,
                                                   "test_per_class": 10}}),
    # RiFT on CIFAR-10 (1,000 validation + 10,000 training images, 2,000 test images) and the
    # TWINS transfer to the whole Tiny-ImageNet subset (5,000 training, 4,000 test images)
    "twins_rift": PlanContents(("robust",), {
        "cifar10": {"train_per_class": 1100, "test_per_class": 200},
        "tiny_imagenet": {}}),
    # the study from random, standard and robust sources and CARTL's sources (trained on
    # CIFAR-10) transferred to GTSRB: two models leave room for 5,000 GTSRB and 5,000 CIFAR-10
    # images
    "cartl_study": PlanContents(("robust", "standard"), {
        "cifar10": {"train_per_class": 500, "test_per_class": 10},
        "gtsrb": {"train_per_class": 70, "test_first": 2000}}),
    # fast AT and catastrophic overfitting (10,000 training, 1,000 held-out and 2,000 test
    # CIFAR-10 images), certified training (5,000 of those training images), and AutoLoRa vs
    # TWINS-AT and AT fine-tuning of the robust model on GTSRB (70 training images per class,
    # the first 2,000 test images)
    "new_methods": PlanContents(("robust",), {
        "cifar10": {"train_per_class": 1100, "test_per_class": 200},
        "gtsrb": {"train_per_class": 70, "test_first": 2000}}),
}
