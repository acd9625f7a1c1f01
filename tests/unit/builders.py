"""Small hand-built frames in the shape the data contract produces (naive UTC, string ids)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from features.definitions import FeatureSpec
from features.engine import feature_table

AS_OF = pd.Timestamp("2024-04-10")
SECOND = pd.Timedelta(seconds=1)
DAY = pd.Timedelta(days=1)

EVENT_COLUMNS = ["customer_id", "timestamp", "event_type", "amount"]


def ts(value: object) -> pd.Timestamp:
    return pd.Timestamp(value)


def customers_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Customers with `customer_id`, `signup_at`, optional `churned_at`, and any attributes."""
    frame = pd.DataFrame(list(rows))
    if "churned_at" not in frame:
        frame["churned_at"] = pd.NaT
    return frame.assign(
        customer_id=frame["customer_id"].astype(str),
        signup_at=pd.to_datetime(frame["signup_at"], format="mixed").astype("datetime64[us]"),
        churned_at=pd.to_datetime(frame["churned_at"], format="mixed").astype("datetime64[us]"),
    )


def events_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    """Events from (customer_id, timestamp, event_type[, amount]) tuples; may be empty."""
    padded = [tuple(r) + (np.nan,) * (4 - len(r)) for r in rows]
    frame = pd.DataFrame(padded, columns=EVENT_COLUMNS)
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "timestamp": pd.to_datetime(frame["timestamp"], format="mixed").astype("datetime64[us]"),
        "event_type": frame["event_type"].astype(str),
        "amount": pd.to_numeric(frame["amount"]).astype("float64"),
    })


def spec_for(
    event_types: Sequence[str] = ("login", "payment"), value_columns: Sequence[str] = ("amount",),
    **kwargs,
) -> FeatureSpec:
    return FeatureSpec(event_types=tuple(event_types), value_columns=tuple(value_columns), **kwargs)


def feature_rows(
    customers: pd.DataFrame, events: pd.DataFrame, spec: FeatureSpec, as_of: pd.Timestamp = AS_OF
) -> pd.DataFrame:
    """The feature table at one time, indexed by customer id."""
    return feature_table(customers, events, spec, [as_of]).set_index("customer_id")
