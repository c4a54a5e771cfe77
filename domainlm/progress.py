"""Progress bars for long CPU stages: rich when stderr is a terminal, silent otherwise or with --quiet."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

# Tables and reports go to stdout; progress and logs to stderr, so `--json` output stays clean.
console = Console()
err_console = Console(stderr=True)


def make_progress(quiet: bool = False) -> Progress:
    """A rich Progress that draws only on an interactive stderr and when not quiet."""
    disable = quiet or not sys.stderr.isatty()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=disable,
        transient=False,
    )
