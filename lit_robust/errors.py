"""Errors that mean "the input is wrong", which the command line shows as one short message.

Raising one of :data:`USER_ERRORS` says: nothing is broken, a setting, a file or the data is
wrong, and the message says what to do. ``lit-robust`` prints such an error as a single line
(``LIT_ROBUST_TRACEBACK=1`` shows the traceback as well); any other exception keeps its
traceback.
"""

from __future__ import annotations

from lit_robust.data.base import DataSettingError
from lit_robust.data.images import DataFileError
from lit_robust.data.layouts import DatasetNotFoundError
from lit_robust.models.blocks import BlockCountError, NoBlockLayoutError
from lit_robust.models.checkpoint import CheckpointMismatchError, CheckpointReadError


class ConfigurationError(ValueError):
    """A setting (or combination of settings) that cannot work, found before training."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped at that step."""


USER_ERRORS = (ConfigurationError, NonFiniteLossError, DataFileError, DatasetNotFoundError,
               CheckpointReadError, CheckpointMismatchError, BlockCountError,
               NoBlockLayoutError, DataSettingError)
"""The exception types that mean a wrong input; ``lit-robust`` shows them as one line."""


def root_message(error: BaseException) -> str:
    """The message that says what is wrong: that of the innermost error of
    :data:`USER_ERRORS` in ``error``'s chain of causes, else of the innermost exception (the
    argument parser wraps the error a class raised in a much longer message of its own)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for candidate in reversed(chain):
        if isinstance(candidate, USER_ERRORS):
            return str(candidate)
    return str(chain[-1])
