"""Observations: whom a time can score, which times are fully observed, the times a log is
labelled at, and the labels.

Each rule has one home here, in pandas and, where the SQL needs it, as SQL beside it:

- a customer is active at t when signed up at or before t and not churned by t (`active`,
  `active_at`; `candidates_sql`);
- the horizon after t is fully seen when the data's end is at or after t + horizon
  (`horizon_seen`, `latest_seen`);
- the explicit label: a churn date in (t, t + horizon] (`churned_within`; `label_sql`);
- the inactivity label: no activity event in (t, t + horizon] (`label_sql`; `lapse_sql` for a
  customer's gap between two activity events).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import CHURNED_AT, CUSTOMER_ID, SIGNUP_AT, TIMESTAMP
from features.expr import DAY
from features.relations import AS_OF, Relations, arrow_strings, epoch_seconds, from_epoch
from features.sql import type_in

LABEL = "label"
LABEL_KINDS = ("explicit", "inactivity")


# ---------------------------------------------------------------------------------------------
# Who is a customer at t
# ---------------------------------------------------------------------------------------------


def active(signup, churned, at):
    """Signed up at or before `at` and not churned by it: whom `at` can score. Series or arrays
    of datetimes, broadcast against each other; a missing signup is never active, a missing
    churn date never churned. `churned` None: nobody has churned."""
    out = signup <= at
    return out if churned is None else out & ~(churned <= at)


def active_at(customers: pd.DataFrame, t: pd.Timestamp) -> pd.Series:
    """The customers active at `t` (`active`)."""
    return active(customers[SIGNUP_AT], customers[CHURNED_AT] if CHURNED_AT in customers
                  else None, t)


def candidates_sql() -> str:
    """`active` in SQL: every customer active at each time in `times(as_of)`."""
    return (
        "SELECT c.customer_id, t.as_of FROM customers c CROSS JOIN times t "
        "WHERE c.signup <= t.as_of AND (c.churned IS NULL OR c.churned > t.as_of)"
    )


# ---------------------------------------------------------------------------------------------
# Which horizons the data has seen
# ---------------------------------------------------------------------------------------------


def latest_seen(end: pd.Timestamp, horizon_days: float) -> pd.Timestamp:
    """The latest time whose horizon data ending at `end` has fully seen."""
    return pd.Timestamp(end) - pd.Timedelta(days=horizon_days)


def horizon_seen(as_of, end, horizon_days: float) -> np.ndarray:
    """Whether the horizon after each `as_of` is fully seen by data ending at `end`:
    end >= as_of + horizon. Datetimes (a scalar, a Series), or epoch seconds (floats)."""
    values = np.asarray(as_of)
    if values.dtype.kind in "fiu":
        return np.asarray(values + horizon_days * DAY <= np.asarray(end, dtype="float64"))
    return np.asarray(pd.to_datetime(as_of) <= latest_seen(end, horizon_days), dtype=bool)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


def churned_within(churned_at: pd.Series, as_of, horizon_days: float) -> pd.Series:
    """The explicit label in pandas (`label_sql`'s "explicit"): a churn date in
    (as_of, as_of + horizon]. `as_of` is one time or one per row."""
    as_of = pd.to_datetime(as_of)
    return (churned_at > as_of) & (churned_at <= as_of + pd.Timedelta(days=horizon_days))


def lapse_sql(last: str, following: str, horizon_days: float) -> str:
    """The inactivity label (`label_sql`'s "inactivity") at an activity event at `last` whose
    next activity event is at `following` (SQL expressions of epoch seconds): no activity in
    (last, last + horizon], so the next one comes after it."""
    return f"{following} > {last} + {horizon_days * DAY!r}"


def label_sql(kind: str, horizon_days: float, activity_types: tuple[str, ...] = ()) -> str:
    """(obs_id, label) for every row of `obs`: every customer active at as_of (signed up at or
    before it, not churned by it) gets a label, the same population `churn score` scores.

    explicit: churned if `churned` falls in (as_of, as_of + horizon].
    inactivity: churned if no activity event (one of `activity_types`; empty: any event) falls
    in (as_of, as_of + horizon]. A customer who has been quiet for a long time is still a
    customer: a shop wants to win them back, so they are labelled (and scored) like everyone
    else."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, not {kind!r}")
    h = horizon_days * DAY
    if kind == "explicit":
        return (
            "SELECT o.obs_id, CASE WHEN c.churned > o.as_of AND "
            f"c.churned <= o.as_of + {h} THEN 1 ELSE 0 END AS label "
            "FROM obs o JOIN customers c ON c.customer_id = o.customer_id"
        )
    return (
        "WITH after AS (SELECT o.obs_id, COUNT(*) AS n_after "
        "FROM obs o JOIN events e ON e.customer_id = o.customer_id "
        f"AND e.ts > o.as_of AND e.ts <= o.as_of + {h}"
        + (f" AND {type_in('e.event_type', tuple(activity_types))}" if activity_types else "")
        + " GROUP BY o.obs_id) "
        "SELECT o.obs_id, CASE WHEN COALESCE(a.n_after, 0) = 0 THEN 1 ELSE 0 END AS label "
        "FROM obs o LEFT JOIN after a ON a.obs_id = o.obs_id"
    )


# ---------------------------------------------------------------------------------------------
# Observation times and their labels
# ---------------------------------------------------------------------------------------------


def event_range(events) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last event time of an events DataFrame or of scanned events."""
    if isinstance(events, pd.DataFrame):
        return pd.Timestamp(events[TIMESTAMP].min()), pd.Timestamp(events[TIMESTAMP].max())
    _, first, last = events.stats()
    return tuple(pd.Timestamp(from_epoch(np.array([t]))[0]) for t in (first, last))


def data_end(customers: pd.DataFrame, events) -> pd.Timestamp:
    """The last moment the data observes: its latest event or churn."""
    ends = [event_range(events)[1]]
    if CHURNED_AT in customers and customers[CHURNED_AT].notna().any():
        ends.append(customers[CHURNED_AT].max())
    return pd.Timestamp(max(ends))


MIN_HISTORY_DAYS = 28  # history before the first observation time
TARGET_TIMES = 12  # observation times the automatic cadence aims for


def observation_times(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    horizon_days: int,
    cadence_days: int,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> list[pd.Timestamp]:
    """Midnight observation times every `cadence_days`, oldest first.

    The newest is the latest midnight whose horizon is fully observed; the oldest is the first
    midnight after `min_history_days` of log, rounded down to the day."""
    if horizon_days <= 0 or cadence_days <= 0:
        raise ValueError("horizon and cadence must be positive numbers of days")
    end = data_end(customers, events)
    start = event_range(events)[0]
    last = latest_seen(end, horizon_days).floor("D")
    first = (start + pd.Timedelta(days=min_history_days)).floor("D")
    return cadence_times(first, last, cadence_days)


def cadence_times(first: pd.Timestamp, last: pd.Timestamp, cadence_days: int
                  ) -> list[pd.Timestamp]:
    """`last` and every `cadence_days` before it down to `first`, oldest first."""
    times = []
    t = last
    while t >= first:
        times.append(t)
        t -= pd.Timedelta(days=cadence_days)
    return sorted(times)


@dataclass(frozen=True)
class ObservationPlan:
    """The observation times of a log, and how their cadence was chosen."""

    times: list[pd.Timestamp]
    cadence_days: int
    automatic: bool
    log_days: float


def plan_observations(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    horizon_days: int,
    cadence_days: int | None = None,
    min_history_days: int = MIN_HISTORY_DAYS,
) -> ObservationPlan:
    """Observation times for any log that covers the horizon plus `min_history_days`.

    Without a cadence, it is chosen from the log's length: about TARGET_TIMES times, never
    closer than a week nor further apart than the horizon. A log too short for one time is a
    ValueError that names the smallest change that would work."""
    if horizon_days <= 0:
        raise ValueError("--horizon: must be a positive number of days")
    end = data_end(customers, events)
    start = event_range(events)[0]
    log_days = (end - start) / pd.Timedelta(days=1)
    first = (start + pd.Timedelta(days=min_history_days)).floor("D")
    last = latest_seen(end, horizon_days).floor("D")
    if last < first:
        longest = int(log_days - min_history_days - 1)
        fix = (f"use --horizon {longest} or less, or a longer log" if longest >= 1
               else "use a longer log")
        raise ValueError(
            f"the log covers {log_days:.0f} days ({start:%Y-%m-%d} to {end:%Y-%m-%d}); "
            f"--horizon {horizon_days} needs at least {horizon_days + min_history_days + 1} "
            f"(the horizon plus {min_history_days} days of history and the day it ends): {fix}")
    automatic = cadence_days is None
    if cadence_days is None:
        span = (last - first).days
        cadence_days = min(max(7, math.ceil(span / (TARGET_TIMES - 1))), max(7, horizon_days))
    times = observation_times(customers, events, horizon_days, cadence_days, min_history_days)
    return ObservationPlan(times, cadence_days, automatic, log_days)


def label_observations(
    rel: Relations, times: Iterable[pd.Timestamp], label: str, horizon_days: float
) -> pd.DataFrame:
    """(customer_id, as_of, label) for every customer active at each of the given times; the
    inactivity label reads the activity types of the relations' spec."""
    times_rel = pa.table({"as_of": epoch_seconds(pd.Series(pd.to_datetime(list(times))))})
    cands = rel.query(candidates_sql(), times=times_rel)
    cands = cands.sort_values(["as_of", "customer_id"], kind="stable").reset_index(drop=True)
    obs = pa.table({"obs_id": np.arange(len(cands), dtype="int64"),
                    "customer_id": arrow_strings(cands["customer_id"]),
                    "as_of": cands["as_of"].to_numpy(dtype="float64")})
    labels = rel.query(label_sql(label, horizon_days, rel.spec.activity_types),
                       obs=obs).sort_values("obs_id")
    return pd.DataFrame({
        CUSTOMER_ID: cands["customer_id"].to_numpy(),
        AS_OF: from_epoch(cands["as_of"]),
        LABEL: labels["label"].to_numpy().astype("int8"),
    })



# ---------------------------------------------------------------------------------------------
# Time to churn: the duration a churn curve is fitted on and judged by
# ---------------------------------------------------------------------------------------------

DURATION = "duration_days"
OBSERVED = "observed"


def duration_sql(kind: str, horizon_days: float, end: float,
                 activity_types: tuple[str, ...] = ()) -> str:
    """(obs_id, duration_days, observed) for every row of `obs`, with the data ending at `end`
    (epoch seconds). The curve's event is the label's, moved along the time axis:

    explicit: the churn date, `duration` days after as_of (observed when there is one; censored
    at the data's end otherwise). The label is duration <= horizon.
    inactivity: the start of the first lapse after as_of, a lapse being `horizon` days without
    activity (`lapse_sql`): as_of itself (duration 0) when no activity falls in
    (as_of, as_of + horizon], else the first activity event after as_of whose next one comes
    later than `horizon` days after it. A lapse is seen once its `horizon` days are in the data:
    censored at end - horizon - as_of otherwise. The label is duration == 0."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, not {kind!r}")
    h, end = horizon_days * DAY, float(end)
    if kind == "explicit":
        return (
            "SELECT o.obs_id, "
            f"(COALESCE(c.churned, {end!r}) - o.as_of) / {DAY!r} AS duration_days, "
            "c.churned IS NOT NULL AS observed "
            "FROM obs o JOIN customers c ON c.customer_id = o.customer_id"
        )
    only = f" WHERE {type_in('event_type', tuple(activity_types))}" if activity_types else ""
    return (
        "WITH act AS (SELECT customer_id, ts, LEAD(ts) OVER (PARTITION BY customer_id "
        f"ORDER BY ts) AS following FROM events{only}), "
        "starts AS (SELECT customer_id, ts FROM act WHERE following IS NULL OR "
        f"{lapse_sql('ts', 'following', horizon_days)}), "
        "lapse AS (SELECT o.obs_id, MIN(s.ts) AS start FROM obs o JOIN starts s "
        "ON s.customer_id = o.customer_id AND s.ts > o.as_of GROUP BY o.obs_id), "
        "soon AS (SELECT DISTINCT o.obs_id FROM obs o JOIN act a ON a.customer_id = o.customer_id "
        f"AND a.ts > o.as_of AND a.ts <= o.as_of + {h!r}), "
        "seen AS (SELECT o.obs_id, o.as_of, "
        "CASE WHEN s.obs_id IS NULL THEN o.as_of ELSE l.start END AS start "
        "FROM obs o LEFT JOIN soon s ON s.obs_id = o.obs_id "
        "LEFT JOIN lapse l ON l.obs_id = o.obs_id) "
        f"SELECT obs_id, CASE WHEN start + {h!r} <= {end!r} THEN (start - as_of) / {DAY!r} "
        f"ELSE ({end!r} - {h!r} - as_of) / {DAY!r} END AS duration_days, "
        f"start + {h!r} <= {end!r} AS observed FROM seen"
    )


def churn_durations(rel: Relations, pairs: pd.DataFrame, kind: str, horizon_days: float,
                    end: pd.Timestamp) -> pd.DataFrame:
    """`duration_sql` for (customer_id, as_of) pairs, in their order: (duration_days,
    observed). A row whose own label the data has not seen has a negative duration: leave it
    out (it is never a training or test row)."""
    obs = pa.table({"obs_id": np.arange(len(pairs), dtype="int64"),
                    "customer_id": arrow_strings(pairs[CUSTOMER_ID]),
                    "as_of": epoch_seconds(pd.Series(pd.to_datetime(pairs[AS_OF])))})
    end_s = float(epoch_seconds(pd.Series([pd.Timestamp(end)]))[0])
    got = rel.query(duration_sql(kind, horizon_days, end_s, rel.spec.activity_types),
                    obs=obs).sort_values("obs_id")
    return pd.DataFrame({DURATION: got["duration_days"].to_numpy(dtype="float64"),
                         OBSERVED: got["observed"].to_numpy(dtype=bool)}, index=pairs.index)
