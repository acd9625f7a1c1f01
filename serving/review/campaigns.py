"""The campaign pages of /review, and a customer's campaign history for the customer page.

- `/review/campaigns`: the latest campaigns with their arms' sizes and how many outcomes are in;
- `/review/campaigns/<id>`: one campaign: its arms, the outcomes so far, the uplift with its
  interval (campaigns/report.py), churn by arm as a chart, the breakdowns by value segment and
  action family, and the reasons customers stated, with their own words.

A page says plainly when too few outcomes are in to judge: before the horizon has passed, the
data has not said who left. The routes are built by `campaign_routes` from the review app's own
page helpers (serving/review/routes.py registers them), so this module never imports the routes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape

import pandas as pd
from markupsafe import Markup
from sqlalchemy import Engine, func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from campaigns.playbook import Playbook
from campaigns.report import CampaignReport, Comparison, Estimate, campaign_report
from campaigns.store import (
    Campaign,
    campaign_members,
    campaign_members_table,
    campaign_outcomes,
    campaign_outcomes_table,
    customer_campaigns,
    get_campaign,
    list_campaigns,
)
from scoring.records import engine_for
from scoring.settings import get_settings
from serving.review.data import PageError, current_playbook
from serving.review.format import day

log = logging.getLogger(__name__)

MIN_KNOWN_PER_ARM = 30  # data outcomes per arm below which the page does not judge the uplift
LIST_LIMIT = 100  # campaigns on the list page
SAID_LIMIT = 30  # the latest outcomes with the customer's own words
MAX_ID_CHARS = 64  # the store's campaign_id column
LEVEL = 0.95
RESULT_WORDS = {"stayed": "stayed", "left": "left", "no_answer": "no answer"}
ARM_WORDS = {"treatment": "contacted", "control": "control (not contacted)"}


# -- the list ----------------------------------------------------------------------------------


def campaign_model(campaign: Campaign) -> str | None:
    """The registered model whose scores chose the campaign's customers (recorded by `churn
    campaign plan` since campaigns are kept per model); None for an older campaign."""
    name = campaign.params.get("model_name")
    return str(name) if name else None


def campaign_summaries(engine: Engine, limit: int = LIST_LIMIT) -> list[dict]:
    """The latest campaigns with their arms' sizes and outcome counts (two grouped queries),
    each with the model that chose it (`model`, None when not recorded)."""
    campaigns = list_campaigns(engine)[:limit]
    if not campaigns:
        return []
    ids = [c.campaign_id for c in campaigns]
    m, o = campaign_members_table.c, campaign_outcomes_table.c
    with engine.connect() as conn:
        arms = conn.execute(select(m.campaign_id, m.arm, func.count())
                            .where(m.campaign_id.in_(ids)).group_by(m.campaign_id, m.arm)).all()
        outs = conn.execute(select(o.campaign_id, o.source, func.count())
                            .where(o.campaign_id.in_(ids)).group_by(o.campaign_id, o.source)).all()
    size = {(c, a): n for c, a, n in arms}
    count = {(c, s): n for c, s, n in outs}
    now = datetime.now()
    return [{"campaign": c, "treatment": size.get((c.campaign_id, "treatment"), 0),
             "control": size.get((c.campaign_id, "control"), 0),
             "data": count.get((c.campaign_id, "data"), 0),
             "imported": count.get((c.campaign_id, "import"), 0),
             "ended": c.ends_at <= now, "model": campaign_model(c)} for c in campaigns]


def split_by_model(rows: list[dict], model_name: str) -> tuple[list[dict], list[dict]]:
    """(this model's campaigns, every other's): campaigns planned on another model's scores
    (the demo's, another dataset's) concern other customers and are never mixed in."""
    return ([r for r in rows if r["model"] == model_name],
            [r for r in rows if r["model"] != model_name])


# -- one campaign ------------------------------------------------------------------------------


@dataclass
class CampaignPage:
    campaign: Campaign
    report: CampaignReport
    judged: bool  # enough data outcomes in both arms to read the uplift
    verdict: str  # one sentence on what the numbers say (or why they cannot say it yet)
    chart: Markup
    said: list[dict]  # imported outcomes with the customer's own words, latest first
    standouts: str  # the breakdown rows whose uplift interval excludes zero, in a sentence
    reason_labels: dict[str, str]
    ended: bool


def _pp(e: Estimate) -> str:
    return f"{e.value * 100:+.1f} pp (from {e.low * 100:+.1f} to {e.high * 100:+.1f})"


def verdict(report: CampaignReport, campaign: Campaign, now: datetime | None = None
            ) -> tuple[bool, str]:
    """Whether the uplift can be read yet, and the sentence that says what it shows."""
    o = report.overall
    known = min(o.treatment.known, o.control.known)
    ends = day(campaign.ends_at)
    if known < MIN_KNOWN_PER_ARM or not o.uplift.known:
        when = ("the horizon ended on " + ends if campaign.ends_at <= (now or datetime.now())
                else "the horizon ends on " + ends)
        return False, (f"Too few outcomes to judge yet: {o.treatment.known:,} contacted and "
                       f"{o.control.known:,} control customers have an outcome from the data "
                       f"(at least {MIN_KNOWN_PER_ARM} in each arm are needed; {when}).")
    u = o.uplift
    level = f"{report.level:.0%}"
    if u.low > 0:
        return True, (f"The contacts lowered churn by {_pp(u)} at {level} confidence: "
                      f"{o.control.churn.value:.1%} of the control arm left, "
                      f"{o.treatment.churn.value:.1%} of those contacted.")
    if u.high < 0:
        return True, (f"Churn was higher among those contacted: uplift {_pp(u)} at {level} "
                      "confidence.")
    return True, (f"No effect shown: the uplift is {_pp(u)} at {level} confidence, an interval "
                  "that includes zero. That does not show the contacts did nothing: every value "
                  f"in the interval fits these {o.treatment.known:,} contacted and "
                  f"{o.control.known:,} control customers.")


def standouts(report: CampaignReport) -> str:
    """The breakdown rows (value segments, actions) whose uplift interval excludes zero, with the
    caveat that some of many rows do so by chance; "" when none does or nothing is known."""
    rows = [*(("value segment " + g.label, g) for g in report.by_value_segment),
            *(("action " + g.label, g) for g in report.by_action_family)]
    known = [(name, g) for name, g in rows if g.uplift.known]
    clear = [f"{name} ({_pp(g.uplift)})" for name, g in known
             if g.uplift.low > 0 or g.uplift.high < 0]
    if not clear:
        return ""
    return (f"Of the {len(known)} breakdown rows, the uplift's interval excludes zero for "
            f"{'; '.join(clear)}. With this many rows one can do so by chance: confirm it with "
            "the next campaign before relying on it.")


def churn_by_arm_svg(sections: list[tuple[str, list[Comparison]]], level: float = LEVEL
                     ) -> Markup:
    """Churn rate of each arm with its interval: per section (all members, value segments,
    actions) a heading, then per group a row for each arm with a dot for the rate and a whisker
    for the interval."""
    label_w, plot_w, value_w, row_h, head_h, gap, top = 200, 420, 190, 18, 20, 8, 30
    groups = [g for _, gs in sections for g in gs]
    highs = [a.churn.high for g in groups for a in (g.treatment, g.control) if a.churn.known]
    hi = max([0.05, *highs])
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25) if hi <= 5 * s)
    hi = min(1.0, step * -(-hi // step))
    width = label_w + plot_w + value_w
    height = top + sum(head_h + len(gs) * (2 * row_h + gap) for _, gs in sections) + 6

    def x(p: float) -> float:
        return label_w + plot_w * min(max(p, 0.0), hi) / hi

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart arms" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Churn rate by arm with {level:.0%} intervals">']
    k = 0
    while k * step <= hi + 1e-9:
        t = k * step
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 8}" x2="{x(t):.1f}" y2="{height - 6}" '
                     f'class="grid"/><text x="{x(t):.1f}" y="{top - 12}" class="tick" '
                     f'text-anchor="middle">{t * 100:g}%</text>')
        k += 1
    y0 = top
    for heading, gs in sections:
        parts.append(f'<text x="8" y="{y0 + 14}" class="label heading">{escape(heading)}</text>')
        y0 += head_h
        for g in gs:
            for j, arm in enumerate(("treatment", "control")):
                parts.append(_arm_row(g.label if j == 0 else "", g.label, arm, getattr(g, arm),
                                      y0 + j * row_h + row_h / 2, x, label_w, plot_w))
            y0 += 2 * row_h + gap
    parts.append("</svg>")
    return Markup("".join(parts))


def _arm_row(shown: str, group: str, arm: str, a, y: float, x: Callable[[float], float],
             label_w: int, plot_w: int) -> str:
    name = f"{group}: {ARM_WORDS[arm]}"
    out = [f'<g class="arm {arm}"><text x="{label_w - 70}" y="{y + 4:.1f}" text-anchor="end" '
           f'class="label">{escape(shown[:24])}</text><text x="{label_w - 8}" y="{y + 4:.1f}" '
           f'text-anchor="end" class="tick">{"contacted" if arm == "treatment" else "control"}'
           '</text>']
    if a.churn.known:
        c = a.churn
        lo, hi, mid = x(c.low), x(c.high), x(c.value)
        out.append(f'<title>{escape(name)}: {a.churned:,} of {a.known:,} left, {c.value:.1%} '
                   f'({c.low:.1%} to {c.high:.1%})</title>'
                   f'<line x1="{lo:.1f}" y1="{y:.1f}" x2="{hi:.1f}" y2="{y:.1f}" class="whisker"/>'
                   f'<line x1="{lo:.1f}" y1="{y - 4:.1f}" x2="{lo:.1f}" y2="{y + 4:.1f}" '
                   f'class="whisker"/><line x1="{hi:.1f}" y1="{y - 4:.1f}" x2="{hi:.1f}" '
                   f'y2="{y + 4:.1f}" class="whisker"/>'
                   f'<circle cx="{mid:.1f}" cy="{y:.1f}" r="4.5" class="dot"/>'
                   f'<text x="{label_w + plot_w + 8}" y="{y + 4:.1f}" class="value">'
                   f'{c.value:.1%} ({a.churned:,}/{a.known:,})</text>')
    else:
        out.append(f'<title>{escape(name)}: no outcome yet</title><text x="{label_w + plot_w + 8}" '
                   f'y="{y + 4:.1f}" class="tick">no outcome yet</text>')
    out.append("</g>")
    return "".join(out)


def _said(outcomes: pd.DataFrame, labels: dict[str, str], limit: int = SAID_LIMIT) -> list[dict]:
    if outcomes.empty:
        return []
    imported = outcomes[outcomes["source"] == "import"]
    stated = imported[imported["reason_text"].fillna("").str.strip() != ""]
    stated = stated.sort_values("recorded_at", ascending=False, kind="stable").head(limit)
    return [{"customer_id": str(r.customer_id), "when": day(r.recorded_at),
             "result": RESULT_WORDS.get(r.result, r.result),
             "reason": labels.get(r.reason, r.reason) if isinstance(r.reason, str) else "",
             "text": r.reason_text or ""} for r in stated.itertuples()]


def campaign_page_view(engine: Engine, campaign_id: str, playbook: Playbook, offer_cost: float,
                       save_rate: float | None, now: datetime | None = None) -> CampaignPage:
    campaign = get_campaign(engine, campaign_id)
    if campaign is None:
        raise PageError(404, "Unknown campaign", f"There is no campaign {campaign_id!r}.")
    members = campaign_members(engine, campaign_id)
    outcomes = campaign_outcomes(engine, campaign_id)
    labels = {k: r.label for k, r in playbook.reasons.items()}
    # priced as planned (as `churn campaign report` does), not at today's offer settings
    offer_cost = float((campaign.params or {}).get("offer_cost", offer_cost))
    report = campaign_report(members, outcomes, LEVEL, offer_cost=offer_cost,
                             current_save_rate=save_rate, reason_labels=labels)
    judged, sentence = verdict(report, campaign, now)
    sections = [("All members", [report.overall]), ("By value segment", report.by_value_segment),
                ("By action", report.by_action_family)]
    return CampaignPage(campaign, report, judged, sentence,
                        churn_by_arm_svg([s for s in sections if s[1]], LEVEL),
                        _said(outcomes, labels), standouts(report) if judged else "", labels,
                        campaign.ends_at <= (now or datetime.now()))


# -- the customer page's history ---------------------------------------------------------------


def customer_history(engine: Engine, customer_id: str, playbook: Playbook,
                     model_name: str | None = None) -> list[dict]:
    """The customer's campaigns for the customer page, newest first: arm, action, and each
    outcome (what the call centre recorded, what the data says) with what they said. With
    `model_name`, campaigns recorded for another model (another dataset's customer with the
    same id) are left out."""
    labels = {k: r.label for k, r in playbook.reasons.items()}
    out = []
    for c in customer_campaigns(engine, customer_id):
        recorded = json.loads(c.get("params") or "{}").get("model_name")
        if model_name is not None and recorded not in (None, model_name):
            continue
        family = playbook.families.get(c["action_family"])
        outcomes = [{"source": "call centre" if o["source"] == "import" else "the data",
                     "result": RESULT_WORDS.get(o["result"], o["result"]),
                     "reached": o["reached"],
                     "reason": labels.get(o["reason"], o["reason"]) if o["reason"] else "",
                     "text": o["reason_text"] or "", "when": day(o["recorded_at"])}
                    for o in c["outcomes"]]
        out.append({"campaign_id": c["campaign_id"], "name": c["name"], "as_of": day(c["as_of"]),
                    "arm": ARM_WORDS.get(c["arm"], c["arm"]), "treated": c["arm"] == "treatment",
                    "action": family.title if family else c["action_family"],
                    "outcomes": outcomes})
    return out


def history_or_none(settings, customer_id: str, playbook: Playbook) -> list[dict] | None:
    """The history, or None when the store cannot be read (the page is useful without it)."""
    try:
        return customer_history(engine_for(settings), customer_id, playbook,
                                settings.model_name)
    except Exception:
        log.exception("the campaign history of %r could not be read", customer_id)
        return None


# -- routes ------------------------------------------------------------------------------------


def _no_params(request: Request) -> None:
    if request.query_params:
        name = next(iter(request.query_params))
        raise PageError(400, "Unknown parameter", f"This page takes no parameters, not {name!r}.")


def _engine(settings) -> Engine:
    try:
        return engine_for(settings)
    except Exception as exc:
        log.exception("the store is not available")
        raise PageError(503, "Store not available",
                        f"The campaign records cannot be read ({type(exc).__name__}).") from None


def campaign_routes(page: Callable, render: Callable[..., Response],
                    base_of: Callable[[Request], str]) -> list[Route]:
    """The campaign routes, wrapped in the review app's `page` error handling and rendered with
    its `render`."""

    @page
    def campaigns_list(request: Request) -> Response:
        _no_params(request)
        settings = get_settings()
        rows = campaign_summaries(_engine(settings))
        mine, others = split_by_model(rows, settings.model_name)
        return render("campaigns.html", base=base_of(request), rows=rows, mine=mine,
                      others=others, model_name=settings.model_name, limit=LIST_LIMIT)

    @page
    def campaign_detail(request: Request) -> Response:
        _no_params(request)
        campaign_id = request.path_params["campaign_id"]
        if not campaign_id or len(campaign_id) > MAX_ID_CHARS:
            raise PageError(404, "Unknown campaign", "A campaign id has 1 to "
                            f"{MAX_ID_CHARS} characters.")
        settings = get_settings()
        view = campaign_page_view(_engine(settings), campaign_id, current_playbook(settings),
                                  settings.offer.cost, settings.offer.save_rate)
        return render("campaign.html", base=base_of(request), view=view,
                      min_known=MIN_KNOWN_PER_ARM, currency=settings.review_currency)

    return [Route("/campaigns", campaigns_list, methods=["GET"], name="campaigns"),
            Route("/campaigns/{campaign_id:path}", campaign_detail, methods=["GET"],
                  name="campaign")]
