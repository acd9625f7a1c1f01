"""Customers who left and came back, for the playbook's win-back follow-up.

Three ways to come back, each read from the data as it is:
- **churn date**: activity after the customer's explicit `churned_at` (more than `grace_days`
  after it: a last login or a refund in the days after a cancellation is the account winding
  down, not a return);
- **lapse**: activity after at least `horizon_days` without any, for logs without churn dates
  (the same rule as the inactivity label: a customer idle for the horizon has left);
- **new signup**: a new customer row whose `match_column` (an email, a phone number, a tax id:
  anything that names one person) equals that of a customer who had left: by their churn date,
  or, without one, by a lapse of `horizon_days` between their last event and the new signup.

The work on the events is two SQL queries on the `features` relations, so it runs where the
events lie (in memory, DuckDB over files, or Spark). Each return is one row; a customer who came
back twice has two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from campaigns.store import WRITE_CHUNK, campaign_outcomes_table
from features.contract import CHURNED_AT, CUSTOMER_ID, SIGNUP_AT
from features.definitions import FeatureSpec
from features.observations import horizon_seen, lapse_sql
from features.relations import epoch_second, epoch_seconds, from_epoch, relations
from features.sql import type_in

HOWS = ("churn date", "lapse", "new signup")
COLUMNS = ("customer_id", "left_at", "returned_at", "days_away", "how", "returned_as")
MAX_MATCH_GROUP = 20  # customers sharing one match value; more means the column is no identity
MAX_EVENT_TYPES = 50
DAY = 86400.0


@dataclass(frozen=True)
class ReturnRules:
    """How a return is recognised; see the module's docstring."""

    horizon_days: int | None = None  # a lapse this long is leaving; None: churn dates only
    grace_days: int = 7  # activity this soon after a churn date is not a return
    as_of: pd.Timestamp | None = None  # only what happened up to here (default: everything)
    since: pd.Timestamp | None = None  # only returns from here on
    event_types: tuple[str, ...] = ()  # the event types that count as activity (default: all)
    match_column: str | None = None  # a customers column that links a new signup to a leaver

    def __post_init__(self) -> None:
        if self.horizon_days is not None and not 1 <= self.horizon_days <= 3650:
            raise ValueError("horizon_days must be between 1 and 3650")
        if not 0 <= self.grace_days <= 365:
            raise ValueError("grace_days must be between 0 and 365")
        if len(self.event_types) > MAX_EVENT_TYPES:
            raise ValueError(f"event_types: at most {MAX_EVENT_TYPES}")
        if any(not str(t).strip() for t in self.event_types):
            raise ValueError("event_types: an event type must not be empty")
        if (self.as_of is not None and self.since is not None
                and pd.Timestamp(self.since) > pd.Timestamp(self.as_of)):
            raise ValueError("since must not be after as_of")


def _epoch(ts: pd.Timestamp | None) -> float | None:
    return None if ts is None else epoch_second(ts)


def find_returning(customers: pd.DataFrame, events, rules: ReturnRules,
                   follow_up: str | None = None) -> pd.DataFrame:
    """The customers who came back (COLUMNS, plus `follow_up` when given), the latest return
    first. `customers` is validated (`features.tables.validate_customers`); `events` is a
    validated events frame or the scanned `features.sources.EventFiles`."""
    if rules.match_column is not None and rules.match_column not in customers:
        raise ValueError(f"match column {rules.match_column!r} is not a column of the customers "
                         "table")
    rel = relations(customers, events, FeatureSpec(event_types=()))
    as_of, since = _epoch(rules.as_of), _epoch(rules.since)
    where = []
    if as_of is not None:
        where.append(f"ts <= {as_of!r}")
    if rules.event_types:
        where.append(type_in("event_type", tuple(str(t).strip() for t in rules.event_types)))
    active = "SELECT customer_id, ts FROM events" + (" WHERE " + " AND ".join(where)
                                                     if where else "")
    after = "" if since is None else f" AND returned_ts >= {since!r}"
    found = []
    if CHURNED_AT in customers:
        found.append(rel.query(
            f"SELECT * FROM (SELECT e.customer_id, c.churned AS left_ts, MIN(e.ts) AS returned_ts, "
            f"'churn date' AS how FROM ({active}) e JOIN customers c "
            f"ON e.customer_id = c.customer_id WHERE c.churned IS NOT NULL "
            f"AND e.ts > c.churned + {rules.grace_days * DAY!r} "
            f"GROUP BY e.customer_id, c.churned) r WHERE TRUE{after}"))
    if rules.horizon_days is not None:
        found.append(rel.query(
            f"SELECT customer_id, left_ts, returned_ts, 'lapse' AS how FROM ("
            f"SELECT customer_id, ts AS returned_ts, LAG(ts) OVER (PARTITION BY customer_id "
            f"ORDER BY ts) AS left_ts FROM ({active}) a) g "
            f"WHERE {lapse_sql('left_ts', 'returned_ts', rules.horizon_days)}{after}"))
    if rules.match_column is not None:
        found.append(_new_signups(customers, rel, rules, active, as_of, since))
    found = [f for f in found if len(f)]
    if not found:
        out = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        return out.assign(follow_up="") if follow_up is not None else out
    both = pd.concat(found, ignore_index=True)
    both = both.assign(customer_id=both["customer_id"].astype(str),
                       returned_as=both.get("returned_as", pd.Series(index=both.index)))
    both = both.assign(returned_as=both["returned_as"].fillna(both["customer_id"]))
    # a lapse that spans a churn date is the same return: keep the churn date's row
    both = both.assign(_rank=both["how"].map({h: i for i, h in enumerate(HOWS)}))
    both = (both.sort_values(["_rank"], kind="stable")
            .drop_duplicates(["customer_id", "returned_ts", "returned_as"]))
    out = pd.DataFrame({
        "customer_id": both["customer_id"].to_numpy(),
        "left_at": pd.Series(from_epoch(both["left_ts"])),
        "returned_at": pd.Series(from_epoch(both["returned_ts"])),
        "days_away": np.round((both["returned_ts"].to_numpy(dtype=float)
                               - both["left_ts"].to_numpy(dtype=float)) / DAY, 1),
        "how": both["how"].to_numpy(),
        "returned_as": both["returned_as"].astype(str).to_numpy(),
    })
    out = out.sort_values(["returned_at", "customer_id"], ascending=[False, True],
                          kind="stable").reset_index(drop=True)
    return out.assign(follow_up=follow_up) if follow_up is not None else out


def _new_signups(customers: pd.DataFrame, rel, rules: ReturnRules, active: str,
                 as_of: float | None, since: float | None) -> pd.DataFrame:
    """Leavers matched to a later signup of the same person (by `rules.match_column`)."""
    col = rules.match_column
    key = customers[col].astype("string").str.strip().str.lower()
    people = pd.DataFrame({"customer_id": customers[CUSTOMER_ID].astype(str).to_numpy(),
                           "key": key.to_numpy(),
                           "signup": epoch_seconds(customers[SIGNUP_AT]),
                           "churned": (epoch_seconds(customers[CHURNED_AT])
                                       if CHURNED_AT in customers else np.nan)})
    people = people[people["key"].notna() & (people["key"] != "")]
    sizes = people.groupby("key")["customer_id"].transform("size")
    if (sizes > MAX_MATCH_GROUP).any():
        worst = people.loc[sizes.idxmax(), "key"]
        raise ValueError(f"match column {col!r}: {int(sizes.max())} customers share the value "
                         f"{worst!r} (at most {MAX_MATCH_GROUP}); a match column names one person, "
                         "such as an email")
    people = people[sizes > 1]
    if people.empty:
        return pd.DataFrame()
    left = people.assign(left_ts=people["churned"], _idle=False)
    if rules.horizon_days is not None:  # without a churn date, a lapse before the new signup
        idle = left["left_ts"].isna()
        if idle.any():
            last = rel.query(f"SELECT customer_id, MAX(ts) AS last_ts FROM ({active}) a "
                             "WHERE customer_id IN (SELECT customer_id FROM candidates) "
                             "GROUP BY customer_id",
                             candidates=left.loc[idle, ["customer_id"]])
            last_ts = left["customer_id"].map(last.set_index("customer_id")["last_ts"])
            left = left.assign(left_ts=left["left_ts"].fillna(last_ts), _idle=idle)
    left = left[left["left_ts"].notna()]
    pairs = left.merge(people[["key", "customer_id", "signup"]], on="key", suffixes=("", "_new"))
    # an idle leaver left once the horizon after their last activity was seen by the new signup
    lapsed = (~pairs["_idle"].to_numpy(dtype=bool)) | horizon_seen(
        pairs["left_ts"].to_numpy(dtype="float64"), pairs["signup_new"].to_numpy(dtype="float64"),
        rules.horizon_days or 0)
    pairs = pairs[(pairs["customer_id_new"] != pairs["customer_id"]).to_numpy()
                  & (pairs["signup_new"] > pairs["left_ts"]).to_numpy() & lapsed]
    if as_of is not None:
        pairs = pairs[pairs["signup_new"] <= as_of]
    pairs = pairs.sort_values("signup_new", kind="stable").drop_duplicates("customer_id")
    if since is not None:
        pairs = pairs[pairs["signup_new"] >= since]
    return pd.DataFrame({"customer_id": pairs["customer_id"].to_numpy(),
                         "left_ts": pairs["left_ts"].to_numpy(),
                         "returned_ts": pairs["signup_new"].to_numpy(),
                         "how": "new signup",
                         "returned_as": pairs["customer_id_new"].to_numpy()})


def stated_reasons(engine: Engine, customer_ids: Sequence[str],
                   labels: Mapping[str, str]) -> dict[str, str]:
    """What each customer last told a campaign's call about leaving ("Price: too dear"), from the
    imported outcomes in the store; customers who said nothing are absent."""
    o = campaign_outcomes_table.c
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    said: dict[str, tuple] = {}
    with engine.connect() as conn:
        for i in range(0, len(ids), WRITE_CHUNK):
            part = ids[i:i + WRITE_CHUNK]
            rows = conn.execute(select(o.customer_id, o.reason, o.reason_text)
                                .where(o.source == "import", o.customer_id.in_(part))
                                .order_by(o.recorded_at, o.id)).all()
            for cid, reason, words in rows:  # the latest last
                if reason or (words or "").strip():
                    said[cid] = (reason, (words or "").strip())
    out = {}
    for cid, (reason, words) in said.items():
        label = labels.get(reason, reason) if reason else ""
        out[cid] = f"{label}: {words}" if label and words else (label or words)
    return out


def summary(found: pd.DataFrame) -> dict[str, object]:
    """Counts for the command's headline: returns by how, and the median days away."""
    return {"returns": int(len(found)),
            "customers": int(found["customer_id"].nunique()) if len(found) else 0,
            "by_how": {h: int((found["how"] == h).sum()) for h in HOWS},
            "median_days_away": float(found["days_away"].median()) if len(found) else None}


def parse_event_types(values: Sequence[str]) -> tuple[str, ...]:
    """`--event-type` values, each possibly a comma-separated list."""
    out = [t.strip() for v in values for t in v.split(",")]
    return tuple(t for t in out if t)
