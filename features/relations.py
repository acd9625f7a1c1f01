"""The tables in the relational form the feature and label SQL reads (`features.definitions`):
customers, events and observations as Arrow tables with times as float epoch seconds, queried
in memory by DuckDB (`Relations`), or where scanned events lie (`features.sources`)."""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import (
    CHURNED_AT,
    CUSTOMER_ID,
    EVENT_TYPE,
    SIGNUP_AT,
    TIMESTAMP,
    contact_text,
    to_utc_naive,
)
from features.definitions import FeatureSpec

AS_OF = "as_of"  # the observation time of a feature row
_local = threading.local()


def connection() -> duckdb.DuckDBPyConnection:
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


def epoch_second(value: object) -> float:
    """One time (text, datetime or Timestamp) as epoch seconds: `to_utc_naive`, then
    `epoch_seconds`."""
    return float(epoch_seconds(pd.Series([to_utc_naive(value)]))[0])


def from_epoch(seconds: np.ndarray | pd.Series) -> np.ndarray:
    """Epoch seconds as datetime64[us] (NaN as NaT). Whole microseconds are exact, and any
    year a datetime holds is in range (nanosecond timedeltas end in 2262)."""
    secs = np.asarray(seconds, dtype="float64")
    micros = np.round(np.nan_to_num(secs) * 1e6).astype("int64")
    out = micros.view("datetime64[us]").copy()
    out[np.isnan(secs)] = np.datetime64("NaT")
    return out


def arrow_floats(values: np.ndarray | pd.Series) -> pa.Array:
    """A float column as Arrow with NaN as NULL, as SQL expects of a missing value."""
    return pa.array(np.asarray(values, dtype="float64"), type=pa.float64(), from_pandas=True)


def arrow_strings(values: pd.Series) -> pa.Array:
    """A string column as Arrow, without a round trip through Python objects."""
    return pa.Array.from_pandas(values.astype("string[pyarrow]"))


def customer_relation(customers: pd.DataFrame, spec: FeatureSpec) -> pa.Table:
    cols = {
        "customer_id": arrow_strings(customers[CUSTOMER_ID]),
        "signup": arrow_floats(epoch_seconds(customers[SIGNUP_AT])),
        "churned": arrow_floats(epoch_seconds(customers[CHURNED_AT])
                           if CHURNED_AT in customers else np.full(len(customers), np.nan)),
    }
    slugs = spec.attribute_slugs
    n = len(customers)
    for a in spec.attributes.numeric:
        cols[slugs[a]] = arrow_floats(
            customers[a].to_numpy(dtype="float64") if a in customers else np.full(n, np.nan)
        )
    for a in spec.attributes.categorical:
        cols[slugs[a]] = (
            arrow_strings(customers[a]) if a in customers else pa.nulls(n, pa.string())
        )
    for a in spec.attributes.datetime:
        cols[slugs[a]] = arrow_floats(epoch_seconds(customers[a]) if a in customers
                                 else np.full(n, np.nan))
    return pa.table(cols)


def event_relation(events: pd.DataFrame, spec: FeatureSpec) -> pa.Table:
    cols = {
        "customer_id": arrow_strings(events[CUSTOMER_ID]),
        "ts": arrow_floats(epoch_seconds(events[TIMESTAMP])),
        "event_type": arrow_strings(events[EVENT_TYPE]),
    }
    for col, s in spec.value_slugs.items():
        cols[f"v_{s}"] = arrow_floats(
            events[col].to_numpy(dtype="float64") if col in events else np.full(len(events), np.nan)
        )
    for col, s in spec.contact_slugs.items():
        cols[f"c_{s}"] = (arrow_strings(contact_text(events[col])) if col in events
                          else pa.nulls(len(events), pa.string()))
    return pa.table(cols)


def obs_relation(obs: pd.DataFrame) -> pa.Table:
    return pa.table({
        "obs_id": np.arange(len(obs), dtype="int64"),
        "customer_id": arrow_strings(obs[CUSTOMER_ID].astype(str)),
        "as_of": epoch_seconds(pd.to_datetime(obs[AS_OF])),
    })


def relations(customers: pd.DataFrame, events, spec: FeatureSpec):
    """The relations the feature and label SQL reads: in memory (`Relations`, DuckDB or NumPy)
    for an events DataFrame, in its engine for events scanned where they lie
    (`features.sources.EventFiles`)."""
    if isinstance(events, pd.DataFrame):
        return Relations(customers, events, spec)
    return events.relations(customers, spec)


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
        con = connection()
        con.register("customers", self.customers)
        con.register("events", self.events)
        for name, frame in extra.items():
            con.register(name, frame)
        try:
            return con.execute(_parsed(con, sql)).fetch_df()
        finally:
            for name in ("customers", "events", *extra):
                con.unregister(name)

