"""The robustness report: ``report.json`` plus a ``report.md`` table, and TensorBoard logging.

Metric names are flat strings (also TensorBoard tags); the report groups them by name:

===========  ============
group        metric names
===========  ============
clean        ``clean_acc``
adversarial  ``robust_acc/<attack>`` (PGD, AutoAttack and its per-attack ``.../<attack>``)
ε sweep      ``eps_sweep/<name>/eps<ε>``
certified    every ``<prefix>/...`` whose prefix reports ``certified_acc@<r>`` (with ``acr``)
corruptions  names containing ``corruption`` (``corruption_acc/mean``, ...)
sanity       ``<name>/<check>`` for the checks of :mod:`lit_robust.evaluation.sanity` (pass/fail)
other        everything else
===========  ============

Existing reports are never overwritten: when ``report.json`` or ``report.md`` exists in the
directory, the next free ``report-1``, ``report-2``, ... is used.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import Logger, TensorBoardLogger

import lit_robust
from lit_robust.evaluation import per_image as per_image_format
from lit_robust.evaluation.base import Evaluator
from lit_robust.evaluation.per_image import PerImageResult
from lit_robust.evaluation.provenance import (
    evaluated_weights,
    evaluator_settings,
    images_counted,
    test_data,
)
from lit_robust.evaluation.runner import attack_mode
from lit_robust.evaluation.sanity import (
    CHECKS,
    METRIC_CHECKS,
    SanityCheckError,
    SanityCheckWarning,
    check_metrics,
)

_log = logging.getLogger(__name__)

GROUPS = ("clean", "adversarial", "ε sweep", "certified", "corruptions", "sanity", "other")
_SANITY_CHECKS = {*CHECKS, *METRIC_CHECKS, "clean_above_chance"}
_METRIC_CHECK_MESSAGES = {
    "robust_le_clean": "robust accuracy exceeds clean accuracy",
    "eps0_robust_matches_clean": "robust accuracy at eps = 0 differs from clean accuracy",
}


def metric_groups(metrics: Mapping[str, float]) -> dict[str, str]:
    """The report group (one of :data:`GROUPS`) of every metric name."""
    certified_prefixes = {k.split("/")[0] for k in metrics if "/certified_acc" in k}
    groups = {}
    for key in metrics:
        if key.split("/")[-1] in _SANITY_CHECKS:
            groups[key] = "sanity"
        elif key == "clean_acc":
            groups[key] = "clean"
        elif key.startswith("robust_acc/"):
            groups[key] = "adversarial"
        elif key.startswith("eps_sweep/"):
            groups[key] = "ε sweep"
        elif key.split("/")[0] in certified_prefixes:
            groups[key] = "certified"
        elif "corruption" in key:
            groups[key] = "corruptions"
        else:
            groups[key] = "other"
    return groups


def format_value(key: str, value: float, group: str) -> str:
    """Human-readable value: pass/fail for checks, percent for accuracies and rates."""
    if group == "sanity":
        return "pass" if value == 1.0 else "**FAIL**"
    if not math.isfinite(value):
        return str(value)
    last = key.split("/")[-1]
    accuracy_groups = ("clean", "adversarial", "ε sweep", "corruptions")
    if group in accuracy_groups or "acc" in last or "rate" in last:
        return f"{100 * value:.2f}%"
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.4g}"


def _json_value(value: float) -> float | None:
    return value if math.isfinite(value) else None


class RobustnessReport:
    """Metrics of one evaluation run with what produced them.

    The cross-evaluator sanity checks :func:`~lit_robust.evaluation.sanity.check_metrics`
    (robust accuracy ≤ clean accuracy; robust accuracy at ε = 0 equals clean accuracy) run on
    construction; a failure is logged, warned about and shown as **FAIL** in the report.

    Args:
        metrics: merged ``{metric name: value}`` of every evaluator.
        method: the method (e.g. ``"TRADES"``).
        checkpoint: the evaluated checkpoint.
        dataset: the test set.
        config: the run's configuration (hyperparameters); stored in ``report.json``.
        provenance: which weights, which test images, the images each metric counted and
            every evaluator's settings (:mod:`lit_robust.evaluation.provenance`).
        num_classes: classes of the task; adds the check ``sanity/clean_above_chance``
            (clean accuracy above 1/num_classes, which an untrained or broken model fails).
        per_image: which test images each metric got right
            (:mod:`~lit_robust.evaluation.per_image`), stored compactly under ``per_image`` for
            paired comparisons.
    """

    def __init__(
        self,
        metrics: Mapping[str, float],
        method: str | None = None,
        checkpoint: str | None = None,
        dataset: str | None = None,
        config: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        num_classes: int | None = None,
        per_image: Mapping[str, PerImageResult] | None = None,
    ) -> None:
        self.metrics = {key: float(value) for key, value in metrics.items()}
        self.per_image = dict(per_image or {})
        if "sanity/robust_le_clean" not in self.metrics:
            self.metrics.update(check_metrics(self.metrics, strict=False))
        if num_classes and "clean_acc" in self.metrics:
            above = self.metrics["clean_acc"] > 1.0 / num_classes
            self.metrics["sanity/clean_above_chance"] = float(above)
            if not above:
                message = (f"clean accuracy {self.metrics['clean_acc']:.4f} is at or below "
                           f"chance (1/{num_classes}): the evaluated model is untrained, "
                           "broken or the wrong one")
                _log.error(message)
                warnings.warn(message, SanityCheckWarning, stacklevel=2)
        self.provenance = dict(provenance or {})
        self.metadata = {
            "method": method,
            "checkpoint": checkpoint,
            "dataset": dataset,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lit_robust_version": lit_robust.__version__,
        }
        self.config = dict(config or {})

    @property
    def failed_checks(self) -> list[str]:
        """Names of the sanity checks that failed."""
        groups = metric_groups(self.metrics)
        return [k for k, v in self.metrics.items() if groups[k] == "sanity" and v != 1.0]

    def rows(self) -> list[tuple[str, str, str]]:
        """``(group, metric, formatted value)`` for every metric, in :data:`GROUPS` order."""
        groups = metric_groups(self.metrics)
        return [
            (group, key, format_value(key, self.metrics[key], group))
            for group in GROUPS
            for key in self.metrics
            if groups[key] == group
        ]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: metadata, config, metrics (non-finite values as null), groups,
        and the per-image results when there are any."""
        document = {
            "metadata": self.metadata,
            "provenance": self.provenance,
            "config": self.config,
            "metrics": {key: _json_value(value) for key, value in self.metrics.items()},
            "groups": metric_groups(self.metrics),
        }
        if self.per_image:
            document["per_image"] = per_image_format.encode(self.per_image)
        return document

    def to_markdown(self) -> str:
        """A metadata table followed by one table of every metric."""
        lines = ["# Robustness report", "", "| | |", "|---|---|"]
        lines += [f"| {key} | {value if value is not None else '–'} |"
                  for key, value in self.metadata.items()]
        weights, data = self.provenance.get("weights"), self.provenance.get("test_data")
        if weights:
            lines.append(f"| weights | {weights.get('source')}: {weights.get('path') or '–'} "
                         f"(epoch {weights.get('epoch')}, step {weights.get('step')}) |")
        if data:
            lines.append(f"| test images | {data.get('test_images')} of {data.get('dataset')} "
                         f"({data.get('subset_rule')}) in {data.get('folder')} |")
        counted = self.provenance.get("images_per_metric", {})
        lines += ["", "| group | metric | value | images |", "|---|---|---|---|"]
        lines += [f"| {group} | `{key}` | {value} | {counted.get(key, '–')} |"
                  for group, key, value in self.rows()]
        if self.provenance.get("evaluators"):
            lines += ["", "Evaluators:", ""]
            lines += [f"- `{json.dumps(settings, default=str)}`"
                      for settings in self.provenance["evaluators"]]
        if self.failed_checks:
            lines += ["", f"**Sanity checks failed: {', '.join(self.failed_checks)}. These "
                      "robustness numbers cannot be trusted.**"]
        return "\n".join(lines) + "\n"

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``report.json`` and ``report.md`` (or the next free ``report-N``) into
        ``directory``, creating it when needed.

        Returns:
            The paths of the JSON and markdown files.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for number in count():
            stem = "report" if number == 0 else f"report-{number}"
            json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
            if not md_path.exists() and _create(json_path, self.to_json()):
                break
        with md_path.open("x", encoding="utf-8") as file:
            file.write(self.to_markdown())
        _log.info("robustness report written to %s and %s", json_path, md_path)
        return json_path, md_path

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"


def _create(path: Path, text: str) -> bool:
    """Write ``text`` to a new file; ``False`` when ``path`` already exists."""
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        return False
    return True


def log_to_tensorboard(
    logger: Logger | None,
    metrics: Mapping[str, float] | None = None,
    figures: Mapping[str, Any] | None = None,
    step: int = 0,
    prefix: str = "test/",
) -> bool:
    """Log scalars and matplotlib figures to a :class:`TensorBoardLogger`.

    Args:
        logger: any logger or ``None``; only a TensorBoardLogger is written to.
        metrics: scalars to log as ``<prefix><name>``.
        figures: matplotlib figures to log as ``<prefix><tag>``.
        step: the global step to log at.
        prefix: tag prefix.

    Returns:
        Whether anything was logged (``False`` for ``None`` or another kind of logger).
    """
    if not isinstance(logger, TensorBoardLogger):
        return False
    writer = logger.experiment
    for key, value in (metrics or {}).items():
        writer.add_scalar(prefix + key, value, global_step=step)
    for tag, figure in (figures or {}).items():
        writer.add_figure(prefix + tag, figure, global_step=step)
    writer.flush()
    return True


def _report_directory(module: LightningModule, report_dir: str | Path | None) -> Path | None:
    if report_dir is None:
        report_dir = getattr(module, "report_dir", None)
    if report_dir is None:
        for candidate in module.loggers:
            log_dir = getattr(candidate, "log_dir", None)
            if isinstance(log_dir, (str, Path)):
                return Path(log_dir)
        return None
    return Path(report_dir)


def finish_evaluation(
    module: LightningModule,
    evaluators: Sequence[Evaluator],
    report_dir: str | Path | None = None,
    strict: bool = True,
) -> dict[str, float]:
    """End a Lightning test epoch: compute, log, report, then enforce the sanity checks.

    Runs every evaluator's ``run_standalone`` on ``module.model`` (eval mode, autograd on),
    merges their ``compute`` results, logs them with ``module.log_dict`` as ``test/<name>``,
    logs their figures to every TensorBoard logger, writes the report on the global-zero rank,
    and resets the evaluators for the next test epoch.

    Args:
        module: the LightningModule under test (its ``model`` is evaluated, if it has one).
        evaluators: the test-time evaluators, already updated on every test batch.
        report_dir: where the report goes; ``None`` uses ``module.report_dir``, else
            the first logger's ``log_dir``; with neither, no report file is written.
        strict: raise when a cross-evaluator check (robust ≤ clean, ε = 0 matches clean) fails.

    Returns:
        The merged metrics, including sanity results.

    Raises:
        SanityCheckError: after logging and writing the report, when a strict evaluator's
            check failed or (with ``strict``) robust accuracy exceeded clean accuracy.
        ValueError: when two evaluators report the same metric name.
    """
    model = getattr(module, "model", module)
    with attack_mode(model):
        for evaluator in evaluators:
            evaluator.run_standalone(model)
    metrics: dict[str, float] = {}
    figures: dict[str, Any] = {}
    errors: list[SanityCheckError] = []
    counted: dict[str, int | None] = {}
    per_image: dict[str, PerImageResult] = {}
    for evaluator in evaluators:
        try:
            results = evaluator.compute()
        except SanityCheckError as error:
            errors.append(error)
            results = error.results
        duplicates = set(results) & set(metrics)
        if duplicates:
            raise ValueError(
                f"{type(evaluator).__name__} reports {sorted(duplicates)} that another "
                "evaluator already reports; give one of them a distinct name=... argument"
            )
        metrics.update({key: float(value) for key, value in results.items()})
        counted.update(dict.fromkeys(results, images_counted(evaluator)))
        per_image.update(evaluator.per_image())
        figures.update(evaluator.figures())
        evaluator.reset()
    trainer = module.trainer
    datamodule = getattr(trainer, "datamodule", None)
    report = RobustnessReport(
        metrics,
        method=type(module).__name__,
        checkpoint=trainer.ckpt_path or module.hparams.get("pretrained"),
        dataset=type(datamodule).__name__ if datamodule is not None else None,
        config=dict(module.hparams),
        provenance={
            "weights": evaluated_weights(module),
            "test_data": test_data(module),
            "images_per_metric": counted,
            "evaluators": [evaluator_settings(evaluator) for evaluator in evaluators],
        },
        num_classes=module.hparams.get("num_classes"),
        per_image=per_image,
    )
    module.log_dict({f"test/{key}": value for key, value in report.metrics.items()},
                    sync_dist=True)
    for candidate in module.loggers:
        log_to_tensorboard(candidate, figures=figures, step=trainer.global_step)
    directory = _report_directory(module, report_dir)
    if directory is not None and trainer.is_global_zero:
        report.write(directory)
    if errors:
        raise errors[0]
    failed = [_METRIC_CHECK_MESSAGES[check] for check in METRIC_CHECKS
              if f"sanity/{check}" in report.failed_checks]
    if strict and failed:
        raise SanityCheckError(
            f"{' and '.join(failed)}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in report.metrics.items()
                        if k.startswith("robust_acc/") or k == "clean_acc"),
            report.metrics,
        )
    return report.metrics
