"""Terminal output shared by the commands: summary tables on stdout that a narrow terminal never cuts (lines
grow wider and the terminal folds them), and one kind of progress bar on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


def progress_bar(
    description: str = "{task.description}",
    note: str | None = None,
    *,
    transient: bool = True,
    disable: bool = False,
    console: Console | None = None,
) -> Progress:
    """A progress bar on stderr: description, bar, done/total, the task's field ``note`` if named, time left."""
    columns = [TextColumn(description), BarColumn(), MofNCompleteColumn()]
    if note is not None:
        columns.append(TextColumn(f"{{task.fields[{note}]}}"))
    columns.append(TimeRemainingColumn())
    return Progress(*columns, console=console or Console(stderr=True), transient=transient, disable=disable)


def print_table(table: Table) -> None:
    """Print `table` at its natural width when the terminal is narrower, so no cell is cut or ellipsised."""
    out = Console()
    natural = Measurement.get(out, out.options.update_width(1_000_000), table).maximum
    if natural > out.width:
        out = Console(width=natural)
    out.print(table)
