"""Where a ``lit-robust`` run writes, and which checkpoint ``--ckpt_path last`` means.

Applied to the parsed configuration before anything is built:

- ``trainer.default_root_dir`` moves the default logger's ``logs/`` folder (and with it the
  checkpoints and reports) to ``<default_root_dir>/logs``;
- with ``trainer.logger: false`` a method's report goes to ``model.report_dir``, else to
  ``trainer.default_root_dir``, else to the working directory;
- ``--ckpt_path last`` becomes the newest ``last.ckpt`` of the logger's earlier versions
  (``<save_dir>/<name>/version_*/checkpoints/last.ckpt``) and the run logs into that
  version's folder; with no such file it is an error, never a silent fresh start;
- that checkpoint must come from a run of the same method with the same settings: its saved
  hyperparameters are compared with this command's model arguments (those this command
  leaves unset, ``null``, are not compared), and any difference is an error that lists the
  differing settings and names an earlier run with these settings, if there is one. Runs of
  several configs can share one log folder, and LightningCLI would otherwise resume (or test)
  the newest of them with its own settings instead of the ones on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def configure_run_folders(config: Namespace, subcommand: str | None = None) -> None:
    """Apply the rules of this module to one subcommand's configuration, in place.

    Raises:
        ConfigurationError: ``--ckpt_path last`` and no earlier run left a ``last.ckpt``; an
            output folder that cannot be created; a new ``fit`` whose checkpoint folder
            already holds the ``last.ckpt`` of another run.
    """
    trainer = config.get("trainer") or Namespace()
    root = trainer.get("default_root_dir")
    logger = _logger_arguments(trainer.get("logger"))
    if logger is not None and root is not None and logger.save_dir == DEFAULT_SAVE_DIR:
        logger.save_dir = str(Path(root) / DEFAULT_SAVE_DIR)
    model = config.get("model")
    model_arguments = model.get("init_args") if isinstance(model, Namespace) else None
    report_dir = (model_arguments.get("report_dir")
                  if isinstance(model_arguments, Namespace) else None)
    _check_creatable("trainer.default_root_dir", root)
    _check_creatable("trainer.logger.init_args.save_dir", logger.save_dir if logger else None)
    _check_creatable("model.init_args.report_dir", report_dir)
    if (trainer.get("logger") is False and isinstance(model_arguments, Namespace)
            and "report_dir" in model_arguments and report_dir is None):
        model_arguments.report_dir = str(root or Path.cwd())
    if config.get("ckpt_path") == "last":
        config.ckpt_path = str(_last_checkpoint(logger, root))
        _check_same_run(Path(config.ckpt_path), model)
    elif subcommand == "fit":
        _refuse_another_runs_last(logger, root, config.get("ckpt_path"))


def _check_creatable(setting: str, folder: str | Path | None) -> None:
    """Refuse an output folder that cannot be created, before anything runs.

    Raises:
        ConfigurationError: the nearest existing ancestor of ``folder`` is a file, or a
            folder this process cannot write into.
    """
    if folder is None:
        return
    folder = Path(folder).absolute()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigurationError(
            f"{setting}={folder} cannot be created: {existing} is a file, not a folder; "
            f"choose another {setting}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"{setting}={folder} cannot be created: this user may not write into {existing}; "
            f"choose another {setting}"
        )


def _refuse_another_runs_last(logger: Namespace | None, root: str | None,
                              ckpt_path: str | None) -> None:
    """A new ``fit`` must not write its checkpoints beside another run's ``last.ckpt``: the
    two runs would share (and overwrite) the one file ``--ckpt_path last`` means.

    Raises:
        ConfigurationError: the checkpoint folder of this fit (``<default_root_dir>/checkpoints``
            without a logger, ``.../version_N/checkpoints`` with a pinned logger version)
            already holds a ``last.ckpt`` that this fit does not resume from.
    """
    if logger is None:
        folder = Path(root or Path.cwd()) / "checkpoints"
        other = "another --trainer.default_root_dir"
    elif logger.get("version") is not None:
        version = logger.version
        name = version if isinstance(version, str) else f"version_{version}"
        folder = Path(logger.save_dir) / str(logger.name or "") / name / "checkpoints"
        other = "another --trainer.logger.init_args.version (or none, for a new one)"
    else:
        return
    last = folder / "last.ckpt"
    if not last.is_file() or (ckpt_path is not None and Path(ckpt_path).resolve()
                              == last.resolve()):
        return
    raise ConfigurationError(
        f"this fit would write its checkpoints into {folder}, which holds the last.ckpt of an "
        f"earlier run: resume that run with --ckpt_path last, or give {other}"
    )


def _saved_hyperparameters(path: Path) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return dict(checkpoint.get("hyper_parameters") or {})


def _check_same_run(path: Path, model: Any) -> None:
    """Refuse a ``last`` checkpoint written by another method, or by the same method with
    other settings, than the ones requested.

    Raises:
        ConfigurationError: the checkpoint's method differs from ``model.class_path``, or a
            saved hyperparameter differs from this command's model argument.
    """
    requested = model.get("class_path") if isinstance(model, Namespace) else None
    if requested is None:
        return
    saved = _saved_hyperparameters(path)
    method = saved.get("_class_path")
    if method is None:  # not written through the CLI: no comparable settings
        return
    if method != requested:
        raise ConfigurationError(
            f"--ckpt_path last resolved to {path}, written by {method}, but this command runs "
            f"{requested}; pass that run's checkpoint explicitly (--ckpt_path <path>) or pin "
            "the version with --trainer.logger.init_args.version N"
        )
    arguments = model.get("init_args")
    current = arguments.as_dict() if isinstance(arguments, Namespace) else {}
    differing = setting_differences(saved, current)
    if not differing:
        return
    same = _run_with_settings(path, requested, current)
    where = (f"the newest earlier run with this command's settings is {same}"
             if same is not None else
             "no earlier run there has this command's settings (drop --ckpt_path to start one)")
    raise ConfigurationError(
        f"--ckpt_path last resolved to {path}, a run of {method} with other settings than this "
        f"command's: {'; '.join(differing)}. Pass the checkpoint to use explicitly "
        f"(--ckpt_path <path>; it then runs with that checkpoint's settings); {where}"
    )


def _run_with_settings(path: Path, method: str, current: Mapping[str, Any]) -> Path | None:
    """The newest other ``last.ckpt`` beside ``path``'s version folder whose method and
    settings match."""
    if run_version(path) is None:  # no logger: a single checkpoints/ folder
        return None
    versions = path.parent.parent.parent
    others = [p for p in versions.glob("version_*/checkpoints/last.ckpt") if p != path]
    for other in sorted(others, key=lambda p: (p.stat().st_mtime, run_version(p) or -1),
                        reverse=True):
        saved = _saved_hyperparameters(other)
        if saved.get("_class_path") == method and not setting_differences(saved, current):
            return other
    return None


def setting_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"<key>: <saved> in the checkpoint, <current> now"`` for every setting that both hold
    and that differs; nested settings (an attack's ``init_args``) are compared one by one as
    ``attack.init_args.steps``. Keys starting with ``_`` (LightningCLI's bookkeeping) and
    settings that ``current`` leaves ``None`` (resolved at run time, e.g. ``num_classes``
    from the data) are skipped."""
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    return [
        f"{key}: {_short(flat_saved[key])} in the checkpoint, {_short(value)} now"
        for key, value in flat_current.items()
        if key in flat_saved and not key.startswith("_") and value is not None
        and _plain(flat_saved[key]) != _plain(value)
    ]


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Namespace):
            value = value.as_dict()
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _plain(value: Any) -> Any:
    """Tuples as lists, so that a YAML list equals the same saved tuple."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
