"""`churn campaign ...`: plan a retention campaign with a control group, import what came of it,
and report what it achieved (campaigns/ does the work; this module reads files, the store and
MLflow, and prints).

Registered on cli/main.py's app as the `campaign` group; other commands of the group (such as
`returning`) register themselves on `app` here from cli/main.py."""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from datetime import UTC, datetime, timedelta
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
    err,
    load_tables,
    out,
    print_json,
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


def _engine():
    from scoring.records import engine_for

    return engine_for(_settings())


def _playbook(path: Path | None):
    from campaigns.playbook import DEFAULT_PATH, PlaybookError, load_playbook

    try:
        return load_playbook(path or _settings().review_playbook or DEFAULT_PATH)
    except PlaybookError as exc:
        raise UsageError(str(exc)) from None


def _campaign(campaign_id: str):
    from campaigns.store import get_campaign, list_campaigns

    if campaign_id == "latest":
        newest = list_campaigns(_engine())[:1]
        if not newest:
            raise UsageError("--campaign latest: there is no campaign yet (churn campaign plan)")
        return newest[0]
    found = get_campaign(_engine(), campaign_id)
    if found is None:
        raise UsageError(f"--campaign: no campaign {campaign_id!r} (churn campaign list shows "
                         "them)")
    return found


def _model_run(version: str) -> tuple[str, str, dict] | None:
    """(run id, experiment id, the training parameters) of a registered model version, or None
    when the store does not know it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from scoring.store import configure

    settings = _settings()
    configure(settings)
    client = MlflowClient()
    try:
        mv = client.get_model_version(settings.model_name, version)
        run = client.get_run(mv.run_id)
        parent = run.data.tags.get("mlflow.parentRunId")
        params = client.get_run(parent).data.params if parent else run.data.params
    except MlflowException:
        return None
    return mv.run_id, run.info.experiment_id, dict(params)


def _activity_types(params: dict) -> list[str]:
    """The activity types a model was trained with (a JSON list in its training params; absent
    from runs before they existed, which counted every event)."""
    try:
        found = json.loads(params.get("activity_types") or "[]")
    except ValueError:
        return []
    return [str(t) for t in found] if isinstance(found, list) else []


def latest_batch_scores() -> Path:
    """The scores of the newest completed /batch job."""
    root = _settings().batch_root
    found = []
    for state in root.glob("*/job.json") if root.is_dir() else []:
        try:
            done = json.loads(state.read_text()).get("status") == "completed"
        except (OSError, json.JSONDecodeError):
            continue
        scores = state.with_name("scores.parquet")
        if done and scores.is_file():
            found.append((scores.stat().st_mtime, scores))
    if not found:
        raise UsageError(f"--scores: not given, and no completed batch job under {root}")
    return max(found)[1]


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
    from campaigns.plan import Cut, PlanError, check_scores, contact_list, plan_campaign
    from campaigns.store import Campaign, create_campaign, overlapping_members
    from features.files import read_table

    if label is not None and label not in LABELS:
        raise UsageError(f"--label: {label!r} is not one of {', '.join(LABELS)}")
    if out_path.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"--out: {out_path.name}: give a .csv or .parquet file")
    name = (name or "").strip()
    if len(name) > 200 or any(ord(c) < 32 for c in name):
        raise UsageError("--name: at most 200 characters on one line")
    settings = _settings()
    playbook = _playbook(playbook_path)
    source = scores_path or latest_batch_scores()
    scores = read_table(source)
    offer = settings.offer
    cut = Cut(budget, offer.save_rate, offer.cost)
    try:
        check_scores(scores)
    except PlanError as exc:
        raise UsageError(str(exc)) from None
    version = str(scores["model_version"].iloc[0])
    as_of = pd.Timestamp(scores["as_of"].iloc[0]).to_pydatetime()
    notes = []
    trained = _model_run(version)
    params = trained[2] if trained else {}
    if horizon is None:
        horizon = int(params.get("horizon_days", 30))
        if "horizon_days" not in params:
            notes.append(f"model version {version} not found in the registry: horizon 30 days "
                         "(give --horizon)")
    label = label or params.get("label") or "explicit"
    # the event types the model counts as activity, for the inactivity label (empty: every event)
    activity = _activity_types(params)
    left_out = 0
    if not allow_overlap:
        busy = overlapping_members(_engine(), as_of, as_of + timedelta(days=horizon))
        taken = scores["customer_id"].astype(str).isin(busy)
        if taken.any():
            first = next(iter(busy[c] for c in scores.loc[taken, "customer_id"].astype(str)))
            notes.append(f"{int(taken.sum()):,} customers are in a campaign judged over the same "
                         f"days (e.g. {first}) and are left out (--allow-overlap keeps them)")
            scores, left_out = scores[~taken], int(taken.sum())
            if scores.empty:
                raise UsageError("--scores: every customer of the batch is in a campaign judged "
                                 f"over the same days (e.g. {first}); --allow-overlap keeps them")
    try:
        members = plan_campaign(scores, playbook, cut, control_share, seed)
    except PlanError as exc:
        hint = f" ({notes[-1]})" if left_out else ""
        raise UsageError(f"{exc}{hint}") from None
    called = int((members["arm"] == "treatment").sum())
    if budget is not None and called < budget:
        notes.append(f"only {len(members):,} customers are outside the low risk band: "
                     f"{called:,} calls of the budget of {budget:,} are planned")
    created = datetime.now(UTC)
    campaign_id = f"{created:%Y%m%d}-{secrets.token_hex(3)}"
    campaign = Campaign(
        campaign_id=campaign_id, name=name or f"campaign {as_of:%Y-%m-%d}",
        model_version=version, as_of=as_of, horizon_days=horizon, control_share=control_share,
        seed=seed, cut=cut.describe(),
        params={"budget": budget, "save_rate": offer.save_rate, "offer_cost": offer.cost,
                "label": label, "activity_types": activity, "scores": str(source),
                "contact_list": str(out_path)},
        created_at=created)
    # the list is written beside its place first, the campaign recorded, then the list moved
    # into place: no list is ever handed out for a campaign that was not recorded
    calls = contact_list(members)
    staged = out_path.with_name(f".{out_path.stem}.planned-{os.getpid()}{out_path.suffix}")
    try:
        write_table(calls, staged)
        create_campaign(_engine(), campaign, members)
        os.replace(staged, out_path)
    finally:
        staged.unlink(missing_ok=True)
    arms = members["arm"].value_counts()
    summary = {"campaign_id": campaign_id, "name": campaign.name, "model_version": version,
               "as_of": str(as_of), "horizon_days": horizon, "label": label,
               "activity_types": activity,
               "cut": cut.describe(), "treatment": int(arms.get("treatment", 0)),
               "control": int(arms.get("control", 0)), "contact_list": str(out_path),
               "notes": notes}
    if as_json:
        print_json(summary)
        return
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    out.print(f"campaign {campaign_id} ({campaign.name}): {summary['treatment']:,} to call, "
              f"{summary['control']:,} held out as the control group; model version {version}, "
              f"as of {as_of:%Y-%m-%d}, judged on churn within {horizon} days ({label})")
    out.print(f"cut: {cut.describe()}")
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
    campaign = _campaign(campaign_id)
    campaign_id = campaign.campaign_id
    db = _engine()
    members = campaign_members(db, campaign_id)
    summary: dict = {"campaign_id": campaign_id}
    problems = []
    if file is not None:
        try:
            frame = read_outcome_file(file)
        except OutcomeFileError as exc:
            raise UsageError(str(exc)) from None
        arms = dict(zip(members["customer_id"], members["arm"], strict=True))
        good, problems = check_outcomes(frame, arms, _playbook(playbook_path))
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


# -- report -------------------------------------------------------------------------------------


def _pct(e, digits: int = 1) -> str:
    if e.value is None:
        return "-"
    return f"{100 * e.value:.{digits}f}% [{100 * e.low:.{digits}f}, {100 * e.high:.{digits}f}]"


def _money(e) -> str:
    if e.value is None:
        return "-"
    return f"{e.value:,.0f} [{e.low:,.0f}, {e.high:,.0f}]"


def _comparison_rows(rows) -> list[list[object]]:
    return [[c.label, f"{c.treatment.churned}/{c.treatment.known}",
             f"{c.control.churned}/{c.control.known}", _pct(c.treatment.churn, 1),
             _pct(c.control.churn, 1), _pct(c.uplift), _pct(c.save_rate, 0), _money(c.net)]
            for c in rows]


@app.command()
def report(
    campaign_id: CampaignOpt,
    level: Annotated[float, typer.Option("--level", min=0.5, max=0.999,
                                         help="Confidence level of the intervals.")] = 0.95,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Write the suggested save rate to the offer settings (mlruns/settings."
        "toml, read by churn score, train and the service).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="With --apply: write the save rate even when its interval includes 0.")] = False,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log to MLflow.")] = False,
    playbook_path: PlaybookOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the campaign achieved: churn in the called arm against the control arm (uplift and
    realised save rate with intervals), cost and return of the offers, by value segment and
    action family, and the reasons customers gave. Logged to MLflow beside the model version
    that chose the targets."""
    from campaigns.report import campaign_report
    from campaigns.store import campaign_members, campaign_outcomes

    campaign = _campaign(campaign_id)
    campaign_id = campaign.campaign_id
    settings = _settings()
    db = _engine()
    playbook = _playbook(playbook_path)
    rep = campaign_report(campaign_members(db, campaign_id), campaign_outcomes(db, campaign_id),
                          level=level, offer_cost=float(campaign.params.get("offer_cost",
                                                                            settings.offer.cost)),
                          current_save_rate=settings.offer.save_rate,
                          reason_labels={k: r.label for k, r in playbook.reasons.items()})
    logged = None if no_mlflow else log_report(campaign, rep)
    applied = None
    if apply:
        applied = apply_save_rate(rep, campaign, force)
    if as_json:
        print_json({"campaign_id": campaign_id, "name": campaign.name,
                    "model_version": campaign.model_version, "as_of": str(campaign.as_of),
                    "horizon_days": campaign.horizon_days, "report": rep.to_dict(),
                    "mlflow_run_id": logged, "applied": applied})
        return
    o = rep.overall
    out.print(f"campaign {campaign_id} ({campaign.name}): model version "
              f"{campaign.model_version}, as of {campaign.as_of:%Y-%m-%d}, churn within "
              f"{campaign.horizon_days} days; {100 * level:g}% intervals")
    if rep.pending:
        out.print(f"{rep.pending:,} of {o.treatment.members + o.control.members:,} members have "
                  "no churn outcome from the data yet (churn campaign outcomes --customers "
                  "--events, once the horizon has passed)")
    print_table("Churn: called (treatment) against not called (control)",
                ["", "left (treated)", "left (control)", "churn treated", "churn control",
                 "uplift", "save rate", "net"], _comparison_rows([o]))
    m = rep.money
    print_table("Cost and return of the offers",
                ["", "amount"],
                [["offers (treated customers)", f"{m.offers:,}"],
                 ["cost", f"{m.cost:,.0f}"],
                 ["customers saved", _money(m.customers_saved)],
                 ["value saved", _money(m.value_saved)],
                 ["net (value saved - cost)", _money(m.net)]])
    for title, first, rows in (("By value segment", "segment", rep.by_value_segment),
                               ("By action family", "action family", rep.by_action_family)):
        print_table(title, [first, "left (treated)", "left (control)", "churn treated",
                            "churn control", "uplift", "save rate", "net"],
                    _comparison_rows(rows))
    c = rep.contacts
    out.print(f"calls: {c['imported']:,} of {c['treated']:,} outcomes imported; reached "
              f"{c['reached']:,}; stayed {c['stayed']:,}, left {c['left']:,}, no answer "
              f"{c['no_answer']:,}")
    if rep.reasons:
        print_table("Reasons customers gave", ["reason", "customers", "share", "of whom left"],
                    [[r["label"], r["count"], f"{100 * r['share']:.0f}%", r["left"]]
                     for r in rep.reasons])
    s = rep.suggested_save_rate
    if s.known:
        out.print(f"suggested save rate: {_pct(s, 0)} (the offer settings say "
                  f"{settings.offer.save_rate:g})")
    else:
        out.print("suggested save rate: none yet (needs churn from the data in both arms, and "
                  "some churn in the control arm)")
    if logged:
        out.print(f"logged to MLflow: run {logged}")
    if applied:
        out.print(applied["message"])


def log_report(campaign, rep) -> str | None:
    """Log the report to MLflow: one run per campaign, nested under the run that logged the
    model version which chose the targets (in its experiment), tagged with the campaign id and
    version. A later report of the same campaign logs to the same run (metrics at a new step,
    the report JSON replaced). Returns the run id, or None when MLflow does not know the
    version (a note says so)."""
    import mlflow
    from mlflow import MlflowClient

    trained = _model_run(campaign.model_version)
    if trained is None:
        err.print(f"[yellow]note:[/] model version {campaign.model_version} is not in the "
                  "registry: the report is not logged to MLflow")
        return None
    model_run, experiment_id, _ = trained
    client = MlflowClient()
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`churn.campaign_id` = '{campaign.campaign_id}'",
        max_results=1)
    tags = {"churn.kind": "campaign", "churn.campaign_id": campaign.campaign_id,
            "churn.model_version": campaign.model_version, "mlflow.parentRunId": model_run}
    step = rep.overall.treatment.known + rep.overall.control.known
    metrics = {"members_treatment": rep.overall.treatment.members,
               "members_control": rep.overall.control.members, "pending": rep.pending,
               "offers_cost": rep.money.cost}
    for key, e in (("uplift", rep.overall.uplift), ("save_rate", rep.overall.save_rate),
                   ("churn_treatment", rep.overall.treatment.churn),
                   ("churn_control", rep.overall.control.churn),
                   ("value_saved", rep.money.value_saved), ("net", rep.money.net)):
        if e.value is not None:
            metrics.update({key: e.value, f"{key}_low": e.low, f"{key}_high": e.high})
    metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    kwargs = ({"run_id": found[0].info.run_id} if found else
              {"experiment_id": experiment_id, "run_name": f"campaign {campaign.name}",
               "tags": tags})
    with mlflow.start_run(**kwargs) as run:
        if not found:
            mlflow.log_params({"campaign_id": campaign.campaign_id, "as_of": str(campaign.as_of),
                               "horizon_days": campaign.horizon_days,
                               "control_share": campaign.control_share, "seed": campaign.seed,
                               "cut": campaign.cut[:500], "level": rep.level})
        mlflow.log_metrics(metrics, step=step)
        mlflow.log_dict(rep.to_dict(), "campaign_report.json")
        return run.info.run_id


def apply_save_rate(rep, campaign, force: bool = False) -> dict:
    """Write the suggested save rate to mlruns/settings.toml ([offer] save_rate), keeping what
    else the file holds. Refused while the save rate's interval includes 0 (the campaign has
    not shown that the calls save anyone; a 0 would stop every profit cut), unless `force`."""
    import tomllib

    from scoring.settings import written_settings_path

    s = rep.suggested_save_rate
    if not s.known:
        raise UsageError("--apply: no save rate to apply yet (needs churn from the data in both "
                         "arms, and some churn in the control arm)")
    if not force and not s.low > 0:
        raise UsageError(f"--apply: the measured save rate {s.value:.2f} has the interval "
                         f"[{s.low:.2f}, {s.high:.2f}], which includes 0: this campaign has not "
                         "shown that the calls save anyone, so the offer settings are left as "
                         "they are (--force writes it anyway)")
    path = written_settings_path(_settings().home)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--apply: {path}: not valid TOML ({exc}); fix or remove it") from None
    data.setdefault("offer", {})["save_rate"] = round(s.value, 4)
    lines = ["# Settings written by churn (campaign report --apply); environment variables "
             "(CHURN_OFFER__SAVE_RATE, ...) override them.",
             f"# offer.save_rate from campaign {campaign.campaign_id}: {s.value:.4f} "
             f"[{s.low:.4f}, {s.high:.4f}] at {100 * rep.level:g}%, "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"]
    for table, values in data.items():
        if not isinstance(values, dict):
            lines.insert(2, f"{table} = {json.dumps(values)}")
            continue
        lines += ["", f"[{table}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    message = (f"applied: offer.save_rate = {s.value:.4f} written to {path} (churn score, train "
               "and a restarted service read it)")
    if os.environ.get("CHURN_OFFER__SAVE_RATE"):
        message += "; CHURN_OFFER__SAVE_RATE is set in this environment and overrides it"
    return {"path": str(path), "save_rate": s.value, "message": message}


# -- list and simulate ----------------------------------------------------------------------------


@app.command("list")
def list_(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The campaigns in the store, newest first."""
    from campaigns.store import list_campaigns

    found = list_campaigns(_engine())
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
    import numpy as np

    from campaigns.store import campaign_members
    from features.tables import load_tables
    from simulation.generate import FAMILY, apply_treatment

    campaign = _campaign(campaign_id)
    families = _playbook(playbook_path).families
    factors = {}
    for item in effect or []:
        family, _, factor = item.partition("=")
        family = family.strip()
        try:
            factors[family] = float(factor)
        except ValueError:
            raise UsageError(f"--effect: {item!r} is not family=factor") from None
        if family not in families:
            raise UsageError(f"--effect: {family!r} is not a family of the playbook ("
                             f"{', '.join(families)})")
    members = campaign_members(_engine(), campaign.campaign_id)
    treated = members[members["arm"] == "treatment"]
    tables = load_tables(customers, events)
    as_of = pd.Timestamp(campaign.as_of)
    try:
        world_c, world_e = apply_treatment(
            tables.customers, tables.events,
            pd.DataFrame({"customer_id": treated["customer_id"].to_numpy(),
                          FAMILY: treated["action_family"].to_numpy()}),
            as_of, campaign.horizon_days, factors, seed=seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_parquet(world_c, out_dir / "customers.parquet")
    write_parquet(world_e, out_dir / "events.parquet")
    # the calls: reached at random; a reached customer says whether they stay (as the treated
    # world will have it) and, sometimes, why they thought of leaving
    rng = np.random.default_rng(seed + 1)
    ends = as_of + pd.Timedelta(days=campaign.horizon_days)
    churn = world_c.set_index("customer_id")["churned_at"].reindex(treated["customer_id"])
    leaves = ((churn > as_of) & (churn <= ends)).to_numpy()
    reached = rng.random(len(treated)) < reach
    keys = list(_playbook(playbook_path).reasons)
    reason = np.where(reached & (rng.random(len(treated)) < 0.6),
                      rng.choice(keys, len(treated)), "")
    calls = pd.DataFrame({
        "customer_id": treated["customer_id"].to_numpy(),
        "reached": np.where(reached, "yes", "no"),
        "result": np.where(~reached, "no_answer", np.where(leaves, "left", "stayed")),
        "reason": reason,
        "reason_text": np.where(reason == "other", "said so on the phone", "")})
    write_table(calls, out_dir / "calls.csv")
    saved = int((tables.customers.set_index("customer_id")["churned_at"]
                 .reindex(treated["customer_id"]).between(as_of, ends, inclusive="right")
                 ).sum() - leaves.sum())
    out.print(f"treated world -> {out_dir}/customers.parquet, events.parquet ({saved:,} of "
              f"{len(treated):,} treated customers kept by the contact); calls -> "
              f"{out_dir}/calls.csv ({int(reached.sum()):,} reached)")
