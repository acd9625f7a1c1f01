"""The `churn` command line. Commands parse arguments, call library code and print results."""

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

app = typer.Typer(
    name="churn",
    help="Churn prediction from interaction history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
log = logging.getLogger("churn")


class UsageError(Exception):
    """A bad argument or input; printed as one line."""


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr; yields a `progress(done, total)` callback."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal
        and os.environ.get("CHURN_PROGRESS") != "1",
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def parse_time(value: str, option: str) -> datetime:
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise UsageError(f"{option}: cannot parse {value!r} as a date or timestamp") from None
    if ts is pd.NaT:
        raise UsageError(f"{option}: cannot parse {value!r} as a date or timestamp")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def write_parquet(frame, path: Path) -> None:
    """Write atomically: a temporary file beside the target, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load(customers: Path, events: Path):
    from features.contract import load_tables

    tables = load_tables(customers, events)
    for note in tables.notes:
        err.print(f"[yellow]note:[/] {note}")
    return tables


CustomersOpt = Annotated[Path, typer.Option("--customers", help="Customers table (CSV or Parquet).")]
EventsOpt = Annotated[Path, typer.Option("--events", help="Events table (CSV or Parquet).")]
LabelOpt = Annotated[str, typer.Option(
    "--label", help="explicit: churned_at in (t, t+horizon]; inactivity: no event in it.")]
HorizonOpt = Annotated[int, typer.Option("--horizon", min=1, help="Label horizon in days.")]
CadenceOpt = Annotated[int, typer.Option("--cadence", min=1, help="Days between snapshots.")]


@app.command()
def generate(
    customers: Annotated[int, typer.Option("--customers", min=1, help="How many customers.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two Parquet files.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    kind: Annotated[str, typer.Option(
        "--kind", help="subscription (with churn dates) or retail (none).")] = "subscription",
) -> None:
    """Generate a realistic interaction history (customers.parquet, events.parquet)."""
    from features.generate import KINDS
    from features.generate import generate as run

    if kind not in KINDS:
        raise UsageError(f"--kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    with progress_bar("simulating weeks") as progress:
        cust, events = run(customers, seed=seed, kind=kind, progress=progress)
    write_parquet(cust, out_dir / "customers.parquet")
    write_parquet(events, out_dir / "events.parquet")
    out.print(f"wrote {len(cust):,} customers and {len(events):,} events to {out_dir}")


@app.command()
def features(
    customers: CustomersOpt,
    events: EventsOpt,
    as_of: Annotated[list[str], typer.Option("--as-of", help="Observation time; repeatable.")],
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
) -> None:
    """Write point-in-time features for every customer signed up by each --as-of."""
    from features.engine import compute_features, infer_spec

    times = [parse_time(v, "--as-of") for v in as_of]
    tables = _load(customers, events)
    spec = infer_spec(tables)
    with progress_bar("building features") as progress:
        table = compute_features(tables.customers, tables.events, times, spec, progress)
    write_parquet(table, out_path)
    out.print(f"wrote {len(table):,} rows x {len(spec.feature_names)} features to {out_path}")


@app.command()
def snapshots(
    customers: CustomersOpt,
    events: EventsOpt,
    label: LabelOpt,
    horizon: HorizonOpt,
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    cadence: CadenceOpt = 30,
) -> None:
    """Write labelled training snapshots at a regular cadence."""
    from features.definitions import LABEL_KINDS
    from features.engine import build_snapshots, infer_spec

    if label not in LABEL_KINDS:
        raise UsageError(f"--label: must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    tables = _load(customers, events)
    spec = infer_spec(tables)
    with progress_bar("building snapshots") as progress:
        table = build_snapshots(tables, spec, label, horizon, cadence, progress=progress)
    write_parquet(table, out_path)
    times = table["as_of"].nunique()
    out.print(
        f"wrote {len(table):,} rows at {times} observation times "
        f"(churn rate {table['label'].mean():.1%}) to {out_path}"
    )


def print_table(title: str, columns: list[str], rows: list[list[object]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if c != columns[0] else "left")
    for r in rows:
        table.add_row(*[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r])
    out.print(table)


def print_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def main() -> None:
    """Entry point: run the app, turning any error into one line and a non-zero exit."""
    logging.basicConfig(level=os.environ.get("CHURN_LOG_LEVEL", "WARNING"),
                        format="%(levelname)s %(name)s: %(message)s")
    from features.contract import DataError

    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None) or getattr(exc, "code", 0) or 0
        sys.exit(code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # the CLI never shows a traceback
        import click

        if isinstance(exc, click.ClickException):
            text = exc.format_message()
            if isinstance(exc, click.MissingParameter) and exc.param is not None:
                text = f"missing option {' / '.join(exc.param.opts)}"
            err.print(f"error: {text}", markup=False, highlight=False)
            sys.exit(2)
        if os.environ.get("CHURN_DEBUG"):
            raise
        kind = "data error" if isinstance(exc, DataError) else "error"
        text = " ".join(str(exc).split()) or type(exc).__name__
        err.print(f"{kind}: {text}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(exc, DataError | UsageError | ValueError) else 1)


if __name__ == "__main__":
    main()
