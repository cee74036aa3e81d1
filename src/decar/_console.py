"""Summary tables on stdout that a narrow terminal never cuts: lines grow wider and the terminal folds them."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


def print_table(table: Table) -> None:
    """Print `table` at its natural width when the terminal is narrower, so no cell is cut or ellipsised."""
    out = Console()
    natural = Measurement.get(out, out.options.update_width(1_000_000), table).maximum
    if natural > out.width:
        out = Console(width=natural)
    out.print(table)
