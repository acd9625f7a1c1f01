"""The at-risk list: filters, search, sorting and paging from the query string, and the scored
customers that pass them, ranked by expected value at risk unless another order is asked for."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from campaigns.playbook import Playbook, suggest
from features.contract import CUSTOMER_ID
from scoring.reasons import is_profile
from serving.review.data import PageError
from serving.review.format import day, number, text

BANDS = ("high", "medium", "low")
# what each sortable column sorts by, and its natural first direction
SORTS = {
    "at_risk": ("expected_value_at_risk", "desc"),
    "probability": ("churn_probability", "desc"),
    "value": ("customer_value", "desc"),
    "customer": (CUSTOMER_ID, "asc"),
}
RESERVED_PARAMS = frozenset({"band", "limit", "q", "sort", "order", "page", "new"})
MAX_PAGE = 10**6


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
    q: str = ""  # part of a customer id
    sort: str | None = None  # a key of SORTS; None: the default ranking
    order: str = "desc"
    page: int = 1
    new: bool = False  # only customers new since the previous batch

    def params(self, **change: object) -> str:
        items = {"q": self.q, "band": self.band, **self.segments, "new": "1" if self.new else "",
                 "sort": self.sort, "order": self.order if self.sort else None,
                 "limit": self.limit, "page": self.page if self.page > 1 else None, **change}
        return urlencode({k: v for k, v in items.items() if v not in (None, "")})

    def sort_link(self, key: str) -> str:
        """The query that sorts by `key`: its natural direction first, reversed on a second click."""
        order = SORTS[key][1]
        if self.sort == key:
            order = "asc" if self.order == "desc" else "desc"
        return self.params(sort=key, order=order, page=None)


def _whole_number(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    # isdigit alone takes "²" and "①"
    if not value.isascii() or not value.isdigit() or len(value) > 9 or not low <= int(value) <= high:
        raise PageError(400, f"Bad {name}",
                        f"{name}={params[name][:20]!r} must be a whole number from {low} to {high}.")
    return int(value)


def parse_list_query(params: Mapping[str, str], segments: Mapping[str, list[str]],
                     default_limit: int = 50, max_limit: int = 1000,
                     max_id_chars: int = 200) -> ListQuery:
    """Search, risk band, segment filters, sorting and paging from the query string;
    PageError(400) naming the parameter if one is bad.

    An empty value means no filter (what the filter form sends for "any")."""
    unknown = [k for k in params if k not in RESERVED_PARAMS and k not in segments]
    if unknown:
        known = ", ".join(["q", "band", "new", "sort", "order", "limit", "page", *segments])
        raise PageError(400, "Unknown filter", f"There is no filter {unknown[0]!r}. Filters: {known}.")
    band = params.get("band", "").strip().lower() or None
    if band is not None and band not in BANDS:
        raise PageError(400, "Unknown risk band",
                        f"band={params['band']!r} is not a risk band; use high, medium or low.")
    limit = _whole_number(params, "limit", 1, max_limit) or default_limit
    page = _whole_number(params, "page", 1, MAX_PAGE) or 1
    q = params.get("q", "").strip()
    if len(q) > max_id_chars or any(ord(c) < 32 for c in q):
        raise PageError(400, "Bad search", f"q must be part of a customer id: at most "
                        f"{max_id_chars} characters, no control characters.")
    sort = params.get("sort", "").strip() or None
    if sort is not None and sort not in SORTS:
        raise PageError(400, "Unknown sort", f"sort={params['sort'][:40]!r} is not a column to "
                        f"sort by; use {', '.join(SORTS)}.")
    order = params.get("order", "").strip() or (SORTS[sort][1] if sort else "desc")
    if order not in ("asc", "desc"):
        raise PageError(400, "Bad order", f"order={params['order'][:20]!r} must be asc or desc.")
    new = params.get("new", "").strip()
    if new not in ("", "0", "1"):
        raise PageError(400, "Bad new", f"new={params['new'][:20]!r} must be 1 (only new "
                        "customers) or empty.")
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
    return ListQuery(band, chosen, limit, q, sort, order, page, new == "1")


def _reason_columns(columns: pd.Index, prefix: str) -> list[str]:
    found = [c for c in columns if c.startswith(prefix + "_") and c.endswith("_feature")]
    return sorted(found, key=lambda c: int(c.split("_")[1]))


def lead_reason(rec: Mapping, band: str, playbook: Playbook,
                evidence: Mapping[str, Mapping[str, int]] | None = None) -> tuple[str, str, str]:
    """(what changed, suggested action: the step to take, family name) for one scores row.

    The behavioural reasons (change_i_*, or the behavioural ones among reason_i_* in a file
    written before those columns existed) choose the action, and the reason shown beside it is
    the one that chose it, so the two always agree. A low-risk customer needs no action. The
    action is proportionate to the customer's recent warning signs in `evidence`
    (customer id -> sign -> events; `Data.evidence`): none known counts as none."""
    prefix = "change" if any(k.startswith("change_1_") for k in rec) else "reason"
    pairs = []
    i = 1
    while f"{prefix}_{i}_feature" in rec:
        feature, sentence = rec.get(f"{prefix}_{i}_feature"), rec.get(f"{prefix}_{i}_text")
        if text(feature) and not is_profile(str(feature)):
            pairs.append((str(feature), text(sentence)))
        i += 1
    counts = (evidence or {}).get(str(rec.get(CUSTOMER_ID)))
    match = suggest(playbook, band, [f for f, _ in pairs], counts, weigh=True)
    shown = next((t for f, t in pairs if f == match.feature), pairs[0][1] if pairs else "")
    return shown, match.family.step, match.name


def filtered(scores: pd.DataFrame, customers: pd.DataFrame | None, segments: list[str],
             query: ListQuery, previous_ids: set[str] | None) -> pd.DataFrame:
    """The scores rows that pass the search and filters, in the order asked for, with an `is_new`
    column (None when there is no previous batch)."""
    frame = scores
    if customers is not None and segments:
        attrs = customers[[CUSTOMER_ID, *segments]].drop_duplicates(CUSTOMER_ID)
        frame = frame.merge(attrs, on=CUSTOMER_ID, how="left")
    is_new = (None if previous_ids is None
              else ~frame[CUSTOMER_ID].isin(previous_ids).to_numpy(dtype=bool))
    frame = frame.assign(is_new=is_new)
    keep = np.ones(len(frame), dtype=bool)
    if query.q:
        keep &= frame[CUSTOMER_ID].str.contains(query.q, case=False, regex=False).to_numpy()
    if query.band:
        keep &= (frame["risk_band"] == query.band).to_numpy()
    for name, value in query.segments.items():
        keep &= (frame[name].astype(object) == value).fillna(False).to_numpy(dtype=bool)
    if query.new:
        if is_new is None:
            raise PageError(400, "No earlier batch", "new=1 lists customers new since the previous "
                            "batch, and there is no earlier batch to compare with.")
        keep &= is_new
    frame = frame[keep]
    by_value = "expected_value_at_risk" in frame.columns
    if query.sort is not None:
        column = SORTS[query.sort][0]
        if column not in frame.columns:
            raise PageError(400, "Cannot sort", f"sort={query.sort}: these scores have no "
                            "customer values; score with --value-column to sort by them.")
        keys, ascending = [column, CUSTOMER_ID], [query.order == "asc", True]
    else:
        keys = ["expected_value_at_risk", "churn_probability"] if by_value else ["churn_probability"]
        keys, ascending = [*keys, CUSTOMER_ID], [*([False] * len(keys)), True]
    return frame.sort_values(keys, ascending=ascending, kind="stable", na_position="last")


@dataclass
class AtRiskList:
    rows: list[dict]
    matching: int
    scored: int
    by_value: bool  # ranked by expected value at risk (else by probability)
    as_of: str
    model_versions: list[str]
    band_counts: dict[str, int]
    first: int  # 1-based position of the first row shown
    pages: int
    new_count: int | None  # customers new since the previous batch; None without one


def at_risk_list(scores: pd.DataFrame, customers: pd.DataFrame | None, segments: list[str],
                 query: ListQuery, playbook: Playbook, previous_ids: set[str] | None = None,
                 evidence: Mapping[str, Mapping[str, int]] | None = None) -> AtRiskList:
    """One page of the scored customers that pass the filters."""
    frame = filtered(scores, customers, segments, query, previous_ids)
    pages = max(1, -(-len(frame) // query.limit))
    page = min(query.page, pages)
    start = (page - 1) * query.limit
    rows = []
    for rec in frame.iloc[start:start + query.limit].to_dict("records"):
        changed, action, family = lead_reason(rec, rec["risk_band"], playbook, evidence)
        rows.append({
            "customer_id": rec[CUSTOMER_ID],
            "probability": float(rec["churn_probability"]),
            "band": rec["risk_band"],
            "value": number(rec.get("customer_value")),
            "at_risk": number(rec.get("expected_value_at_risk")),
            "reason": changed,
            "family": action,
            "family_name": family,
            "new": bool(rec["is_new"]) if rec.get("is_new") is not None else False,
            "segments": {s: text(rec.get(s)) for s in segments},
        })
    as_of = pd.to_datetime(scores["as_of"])
    return AtRiskList(
        rows=rows, matching=len(frame), scored=len(scores),
        by_value="expected_value_at_risk" in scores.columns,
        as_of=", ".join(sorted({day(t) for t in as_of.dropna().unique()})),
        model_versions=sorted(scores["model_version"].astype(str).unique()),
        band_counts={b: int((scores["risk_band"] == b).sum()) for b in BANDS},
        first=start + 1, pages=pages,
        new_count=None if previous_ids is None
        else int((~scores[CUSTOMER_ID].isin(previous_ids)).sum()),
    )


def _cell(value: object) -> str:
    """A CSV cell that a spreadsheet will not run: text starting like a formula gets a quote."""
    out = text(value)
    return "'" + out if out[:1] in ("=", "+", "-", "@", "\t", "\r") else out


def export_rows(frame: pd.DataFrame, segments: list[str], playbook: Playbook, max_rows: int,
                chunk: int = 500, evidence: Mapping[str, Mapping[str, int]] | None = None
                ) -> Iterator[str]:
    """The filtered list as CSV text, header first, at most `max_rows` rows, in chunks."""
    head = ["customer_id", "churn_probability", "risk_band", "yearly_value", "value_at_risk",
            *segments, "what_changed", "suggested_action", "new_since_last_batch"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_cell(h) for h in head])
    rows = frame.head(max_rows)
    for begin in range(0, len(rows), chunk):
        for rec in rows.iloc[begin:begin + chunk].to_dict("records"):
            changed, action, _ = lead_reason(rec, rec["risk_band"], playbook, evidence)
            value, at_risk = number(rec.get("customer_value")), number(rec.get("expected_value_at_risk"))
            is_new = rec.get("is_new")
            writer.writerow([_cell(rec[CUSTOMER_ID]), f"{float(rec['churn_probability']):.4f}",
                             rec["risk_band"], "" if value is None else f"{value:.2f}",
                             "" if at_risk is None else f"{at_risk:.2f}",
                             *(_cell(rec.get(s)) for s in segments), _cell(changed), _cell(action),
                             "" if is_new is None else ("yes" if is_new else "no")])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if not len(rows):
        yield buffer.getvalue()
