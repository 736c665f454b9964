"""The ``lit-robust`` command: LightningCLI over every method and DataModule.

Examples::

    lit-robust fit --config configs/quickstart.yaml
    lit-robust fit --model AdversarialTraining --data CIFAR10DataModule --trainer.max_epochs 1
    lit-robust test --config configs/quickstart.yaml --ckpt_path last
    lit-robust fit --config configs/quickstart.yaml --checkpoint_every_n_steps 100
    lit-robust fit --config configs/quickstart.yaml --ckpt_path last   # resume a killed run

A setting, file or dataset that cannot work is reported as one line (exit status 2);
``LIT_ROBUST_TRACEBACK=1`` adds the traceback.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

import lit_robust.data  # noqa: F401  (registers the DataModules for short names)
import lit_robust.methods  # noqa: F401  (registers the methods for short names)
from lit_robust.errors import USER_ERRORS, ConfigurationError, root_message
from lit_robust.models.checkpoint import CheckpointReadError
from lit_robust.resume import RandomStateCheckpoint
from lit_robust.run_folders import configure_run_folders

SUBCOMMANDS = ("fit", "validate", "test", "predict")
HELP_EPILOG = (
    "The arguments of a method or DataModule are listed by `--model.help CLASS` and "
    "`--data.help CLASS`, e.g. `lit-robust fit --model.help TWINS` or "
    "`lit-robust fit --data.help GTSRBDataModule` (short class names work). "
    "Methods: lit_robust.methods; DataModules: lit_robust.data; evaluators: "
    "lit_robust.evaluation; example configs: configs/."
)


class LitRobustCLI(LightningCLI):
    """LightningCLI with ``--test_after_fit`` (``fit``, then ``test`` the checkpoint of the
    final weights), ``--checkpoint_every_n_steps``, ``--ckpt_path last`` of earlier runs and
    ``trainer.default_root_dir`` honoured (:mod:`lit_robust.run_folders`)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="after `fit`, run `test` on the final weights (the fit's last.ckpt) and write "
                 "the robustness report",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps", type=int | None, default=None,
            help="also rewrite last.ckpt every this many optimizer steps (long epochs); a run "
                 "killed in mid-epoch then resumes with --ckpt_path last to the same result",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            configure_run_folders(self.config[subcommand], subcommand)

    def _parse_ckpt_path(self) -> None:
        try:
            super()._parse_ckpt_path()
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise CheckpointReadError(
                f"cannot read the checkpoint --ckpt_path {path}: {error} (a truncated or "
                "corrupt file? an interrupted copy or save leaves one; use another checkpoint)"
            ) from error

    def before_instantiate_classes(self) -> None:
        every = self.config[self.subcommand].get("checkpoint_every_n_steps") if (
            self.subcommand) else None
        if every is not None:
            if every < 1:
                raise ConfigurationError(
                    f"--checkpoint_every_n_steps must be >= 1 (or unset), got {every}")
            self.trainer_defaults["callbacks"].append(ModelCheckpoint(
                every_n_train_steps=every, save_top_k=0, save_last=True,
                enable_version_counter=False))

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except USER_ERRORS:
            raise
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise ConfigurationError(root_message(error)) from error

    def before_fit(self) -> None:
        self._check_checkpoint_fits_the_data()
        if isinstance(self.trainer.strategy.launcher, _MultiProcessingLauncher):
            # Settle each logger's version folder in this process: the spawned processes log
            # into a copy of it, and the report of --test_after_fit, which this process
            # writes, then lands beside the checkpoint it tests instead of in a new version.
            for logger in self.trainer.loggers:
                _ = logger.version

    def before_validate(self) -> None:
        self._check_checkpoint_fits_the_data()

    def before_test(self) -> None:
        self._check_checkpoint_fits_the_data()

    def before_predict(self) -> None:
        self._check_checkpoint_fits_the_data()

    def _check_checkpoint_fits_the_data(self) -> None:
        """Refuse ``--ckpt_path`` of a model with another number of classes than the data."""
        checkpoint = self.config[self.subcommand].get("ckpt_path")
        hparams = getattr(self.model, "hparams", {})
        saved = hparams.get("num_classes") if checkpoint else None
        classes = getattr(self.datamodule, "num_classes", None)
        if saved is None or classes is None or int(saved) == int(classes):
            return
        data = type(self.datamodule).__name__
        raise ConfigurationError(
            f"the checkpoint {checkpoint} holds a model of {saved} classes, but {data} has "
            f"{classes}: use the data it was trained on, or start a new run from it on this "
            f"data with --model.init_args.pretrained {checkpoint} --model.init_args.reset_head "
            "true (without --ckpt_path)"
        )

    def after_fit(self) -> None:
        if not self.config[self.subcommand].get("test_after_fit"):
            return
        checkpoint = final_checkpoint(self.trainer)
        if checkpoint is None and isinstance(self.trainer.strategy.launcher,
                                             _MultiProcessingLauncher):
            raise ConfigurationError(
                "--test_after_fit: the trained weights stayed in the processes that "
                f"`strategy: {type(self.trainer.strategy).__name__}` started, and this fit wrote "
                "no checkpoint to test (checkpointing off or fast_dev_run); enable "
                "checkpointing, or run `lit-robust test --ckpt_path <checkpoint>`"
            )
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=checkpoint)


def final_checkpoint(trainer: Trainer) -> str | None:
    """The ``last.ckpt`` a fit wrote (the final weights), else its best checkpoint, else
    ``None``. After a spawned fit only the best path reaches the main process; ``last.ckpt``
    sits beside it."""
    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint):
        return None
    if callback.last_model_path and Path(callback.last_model_path).is_file():
        return callback.last_model_path
    best = callback.best_model_path
    if best and Path(best).is_file():
        last = Path(best).with_name("last.ckpt")
        return str(last) if last.is_file() else best
    return None


def cli(args: Sequence[str] | None = None, run: bool = True) -> LitRobustCLI:
    """Build (and by default run) the CLI and return it, with its trainer, model and data.

    Args:
        args: replaces ``sys.argv[1:]`` (tests, notebooks), e.g.
            ``["fit", "--config", "configs/quickstart.yaml"]``.
        run: run the subcommand; ``False`` only parses and instantiates.
    """
    trainer_defaults: dict[str, Any] = {
        "inference_mode": False,
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": "logs", "name": "lit_robust"},
        },
        # both checkpoint callbacks (this one, end of epoch, and that of
        # --checkpoint_every_n_steps) write the one last.ckpt: the newest state of the run
        "callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=1, monitor=None,
                            enable_version_counter=False),
            RandomStateCheckpoint(),
        ],
    }
    return LitRobustCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults,
        args=list(args) if args is not None else None,
        run=run,
        auto_configure_optimizers=False,
        parser_kwargs={command: {"epilog": HELP_EPILOG} for command in SUBCOMMANDS},
    )


def main(args: Sequence[str] | None = None) -> None:
    """The ``lit-robust`` console script: run the CLI (``args`` replaces ``sys.argv[1:]``).

    A wrong setting, file or dataset (:data:`lit_robust.errors.USER_ERRORS`) ends the process
    with its message on one line and exit status 2.
    """
    try:
        cli(args)
    except USER_ERRORS as error:
        if os.environ.get("LIT_ROBUST_TRACEBACK"):
            raise
        sys.stderr.write(f"lit-robust: error: {root_message(error)}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
