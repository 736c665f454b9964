"""Progress lines with the elapsed time and an ETA for long work outside the trainer's loops.

Certification, AutoAttack, a corruption sweep or RiFT's MRC search can run for hours inside one
test batch, at the end of a test epoch or in ``on_fit_start``, where Lightning's progress bar
stands still. A :class:`Progress` counts the finished items of such a task and now and then
prints one line::

    smoothing_sigma0.25: 12/500 images, 0:01:23 elapsed, ETA 0:56:24

- a line is printed when at least :data:`MIN_INTERVAL_S` seconds (10) have passed since the
  previous one, and at least 5 % of the elapsed time, so a long task prints less often (about
  80 lines in an hour); a task that printed anything also prints its last item;
- the ETA assumes the remaining items take as long as the finished ones did on average;
- lines go to standard output with ``tqdm.write``, which redraws Lightning's progress bar
  below them instead of breaking it;
- nothing is printed on processes other than rank 0, nor when the trainer shows no progress
  bar (``trainer.enable_progress_bar: false``, see :func:`trainer_shows_progress`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
from tqdm import tqdm

MIN_INTERVAL_S = 10.0
"""Fewest seconds between two lines of one task."""

_GROWTH = 0.05  # a line at most every 5 % of the elapsed time


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of ``torch.distributed`` (or the only process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return True


def trainer_shows_progress(trainer: Any) -> bool:
    """Whether work run by ``trainer`` should print progress lines: only when the trainer has
    a progress bar (``enable_progress_bar``, the default) and on the global rank 0."""
    return getattr(trainer, "progress_bar_callback", None) is not None and bool(
        getattr(trainer, "is_global_zero", True))


def write_line(line: str) -> None:
    """Print ``line`` to standard output without breaking an active tqdm progress bar."""
    tqdm.write(line, file=sys.stdout)


def format_seconds(seconds: float) -> str:
    """``H:MM:SS`` (with days beyond 24 hours), rounded to the second."""
    return str(timedelta(seconds=round(max(seconds, 0.0))))


class Progress:
    """Count the finished items of one task and print progress lines now and then.

    Args:
        task: what is counted, at the start of every line (e.g. an evaluator's name).
        total: the number of items, or ``None`` when unknown (the lines then give no ETA).
        unit: what one item is, e.g. ``"images"`` or ``"modules"``.
        enabled: print at all (lines are printed on rank 0 only in any case).
        min_interval_s: fewest seconds between two lines; ``None`` uses
            :data:`MIN_INTERVAL_S`.
        clock: seconds as a monotonic float (``time.monotonic``); replaceable in tests.

    Raises:
        ValueError: for a negative ``total``.
    """

    def __init__(
        self,
        task: str,
        total: int | None,
        unit: str = "items",
        enabled: bool = True,
        min_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is not None and total < 0:
            raise ValueError(f"the number of items must be >= 0 or None, got {total}")
        self.task = task
        self.total = total
        self.unit = unit
        self.enabled = enabled and is_rank_zero()
        self.min_interval_s = MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.clock = clock
        self.done = 0
        self.started = clock()
        self._printed_at: float | None = None

    def advance(self, count: int = 1, detail: str | None = None) -> None:
        """Record ``count`` more finished items and print a line when one is due.

        Args:
            count: items finished since the last call.
            detail: what was just finished (e.g. the module's name), shown in parentheses.
        """
        self.done += count
        if not self.enabled:
            return
        now = self.clock()
        elapsed = now - self.started
        last = self.total is not None and self.done >= self.total
        since = elapsed if self._printed_at is None else now - self._printed_at
        due = since >= max(self.min_interval_s, _GROWTH * elapsed)
        if due or (last and self._printed_at is not None):
            self._printed_at = now
            write_line(self.line(elapsed, detail))

    def line(self, elapsed: float, detail: str | None = None) -> str:
        """The progress line after ``elapsed`` seconds."""
        text = f"{self.task}: {self.done}"
        if self.total is not None:
            text += f"/{self.total}"
        text += f" {self.unit}, {format_seconds(elapsed)} elapsed"
        if self.total is not None and 0 < self.done < self.total:
            text += f", ETA {format_seconds(elapsed / self.done * (self.total - self.done))}"
        if detail:
            text += f" ({detail})"
        return text
