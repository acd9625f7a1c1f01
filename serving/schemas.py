"""Typed request and response models of the HTTP service and their checks (their conversion to
the feature engine's inputs is serving/conversion.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
)

from features.contract import (
    plainly_valid_time,
    to_utc_datetime,
    to_utc_naive,
)
from serving.errors import ISO_HINT, error_body

Scalar = str | int | float | bool | None
MAX_ATTRIBUTES = 500  # attributes of one customer, and extra values of one event


def _timestamp_text(value: object) -> object:
    """A JSON number is not a timestamp: 5 would silently be 1970-01-01T00:00:05."""
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date or timestamp string, not a number")
    return value


def _valid_time(value: datetime) -> datetime:
    """Every request time under the one rule (features.contract.to_utc_datetime): a time whose
    UTC reading leaves the years 1 to 9999 is refused here, naming its field, never answered
    and then lost by the prediction log."""
    if plainly_valid_time(value):
        return value
    try:
        to_utc_datetime(value)
    except ValueError:
        raise ValueError("must be a time within the years 1 to 9999 once converted to UTC, "
                         "such as 2025-02-13T09:30:00Z") from None
    return value


def _id_text(value: object) -> object:
    """An id is read as text: a string as written, an integer as its digits (7 is "7"); never
    true/false or a fraction, which would be two customers ("1" and "1.0")."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string or an integer")
    return str(value)


def _utc(value: datetime) -> datetime:
    """A response time with its UTC offset: `to_utc_naive`, then marked as UTC."""
    return to_utc_naive(value).to_pydatetime().replace(tzinfo=UTC)


# request times: strings only; response times: always with their UTC offset
Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text), AfterValidator(_valid_time)]
UtcTimestamp = Annotated[datetime, AfterValidator(_utc)]
CustomerId = Annotated[str, BeforeValidator(_id_text), WithJsonSchema(
    {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
    Field(description="A string, or an integer read as its digits; echoed back as a string.")]


class _RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EventIn(_RequestModel):
    timestamp: Timestamp
    event_type: Annotated[str, Field(min_length=1, max_length=200)]
    amount: float | None = None
    values: dict[str, float | None] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES,
        description="Other numeric event columns, e.g. quantity.")
    contacts: dict[str, str | None] = Field(
        default_factory=dict, max_length=MAX_ATTRIBUTES,
        description="Text event columns naming the point of contact, e.g. store or agent: "
                    "the model's contact columns (the rest are ignored).")


class CustomerIn(_RequestModel):
    customer_id: CustomerId
    signup_at: Timestamp
    attributes: dict[str, Scalar] = Field(default_factory=dict, max_length=MAX_ATTRIBUTES)
    events: list[EventIn] = Field(default_factory=list)


class PredictRequest(_RequestModel):
    customers: Annotated[list[CustomerIn], Field(min_length=1)]
    as_of: Timestamp | None = Field(None, description="Observation time; default: now (UTC).")
    reasons: StrictBool = Field(True, description="Include the top reasons (TreeSHAP).")


class ExplainRequest(CustomerIn):
    as_of: Timestamp | None = None


class FeatureRow(BaseModel):
    """A precomputed feature row: customer_id, as_of and every feature of the model."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    customer_id: CustomerId
    as_of: Timestamp | None = None

    def id_too_long(self, limit: int) -> bool:
        return len(self.customer_id) > limit


class PredictFeaturesRequest(_RequestModel):
    rows: Annotated[list[FeatureRow], Field(min_length=1)]
    reasons: StrictBool = Field(True, description="Include the top reasons (TreeSHAP).")


class Reason(BaseModel):
    feature: str
    value: Scalar
    contribution: float = Field(description="TreeSHAP contribution in log-odds.")
    effect: float = Field(description="Calibrated probability with this feature's contribution "
                                      "minus without it.")
    text: str


WARNINGS = ("What of this customer's input the model has never seen, each naming its field: "
            "event types it has no features for (they count only in the totals), attributes "
            "and event values or contacts it does not know (ignored), category values it has "
            "no level for (read as unseen). Empty when it knows everything; the probability "
            "stands either way.")


class Prediction(BaseModel):
    customer_id: str
    churn_probability: float
    risk_band: str
    reasons: list[Reason] = Field(description="Up to the top few factors that raise the risk.")
    lowering_reasons: list[Reason] = Field(
        default_factory=list, description="Up to the top few factors that lower the risk.")
    model_version: str
    warnings: list[str] = Field(default_factory=list, description=WARNINGS)


class PredictResponse(BaseModel):
    as_of: UtcTimestamp
    model_version: str
    predictions: list[Prediction]


class FeatureContribution(BaseModel):
    feature: str
    value: Scalar
    contribution: float


class ExplainResponse(BaseModel):
    customer_id: str
    as_of: UtcTimestamp
    churn_probability: float
    risk_band: str
    base_value: float = Field(description="Expected raw score (log-odds) before any feature.")
    raw_score: float = Field(description="base_value plus every contribution (log-odds).")
    features: list[FeatureContribution] = Field(
        description="Every feature of the model, largest absolute contribution first.")
    reasons: list[Reason]
    lowering_reasons: list[Reason]
    model_version: str
    warnings: list[str] = Field(default_factory=list, description=WARNINGS)


class ModelInfo(BaseModel):
    name: str | None
    version: str | None
    aliases: list[str]
    uri: str
    run_id: str | None
    feature_version: str
    metrics: dict[str, float]
    features: list[str]
    last_poll: UtcTimestamp | None = Field(None, description="When the alias was last read.")
    poll_error: str | None = Field(None, description="Why the last poll failed, if it did.")


class RequestError(ValueError):
    """A request problem that names the field, for a 4xx JSON answer."""

    def __init__(self, field: str, problem: str, status: int = 400, detail: str | None = None):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem, self.status, self.detail = field, problem, status, detail

    def body(self) -> dict[str, Any]:
        """The one error shape (serving.errors)."""
        return error_body(self.problem, self.field, self.detail)


def resolve_as_of(as_of: datetime | str | None) -> pd.Timestamp:
    """The request's observation time (a datetime, or ISO 8601 text) as naive UTC; now when it
    is not given. A time that is not one, or whose UTC reading leaves the calendar
    (0001-01-01T00:00+01:00 is in year 0), is a 400."""
    try:
        out = pd.Timestamp(to_utc_datetime(as_of if as_of is not None else datetime.now(UTC)))
    except (ValueError, OverflowError):
        raise RequestError("as_of", "is not an ISO 8601 time within the years 1 to 9999 in "
                           f"UTC: {ISO_HINT}") from None
    return out


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


CONTROL_MESSAGE = "contains a control character (such as NUL or a line break)"


def has_control(text: str) -> bool:
    """A control character in an id: it is stored, logged and shown, so it is refused."""
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


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


def check_strings(customers: list[CustomerIn], paths: list[str], max_id: int,
                  max_text: int) -> None:
    """400 for an id longer than `max_id` characters or an attribute name, attribute value or
    event type longer than `max_text`: such strings are echoed back and stored."""
    for c, prefix in zip(customers, paths, strict=True):
        if len(c.customer_id) > max_id:
            raise RequestError(f"{prefix}customer_id", f"longer than {max_id} characters")
        if has_control(c.customer_id):
            raise RequestError(f"{prefix}customer_id", CONTROL_MESSAGE)
        for name, value in c.attributes.items():
            if len(name) > max_text:
                raise RequestError(f"{prefix}attributes", f"a name is longer than {max_text} "
                                   "characters")
            if isinstance(value, str) and len(value) > max_text:
                raise RequestError(f"{prefix}attributes.{name}",
                                   f"longer than {max_text} characters")
        for j, e in enumerate(c.events):
            if len(e.event_type) > max_text:
                raise RequestError(f"{prefix}events[{j}].event_type",
                                   f"longer than {max_text} characters")
            if any(len(k) > max_text for k in e.values):
                raise RequestError(f"{prefix}events[{j}].values",
                                   f"a name is longer than {max_text} characters")
            for name, value in e.contacts.items():
                if len(name) > max_text:
                    raise RequestError(f"{prefix}events[{j}].contacts",
                                       f"a name is longer than {max_text} characters")
                if value is not None and len(value) > max_text:
                    raise RequestError(f"{prefix}events[{j}].contacts.{name}",
                                       f"longer than {max_text} characters")


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
