"""The at-risk list: filters from the query string, and the scored customers that pass them,
ranked by expected value at risk."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID
from serving.playbook import Playbook, family_for
from serving.review.data import PageError
from serving.review.format import day, number, text

BANDS = ("high", "medium", "low")
RESERVED_PARAMS = frozenset({"band", "limit"})


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
        if (not limit_text.isascii() or not limit_text.isdigit() or len(limit_text) > 9
                or not 1 <= int(limit_text) <= max_limit):  # isdigit alone takes "²" and "①"
            raise PageError(400, "Bad limit",
                            f"limit={params['limit'][:20]!r} must be a whole number from 1 to "
                            f"{max_limit}.")
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
    reason_features = sorted((c for c in frame.columns
                              if c.startswith("reason_") and c.endswith("_feature")),
                             key=lambda c: int(c.split("_")[1]))
    rows = []
    for rec in frame.head(query.limit).to_dict("records"):
        reasons = [rec[c] for c in reason_features]
        rows.append({
            "customer_id": rec[CUSTOMER_ID],
            "probability": float(rec["churn_probability"]),
            "band": rec["risk_band"],
            "value": number(rec.get("customer_value")),
            "at_risk": number(rec.get("expected_value_at_risk")),
            "reason": rec.get("reason_1_text") or "",
            "family": family_for(playbook, reasons).family.title,
            "segments": {s: text(rec.get(s)) for s in segments},
        })
    as_of = pd.to_datetime(scores["as_of"])
    return AtRiskList(
        rows=rows, matching=len(frame), scored=len(scores), by_value=by_value,
        as_of=", ".join(sorted({day(t) for t in as_of.dropna().unique()})),
        model_versions=sorted(scores["model_version"].astype(str).unique()),
        band_counts={b: int((scores["risk_band"] == b).sum()) for b in BANDS},
    )

