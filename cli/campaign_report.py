"""`churn campaign report`: what a campaign achieved, in tables, logged to MLflow
(campaigns/report.py and campaigns/tracking.py do the work). Registered on the campaign group
from cli/main.py."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.campaign import CampaignOpt, PlaybookOpt, find_campaign, playbook_at, store_engine
from cli.common import UsageError, out, print_json, print_note, print_table
from scoring.settings import get_settings


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
    from campaigns.apply import ApplyError, apply_save_rate
    from campaigns.report import campaign_report
    from campaigns.store import campaign_members, campaign_outcomes
    from campaigns.tracking import log_report

    campaign = find_campaign(campaign_id)
    campaign_id = campaign.campaign_id
    settings = get_settings()
    db = store_engine()
    playbook = playbook_at(playbook_path)
    rep = campaign_report(campaign_members(db, campaign_id), campaign_outcomes(db, campaign_id),
                          level=level, offer_cost=float(campaign.params.get("offer_cost",
                                                                            settings.offer.cost)),
                          current_save_rate=settings.offer.save_rate,
                          reason_labels={k: r.label for k, r in playbook.reasons.items()})
    logged = None if no_mlflow else log_report(settings, campaign, rep)
    if not no_mlflow and logged is None:
        print_note(f"model version {campaign.model_version} is not in the "
                  "registry: the report is not logged to MLflow")
    applied = None
    if apply:
        try:
            applied = apply_save_rate(settings, rep, campaign.campaign_id, force)
        except ApplyError as exc:
            raise UsageError(f"--apply: {exc}") from None
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
