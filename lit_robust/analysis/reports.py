"""Loading ``report.json`` files and looking up the fields and metrics runs are compared by.

A report (written by :class:`~lit_robust.evaluation.RobustnessReport`) holds ``metadata``
(``method``, ``checkpoint``, ``dataset``, ...), ``config`` (the method's init arguments) and
``metrics``. A *field* names a value to group by:

======================================  =====
field                                   value
======================================  =====
``run``                                 the name of the folder that holds the report file
``metadata.<key>``                      ``metadata[key]``
``config.<a>.<b>``                      ``config[a][b]`` (a dotted path into the nested config)
``model.<a>``, ``model.init_args.<a>``  ``config[a]`` (the config holds the model's init args)
``<key>`` or ``<a>.<b>``                ``metadata`` first, else the dotted path into ``config``
======================================  =====

A *metric spec* is ``[label=]name``, where ``name`` is an exact metric name or a shell-style
pattern matched segment by segment between the ``/`` (``robust_acc/autoattack*`` matches
``robust_acc/autoattack_standard_linf_eps0.03137`` but not its per-attack
``.../apgd-ce``); it must match exactly one metric of each report, so runs whose attack names
differ slightly can share a column.

Numbers measured on other test images or under another threat model are never averaged or
compared: :meth:`RunReport.test_data` names a report's test images (dataset, subset rule,
count) and :func:`threat_model` the budget in a metric's name (norm and ε, or smoothing σ).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

_MISSING = object()
_MODEL_PREFIXES = ("model.init_args.", "model.")


class ComparisonError(ValueError):
    """A report, field, metric or baseline the comparison cannot use; says what to fix."""


@dataclass(frozen=True)
class RunReport:
    """One run's ``report.json``.

    Args:
        path: the file it was read from.
        metadata: ``method``, ``checkpoint``, ``dataset``, ...
        config: the method's hyperparameters.
        metrics: ``{metric name: value}``; non-finite values (``null`` in JSON) are NaN.
        provenance: which weights and test images produced the metrics.
    """

    path: Path
    metadata: Mapping[str, Any]
    config: Mapping[str, Any]
    metrics: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: str | Path) -> RunReport:
        """Read one report file; a file that is not a report gives a :class:`ComparisonError`."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ComparisonError(f"cannot read report {path}: {error}") from error
        if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict):
            keys = sorted(document) if isinstance(document, dict) else type(document).__name__
            raise ComparisonError(
                f"{path} is not a robustness report: it needs a 'metrics' object (a report.json "
                f"written by `lit-robust test`); it has {keys}"
            )
        metrics = {key: math.nan if value is None else float(value)
                   for key, value in document["metrics"].items()}
        return cls(path=path, metadata=document.get("metadata") or {},
                   config=document.get("config") or {}, metrics=metrics,
                   provenance=document.get("provenance") or {})

    def test_data(self) -> str:
        """The test images the metrics were measured on, in words: the dataset, the subset
        rule and the number of images (``provenance.test_data``; only the dataset for a report
        that does not record them). Two reports compare only when these are equal."""
        data = self.provenance.get("test_data") or {}
        dataset = data.get("dataset") or self.metadata.get("dataset") or "unknown dataset"
        rule = data.get("subset_rule")
        if rule is None:
            return f"{dataset} (test images not recorded)"
        text = f"{dataset}: {rule}"
        if data.get("test_images") is not None:
            text += f", {data['test_images']} images"
        if data.get("indices"):
            digest = hashlib.sha1(json.dumps(data["indices"]).encode()).hexdigest()[:8]
            text += f" (index list {digest})"
        return text

    def field(self, name: str) -> Any:
        """The value of a field (see the module docstring).

        Raises:
            ComparisonError: naming the file and the available metadata and config keys.
        """
        value = self._lookup(name)
        if value is _MISSING:
            raise ComparisonError(
                f"report {self.path} has no field {name!r}; metadata keys: "
                f"{sorted(self.metadata)}; config keys: {sorted(self.config)} (nested values "
                "as dotted paths, e.g. config.attack.init_args.eps; 'run' is the folder name)"
            )
        return value

    def _lookup(self, name: str) -> Any:
        if name == "run":
            return self.path.parent.name
        if name.startswith("metadata."):
            return self.metadata.get(name.removeprefix("metadata."), _MISSING)
        if name.startswith("config."):
            return _dotted(self.config, name.removeprefix("config."))
        for prefix in _MODEL_PREFIXES:
            if name.startswith(prefix):
                return _dotted(self.config, name.removeprefix(prefix))
        if name in self.metadata:
            return self.metadata[name]
        return _dotted(self.config, name)

    def metric(self, spec: MetricSpec) -> float:
        """The value of the one metric ``spec`` names (see :meth:`metric_name`)."""
        return self.metrics[self.metric_name(spec)]

    def metric_name(self, spec: MetricSpec) -> str:
        """The name of the one metric ``spec`` names.

        Raises:
            ComparisonError: when no metric or several metrics match, naming the file and the
                available metrics.
        """
        if spec.pattern in self.metrics:
            return spec.pattern
        matches = sorted(key for key in self.metrics if _matches(key, spec.pattern))
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise ComparisonError(
                f"metric pattern {spec.pattern!r} matches several metrics of report "
                f"{self.path}: {matches}; make it match exactly one"
            )
        raise ComparisonError(
            f"report {self.path} has no metric {spec.pattern!r}; available metrics: "
            f"{sorted(self.metrics)}"
        )


@dataclass(frozen=True)
class MetricSpec:
    """A metric column: its ``label`` and the metric name or pattern it reads."""

    label: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> MetricSpec:
        """``"label=pattern"`` or ``"pattern"`` (then the label is the pattern)."""
        label, separator, pattern = text.partition("=")
        if not separator:
            label, pattern = text, text
        if not label or not pattern:
            raise ComparisonError(f"metric spec {text!r} must be 'name' or 'label=name'")
        return cls(label=label, pattern=pattern)

    @property
    def is_accuracy(self) -> bool:
        """Accuracies (fractions) are shown in percent and their changes in points."""
        return any("acc" in part for part in self.pattern.split("/"))


def threat_model(metric: str) -> str:
    """The budget a metric was measured under, read from its name: the norm and ε of an attack
    (``robust_acc/pgd10x3_linf_eps0.03137`` → ``"linf eps=0.03137"``), the noise level of
    smoothing (``smoothing_sigma0.5/acr`` → ``"sigma=0.5"``), ``""`` for none (``clean_acc``)."""
    parts = []
    for token in re.split(r"[_/]", metric):
        if token.lower() in ("linf", "l2", "l1"):
            parts.append(token.lower())
        elif match := re.fullmatch(r"(eps|sigma)([0-9][0-9.e+-]*)", token):
            parts.append(f"{match.group(1)}={match.group(2)}")
    return " ".join(parts)


def _matches(name: str, pattern: str) -> bool:
    """Shell-style match per ``/``-separated segment (``*`` never crosses a ``/``)."""
    names, patterns = name.split("/"), pattern.split("/")
    return len(names) == len(patterns) and all(
        fnmatchcase(part, glob) for part, glob in zip(names, patterns, strict=True))


def _dotted(config: Mapping[str, Any], path: str) -> Any:
    value: Any = config
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def find_report_files(paths: Iterable[str | Path]) -> list[Path]:
    """The report files among ``paths``: files as given, folders searched recursively for
    ``report.json`` and ``report-<N>.json`` (sorted by path).

    Raises:
        ComparisonError: for a path that does not exist, or when nothing is found.
    """
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("report*.json")
                           if p.stem == "report" or p.stem.removeprefix("report-").isdigit())
            if not found:
                raise ComparisonError(f"no report.json under {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ComparisonError(f"report path {path} does not exist")
    if not files:
        raise ComparisonError("no report files given")
    return files


def load_reports(paths: Iterable[str | Path]) -> list[RunReport]:
    """Read every report among ``paths`` (see :func:`find_report_files`), in order."""
    return [RunReport.read(path) for path in find_report_files(paths)]
