"""`churn campaign returning`: customers who left and came back, with the playbook's win-back
follow-up (campaigns/returning.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    CustomersOpt,
    DateFormatOpt,
    EngineOpt,
    EventsOpt,
    SparkMasterOpt,
    UsageError,
    err,
    load_tables,
    out,
    parse_time,
    print_json,
    print_table,
    progress_bar,
)
from features.files import write_table

MAX_SHOWN = 200


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _stated(found, book) -> dict[str, str] | None:
    """What the returners told earlier campaigns, from the product's store; None when there is
    no store yet (a read never creates one) or it cannot be read (one warning line)."""
    from sqlalchemy.engine import make_url

    from campaigns.returning import stated_reasons
    from scoring.records import database_url, engine_for
    from scoring.settings import get_settings

    settings = get_settings()
    url = database_url(settings)
    database = make_url(url).database
    if url.startswith("sqlite") and (not database or not Path(database).exists()):
        return None
    try:
        return stated_reasons(engine_for(settings), found["customer_id"].tolist(),
                              {k: r.label for k, r in book.reasons.items()})
    except Exception as exc:
        err.print(f"warning: what customers said before is left out: the store could not be read "
                  f"({type(exc).__name__})", markup=False, highlight=False)
        return None


def returning(
    customers: CustomersOpt,
    events: EventsOpt,
    horizon: Annotated[int | None, typer.Option(
        "--horizon", min=1, max=3650,
        help="Days without activity that count as leaving (for logs without churn dates); "
        "without it, only churn dates (and --match-column signups) count.")] = None,
    grace: Annotated[int, typer.Option(
        "--grace", min=0, max=365,
        help="Activity this many days after a churn date is the account winding down, "
        "not a return.")] = 7,
    match_column: Annotated[str | None, typer.Option(
        "--match-column", help="A customers column naming one person (such as email): a new "
        "signup with the value of a customer who left is a return.")] = None,
    event_type: Annotated[list[str] | None, typer.Option(
        "--event-type", help="Event types that count as activity (repeatable or "
        "comma-separated; default: all).")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Only what happened up to this time (default: the whole log).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Only returns from this time on (such as the last follow-up).")] = None,
    playbook: Annotated[Path | None, typer.Option(
        "--playbook", help="Playbook TOML (default: CHURN_REVIEW_PLAYBOOK, else the packaged "
        "one).")] = None,
    out_path: Annotated[Path | None, typer.Option(
        "--out", help="Write every return to this CSV or Parquet file.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=MAX_SHOWN,
                                     help="Rows shown in the table.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
) -> None:
    """List customers who left and came back, latest first, with the win-back follow-up.

    A return is activity after a churn date (past --grace days), activity after at least
    --horizon days without any, or a new signup matched to a leaver by --match-column."""
    from campaigns.playbook import DEFAULT_PATH, load_playbook
    from campaigns.returning import ReturnRules, find_returning, parse_event_types, summary
    from scoring.settings import get_settings

    if out_path is not None and not str(out_path).lower().endswith((".csv", ".parquet", ".pq")):
        raise UsageError(f"--out: {out_path} must end in .csv or .parquet")
    book = load_playbook(playbook or get_settings().review_playbook or DEFAULT_PATH)
    try:
        rules = ReturnRules(
            horizon_days=horizon, grace_days=grace,
            as_of=None if as_of is None else parse_time(as_of, "--as-of"),
            since=None if since is None else parse_time(since, "--since"),
            event_types=parse_event_types(event_type or []), match_column=match_column)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    tables = load_tables(customers, events, date_format, engine, spark_master)
    with progress_bar("finding returns") as progress:
        progress(0, 1)
        found = find_returning(tables.customers, tables.events, rules,
                               follow_up=book.winback.action)
        progress(1, 1)
    said = _stated(found, book)
    if said is not None:
        found = found.assign(said_before=found["customer_id"].map(said).fillna(""))
    if out_path is not None:
        write_table(found, out_path)  # CSV by the extension, else Parquet; atomically
    counts = summary(found)
    if as_json:
        print_json({**counts, "follow_up": {"title": book.winback.title,
                                            "action": book.winback.action},
                    "out": None if out_path is None else str(out_path),
                    "returning": found.drop(columns="follow_up").head(top)
                    .to_dict("records")})
        return
    how = ", ".join(f"{n} by {h}" for h, n in counts["by_how"].items() if n)
    away = counts["median_days_away"]
    out.print(f"{counts['returns']:,} returns of {counts['customers']:,} customers"
              + (f" ({how}); median {away:g} days away" if counts["returns"] else ""),
              markup=False, highlight=False)
    if counts["returns"]:
        columns = ["customer_id", "left", "returned", "days away", "how", "returned as"]
        print_table(f"Came back, latest first (top {min(top, len(found))})",
                    columns + (["said before"] if said else []),
                    [[r.customer_id, f"{r.left_at:%Y-%m-%d}", f"{r.returned_at:%Y-%m-%d}",
                      f"{r.days_away:g}", r.how, r.returned_as]
                     + ([_clip(r.said_before, 60)] if said else [])
                     for r in found.head(top).itertuples()])
        out.print(f"Follow-up ({book.winback.title}): {book.winback.action}", markup=False,
                  highlight=False, soft_wrap=True)
    if out_path is not None:
        out.print(f"wrote {len(found):,} rows to {out_path}", markup=False, highlight=False)
