"""Per-image results saved with a report, so two runs can be compared image by image.

Two methods tested on the same images differ far less by chance than two independent
accuracies: a paired test (:mod:`lit_robust.analysis.paired`) needs, for every metric, which
test images each run got right. Evaluators that support it (:class:`CleanAccuracy`,
:class:`PGDEvaluator`, :class:`AutoAttackEvaluator`, :class:`CorruptionRobustness` with
generated corruptions) keep one small integer per test image and metric: 1/0 for correct or
not, or the number of correct predictions over several conditions (the corruptions ×
severities), out of a stated maximum.

The report stores them compactly under ``per_image`` in ``report.json``, keyed by the test
image's position in the evaluated test set (``provenance.test_data`` says which set)::

    "per_image": {"metrics": {"clean_acc": {"index": [[0, 2000]], "maximum": 1,
                                            "values": "<base64>"}, ...}}

``index`` lists half-open ranges ``[start, stop)`` of test-set positions in increasing order;
``values`` is base64 of the bits (``numpy.packbits``, maximum 1) or of the ``uint8`` / ``uint16``
counts (larger maxima), in index order.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PerImageResult:
    """One metric's per-image values.

    Attributes:
        index: test-set positions, strictly increasing (``int64``).
        values: per-image count of correct predictions, in ``0..maximum`` (same length).
        maximum: the count of a fully correct image (1 for a single prediction).
    """

    index: np.ndarray
    values: np.ndarray
    maximum: int = 1

    def __post_init__(self) -> None:
        if self.index.shape != self.values.shape or self.index.ndim != 1:
            raise ValueError(f"index {self.index.shape} and values {self.values.shape} must be "
                             "1-d arrays of one length")
        if self.index.size and bool((np.diff(self.index) <= 0).any()):
            raise ValueError("per-image indices must be strictly increasing (each test image "
                             "once)")
        if self.values.size and (int(self.values.min()) < 0
                                 or int(self.values.max()) > self.maximum):
            raise ValueError(f"per-image values must lie in 0..{self.maximum}")

    @property
    def fractions(self) -> np.ndarray:
        """Each image's accuracy in [0, 1]."""
        return self.values.astype(np.float64) / self.maximum

    def accuracy(self) -> float:
        """The metric's value: the mean of :attr:`fractions`."""
        return float(self.fractions.mean())


def index_ranges(index: np.ndarray) -> list[list[int]]:
    """Strictly increasing indices as half-open ranges ``[start, stop)``."""
    if index.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [index.size]])
    return [[int(index[a]), int(index[b - 1]) + 1] for a, b in zip(starts, stops, strict=True)]


def expand_ranges(ranges: list[list[int]]) -> np.ndarray:
    """The indices of :func:`index_ranges`' ranges."""
    if not ranges:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(start, stop, dtype=np.int64) for start, stop in ranges])


def _wire_dtype(maximum: int) -> np.dtype:
    """The stored type of counts up to ``maximum``: one byte, else two little-endian bytes."""
    if maximum > 65535:
        raise ValueError(f"per-image counts up to {maximum} are not supported (at most 65535)")
    return np.dtype("u1" if maximum <= 255 else "<u2")


def encode(results: Mapping[str, PerImageResult]) -> dict[str, Any]:
    """The ``per_image`` entry of ``report.json`` (see the module docstring)."""
    metrics = {}
    for name, result in results.items():
        if result.maximum == 1:
            payload = np.packbits(result.values.astype(np.uint8)).tobytes()
        else:
            payload = result.values.astype(_wire_dtype(result.maximum)).tobytes()
        metrics[name] = {"index": index_ranges(result.index), "maximum": int(result.maximum),
                         "values": base64.b64encode(payload).decode("ascii")}
    return {"metrics": metrics}


def decode(entry: Mapping[str, Any]) -> dict[str, PerImageResult]:
    """Read the ``per_image`` entry of ``report.json`` back.

    Raises:
        ValueError: when an entry's values do not match its index.
    """
    results = {}
    for name, item in entry.get("metrics", {}).items():
        index = expand_ranges(item["index"])
        maximum = int(item["maximum"])
        payload = base64.b64decode(item["values"])
        if maximum == 1:
            values = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: index.size]
        else:
            values = np.frombuffer(payload, dtype=_wire_dtype(maximum))
        if values.size != index.size:
            raise ValueError(f"per-image entry {name!r} holds {values.size} values for "
                             f"{index.size} indices; the report is damaged")
        results[name] = PerImageResult(index, values.astype(np.int64), maximum)
    return results
