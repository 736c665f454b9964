"""Where a ``lit-robust`` run writes, and which checkpoint ``--ckpt_path last`` means.

Applied to the parsed configuration before anything is built:

- ``trainer.default_root_dir`` moves the default logger's ``logs/`` folder (and with it the
  checkpoints and reports) to ``<default_root_dir>/logs``;
- with ``trainer.logger: false`` a method's report goes to ``model.report_dir``, else to
  ``trainer.default_root_dir``, else to the working directory;
- ``--ckpt_path last`` becomes the newest ``last.ckpt`` of the logger's earlier versions
  (``<save_dir>/<name>/version_*/checkpoints/last.ckpt``) and the run logs into that
  version's folder; with no such file it is an error, never a silent fresh start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jsonargparse import Namespace

from lit_robust.errors import ConfigurationError
from lit_robust.resume import find_last_checkpoint, run_version

DEFAULT_SAVE_DIR = "logs"


def _logger_arguments(logger: Any) -> Namespace | None:
    """``init_args`` of a configured logger with ``save_dir`` and ``name`` (TensorBoard, CSV)."""
    if isinstance(logger, list) and len(logger) > 0:
        logger = logger[0]
    if not isinstance(logger, Namespace):
        return None
    arguments = logger.get("init_args")
    if isinstance(arguments, Namespace) and "save_dir" in arguments and "name" in arguments:
        return arguments
    return None


def configure_run_folders(config: Namespace) -> None:
    """Apply the rules of this module to one subcommand's configuration, in place.

    Raises:
        ConfigurationError: ``--ckpt_path last`` and no earlier run left a ``last.ckpt``.
    """
    trainer = config.get("trainer") or Namespace()
    root = trainer.get("default_root_dir")
    logger = _logger_arguments(trainer.get("logger"))
    if logger is not None and root is not None and logger.save_dir == DEFAULT_SAVE_DIR:
        logger.save_dir = str(Path(root) / DEFAULT_SAVE_DIR)
    model = config.get("model")
    model_arguments = model.get("init_args") if isinstance(model, Namespace) else None
    if (trainer.get("logger") is False and isinstance(model_arguments, Namespace)
            and "report_dir" in model_arguments and model_arguments.report_dir is None):
        model_arguments.report_dir = str(root or Path.cwd())
    if config.get("ckpt_path") == "last":
        config.ckpt_path = str(_last_checkpoint(logger, root))
        _check_same_method(Path(config.ckpt_path), model)


def _check_same_method(path: Path, model: Any) -> None:
    """Refuse a ``last`` checkpoint written by another method than the one requested.

    Runs of several configs may share one log folder; the newest ``last.ckpt`` there can belong
    to another method with the same architecture, whose weights would then be evaluated (or
    resumed) under this config without any error.

    Raises:
        ConfigurationError: the checkpoint's method differs from ``model.class_path``.
    """
    requested = model.get("class_path") if isinstance(model, Namespace) else None
    if requested is None:
        return
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    saved = (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    if saved is not None and saved != requested:
        raise ConfigurationError(
            f"--ckpt_path last resolved to {path}, written by {saved}, but this command runs "
            f"{requested}; pass that run's checkpoint explicitly (--ckpt_path <path>) or pin "
            "the version with --trainer.logger.init_args.version N"
        )


def _last_checkpoint(logger: Namespace | None, root: str | None) -> Path:
    if logger is None:
        folder = Path(root or Path.cwd()) / "checkpoints"
        path = folder / "last.ckpt"
        if path.is_file():
            return path
        searched = str(path)
    else:
        run_folder = Path(logger.save_dir) / str(logger.name or "")
        path = find_last_checkpoint(run_folder, logger.get("version"))
        if path is not None:
            logger.version = run_version(path)
            return path
        searched = str(run_folder / "version_*" / "checkpoints" / "last.ckpt")
    raise ConfigurationError(
        f"--ckpt_path last: no earlier run left a checkpoint at {searched} (working directory "
        f"{Path.cwd()}). Run `lit-robust fit` with the same config and the same "
        "trainer.default_root_dir / logger save_dir first, or pass the checkpoint file: "
        "--ckpt_path <path>/last.ckpt"
    )
