"""The reviewer web page, mounted on the service at /review: server-rendered HTML, no build step.

- `/review/`: the customers of the latest scored batch (a `churn score` Parquet), ranked by
  expected value at risk, filterable by risk band and any categorical attribute.
- `/review/customer/<id>`: probability and band, the top reasons as sentences, a waterfall of
  the explanation in probability terms, the recent interaction timeline with warning signs, the
  suggested retention action from the playbook, and the model version.

Configuration (environment, prefix CHURN_REVIEW_): SCORES (the scores Parquet), CUSTOMERS and
EVENTS (the data files, for the explanation and the timeline), PLAYBOOK (default
serving/playbook.toml). Files are read once and again only when they change.

The logic is in pure functions (frames in, data or HTML out); the handlers at the bottom only
parse the request, call them and render a template. Every template autoescapes: customer
attributes are untrusted text.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from features.contract import CUSTOMER_ID, EVENT_TYPE, TIMESTAMP, DataError, Tables, load_tables
from features.settings import get_settings
from serving.playbook import (
    DEFAULT_PATH,
    FamilyMatch,
    Offer,
    OfferDecision,
    Playbook,
    PlaybookError,
    family_for,
    load_playbook,
    offer_decision,
    sign_for,
)
from serving.predictor import LoadedModel, explain_features, features_at
from serving.reasons import render_reason

log = logging.getLogger(__name__)

BANDS = ("high", "medium", "low")
RESERVED_PARAMS = frozenset({"band", "limit"})
SCORE_COLUMNS = ("customer_id", "churn_probability", "risk_band", "as_of", "reason_1_feature",
                 "reason_1_text", "model_version")
SCORE_COMMAND = ("churn score --customers data/customers.parquet --events data/events.parquet "
                 "--as-of 2026-06-30 --out scores.parquet --value-column amount_sum_30d")


class ReviewSettings(BaseSettings):
    """Where the reviewer page reads its data. Environment variables override (CHURN_REVIEW_)."""

    model_config = SettingsConfigDict(env_prefix="CHURN_REVIEW_", frozen=True)

    scores: Path | None = Field(None, description="Scores Parquet written by `churn score`.")
    customers: Path | None = Field(None, description="Customers file (CSV or Parquet).")
    events: Path | None = Field(None, description="Events file (CSV or Parquet).")
    playbook: Path = DEFAULT_PATH
    page_size: int = Field(50, gt=0)
    max_page_size: int = Field(1000, gt=0)
    waterfall_steps: int = Field(10, gt=0)

    @field_validator("scores", "customers", "events", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


@lru_cache(maxsize=1)
def get_review_settings() -> ReviewSettings:
    return ReviewSettings()


class PageError(Exception):
    """A problem to show as a friendly HTML page with this status."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


# ---------------------------------------------------------------------------------------------
# Data: loaded once, again when the file changes
# ---------------------------------------------------------------------------------------------


class FileCache:
    """The result of `load(*paths)`, recomputed only when a file's modification time changes."""

    def __init__(self, load: Callable[..., Any]):
        self._load = load
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: Any = None

    def get(self, *paths: Path) -> Any:
        try:
            key = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
        except OSError as exc:
            raise PageError(503, "Data not available",
                            f"Cannot read {exc.filename}: {exc.strerror}.") from None
        with self._lock:
            if key != self._key:
                self._value = self._load(*paths)
                self._key = key
            return self._value


def read_scores(path: Path) -> pd.DataFrame:
    """A scores Parquet from `churn score`, checked for the columns the page needs."""
    try:
        scores = pd.read_parquet(path)
    except Exception as exc:
        raise PageError(503, "Scores not readable", f"{path.name}: {exc}") from None
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise PageError(503, "Not a scores file",
                        f"{path.name} lacks the column {missing[0]!r}; write it with `churn score`.")
    return scores.assign(customer_id=scores[CUSTOMER_ID].astype(str))


@dataclass
class Data:
    """Validated tables with each customer's event rows found once."""

    tables: Tables
    event_rows: dict[str, np.ndarray]

    def customer(self, customer_id: str) -> pd.DataFrame:
        c = self.tables.customers
        return c[c[CUSTOMER_ID] == customer_id]

    def events_of(self, customer_id: str) -> pd.DataFrame:
        rows = self.event_rows.get(customer_id)
        events = self.tables.events
        return events.iloc[rows] if rows is not None else events.iloc[:0]


def read_data(customers: Path, events: Path) -> Data:
    try:
        tables = load_tables(customers, events)
    except (DataError, OSError) as exc:
        raise PageError(503, "Data not readable", str(exc)) from None
    return Data(tables, tables.events.groupby(CUSTOMER_ID, sort=False).indices)


_scores_cache = FileCache(read_scores)
_data_cache = FileCache(read_data)
_playbook_cache = FileCache(load_playbook)


def current_playbook(settings: ReviewSettings) -> Playbook:
    try:
        return _playbook_cache.get(settings.playbook)
    except PlaybookError as exc:
        raise PageError(500, "The playbook has a mistake", str(exc)) from None


def current_data(settings: ReviewSettings) -> Data | None:
    if settings.customers is None or settings.events is None:
        return None
    return _data_cache.get(settings.customers, settings.events)


def served_model() -> LoadedModel:
    """The model the service holds right now (it swaps in new versions without a restart)."""
    import bentoml

    try:
        return bentoml.get_current_service().holder.current
    except Exception as exc:
        raise PageError(503, "No model", f"The service has no model loaded yet ({exc}).") from None


# ---------------------------------------------------------------------------------------------
# The at-risk list
# ---------------------------------------------------------------------------------------------


def segment_levels(customers: pd.DataFrame | None, categorical: tuple[str, ...],
                   max_levels: int = 200) -> dict[str, list[str]]:
    """Each categorical attribute that can filter the list, with its levels."""
    if customers is None:
        return {}
    out = {}
    for col in categorical:
        if col in RESERVED_PARAMS or col not in customers.columns:
            continue
        levels = sorted(customers[col].dropna().astype(str).unique())
        out[col] = levels[:max_levels] if len(levels) > max_levels else levels
    return out


@dataclass(frozen=True)
class ListQuery:
    band: str | None = None
    segments: dict[str, str] = field(default_factory=dict)
    limit: int = 50

    def params(self, **change: object) -> str:
        items = {"band": self.band, **self.segments, "limit": self.limit, **change}
        return urlencode({k: v for k, v in items.items() if v not in (None, "")})


def parse_list_query(params: Mapping[str, str], segments: Mapping[str, list[str]],
                     default_limit: int = 50, max_limit: int = 1000) -> ListQuery:
    """Risk band, segment filters and page size from the query string; PageError(400) if bad.

    An empty value means no filter (what the filter form sends for "any")."""
    unknown = [k for k in params if k not in RESERVED_PARAMS and k not in segments]
    if unknown:
        known = ", ".join(["band", "limit", *segments])
        raise PageError(400, "Unknown filter", f"There is no filter {unknown[0]!r}. Filters: {known}.")
    band = params.get("band", "").strip().lower() or None
    if band is not None and band not in BANDS:
        raise PageError(400, "Unknown risk band",
                        f"band={params['band']!r} is not a risk band; use high, medium or low.")
    limit_text = params.get("limit", "").strip()
    if limit_text:
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= max_limit:
            raise PageError(400, "Bad limit",
                            f"limit={params['limit']!r} must be a whole number from 1 to {max_limit}.")
        limit = int(limit_text)
    else:
        limit = default_limit
    chosen = {}
    for name, levels in segments.items():
        value = params.get(name, "")
        if value == "":
            continue
        if value not in levels:
            shown = ", ".join(levels[:20]) + (", ..." if len(levels) > 20 else "")
            raise PageError(400, "Unknown segment",
                            f"{name}={value!r} matches no customer; {name} is one of: {shown}.")
        chosen[name] = value
    return ListQuery(band, chosen, limit)


@dataclass
class AtRiskList:
    rows: list[dict]
    matching: int
    scored: int
    by_value: bool  # ranked by expected value at risk (else by probability)
    as_of: str
    model_versions: list[str]
    band_counts: dict[str, int]


def at_risk_list(scores: pd.DataFrame, customers: pd.DataFrame | None, segments: list[str],
                 query: ListQuery, playbook: Playbook) -> AtRiskList:
    """The scored customers that pass the filters, ranked by expected value at risk."""
    frame = scores
    if customers is not None and segments:
        attrs = customers[[CUSTOMER_ID, *segments]].drop_duplicates(CUSTOMER_ID)
        frame = frame.merge(attrs, on=CUSTOMER_ID, how="left")
    keep = np.ones(len(frame), dtype=bool)
    if query.band:
        keep &= (frame["risk_band"] == query.band).to_numpy()
    for name, value in query.segments.items():
        keep &= (frame[name].astype(object) == value).fillna(False).to_numpy(dtype=bool)
    frame = frame[keep]
    by_value = "expected_value_at_risk" in frame.columns
    order = ["expected_value_at_risk", "churn_probability"] if by_value else ["churn_probability"]
    frame = frame.sort_values([*order, CUSTOMER_ID], ascending=[*([False] * len(order)), True],
                              kind="stable")
    rows = []
    for rec in frame.head(query.limit).to_dict("records"):
        reasons = [rec.get(f"reason_{i}_feature") for i in (1, 2, 3)]
        rows.append({
            "customer_id": rec[CUSTOMER_ID],
            "probability": float(rec["churn_probability"]),
            "band": rec["risk_band"],
            "value": _num(rec.get("customer_value")),
            "at_risk": _num(rec.get("expected_value_at_risk")),
            "reason": rec.get("reason_1_text") or "",
            "family": family_for(playbook, reasons).family.title,
            "segments": {s: _text(rec.get(s)) for s in segments},
        })
    as_of = pd.to_datetime(scores["as_of"])
    return AtRiskList(
        rows=rows, matching=len(frame), scored=len(scores), by_value=by_value,
        as_of=", ".join(sorted({_day(t) for t in as_of.dropna().unique()})),
        model_versions=sorted(scores["model_version"].astype(str).unique()),
        band_counts={b: int((scores["risk_band"] == b).sum()) for b in BANDS},
    )


def _num(value: object) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _text(value: object) -> str:
    """A cell as text; missing values (None, NaN, NaT, NA) are empty."""
    missing = pd.isna(value)
    return "" if isinstance(missing, bool | np.bool_) and missing else str(value)


def _shown(value: object) -> str:
    """An attribute for people: whole numbers without .0, dates as days."""
    if isinstance(value, pd.Timestamp):
        return _day(value)
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return _text(value)


def _day(ts: object) -> str:
    t = pd.Timestamp(ts)
    return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------------------------
# The customer view: explanation, waterfall, timeline, suggested action
# ---------------------------------------------------------------------------------------------


@dataclass
class Explanation:
    features: pd.DataFrame  # one feature row
    contributions: np.ndarray  # per feature, log-odds; base value last
    probability: float
    band: str
    reasons: list[dict]


def explain_customer(loaded: LoadedModel, customer: pd.DataFrame, events: pd.DataFrame,
                     as_of: pd.Timestamp, top_k: int, bands: tuple[float, float]
                     ) -> Explanation | None:
    """Recompute one customer's features and explanation with the given model; None when the
    customer is not active at `as_of`."""
    feats = features_at(loaded, customer, events, as_of)
    if feats.empty:
        return None
    scores = explain_features(loaded, feats, top_k, bands)
    return Explanation(feats, scores.contributions[0],
                       float(scores.frame["churn_probability"].iloc[0]),
                       str(scores.frame["risk_band"].iloc[0]), scores.reasons[0])


@dataclass(frozen=True)
class Step:
    label: str
    detail: str
    start: float  # probability before this step
    end: float  # probability after it


def waterfall_steps(loaded: LoadedModel, explanation: Explanation, max_steps: int = 10
                    ) -> tuple[float, list[Step], float]:
    """The explanation in probability terms: (base probability, steps, final probability).

    TreeSHAP contributions are log-odds. They are added to the base value one at a time,
    largest first (the rest as one step), and every running total goes through the model's
    own calibration (sigmoid, then the calibration map), so the last step ends exactly at the
    calibrated probability."""
    model = loaded.model
    contrib = explanation.contributions
    phi, base = contrib[:-1], float(contrib[-1])
    order = [int(i) for i in np.argsort(-np.abs(phi), kind="stable") if phi[i] != 0]
    shown, rest = order[:max_steps], order[max_steps:]
    values = explanation.features[model.feature_names].to_numpy(dtype=object)[0]
    raw = base
    p_base = float(model.calibrate(np.array([base]))[0])
    prev = p_base
    steps = []
    for j in shown:
        name = model.feature_names[j]
        raw += float(phi[j])
        p = float(model.calibrate(np.array([raw]))[0])
        template = model.reason_texts.get(name, {"kind": "plain", "text": name + " = {v}"})
        value = values[j]
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
        steps.append(Step(render_reason(template, value),
                          f"{name} = {_text(value) or 'missing'}; {phi[j]:+.3f} log-odds", prev, p))
        prev = p
    if rest:
        raw += float(sum(phi[j] for j in rest))
        p = float(model.calibrate(np.array([raw]))[0])
        steps.append(Step(f"{len(rest)} other features", f"{sum(phi[j] for j in rest):+.3f} log-odds",
                          prev, p))
        prev = p
    return p_base, steps, prev


def _axis(top: float) -> tuple[float, float]:
    """A round upper end and tick step (at most 5 steps) for probabilities up to `top`."""
    for step in (0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25):
        if top <= 5 * step:
            break
    return min(1.0, max(step, math.ceil(top / step - 1e-9) * step)), step


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def waterfall_svg(p_base: float, steps: list[Step], p_final: float) -> Markup:
    """An inline SVG waterfall: base probability, one bar per step, the customer's probability."""
    label_w, plot_w, value_w, row_h, top = 380, 330, 80, 24, 28
    rows = [("Average customer (base value)", "the model's expected score", 0.0, p_base, "base")]
    rows += [(s.label, s.detail, s.start, s.end, "up" if s.end >= s.start else "down") for s in steps]
    rows.append(("This customer", "calibrated churn probability", 0.0, p_final, "total"))
    hi, step = _axis(max(max(r[2], r[3]) for r in rows) * 1.03)
    width, height = label_w + plot_w + value_w, top + row_h * len(rows) + 8

    def x(p: float) -> float:
        return label_w + plot_w * min(max(p, 0.0), hi) / hi

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart waterfall" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Waterfall of the churn probability, from {p_base:.1%} to {p_final:.1%}">']
    for k in range(round(hi / step) + 1):
        t = k * step
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 8}" '
                     f'class="grid"/><text x="{x(t):.1f}" y="{top - 10}" class="tick" '
                     f'text-anchor="middle">{t * 100:g}%</text>')
    for i, (label, detail, start, end, kind) in enumerate(rows):
        y = top + i * row_h
        lo, hi_x = sorted((x(start), x(end)))
        delta = end - start
        value = f"{end:.1%}" if kind in ("base", "total") else f"{delta * 100:+.1f} pp"
        parts.append(
            f'<g class="step {kind}"><title>{escape(label)} ({escape(detail)}): '
            f'{start:.2%} → {end:.2%}</title>'
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="label">'
            f'{escape(_clip(label, 56))}</text>'
            f'<rect x="{lo:.1f}" y="{y + 4}" width="{max(hi_x - lo, 1.5):.1f}" height="{row_h - 8}"/>'
            f'<text x="{label_w + plot_w + 6}" y="{y + 16}" class="value">{escape(value)}</text></g>')
        if 0 < i < len(rows) - 1:  # connector to the next bar
            parts.append(f'<line x1="{x(end):.1f}" y1="{y + row_h - 4}" x2="{x(end):.1f}" '
                         f'y2="{y + row_h + 4}" class="connector"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass
class Week:
    start: pd.Timestamp
    activity: int
    thinning: bool


@dataclass
class SignEvent:
    at: pd.Timestamp
    event_type: str
    sign: str
    label: str


@dataclass
class SignSummary:
    sign: str
    label: str
    recent: int  # in the last 30 days
    earlier: int  # in the 30 days before
    total: int  # in the whole timeline

    @property
    def rising(self) -> bool:
        return self.recent > self.earlier


@dataclass
class TimelineData:
    start: pd.Timestamp
    as_of: pd.Timestamp
    weeks: list[Week]
    signs: list[SignEvent]
    summaries: list[SignSummary]
    activity_types: list[str]

    @property
    def thinning_weeks(self) -> int:
        return sum(w.thinning for w in self.weeks)


def customer_timeline(events: pd.DataFrame, as_of: pd.Timestamp, playbook: Playbook) -> TimelineData:
    """The last `timeline.days` before as_of: weekly activity (event types that are no warning
    sign), weeks where it thins out, and the warning-sign events (event types mapped by the
    playbook's patterns)."""
    cfg = playbook.timeline
    start = as_of - timedelta(days=cfg.days)
    n_weeks = cfg.days // 7
    lookback = 4
    first = as_of - timedelta(days=7 * (n_weeks + lookback))
    ev = events[(events[TIMESTAMP] >= min(first, start)) & (events[TIMESTAMP] < as_of)]
    types = ev[EVENT_TYPE].astype(str)
    sign_of = {t: sign_for(playbook, t) for t in types.unique()}
    is_sign = types.map(sign_of).notna().to_numpy(dtype=bool)
    activity = ev[~is_sign]
    ages = ((as_of - activity[TIMESTAMP]) / timedelta(days=7)).to_numpy()  # weeks before as_of
    counts = np.bincount(np.floor(ages).astype(int), minlength=n_weeks + lookback)[: n_weeks + lookback]
    weeks = []
    for k in range(n_weeks - 1, -1, -1):  # oldest first
        before = counts[k + 1: k + 1 + lookback]
        # only against a habit of at least one event a week, so sporadic users do not flicker
        thin = bool(before.mean() >= 1 and counts[k] < cfg.thinning_ratio * before.mean())
        weeks.append(Week(as_of - timedelta(days=7 * (k + 1)), int(counts[k]), thin))
    shown = ev[is_sign & (ev[TIMESTAMP] >= start).to_numpy()]
    signs = [SignEvent(t, str(e), sign_of[str(e)], cfg.signs[sign_of[str(e)]].label)
             for t, e in zip(shown[TIMESTAMP], shown[EVENT_TYPE])]
    month = timedelta(days=30)
    summaries = []
    for name, sign in cfg.signs.items():
        times = [s.at for s in signs if s.sign == name]
        summaries.append(SignSummary(
            name, sign.label, sum(t >= as_of - month for t in times),
            sum(as_of - 2 * month <= t < as_of - month for t in times), len(times)))
    recent_activity = activity[activity[TIMESTAMP] >= start][EVENT_TYPE].astype(str)
    return TimelineData(start, as_of, weeks, signs, summaries,
                        sorted(recent_activity.unique()))


SIGN_COLOURS = ("#b45309", "#b91c1c", "#7c3aed", "#0f766e", "#be185d", "#1d4ed8")


def timeline_svg(data: TimelineData) -> Markup:
    """Weekly activity bars (thinning weeks marked) above one lane of markers per warning sign."""
    left, plot_w, right, bars_h, lane_h, top = 230, 560, 30, 90, 22, 14
    width = left + plot_w + right
    height = top + bars_h + 24 + lane_h * len(data.summaries) + 24
    span = (data.as_of - data.start) / timedelta(days=1)

    def x(ts: pd.Timestamp) -> float:
        return left + plot_w * ((ts - data.start) / timedelta(days=1)) / span

    peak = max([w.activity for w in data.weeks] + [1])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" role="img" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'aria-label="Interaction timeline of the last {span:.0f} days">',
             f'<text x="{left - 8}" y="{top + 12}" text-anchor="end" class="label">Activity per week'
             f'</text><text x="{left - 8}" y="{top + 26}" text-anchor="end" class="tick">'
             f'peak {peak}</text>']
    base_y = top + bars_h
    for w in data.weeks:
        x0, x1 = x(w.start), x(w.start + timedelta(days=7))
        h = bars_h * w.activity / peak
        kind = "week thin" if w.thinning else "week"
        note = " (thinning out)" if w.thinning else ""
        parts.append(f'<rect class="{kind}" x="{x0 + 1:.1f}" y="{base_y - h:.1f}" '
                     f'width="{max(x1 - x0 - 2, 1):.1f}" height="{max(h, 0.5):.1f}"><title>week of '
                     f'{w.start:%Y-%m-%d}: {w.activity} activity events{note}</title></rect>')
        if w.thinning:  # visible even when the week is empty
            parts.append(f'<rect class="week thin" x="{x0 + 1:.1f}" y="{base_y + 1}" '
                         f'width="{max(x1 - x0 - 2, 1):.1f}" height="4"/>')
    parts.append(f'<line x1="{left}" y1="{base_y}" x2="{left + plot_w}" y2="{base_y}" class="axis"/>')
    for k in range(0, int(span) + 1, 30):  # month ticks counted back from as_of
        t = data.as_of - timedelta(days=k)
        parts.append(f'<text x="{x(t):.1f}" y="{base_y + 16}" text-anchor="middle" class="tick">'
                     f'{t:%b %d}</text>')
    lane0 = base_y + 24
    for i, lane in enumerate(data.summaries):
        y = lane0 + i * lane_h + lane_h / 2
        colour = SIGN_COLOURS[i % len(SIGN_COLOURS)]
        events = [s for s in data.signs if s.sign == lane.sign]
        parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" class="label">'
                     f'{escape(_clip(lane.label, 34))}</text><line x1="{left}" y1="{y:.1f}" '
                     f'x2="{left + plot_w}" y2="{y:.1f}" class="lane"/>')
        for s in events:
            parts.append(f'<circle class="sign" cx="{x(s.at):.1f}" cy="{y:.1f}" r="5" '
                         f'fill="{colour}"><title>{s.at:%Y-%m-%d %H:%M}: {escape(s.event_type)}'
                         f'</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass
class CustomerView:
    customer_id: str
    as_of: str
    attributes: dict[str, str]
    probability: float
    band: str
    reasons: list[dict]
    waterfall: Markup
    timeline: Markup
    timeline_data: TimelineData
    family: FamilyMatch
    offer: OfferDecision
    offer_rule: Offer
    model_version: str
    batch: dict | None  # the customer's row in the scored batch, when there is one


def customer_view(loaded: LoadedModel, data: Data, customer_id: str, as_of: pd.Timestamp,
                  playbook: Playbook, batch_row: dict | None, top_k: int = 3,
                  bands: tuple[float, float] = (0.1, 0.3), max_steps: int = 10) -> CustomerView:
    """Everything the customer page shows. PageError(404) for an unknown or inactive customer."""
    customer = data.customer(customer_id)
    if customer.empty:
        raise PageError(404, "Unknown customer", f"There is no customer {customer_id!r} in the data.")
    events = data.events_of(customer_id)
    explanation = explain_customer(loaded, customer, events, as_of, top_k, bands)
    if explanation is None:
        raise PageError(404, "Customer not active",
                        f"Customer {customer_id!r} was not active at {_day(as_of)}.")
    p_base, steps, p_final = waterfall_steps(loaded, explanation, max_steps)
    timeline = customer_timeline(events, as_of, playbook)
    family = family_for(playbook, [r["feature"] for r in explanation.reasons])
    value_col = playbook.offer.value_column
    value = (_num(explanation.features[value_col].iloc[0])
             if value_col in explanation.features.columns else None)
    attrs = {a: _shown(customer[a].iloc[0]) for a in data.tables.attributes.all
             if a in customer.columns}
    return CustomerView(
        customer_id=customer_id, as_of=_day(as_of), attributes=attrs,
        probability=explanation.probability, band=explanation.band,
        reasons=explanation.reasons, waterfall=waterfall_svg(p_base, steps, p_final),
        timeline=timeline_svg(timeline), timeline_data=timeline,
        family=family, offer=offer_decision(playbook.offer, explanation.probability, value),
        offer_rule=playbook.offer,
        model_version=str(loaded.version or loaded.uri), batch=batch_row,
    )


# ---------------------------------------------------------------------------------------------
# Rendering and handlers
# ---------------------------------------------------------------------------------------------

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True, lstrip_blocks=True,
)
_templates.filters.update(
    pct=lambda v: "" if v is None else f"{v:.1%}",
    money=lambda v: "–" if v is None else f"{v:,.2f}",
    day=_day,
    quote=lambda v: quote(str(v), safe=""),
)


def render(template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status_code)


def error_page(status: int, title: str, message: str, base: str = "") -> HTMLResponse:
    return render("error.html", status, title=title, message=message, status=status, base=base)


def _base(request: Request) -> str:
    """The path the review app is mounted at (e.g. /review), for links."""
    return request.scope.get("root_path", "").rstrip("/")


def _page(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """Turn PageError into its friendly page and anything unexpected into a plain 500 page."""

    def run(request: Request) -> Response:
        try:
            return handler(request)
        except PageError as exc:
            return error_page(exc.status, exc.title, exc.message, _base(request))
        except Exception:
            log.exception("review page %s failed", request.url.path)
            return error_page(500, "Something went wrong",
                              "The page could not be built. The error is in the service log.",
                              _base(request))

    run.__name__ = handler.__name__
    return run


def _scores_or_none(settings: ReviewSettings) -> pd.DataFrame | None:
    return None if settings.scores is None else _scores_cache.get(settings.scores)


@_page
def list_page(request: Request) -> Response:
    settings = get_review_settings()
    base = _base(request)
    scores = _scores_or_none(settings)
    if scores is None:
        return render("no_scores.html", base=base, command=SCORE_COMMAND)
    playbook = current_playbook(settings)
    data = current_data(settings)
    customers = data.tables.customers if data else None
    levels = segment_levels(customers, data.tables.attributes.categorical if data else ())
    query = parse_list_query(request.query_params, levels, settings.page_size, settings.max_page_size)
    view = at_risk_list(scores, customers, list(levels), query, playbook)
    return render("list.html", base=base, view=view, query=query, levels=levels, bands=BANDS,
                  scores_name=settings.scores.name, has_data=data is not None)


@_page
def customer_page(request: Request) -> Response:
    settings = get_review_settings()
    customer_id = request.path_params["customer_id"]
    extra = [k for k in request.query_params if k != "as_of"]
    if extra:
        raise PageError(400, "Unknown parameter", f"The customer page takes only as_of, not {extra[0]!r}.")
    scores = _scores_or_none(settings)
    batch_row = None
    if scores is not None:
        match = scores[scores[CUSTOMER_ID] == customer_id]
        batch_row = match.iloc[0].to_dict() if len(match) else None
    as_of_text = request.query_params.get("as_of", "").strip()
    if as_of_text:
        try:
            as_of = pd.Timestamp(as_of_text)
        except (ValueError, TypeError):
            raise PageError(400, "Bad date", f"as_of={as_of_text!r} is not a date.") from None
        if as_of is pd.NaT:
            raise PageError(400, "Bad date", f"as_of={as_of_text!r} is not a date.")
        as_of = as_of.tz_convert("UTC").tz_localize(None) if as_of.tzinfo else as_of
    elif batch_row is not None:
        as_of = pd.Timestamp(batch_row["as_of"])
    elif scores is not None:
        if not customer_exists(settings, customer_id):
            raise PageError(404, "Unknown customer", f"There is no customer {customer_id!r}.")
        as_of = pd.Timestamp(pd.to_datetime(scores["as_of"]).max())
    else:
        raise PageError(400, "No date", "No scores are configured: give the date as ?as_of=YYYY-MM-DD.")
    data = current_data(settings)
    if data is None:
        raise PageError(503, "Data not configured",
                        "Set CHURN_REVIEW_CUSTOMERS and CHURN_REVIEW_EVENTS to the data files to see "
                        "a customer's explanation and timeline.")
    s = get_settings()
    view = customer_view(served_model(), data, customer_id, as_of, current_playbook(settings),
                         batch_row, s.top_reasons, s.risk_bands, settings.waterfall_steps)
    return render("customer.html", base=_base(request), view=view)


def customer_exists(settings: ReviewSettings, customer_id: str) -> bool:
    data = current_data(settings)
    return data is not None and not data.customer(customer_id).empty


async def http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return error_page(404, "Page not found", f"There is no page {request.url.path!r}.", _base(request))
    return error_page(status, "Request not allowed", str(getattr(exc, "detail", "")), _base(request))


review_app = Starlette(
    routes=[
        Route("/", list_page, methods=["GET"], name="list"),
        Route("/customer/{customer_id:path}", customer_page, methods=["GET"], name="customer"),
    ],
    exception_handlers={HTTPException: http_error},
)
