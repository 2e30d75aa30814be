"""Progress bars for long work: one bar per running stage, nested under the run's overall bar."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hashbench.terminal import markup, plain


class Reporter:
    """Hands out progress tasks; the base class shows nothing (tests, ``--quiet``)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n=1: None

    def log(self, message: str) -> None:
        """A line for the user (warnings, stage summaries)."""

    def close(self) -> None:
        pass


class RichReporter(Reporter):
    """Rich progress bars on stderr; transient stage bars disappear when their stage ends."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal,
        )
        self.progress.start()

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        # the description (run and plugin names) goes into the "[bold]{task.description}" markup
        task_id = self.progress.add_task(markup(description, one_line=True), total=total)
        try:
            yield lambda n=1: self.progress.advance(task_id, n)
        finally:
            self.progress.remove_task(task_id)

    def log(self, message: str) -> None:
        self.progress.console.print(plain(message), markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.progress.stop()


def default_reporter(quiet: bool = False) -> Reporter:
    if quiet:
        return Reporter()
    return RichReporter(Console(stderr=True, file=sys.stderr))
