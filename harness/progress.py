"""The live progress of ``sharedconv run`` on the terminal.

Case idents and failure reasons come from plugins, frameworks and files: they are printed as
data (escaped), never as Rich markup, so a message holding ``[/x]`` can neither abort the run
nor become a hidden hyperlink.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .records import CaseRecord


class RunProgress:
    """A progress bar over a run's cases, with each failure printed as it happens."""

    def __init__(self, console: Console, total: int):
        self.failures = 0
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed: {task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task("starting", total=total, failed=0)

    def __enter__(self) -> RunProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def on_record(self, record: CaseRecord) -> None:
        if record.failed:
            self.failures += 1
            self._progress.console.print(
                f"[red]{escape(str(record.status))}[/] {escape(record.case)}: "
                f"{escape((record.reason or '')[:200])}",
                highlight=False,
            )
        self._progress.update(
            self._task,
            advance=1,
            failed=self.failures,
            description=escape(record.case[:60]),
        )
