"""What every `churn` command shares: the consoles, progress bars, time and engine options,
the loaders, tables, JSON and the one-line failure. The command modules (main, campaign,
monitor, returning) import it; it imports none of them."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# piped output is not cut at 80 columns. No markup: names, ids, paths and customers' words
# may hold [brackets], which rich would read as tags (and fail on "[/]", or drop "[bold]")
out = Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160")),
              markup=False)
err = Console(stderr=True, markup=False)
log = logging.getLogger("churn")


class UsageError(Exception):
    """A bad argument or input; printed as one line."""


@contextmanager
def stage_bars() -> Iterator[Callable[[str], Callable[[int, int], None]]]:
    """Progress bars on stderr for a multi-stage job: `stage(label)` returns a
    `progress(done, total)` callback for one stage."""
    with Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err,
        disable=not err.is_terminal and os.environ.get("CHURN_PROGRESS") != "1",
    ) as bar:

        def stage(label: str) -> Callable[[int, int], None]:
            task = bar.add_task(label, total=None)
            return lambda done, total: bar.update(task, completed=done, total=total)

        yield stage


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """One progress bar: yields a `progress(done, total)` callback."""
    with stage_bars() as stage:
        yield stage(label)


def write_parquet(frame, path: Path) -> None:
    from features.files import write_parquet as write

    write(frame, path)


def parse_time(value: str, option: str) -> datetime:
    from features.contract import to_utc_naive

    try:
        return to_utc_naive(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def date_format_option(value: str | None) -> str | None:
    """Refuse a format that cannot date anything before any file is read."""
    from features.contract import check_date_format as check

    try:
        return None if value is None else check(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def table_engine(engine: str | None, spark_master: str | None):
    """The engine that reads event files: --engine, else the settings' CHURN_ENGINE (DuckDB,
    with its memory limit and spill folder, by default)."""
    from scoring.batch import table_engine as make
    from scoring.settings import get_settings

    try:
        return make(get_settings(), engine, spark_master)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def load_tables(customers: Path, events: Path, date_format: str | None, engine: str | None = None,
          spark_master: str | None = None):
    """The customers file read and checked, and the events scanned where they lie by the
    chosen engine (`table_engine`)."""
    from features.sources import open_tables

    tables = open_tables(customers, events, table_engine(engine, spark_master), date_format=date_format)
    for note in tables.notes:
        print_note(note)
    return tables


CustomersOpt = Annotated[Path, typer.Option("--customers", help="Customers table (CSV or Parquet).")]
EventsOpt = Annotated[Path, typer.Option("--events", help="Events table (CSV or Parquet).")]
LabelOpt = Annotated[str, typer.Option(
    "--label", help="explicit: churned_at in (t, t+horizon]; inactivity: no event in it.")]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Label horizon in days.")]
CadenceOpt = Annotated[int | None, typer.Option(
    "--cadence", min=1, help="Days between snapshots (default: chosen from the log's length).")]
EngineOpt = Annotated[str | None, typer.Option(
    "--engine", help="duckdb or spark: what reads the event files (default: CHURN_ENGINE, duckdb).")]
SparkMasterOpt = Annotated[str | None, typer.Option(
    "--spark-master", help="Spark master URL for --engine spark (default: local[*]; "
    "SPARK_REMOTE=sc://host for Spark Connect).")]
DateFormatOpt = Annotated[str | None, typer.Option(
    "--date-format", callback=date_format_option,
    help="The one format (strftime, such as %d/%m/%Y) of date columns not written in ISO 8601.")]




def _cell(v: object) -> Text:
    """A table cell as plain text (a Text, never read as markup: ids and customers' words may
    hold [brackets])."""
    if isinstance(v, float):
        return Text(f"{v:,.0f}" if v.is_integer() and abs(v) >= 100 else f"{v:.4f}")
    return Text(str(v))


def print_note(text: str, **kwargs) -> None:
    """A note on stderr: "note:" in yellow, then the text as written."""
    err.print(Text.assemble(("note:", "yellow"), " ", text), **kwargs)


def print_table(title: str, columns: list[str], rows: list[list[object]],
                width: int | None = None, whole: tuple[str, ...] = ()) -> None:
    """A rich table; at most `width` characters wide when given (long text folds onto more
    lines, nothing is cut; the columns in `whole`, such as numbers, never fold)."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c != columns[0] else "left",
                         overflow="fold" if width else "ellipsis", no_wrap=c in whole)
    for r in rows:
        table.add_row(*[_cell(v) for v in r])
    out.print(table, width=min(out.width, width) if width else None)


def print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def fail(message: str, code: int) -> None:
    """Print one plain line on stderr and exit."""
    sys.stderr.write(" ".join(message.split()) + "\n")
    sys.exit(code)
