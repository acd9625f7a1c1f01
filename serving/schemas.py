"""Typed request and response models of the HTTP service, and their conversion to frames."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from features.contract import (
    CHURNED_AT,
    CUSTOMER_ID,
    EVENT_TYPE,
    SIGNUP_AT,
    TIMESTAMP,
    DataError,
    to_utc_naive,
    validate_customers,
)
from features.definitions import FeatureSpec

Scalar = str | int | float | bool | None


class _RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EventIn(_RequestModel):
    timestamp: datetime
    event_type: Annotated[str, Field(min_length=1, max_length=200)]
    amount: float | None = None
    values: dict[str, float | None] = Field(
        default_factory=dict, description="Other numeric event columns, e.g. quantity.")


class CustomerIn(_RequestModel):
    customer_id: Annotated[str | int, Field(description="Any id; echoed back.")]
    signup_at: datetime
    attributes: dict[str, Scalar] = Field(default_factory=dict)
    events: list[EventIn] = Field(default_factory=list)


class PredictRequest(_RequestModel):
    customers: Annotated[list[CustomerIn], Field(min_length=1)]
    as_of: datetime | None = Field(None, description="Observation time; default: now (UTC).")
    reasons: bool = Field(True, description="Include the top reasons (TreeSHAP).")


class ExplainRequest(CustomerIn):
    as_of: datetime | None = None


class FeatureRow(BaseModel):
    """A precomputed feature row: customer_id, as_of and every feature of the model."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=True)
    customer_id: str | int
    as_of: datetime | None = None


class PredictFeaturesRequest(_RequestModel):
    rows: Annotated[list[FeatureRow], Field(min_length=1)]
    reasons: bool = Field(True, description="Include the top reasons (TreeSHAP).")


class Reason(BaseModel):
    feature: str
    value: Scalar
    contribution: float = Field(description="TreeSHAP contribution in log-odds.")
    effect: float = Field(description="Calibrated probability with this feature's contribution "
                                      "minus without it.")
    text: str


class Prediction(BaseModel):
    customer_id: str | int
    churn_probability: float
    risk_band: str
    reasons: list[Reason] = Field(description="Up to the top few factors that raise the risk.")
    lowering_reasons: list[Reason] = Field(
        default_factory=list, description="Up to the top few factors that lower the risk.")
    model_version: str


class PredictResponse(BaseModel):
    as_of: datetime
    model_version: str
    predictions: list[Prediction]


class FeatureContribution(BaseModel):
    feature: str
    value: Scalar
    contribution: float


class ExplainResponse(BaseModel):
    customer_id: str | int
    as_of: datetime
    churn_probability: float
    risk_band: str
    base_value: float = Field(description="Expected raw score (log-odds) before any feature.")
    raw_score: float = Field(description="base_value plus every contribution (log-odds).")
    features: list[FeatureContribution]
    reasons: list[Reason]
    lowering_reasons: list[Reason]
    model_version: str


class ModelInfo(BaseModel):
    name: str | None
    version: str | None
    aliases: list[str]
    uri: str
    run_id: str | None
    feature_version: str
    metrics: dict[str, float]
    features: list[str]


class RequestError(ValueError):
    """A request problem that names the field, for a 4xx JSON answer."""

    def __init__(self, field: str, problem: str, status: int = 400):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.status = field, problem, status

    def body(self) -> dict[str, Any]:
        return {"error": self.problem, "field": self.field}


def resolve_as_of(as_of: datetime | None) -> pd.Timestamp:
    """The request's observation time as naive UTC; now when it is not given."""
    return to_utc_naive(as_of if as_of is not None else datetime.now(UTC))


def json_value(value: object) -> Scalar:
    """A feature value as JSON: numpy scalars as Python, non-finite numbers as null."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value  # type: ignore[return-value]


def check_limits(n_customers: int, n_events: int, max_customers: int, max_events: int,
                 path: str = "customers[].") -> None:
    """413 past the configured maximum of customers or events in one request. `path` prefixes
    field names: "customers[]." for /predict, "" for /explain's single customer."""
    if n_customers > max_customers:
        raise RequestError("customers", f"{n_customers} customers in one request; the limit is "
                           f"{max_customers}", 413)
    if n_events > max_events:
        raise RequestError(f"{path}events", f"{n_events} events in one request; the limit "
                           f"is {max_events}", 413)


def histories_to_frames(
    customers: list[CustomerIn], as_ofs: list[pd.Timestamp], spec: FeatureSpec,
    path: str = "customers[{i}].",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Customers, events and (customer, as_of) pairs for the feature engine.

    Each customer gets a key unique within the call ('0', '1', ...), so customers with the same
    id from different requests never mix. Raises RequestError naming the bad field: an event at
    or after as_of, or an attribute that is not of the model's type."""
    keys = [str(i) for i in range(len(customers))]
    rows = []
    ev_ids, ev_ts, ev_type, ev_vals = [], [], [], {c: [] for c in spec.value_columns}
    for i, (c, as_of) in enumerate(zip(customers, as_ofs, strict=True)):
        signup = to_utc_naive(c.signup_at)
        if signup > as_of:
            raise RequestError(f"{path.format(i=i)}signup_at", "is after as_of")
        rows.append({CUSTOMER_ID: keys[i], SIGNUP_AT: signup, CHURNED_AT: pd.NaT,
                     **{a: c.attributes.get(a) for a in spec.attributes.all}})
        for j, e in enumerate(c.events):
            ts = to_utc_naive(e.timestamp)
            if ts >= as_of:
                raise RequestError(
                    f"{path.format(i=i)}events[{j}].timestamp",
                    f"{ts.isoformat()} is not before as_of {as_of.isoformat()}; "
                    "send only history before the observation time")
            ev_ids.append(keys[i])
            ev_ts.append(ts)
            ev_type.append(e.event_type)
            for col in spec.value_columns:
                ev_vals[col].append(e.amount if col == "amount" else e.values.get(col))
    frame = pd.DataFrame(rows)
    for a in spec.attributes.numeric:
        coerced = pd.to_numeric(frame[a], errors="coerce")
        bad = coerced.isna() & frame[a].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise RequestError(f"{path.format(i=i)}attributes.{a}", "must be a number")
        frame[a] = coerced.astype("float64")
    for a in spec.attributes.categorical:
        frame[a] = frame[a].map(lambda v: None if v is None else str(v))
    try:
        cust, _ = validate_customers(frame, "request", kinds=spec.attributes)
    except DataError as exc:
        raise RequestError(f"{path.format(i='')}{exc.column or 'attributes'}", exc.problem) from None
    events = pd.DataFrame({
        CUSTOMER_ID: pd.Series(ev_ids, dtype=object),
        TIMESTAMP: pd.Series(ev_ts, dtype="datetime64[us]"),
        EVENT_TYPE: pd.Series(ev_type, dtype=object),
        **{col: pd.Series(v, dtype="float64") for col, v in ev_vals.items()},
    })
    obs = pd.DataFrame({CUSTOMER_ID: keys, "as_of": pd.Series(as_ofs, dtype="datetime64[us]")})
    return cust, events, obs


def rows_to_features(rows: list[FeatureRow], spec: FeatureSpec, as_of: pd.Timestamp) -> pd.DataFrame:
    """A feature table from JSON rows; a missing feature is an error, an unknown one too."""
    names = spec.feature_names
    known = set(names)
    cats = set(spec.categorical_features)
    numeric = [f for f in names if f not in cats]
    matrix = np.empty((len(rows), len(numeric)), dtype="float64")
    categorical: dict[str, list] = {c: [] for c in spec.categorical_features}
    for i, row in enumerate(rows):
        extra = row.model_extra or {}
        if len(extra) != len(names) or not known.issuperset(extra):
            unknown = sorted(set(extra) - known)
            if unknown:
                raise RequestError(f"rows[{i}].{unknown[0]}", "is not a feature of the served model")
            missing = next(f for f in names if f not in extra)
            raise RequestError(f"rows[{i}].{missing}", "missing feature (send null if unknown)")
        for j, f in enumerate(numeric):
            v = extra[f]
            if v is None:
                matrix[i, j] = np.nan
            elif isinstance(v, int | float) and not isinstance(v, bool):
                matrix[i, j] = v
            else:
                raise RequestError(f"rows[{i}].{f}", "must be a number or null")
        for c, values in categorical.items():
            v = extra[c]
            values.append(None if v is None else str(v))
    frame = pd.DataFrame(matrix, columns=numeric)
    ids = [r.customer_id for r in rows]
    times = [to_utc_naive(r.as_of) if r.as_of else as_of for r in rows]
    return frame.assign(**{CUSTOMER_ID: ids, "as_of": times},
                        **{c: pd.Series(v, dtype=object) for c, v in categorical.items()})


def _reasons(rows: list[dict]) -> list[Reason]:
    return [Reason(**{**r, "value": json_value(r["value"])}) for r in rows]


def predictions_from(frame: pd.DataFrame, reasons: list[list[dict]], lowering: list[list[dict]],
                     ids: list, version: str) -> list[Prediction]:
    return [
        Prediction(customer_id=cid, churn_probability=float(p), risk_band=band,
                   model_version=version, reasons=_reasons(up), lowering_reasons=_reasons(down))
        for cid, p, band, up, down in zip(ids, frame["churn_probability"], frame["risk_band"],
                                          reasons, lowering, strict=True)
    ]
