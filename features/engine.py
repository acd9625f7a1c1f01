"""Runs the feature and label definitions: on DuckDB for large inputs, with the NumPy evaluator
(`features.online`) for small ones, for a whole history or one customer's."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features import online
from features.btyd import BGNBDParams, expected_purchases, fit_bgnbd, p_alive, p_no_purchase
from features.contract import (
    CHURNED_AT,
    CUSTOMER_ID,
    EVENT_TYPE,
    SIGNUP_AT,
    TIMESTAMP,
    AttributeKinds,
    Tables,
    contact_text,
)
from features.definitions import (
    BTYD_MODEL_FEATURES,
    BTYD_SQL_FEATURES,
    DAY,
    FeatureSpec,
    candidates_sql,
    feature_sql,
    label_sql,
)

AS_OF = "as_of"
LABEL = "label"
_local = threading.local()

Progress = Callable[[int, int], None]


log = logging.getLogger(__name__)

# a date attribute later than signup for more than this share of customers changes after signup
CHANGING_DATE_SHARE = 0.05


def changing_date_attributes(tables: Tables) -> tuple[str, ...]:
    """Date attributes that change after signup (a last-order date, a cancellation request, a
    contract end rewritten at churn): later than the customer's signup day for more than 5% of
    the customers that have one.

    Static attributes are known only as of the export, and applied to every past observation
    time. A date that changes after signup would then tell the model about the future: its
    value, or even that it is missing because it lies after the observation time. Such columns
    are left out. Dates fixed at signup (a date of birth, an acquisition date) stay."""
    customers = tables.customers
    changing = []
    for a in tables.attributes.datetime:
        known = customers[a].notna()
        later = customers[a] > customers[SIGNUP_AT].dt.floor("D") + pd.Timedelta(days=1)
        if known.any() and (later & known).sum() > CHANGING_DATE_SHARE * known.sum():
            changing.append(a)
    return tuple(changing)


def infer_spec(tables: Tables, before: pd.Timestamp | None = None, max_event_types: int = 30,
               activity_types: Sequence[str] = (), **kwargs) -> FeatureSpec:
    """The feature spec for a dataset: its most frequent event types, value columns, attributes.

    Only events strictly before `before` are counted, so the columns of a feature table are a
    function of the past alone: training passes its last training time, `churn features` its
    latest observation time. Rarer and later types still count in the totals. Date attributes
    that change after signup are left out (`changing_date_attributes`). `activity_types` are
    the event types that count as activity (`check_activity_types`; empty: every event)."""
    activity = check_activity_types(tables, activity_types)
    changing = changing_date_attributes(tables)
    if changing:
        log.warning("left out date attributes that change after signup (their export value would "
                    "leak the future into past observations): %s", ", ".join(changing))
    kinds = tables.attributes
    attributes = AttributeKinds(kinds.numeric, kinds.categorical,
                                tuple(a for a in kinds.datetime if a not in changing))
    events = tables.events
    if isinstance(events, pd.DataFrame):
        if before is not None:
            events = events[events[TIMESTAMP] < pd.Timestamp(before)]
        counts = events[EVENT_TYPE].value_counts()
        first = float(epoch_seconds(events[TIMESTAMP]).min()) if len(events) else None
    else:  # scanned by an engine (features.sources)
        counts, first, _ = events.stats(
            None if before is None else float(epoch_seconds(pd.Series([pd.Timestamp(before)]))[0]))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_event_types]
    kwargs.setdefault("log_start", first)
    return FeatureSpec(
        event_types=tuple(sorted(t for t, _ in ranked)),
        value_columns=tables.value_columns,
        contact_columns=tables.contact_columns,
        attributes=attributes,
        activity_types=activity,
        **kwargs,
    )


def check_activity_types(tables: Tables, activity_types: Sequence[str]) -> tuple[str, ...]:
    """The activity types, sorted and without repeats, each of which must occur in the events
    file (a ValueError naming `--activity` and the first that does not). Empty: every event."""
    wanted = tuple(sorted({str(t).strip() for t in activity_types}))
    if not wanted:
        return ()
    if "" in wanted:
        raise ValueError("--activity: an event type must not be empty")
    events = tables.events
    present = (set(events[EVENT_TYPE].astype(str).unique()) if isinstance(events, pd.DataFrame)
               else set(events.stats()[0].index))  # scanned: counts of the whole file, cached
    unknown = [t for t in wanted if t not in present]
    if unknown:
        shown = ", ".join(sorted(present)[:10]) + (", ..." if len(present) > 10 else "")
        raise ValueError(f"--activity: event type {unknown[0]!r} is not in the events file "
                         f"(its types: {shown})")
    return wanted


def _connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB connection per thread (connections are not thread-safe)."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(":memory:")
        _local.con = con
    return con


def _parsed(con: duckdb.DuckDBPyConnection, sql: str):
    """The parsed statement, cached per thread: parsing a feature query costs about as much as
    running it on one customer's history."""
    cache = getattr(_local, "statements", None)
    if cache is None:
        cache = _local.statements = {}
    stmt = cache.get(sql)
    if stmt is None:
        (stmt,) = con.extract_statements(sql)
        if len(cache) > 64:
            cache.clear()
        cache[sql] = stmt
    return stmt


def epoch_seconds(values: pd.Series) -> np.ndarray:
    """Datetimes as float seconds since 1970 (NaT becomes NaN)."""
    arr = values.to_numpy(dtype="datetime64[us]")
    out = arr.view("int64") / 1e6
    out[np.isnat(arr)] = np.nan
    return out


def _floats(values: np.ndarray | pd.Series) -> pa.Array:
    """A float column as Arrow with NaN as NULL, as SQL expects of a missing value."""
    return pa.array(np.asarray(values, dtype="float64"), type=pa.float64(), from_pandas=True)


def _strings(values: pd.Series) -> pa.Array:
    """A string column as Arrow, without a round trip through Python objects."""
    return pa.Array.from_pandas(values.astype("string[pyarrow]"))


def customer_relation(customers: pd.DataFrame, spec: FeatureSpec) -> pa.Table:
    cols = {
        "customer_id": _strings(customers[CUSTOMER_ID]),
        "signup": _floats(epoch_seconds(customers[SIGNUP_AT])),
        "churned": _floats(epoch_seconds(customers[CHURNED_AT])
                           if CHURNED_AT in customers else np.full(len(customers), np.nan)),
    }
    slugs = spec.attribute_slugs
    n = len(customers)
    for a in spec.attributes.numeric:
        cols[slugs[a]] = _floats(
            customers[a].to_numpy(dtype="float64") if a in customers else np.full(n, np.nan)
        )
    for a in spec.attributes.categorical:
        cols[slugs[a]] = (
            _strings(customers[a]) if a in customers else pa.nulls(n, pa.string())
        )
    for a in spec.attributes.datetime:
        cols[slugs[a]] = _floats(epoch_seconds(customers[a]) if a in customers
                                 else np.full(n, np.nan))
    return pa.table(cols)


def event_relation(events: pd.DataFrame, spec: FeatureSpec) -> pa.Table:
    cols = {
        "customer_id": _strings(events[CUSTOMER_ID]),
        "ts": _floats(epoch_seconds(events[TIMESTAMP])),
        "event_type": _strings(events[EVENT_TYPE]),
    }
    for col, s in spec.value_slugs.items():
        cols[f"v_{s}"] = _floats(
            events[col].to_numpy(dtype="float64") if col in events else np.full(len(events), np.nan)
        )
    for col, s in spec.contact_slugs.items():
        cols[f"c_{s}"] = (_strings(contact_text(events[col])) if col in events
                          else pa.nulls(len(events), pa.string()))
    return pa.table(cols)


def obs_relation(obs: pd.DataFrame) -> pa.Table:
    return pa.table({
        "obs_id": np.arange(len(obs), dtype="int64"),
        "customer_id": _strings(obs[CUSTOMER_ID].astype(str)),
        "as_of": epoch_seconds(pd.to_datetime(obs[AS_OF])),
    })


def relations(customers: pd.DataFrame, events, spec: FeatureSpec):
    """The relations the feature and label SQL reads: in memory (`Relations`, DuckDB or NumPy)
    for an events DataFrame, in its engine for events scanned where they lie
    (`features.sources.EventFiles`)."""
    if isinstance(events, pd.DataFrame):
        return Relations(customers, events, spec)
    from features.sources import EngineRelations

    return EngineRelations(customers, events, spec)


class Relations:
    """Customers and events converted once into the engine's relational form."""

    def __init__(self, customers: pd.DataFrame, events: pd.DataFrame, spec: FeatureSpec):
        self.spec = spec
        self.customers = customer_relation(customers, spec)
        self.events = event_relation(events, spec)

    @classmethod
    def from_arrow(cls, customers: pa.Table, events: pa.Table, spec: FeatureSpec) -> Relations:
        """Relations already in the relational form (`customer_relation`, `event_relation`)."""
        rel = cls.__new__(cls)
        rel.spec, rel.customers, rel.events = spec, customers, events
        return rel

    def query(self, sql: str, **extra: pd.DataFrame | pa.Table) -> pd.DataFrame:
        con = _connection()
        con.register("customers", self.customers)
        con.register("events", self.events)
        for name, frame in extra.items():
            con.register(name, frame)
        try:
            return con.execute(_parsed(con, sql)).fetch_df()
        finally:
            for name in ("customers", "events", *extra):
                con.unregister(name)


def _from_epoch(seconds: np.ndarray | pd.Series) -> np.ndarray:
    """Epoch seconds as datetime64[us] (NaN as NaT). Whole microseconds are exact, and any
    year a datetime holds is in range (nanosecond timedeltas end in 2262)."""
    secs = np.asarray(seconds, dtype="float64")
    micros = np.round(np.nan_to_num(secs) * 1e6).astype("int64")
    out = micros.view("datetime64[us]").copy()
    out[np.isnan(secs)] = np.datetime64("NaT")
    return out


MIN_BTYD_CUSTOMERS = 20  # customers with a purchase needed to fit BG/NBD parameters


def fit_btyd_params(table: pd.DataFrame) -> dict[str, float] | None:
    """BG/NBD parameters fitted on the frequency, recency and age columns of feature rows (all
    from events before each row's time); None when too few customers have an event."""
    rows = table[list(BTYD_SQL_FEATURES)].dropna()
    if len(rows) < MIN_BTYD_CUSTOMERS or not (rows["btyd_frequency"] > 0).any():
        return None
    params = fit_bgnbd(rows["btyd_frequency"], rows["btyd_recency_days"], rows["btyd_age_days"],
                       penalizer=1e-3)
    return params.to_dict()


def _btyd_columns(summaries: dict[str, np.ndarray], spec: FeatureSpec, params: dict[str, float] | None
                  ) -> dict[str, np.ndarray]:
    """P(alive), P(no event in the horizon) and expected events, from the rows' frequency,
    recency and age and BG/NBD parameters fitted on the past; NaN without parameters."""
    n = len(summaries[BTYD_SQL_FEATURES[0]])
    if params is None:
        return {c: np.full(n, np.nan) for c in BTYD_MODEL_FEATURES}
    p = BGNBDParams.from_dict(params)
    x, t_x, age = (summaries[c] for c in BTYD_SQL_FEATURES)
    h = float(spec.btyd_horizon_days)
    return {
        "btyd_p_alive": np.asarray(p_alive(p, x, t_x, age), dtype="float64"),
        "btyd_p_inactive": np.asarray(p_no_purchase(p, h, x, t_x, age), dtype="float64"),
        "btyd_expected_events": np.asarray(expected_purchases(p, h, x, t_x, age), dtype="float64"),
    }


# up to this many events the NumPy evaluator is used, above it DuckDB. Measured on 2 cores
# (benchmarks/bench_features.py --crossover): NumPy 6-10x faster up to 100k events, 1.2x at 1M,
# even at 3M, DuckDB 1.3x faster at 10M; NumPy holds its join in memory (109 MB at 3M events
# against DuckDB's 27 MB), so DuckDB takes over from 1M.
ONLINE_MAX_EVENTS = 1_000_000
EVALUATORS = ("auto", "sql", "numpy")


def _features_of_pairs(rel: Relations, obs: pd.DataFrame | pa.Table, fit_btyd: bool = False,
                       evaluator: str = "auto") -> pd.DataFrame:
    """The feature table for (customer_id, as_of) pairs, in the order given (`_rows_of_pairs`
    as a DataFrame)."""
    return _rows_of_pairs(rel, obs, fit_btyd, evaluator).to_frame()


def _rows_of_pairs(rel: Relations, obs: pd.DataFrame | pa.Table, fit_btyd: bool = False,
                   evaluator: str = "auto") -> FeatureRows:
    """Feature rows for (customer_id, as_of) pairs, in the order given.

    `evaluator` picks the query engine ("sql") or the NumPy evaluator ("numpy"), both from the
    same feature entries; "auto" uses NumPy for small inputs. With buy-till-you-die features,
    their BG/NBD parameters are the spec's (fitted when the model was trained), or with
    `fit_btyd` fitted on these rows, for snapshots at one time."""
    spec = rel.spec
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, not {evaluator!r}")
    if not isinstance(rel, Relations):  # the events live in an engine: its SQL
        evaluator = "sql"
    elif evaluator == "auto":
        evaluator = "numpy" if rel.events.num_rows <= ONLINE_MAX_EVENTS else "sql"
    obs_rel = obs if isinstance(obs, pa.Table) else obs_relation(obs)
    if evaluator == "numpy":
        cols = online.evaluate(spec, rel.customers, rel.events, obs_rel)
    else:
        table = rel.query(feature_sql(spec), obs=obs_rel)
        table = table.sort_values("obs_id", kind="stable")
        cols = {c: table[c].to_numpy() for c in table.columns}
    return _finish(cols, spec, fit_btyd)


@dataclass
class FeatureRows:
    """Feature rows as arrays: numbers in one float block, categories as object arrays. What a
    small request scores from without paying a DataFrame's fixed cost; `to_frame` gives the
    feature table (`feature_table`'s shape)."""

    spec: FeatureSpec
    customer_id: np.ndarray  # object
    as_of: np.ndarray  # datetime64[us]
    numeric: np.ndarray  # (rows, numeric features) float64, in spec.feature_names order
    categorical: dict[str, np.ndarray]  # feature -> object array, None when missing

    def __len__(self) -> int:
        return len(self.customer_id)

    @property
    def numeric_names(self) -> list[str]:
        cats = set(self.spec.categorical_features)
        return [c for c in self.spec.feature_names if c not in cats]

    def to_frame(self) -> pd.DataFrame:
        out: dict[str, object] = {
            CUSTOMER_ID: pd.Series(self.customer_id, dtype=object),
            AS_OF: self.as_of,
        }
        numeric = dict(zip(self.numeric_names, self.numeric.T, strict=True))
        for c in self.spec.feature_names:
            # object columns stay object (pandas would infer its string dtype from an array)
            out[c] = (pd.Series(self.categorical[c], dtype=object) if c in self.categorical
                      else numeric[c])
        return pd.DataFrame(out)


def _finish(cols: dict[str, np.ndarray], spec: FeatureSpec, fit_btyd: bool) -> FeatureRows:
    """Feature rows from an evaluator's columns: times as datetimes, the BG/NBD columns,
    numbers as float64, missing categories as None."""
    if spec.btyd_horizon_days is not None:
        summaries = {c: np.asarray(cols[c], dtype="float64") for c in BTYD_SQL_FEATURES}
        params = (fit_btyd_params(pd.DataFrame(summaries)) if fit_btyd else spec.btyd_params)
        cols = {**cols, **_btyd_columns(summaries, spec, params)}
    n = len(cols["as_of"])
    cats = spec.categorical_features
    numeric = [c for c in spec.feature_names if c not in set(cats)]
    block = np.empty((n, len(numeric)), dtype="float64")
    for j, c in enumerate(numeric):
        block[:, j] = cols[c]
    categorical = {}
    for c in cats:
        values = np.asarray(cols[c], dtype=object)
        categorical[c] = np.where(pd.isna(values), None, values).astype(object)
    return FeatureRows(spec, np.asarray(cols["customer_id"], dtype=object),
                       _from_epoch(cols["as_of"]), block, categorical)


def with_btyd(tables: Tables, spec: FeatureSpec, horizon_days: float, at: pd.Timestamp
              ) -> FeatureSpec:
    """The spec plus buy-till-you-die features for a `horizon_days` label, with BG/NBD
    parameters fitted on the customers active at `at` and their events before it (training
    passes its last training time; scoring then uses these parameters)."""
    spec = replace(spec, btyd_horizon_days=float(horizon_days), btyd_params=None)
    t = pd.Timestamp(at)
    who = tables.customers.loc[active_at(tables.customers, t), CUSTOMER_ID]
    rows = _features_of_pairs(relations(tables.customers, tables.events, spec),
                              pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: t}))
    return replace(spec, btyd_params=fit_btyd_params(rows))


def active_at(customers: pd.DataFrame, t: pd.Timestamp) -> pd.Series:
    """Customers signed up at or before `t` and not churned by it: whom `t` can score."""
    return (customers[SIGNUP_AT] <= t) & ~(customers[CHURNED_AT] <= t)


def feature_table(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    spec: FeatureSpec,
    at: Sequence[pd.Timestamp] | pd.DataFrame,
    progress: Progress | None = None,
    evaluator: str = "auto",
) -> pd.DataFrame:
    """The feature table: one row per (customer, observation time), columns customer_id, as_of
    and `spec.feature_names`. The one public way to compute features.

    `at` is either a list of times (every customer active at each time: signed up at or before
    it and not churned by it), or a frame of (customer_id, as_of) pairs, answered in order.
    `evaluator` is "auto" (NumPy for small inputs, DuckDB for large), "sql" or "numpy"; all
    give the same table."""
    rel = relations(customers, events, spec)
    if isinstance(at, pd.DataFrame):
        return _features_of_pairs(rel, at, evaluator=evaluator)
    parts = []
    for i, when in enumerate(at):
        t = pd.Timestamp(when)
        who = customers.loc[active_at(customers, t), CUSTOMER_ID]
        parts.append(_features_of_pairs(rel, pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: t}),
                                        evaluator=evaluator))
        if progress:
            progress(i + 1, len(at))
    if not parts:
        return _features_of_pairs(rel, pd.DataFrame({CUSTOMER_ID: [], AS_OF: []}),
                                  evaluator=evaluator)
    return pd.concat(parts, ignore_index=True)


def features_of_relations(customers: pa.Table, events: pa.Table, obs: pa.Table,
                          spec: FeatureSpec, evaluator: str = "auto") -> FeatureRows:
    """The feature rows for observations already in the relational form (customers, events
    and obs as documented in `features.definitions`): what a request path uses after it has
    validated its input once. Rows in `obs` order; `.to_frame()` gives the feature table."""
    rel = Relations.from_arrow(customers, events, spec)
    return _rows_of_pairs(rel, obs, evaluator=evaluator)


# ---------------------------------------------------------------------------------------------
# Labelled snapshots
# ---------------------------------------------------------------------------------------------


def event_range(events) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and last event time of an events DataFrame or of scanned events."""
    if isinstance(events, pd.DataFrame):
        return pd.Timestamp(events[TIMESTAMP].min()), pd.Timestamp(events[TIMESTAMP].max())
    _, first, last = events.stats()
    return tuple(pd.Timestamp(_from_epoch(np.array([t]))[0]) for t in (first, last))


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
    last = (end - pd.Timedelta(days=horizon_days)).floor("D")
    first = (start + pd.Timedelta(days=min_history_days)).floor("D")
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
    last = (end - pd.Timedelta(days=horizon_days)).floor("D")
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
                    "customer_id": _strings(cands["customer_id"]),
                    "as_of": cands["as_of"].to_numpy(dtype="float64")})
    labels = rel.query(label_sql(label, horizon_days, rel.spec.activity_types),
                       obs=obs).sort_values("obs_id")
    return pd.DataFrame({
        CUSTOMER_ID: cands["customer_id"].to_numpy(),
        AS_OF: _from_epoch(cands["as_of"]),
        LABEL: labels["label"].to_numpy().astype("int8"),
    })


def build_snapshots(
    tables: Tables,
    spec: FeatureSpec,
    label: str,
    horizon_days: int,
    cadence_days: int,
    times: Sequence[pd.Timestamp] | None = None,
    min_history_days: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Labelled feature rows at regular observation times whose horizon is fully observed."""
    if times is None:
        times = observation_times(
            tables.customers, tables.events, horizon_days, cadence_days,
            MIN_HISTORY_DAYS if min_history_days is None else min_history_days,
        )
    if not times:
        raise ValueError(
            "no observation time has both enough history and a fully observed horizon; "
            "use a shorter horizon or more data"
        )
    rel = relations(tables.customers, tables.events, spec)
    parts = []
    for i, t in enumerate(times):
        labelled = label_observations(rel, [t], label, horizon_days)
        # BG/NBD parameters fitted at each time on that time's past alone
        feats = _features_of_pairs(rel, labelled[[CUSTOMER_ID, AS_OF]], fit_btyd=True)
        parts.append(feats.assign(**{LABEL: labelled[LABEL].to_numpy()}))
        if progress:
            progress(i + 1, len(times))
    return pd.concat(parts, ignore_index=True)


__all__ = [
    "AS_OF", "DAY", "LABEL", "FeatureRows", "active_at", "build_snapshots", "feature_table",
    "check_activity_types", "features_of_relations", "infer_spec",
    "label_observations", "observation_times",
]
