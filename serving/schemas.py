"""Typed request and response models of the HTTP service, and their conversion to frames."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
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
    MAX_CONTACT_CHARS,
    to_utc_naive,
)
from features.definitions import FeatureSpec
from features.engine import FeatureRows
from serving.errors import ISO_HINT, error_body

Scalar = str | int | float | bool | None
MAX_ATTRIBUTES = 500  # attributes of one customer, and extra values of one event


def _timestamp_text(value: object) -> object:
    """A JSON number is not a timestamp: 5 would silently be 1970-01-01T00:00:05."""
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 date or timestamp string, not a number")
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
Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text)]
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


class Prediction(BaseModel):
    customer_id: str
    churn_probability: float
    risk_band: str
    reasons: list[Reason] = Field(description="Up to the top few factors that raise the risk.")
    lowering_reasons: list[Reason] = Field(
        default_factory=list, description="Up to the top few factors that lower the risk.")
    model_version: str


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
        out = to_utc_naive(as_of if as_of is not None else datetime.now(UTC))
        out.to_pydatetime()
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


def _epoch(value: datetime) -> float:
    """A request time as epoch seconds, naive taken as UTC; the engine's own arithmetic
    (whole microseconds / 1e6), so a request and a file give the same float."""
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _naive(value: datetime) -> str:
    return to_utc_naive(value).isoformat()


@dataclass
class Histories:
    """Request histories validated once and held in the engine's relational form
    (features.definitions): one obs row per accepted customer, in request order."""

    customers: pa.Table
    events: pa.Table
    obs: pa.Table
    accepted: list[int]  # the request positions of the obs rows
    errors: dict[int, RequestError]  # the request positions refused, with their error


def _attribute(spec: FeatureSpec, kind: str, name: str, value: Scalar, field: str):
    if kind == "numeric":
        if value is None:
            return math.nan
        try:
            number = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise RequestError(field, "must be a number") from None
        except OverflowError:  # an integer past the largest float
            raise RequestError(field, "must be a finite number") from None
        if not math.isfinite(number):
            raise RequestError(field, "must be a finite number")
        return number
    if kind == "categorical":
        text = None if value is None else str(value).strip()
        return text or None
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        return _epoch(to_utc_naive(value).to_pydatetime())
    except (ValueError, OverflowError):
        raise RequestError(field, f"must be a date or timestamp: {ISO_HINT}") from None


def _contact(value: str | None) -> str | None:
    """`features.contract.contact_text` for one value: trimmed, blank as missing, cut short."""
    text = None if value is None else value.strip()[:MAX_CONTACT_CHARS]
    return text or None


def histories_to_relations(
    customers: list[CustomerIn], as_ofs: list[datetime], spec: FeatureSpec,
    paths: list[str],
) -> Histories:
    """Validate each customer's history against `spec` and its as_of, and build the engine's
    relations from the valid ones, in one pass of plain Python (no DataFrame: a request is
    small, and pandas costs milliseconds per call).

    `paths` prefix each customer's field names ("customers[3]." in /predict, "" in /explain).
    A customer whose input is bad gets its RequestError in `errors` and is left out, so it
    never fails the others. Each customer gets a key unique within the call."""
    kinds = [("numeric", a) for a in spec.attributes.numeric]
    kinds += [("categorical", a) for a in spec.attributes.categorical]
    kinds += [("datetime", a) for a in spec.attributes.datetime]
    slugs = spec.attribute_slugs
    value_slugs = spec.value_slugs
    cust: dict[str, list] = {"customer_id": [], "signup": [], "churned": []}
    cust.update({slugs[a]: [] for _, a in kinds})
    ev_ids: list[str] = []
    ev_ts: list[float] = []
    ev_type: list[str] = []
    ev_vals: dict[str, list] = {col: [] for col in value_slugs}
    contact_slugs = spec.contact_slugs
    ev_contacts: dict[str, list] = {col: [] for col in contact_slugs}
    obs_ids: list[str] = []
    obs_t: list[float] = []
    accepted: list[int] = []
    errors: dict[int, RequestError] = {}
    for i, (c, as_of_dt, prefix) in enumerate(zip(customers, as_ofs, paths, strict=True)):
        try:
            as_of = _epoch(as_of_dt)
            signup = _epoch(c.signup_at)
            if signup > as_of:
                raise RequestError(f"{prefix}signup_at", "is after as_of")
            attrs = [_attribute(spec, kind, a, c.attributes.get(a), f"{prefix}attributes.{a}")
                     for kind, a in kinds]
            times = [_epoch(e.timestamp) for e in c.events]
            late = next((j for j, t in enumerate(times) if t >= as_of), None)
            if late is not None:
                raise RequestError(
                    f"{prefix}events[{late}].timestamp",
                    f"{_naive(c.events[late].timestamp)} is not before as_of {_naive(as_of_dt)}; "
                    "send only history before the observation time")
            types = [e.event_type.strip() for e in c.events]
            blank = next((j for j, t in enumerate(types) if not t), None)
            if blank is not None:
                raise RequestError(f"{prefix}events[{blank}].event_type", "is blank")
        except RequestError as exc:
            errors[i] = exc
            continue
        key = str(i)
        accepted.append(i)
        obs_ids.append(key)
        obs_t.append(as_of)
        cust["customer_id"].append(key)
        cust["signup"].append(signup)
        cust["churned"].append(math.nan)
        for (_, a), v in zip(kinds, attrs, strict=True):
            cust[slugs[a]].append(v)
        ev_ids += [key] * len(times)
        ev_ts += times
        ev_type += types
        for col in value_slugs:
            ev_vals[col] += [e.amount if col == "amount" else e.values.get(col) for e in c.events]
        for col in contact_slugs:
            ev_contacts[col] += [_contact(e.contacts.get(col)) for e in c.events]

    def floats(values: list) -> pa.Array:
        return pa.array(np.asarray(values, dtype="float64"), type=pa.float64(), from_pandas=True)

    customers_rel = pa.table({
        name: (pa.array(values, type=pa.string()) if name == "customer_id"
               or name in spec.categorical_features else floats(values))
        for name, values in cust.items()
    })
    events_rel = pa.table({
        "customer_id": pa.array(ev_ids, type=pa.string()),
        "ts": floats(ev_ts),
        "event_type": pa.array(ev_type, type=pa.string()),
        **{f"v_{s}": floats([math.nan if v is None else v for v in ev_vals[col]])
           for col, s in value_slugs.items()},
        **{f"c_{s}": pa.array(ev_contacts[col], type=pa.string())
           for col, s in contact_slugs.items()},
    })
    obs_rel = pa.table({"obs_id": np.arange(len(obs_ids), dtype="int64"),
                        "customer_id": pa.array(obs_ids, type=pa.string()),
                        "as_of": floats(obs_t)})
    return Histories(customers_rel, events_rel, obs_rel, accepted, errors)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an integer past the largest float
        return False


def _listed(names: list[str], limit: int = 50) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(n[:100] for n in names[:limit]) + more


def _check_row(row: FeatureRow, names: tuple[str, ...], known: set[str], numeric: list[str],
               lower: dict[str, float], field: str) -> None:
    extra = row.model_extra or {}
    if len(extra) != len(names) or not known.issuperset(extra):
        # every wrong name at once, so a caller fixes a row in one round trip
        unknown = sorted(set(extra) - known)
        missing = [f for f in names if f not in extra]
        problems = [f"{field}.{f}: is not a feature of the served model" for f in unknown]
        problems += [f"{field}.{f}: missing feature (send null if unknown)" for f in missing]
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing feature{'s' if len(missing) > 1 else ''} "
                         f"(send null if unknown): {_listed(missing)}")
        if unknown:
            parts.append(f"{len(unknown)} unknown feature{'s' if len(unknown) > 1 else ''}, "
                         f"not features of the served model: {_listed(unknown)}")
        if len(problems) == 1:
            raise RequestError(*problems[0].split(": ", 1))
        raise RequestError(field, "; ".join(parts), detail="; ".join(problems))
    for f in numeric:
        v = extra[f]
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise RequestError(f"{field}.{f}", "must be a number or null")
        if v is not None and not _finite(v):
            raise RequestError(f"{field}.{f}", "must be a finite number or null")
        if v is not None and f in lower and v < lower[f]:
            raise RequestError(f"{field}.{f}", f"must not be below {lower[f]:g}")


def rows_to_features(rows: list[FeatureRow], spec: FeatureSpec, as_ofs: list[pd.Timestamp],
                     indices: list[int] | None = None
                     ) -> tuple[FeatureRows, list[int], dict[int, RequestError]]:
    """Feature rows from JSON rows, checked row by row: a missing feature is an error, an
    unknown one too. Returns the good rows, their positions in `rows`, and the errors of the
    others. A row without its own as_of takes its entry of `as_ofs`; `indices` are the rows'
    positions in the caller's request, for the field names."""
    names = spec.feature_names
    known = set(names)
    cats = set(spec.categorical_features)
    numeric = [f for f in names if f not in cats]
    lower = {f.name: f.lower for f in spec.entries if f.lower is not None}
    positions = indices if indices is not None else list(range(len(rows)))
    good: list[int] = []
    errors: dict[int, RequestError] = {}
    for r, (i, row) in enumerate(zip(positions, rows, strict=True)):
        try:
            _check_row(row, names, known, numeric, lower, f"rows[{i}]")
            good.append(r)
        except RequestError as exc:
            errors[r] = exc
    matrix = np.array([[np.nan if (v := rows[r].model_extra[f]) is None else v for f in numeric]
                       for r in good], dtype="float64").reshape(len(good), len(numeric))
    times = [to_utc_naive(rows[r].as_of) if rows[r].as_of else as_ofs[r] for r in good]
    categorical = {c: np.array([None if (v := rows[r].model_extra[c]) is None else str(v)
                                for r in good], dtype=object)
                   for c in spec.categorical_features}
    features = FeatureRows(spec, np.array([rows[r].customer_id for r in good], dtype=object),
                           np.array(times, dtype="datetime64[us]").reshape(len(good)),
                           matrix, categorical)
    return features, good, errors


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
