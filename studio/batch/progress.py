"""The batch's progress bar: items done of the total, items/s and the time left (rich, on stderr).

Shown only on a terminal, so logs and tests get the summary lines and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def batch_progress(total: int) -> Iterator[Callable[[int], None]]:
    """Yield `advance(settled)`: call it with how many items this run has settled so far."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task("batch", total=total, rate="")

        def advance(settled: int) -> None:
            speed = progress.tasks[0].speed
            progress.update(task, completed=settled, rate=f"{speed:.2f} items/s" if speed else "")

        yield advance
