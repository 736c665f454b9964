"""Common corruptions (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019).

- :mod:`.generate`: the 15 corruptions × 5 severities, generated on the fly (``corrupt``);
- :mod:`.ops` and :mod:`.params`: their image operations and per-resolution parameters;
- :mod:`.files`: the published CIFAR-10-C / CIFAR-100-C / Tiny-ImageNet-C files;
- :mod:`.evaluator`: the ``CorruptionRobustness`` evaluator over either source.
"""

from lit_robust.evaluation.corruptions.evaluator import CorruptionRobustness
from lit_robust.evaluation.corruptions.files import CorruptionDataset, open_corrupted
from lit_robust.evaluation.corruptions.generate import CORRUPTIONS, SEVERITIES, corrupt
from lit_robust.evaluation.corruptions.params import preset_for_size

__all__ = [
    "CORRUPTIONS", "SEVERITIES", "CorruptionDataset", "CorruptionRobustness", "corrupt",
    "open_corrupted", "preset_for_size",
]
