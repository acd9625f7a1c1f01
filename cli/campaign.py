"""`churn campaign ...`: plan a retention campaign with a control group, import what came of it,
and report what it achieved. campaigns/ does the work (planning.py, tracking.py for MLflow,
apply.py, simulate.py); this module parses options, calls it and prints.

Registered on cli/main.py's app as the `campaign` group; other commands of the group (such as
`returning`) register themselves on `app` here from cli/main.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from cli.common import (
    CustomersOpt,
    DateFormatOpt,
    EngineOpt,
    EventsOpt,
    SparkMasterOpt,
    UsageError,
    load_tables,
    out,
    print_json,
    print_note,
    print_table,
    progress_bar,
    write_parquet,
)

app = typer.Typer(name="campaign", no_args_is_help=True, add_completion=False,
                  help="Retention campaigns: plan with a control group, import outcomes, report.")

CampaignOpt = Annotated[str, typer.Option(
    "--campaign", help="The campaign's id (from plan), or latest: the newest campaign.")]
PlaybookOpt = Annotated[Path | None, typer.Option(
    "--playbook", help="Playbook TOML (default: CHURN_REVIEW_PLAYBOOK, else the packaged one).")]
LABELS = ("explicit", "inactivity")


def _settings():
    from scoring.settings import get_settings

    return get_settings()


def store_engine():
    from scoring.records import engine_for

    return engine_for(_settings())


def playbook_at(path: Path | None):
    from campaigns.playbook import DEFAULT_PATH, PlaybookError, load_playbook

    try:
        return load_playbook(path or _settings().review_playbook or DEFAULT_PATH)
    except PlaybookError as exc:
        raise UsageError(str(exc)) from None


def find_campaign(campaign_id: str):
    from campaigns.store import get_campaign, list_campaigns

    if campaign_id == "latest":
        newest = list_campaigns(store_engine())[:1]
        if not newest:
            raise UsageError("--campaign latest: there is no campaign yet (churn campaign plan)")
        return newest[0]
    found = get_campaign(store_engine(), campaign_id)
    if found is None:
        raise UsageError(f"--campaign: no campaign {campaign_id!r} (churn campaign list shows "
                         "them)")
    return found


def latest_batch_scores() -> Path:
    """The scores of the newest completed /batch job."""
    from serving.jobs import latest_scores

    root = _settings().batch_root
    found = latest_scores(root)
    if found is None:
        raise UsageError(f"--scores: not given, and no completed batch job under {root}")
    return found


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """CSV or Parquet by the extension, written atomically (a temporary file, then a rename)."""
    from features.files import write_table as write

    if path.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out: {path.name}: give a .csv or .parquet file")
    write(frame, path)


# -- plan ---------------------------------------------------------------------------------------


@app.command()
def plan(
    out_path: Annotated[Path, typer.Option(
        "--out", help="The call centre's contact list, .csv or .parquet (treatment arm only).")],
    scores_path: Annotated[Path | None, typer.Option(
        "--scores", help="Scores Parquet from churn score (default: the newest batch job's).")]
    = None,
    budget: Annotated[int | None, typer.Option(
        "--budget", min=1, max=10_000_000, help="Calls the call centre can make; without it, "
        "everyone whose expected profit (p x save rate x value - offer cost) is positive.")]
    = None,
    control_share: Annotated[float, typer.Option(
        "--control-share", min=0.0, max=0.9, help="Share of the targets held out, not called.")]
    = 0.2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the control draw.")] = 0,
    name: Annotated[str | None, typer.Option("--name", help="A name for people.")] = None,
    horizon: Annotated[int | None, typer.Option(
        "--horizon", min=1, max=3650, help="Days after as_of whose churn the campaign is judged "
        "on (default: the model's training horizon).")] = None,
    label: Annotated[str | None, typer.Option(
        "--label", help="explicit or inactivity: how churn is read from the data (default: the "
        "model's training label).")] = None,
    allow_overlap: Annotated[bool, typer.Option(
        "--allow-overlap", help="Keep customers who are in another campaign judged over the "
        "same days (by default they are left out: being held out by one campaign and called by "
        "another would spoil both comparisons).")] = False,
    playbook_path: PlaybookOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Plan a campaign from a batch of scores: whom to call, the action for each, and a
    randomised control group (stratified by risk band and value segment) that is not called.
    Records the campaign in the store and writes the contact list."""
    from campaigns.plan import PlanError
    from campaigns.planning import plan_and_record
    from features.files import read_table

    if label is not None and label not in LABELS:
        raise UsageError(f"--label: {label!r} is not one of {', '.join(LABELS)}")
    if out_path.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out: {out_path.name}: give a .csv or .parquet file")
    name = (name or "").strip()
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise UsageError("--name: at most 200 characters on one line")
    playbook = playbook_at(playbook_path)
    source = scores_path or latest_batch_scores()
    try:
        planned = plan_and_record(
            _settings(), store_engine(), read_table(source), source, out_path, playbook,
            budget=budget, control_share=control_share, seed=seed, name=name, horizon=horizon,
            label=label, allow_overlap=allow_overlap)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    campaign, members, calls, notes = (planned.campaign, planned.members, planned.calls,
                                       planned.notes)
    campaign_id, version, as_of = campaign.campaign_id, campaign.model_version, campaign.as_of
    horizon, label, activity = campaign.horizon_days, planned.label, planned.activity_types
    arms = members["arm"].value_counts()
    summary = {"campaign_id": campaign_id, "name": campaign.name, "model_version": version,
               "as_of": str(as_of), "horizon_days": horizon, "label": label,
               "activity_types": activity,
               "cut": campaign.cut, "treatment": int(arms.get("treatment", 0)),
               "control": int(arms.get("control", 0)), "contact_list": str(out_path),
               "notes": notes}
    if as_json:
        print_json(summary)
        return
    for note in notes:
        print_note(note)
    out.print(f"campaign {campaign_id} ({campaign.name}): {summary['treatment']:,} to call, "
              f"{summary['control']:,} held out as the control group; model version {version}, "
              f"as of {as_of:%Y-%m-%d}, judged on churn within {horizon} days ({label})")
    out.print(f"cut: {campaign.cut}")
    print_table("Targets by risk band and value segment (treatment / control)",
                ["risk band", "value segment", "treatment", "control", "mean probability",
                 "mean value"], _strata_rows(members))
    fam = members[members["arm"] == "treatment"].groupby("action_family")
    print_table("Planned actions (treatment arm)", ["action family", "calls", "action"],
                [[f, len(g), g["action_title"].iloc[0]] for f, g in fam])
    out.print(f"contact list ({len(calls):,} rows, treatment arm only) -> {out_path}")


def _strata_rows(members: pd.DataFrame) -> list[list[object]]:
    from campaigns.report import SEGMENT_ORDER

    rows = []
    bands = {"high": 0, "medium": 1, "low": 2}
    groups = members.groupby(["risk_band", "value_segment"])
    for (band, seg), g in sorted(groups, key=lambda kv: (bands.get(kv[0][0], 9),
                                                          SEGMENT_ORDER.index(kv[0][1])
                                                          if kv[0][1] in SEGMENT_ORDER else 9)):
        value = g["customer_value"].mean()
        rows.append([band, seg, int((g["arm"] == "treatment").sum()),
                     int((g["arm"] == "control").sum()), f"{g['probability'].mean():.3f}",
                     "-" if pd.isna(value) else f"{value:,.0f}"])
    return rows


# -- outcomes -----------------------------------------------------------------------------------


@app.command()
def outcomes(
    campaign_id: CampaignOpt,
    file: Annotated[Path | None, typer.Option(
        "--file", help="The call centre's outcomes (CSV: customer_id, reached, result, reason, "
        "reason_text; the filled-in contact list will do).")] = None,
    customers: Annotated[Path | None, typer.Option(
        "--customers", help="Customers table: churn of both arms from the data, once the "
        "horizon has passed.")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="Events table (with "
                                                "--customers).")] = None,
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    playbook_path: PlaybookOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Import what came of a campaign: the call centre's file (each bad row is reported with its
    row number and column; the good rows are stored), and/or churn of both arms from the data.
    A customer's newer outcome replaces the older one of the same kind."""
    from campaigns.outcomes import (
        NotYetError,
        OutcomeFileError,
        check_outcomes,
        data_outcome_rows,
        label_members,
        read_outcome_file,
    )
    from campaigns.store import campaign_members, record_outcomes

    if file is None and customers is None:
        raise UsageError("give --file (the call centre's outcomes) or --customers and --events "
                         "(churn from the data), or both")
    if (customers is None) != (events is None):
        raise UsageError("--customers and --events go together")
    campaign = find_campaign(campaign_id)
    campaign_id = campaign.campaign_id
    db = store_engine()
    members = campaign_members(db, campaign_id)
    summary: dict = {"campaign_id": campaign_id}
    problems = []
    if file is not None:
        try:
            frame = read_outcome_file(file)
        except OutcomeFileError as exc:
            raise UsageError(str(exc)) from None
        arms = dict(zip(members["customer_id"], members["arm"], strict=True))
        good, problems = check_outcomes(frame, arms, playbook_at(playbook_path))
        stored = record_outcomes(db, campaign_id, good)
        summary["file"] = {"rows": len(frame), "stored": stored, "bad": len(problems),
                           "problems": [str(p) for p in problems[:1000]]}
    if customers is not None:
        tables = load_tables(customers, events, date_format, engine, spark_master)
        ids = members["customer_id"].astype(str).tolist()
        try:
            with progress_bar("churn from the data") as progress:
                labels = label_members(tables, ids, pd.Timestamp(campaign.as_of),
                                       campaign.params.get("label", "explicit"),
                                       campaign.horizon_days,
                                       campaign.params.get("activity_types") or ())
                progress(1, 1)
        except NotYetError as exc:
            raise UsageError(str(exc)) from None
        rows = data_outcome_rows(ids, labels, campaign.ends_at)
        record_outcomes(db, campaign_id, rows)
        left = members.assign(left=labels.to_numpy()).groupby("arm")["left"]
        summary["data"] = {"members": len(ids), "label": campaign.params.get("label", "explicit"),
                           "horizon_ends": str(campaign.ends_at),
                           "left": {a: int(v) for a, v in left.sum().items()},
                           "members_by_arm": {a: int(v) for a, v in left.count().items()}}
    if as_json:
        print_json(summary)
    else:
        if "file" in summary:
            f = summary["file"]
            out.print(f"{file}: {f['stored']:,} outcomes stored, {f['bad']:,} bad rows")
            # one line each, never folded: people grep and copy them
            sys.stderr.write("".join(f"  {p}\n" for p in problems[:200]))
            if len(problems) > 200:
                sys.stderr.write(f"  ... and {len(problems) - 200:,} more\n")
        if "data" in summary:
            d = summary["data"]
            out.print(f"churn from the data ({d['label']}, by {campaign.ends_at:%Y-%m-%d}) for "
                      f"{d['members']:,} members: " + ", ".join(
                          f"{arm} {d['left'].get(arm, 0):,} of {n:,} left"
                          for arm, n in sorted(d["members_by_arm"].items(), reverse=True)))
    if problems:
        sys.exit(2)  # the good rows are stored; the bad ones are listed above


# -- list and simulate ----------------------------------------------------------------------------


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The campaigns in the store, newest first."""
    from campaigns.store import list_campaigns

    found = list_campaigns(store_engine())
    if as_json:
        print_json({"campaigns": [{**c.__dict__, "created_at": str(c.created_at),
                                   "as_of": str(c.as_of)} for c in found]})
        return
    print_table("Campaigns", ["campaign", "name", "created", "model version", "as of",
                              "horizon", "cut"],
                [[c.campaign_id, c.name, f"{c.created_at:%Y-%m-%d %H:%M}", c.model_version,
                  f"{c.as_of:%Y-%m-%d}", f"{c.horizon_days} d", c.cut] for c in found])


@app.command()
def simulate(
    campaign_id: CampaignOpt,
    customers: CustomersOpt,
    events: EventsOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the treated world and the "
                                          "simulated call file.")],
    effect: Annotated[list[str] | None, typer.Option(
        "--effect", help="family=factor: the contact multiplies the churn of customers given "
        "that action family by factor (0..1); families not named get 1 (no effect). "
        "Repeatable.")] = None,
    reach: Annotated[float, typer.Option("--reach", min=0.0, max=1.0,
                                         help="Share of calls that reach the customer.")] = 0.7,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    playbook_path: PlaybookOpt = None,
) -> None:
    """For generated data (a demo or a test): the world in which the campaign's treatment arm
    was called (features/generate.py's treatment effect), as customers and events files, and a
    call-centre file of its outcomes, ready for churn campaign outcomes."""
    from campaigns.simulate import effect_factors, simulate_campaign
    from campaigns.store import campaign_members
    from features.tables import load_tables

    campaign = find_campaign(campaign_id)
    playbook = playbook_at(playbook_path)
    try:
        factors = effect_factors(effect or [], list(playbook.families))
    except ValueError as exc:
        raise UsageError(f"--effect: {exc}") from None
    members = campaign_members(store_engine(), campaign.campaign_id)
    tables = load_tables(customers, events)
    try:
        sim = simulate_campaign(tables, campaign, members, factors, list(playbook.reasons),
                                reach, seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_parquet(sim.customers, out_dir / "customers.parquet")
    write_parquet(sim.events, out_dir / "events.parquet")
    write_table(sim.calls, out_dir / "calls.csv")
    out.print(f"treated world -> {out_dir}/customers.parquet, events.parquet ({sim.saved:,} of "
              f"{sim.treated:,} treated customers kept by the contact); calls -> "
              f"{out_dir}/calls.csv ({sim.reached:,} reached)")
