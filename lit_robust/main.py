"""The ``lit-robust`` command: LightningCLI over every method and DataModule.

Examples::

    lit-robust fit --config configs/quickstart.yaml
    lit-robust fit --model AdversarialTraining --data CIFAR10DataModule --trainer.max_epochs 1
    lit-robust test --config configs/quickstart.yaml --ckpt_path last
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

import lit_robust.data  # noqa: F401  (registers the DataModules for short names)
import lit_robust.methods  # noqa: F401  (registers the methods for short names)

SUBCOMMANDS = ("fit", "validate", "test", "predict")
HELP_EPILOG = (
    "The arguments of a method or DataModule are listed by `--model.help CLASS` and "
    "`--data.help CLASS`, e.g. `lit-robust fit --model.help TWINS` or "
    "`lit-robust fit --data.help GTSRBDataModule` (short class names work). "
    "Methods: lit_robust.methods; DataModules: lit_robust.data; evaluators: "
    "lit_robust.evaluation; example configs: configs/."
)


class LitRobustCLI(LightningCLI):
    """LightningCLI with ``--test_after_fit``: ``fit`` then ``test`` the final weights."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--test_after_fit", type=bool, default=False,
            help="after `fit`, run `test` on the final weights and write the robustness report",
        )

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit"):
            self.trainer.test(self.model, datamodule=self.datamodule)


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
        "callbacks": [
            ModelCheckpoint(save_last=True, save_top_k=1, monitor=None),
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
    """The ``lit-robust`` console script: run the CLI (``args`` replaces ``sys.argv[1:]``)."""
    cli(args)


if __name__ == "__main__":
    main()
