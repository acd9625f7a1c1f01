"""Request bodies as the feature engine's inputs: customers with their events as relations
(`histories_to_relations`), feature rows as a checked matrix (`rows_to_features`). A bad value
is a RequestError naming its field."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import MAX_CONTACT_CHARS, to_utc_naive
from features.definitions import FeatureSpec
from features.engine import FeatureRows
from serving.errors import ISO_HINT
from serving.schemas import CustomerIn, FeatureRow, RequestError, Scalar


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
    numbers = set(numeric)
    for f in names:  # a category is a scalar, read as its text; an object or list is none
        v = extra[f]
        if f not in numbers and v is not None and (
                isinstance(v, bool) or not isinstance(v, str | int | float)):
            raise RequestError(f"{field}.{f}", "must be text, a number or null (a category)")
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


MAX_WARNINGS = 20  # per customer: a request full of unknown names gets a bounded answer


def _shown(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _close(name: str, known: tuple[str, ...]) -> str:
    """' (did you mean 'plan'?)' for a name that differs from a known one by case or a typo."""
    import difflib

    folded = {k.casefold(): k for k in known}
    match = folded.get(name.casefold()) or next(
        iter(difflib.get_close_matches(name, known, n=1, cutoff=0.8)), None)
    return f" (did you mean {match!r}?)" if match else ""


def unseen_warnings(customer: CustomerIn, spec: FeatureSpec, levels: dict[str, list[str]],
                    prefix: str = "") -> list[str]:
    """What of a customer's history the model has never seen, each naming its field: event
    types it has no features for, attributes, value and contact columns it does not know, and
    category values it has no level for. All are accepted (they count as unseen), but a typo
    such as `Plan` for `plan` must not vanish silently. `levels`: each categorical attribute's
    known values (the model's encoder)."""
    out: list[str] = []
    attributes = spec.attributes.all
    for name in customer.attributes:
        if name not in attributes:
            out.append(f"{prefix}attributes.{name}: is not an attribute of the model and is "
                       f"ignored{_close(name, attributes)}")
    for name in spec.attributes.categorical:
        value = customer.attributes.get(name)
        text = None if value is None else str(value).strip()
        known = levels.get(name)
        if text and known is not None and text not in known:
            hint = _close(text, tuple(known))
            out.append(f"{prefix}attributes.{name}: {text[:100]!r} is a value the model has no "
                       f"level for and is read as unseen{hint or f' (its values: {_shown(known)})'}")
    types = set(spec.event_types)
    values = frozenset(c for c in spec.value_columns if c != "amount")
    contacts = frozenset(spec.contact_columns)
    unknown: dict[str, list[int]] = {}
    extra: dict[tuple[str, str], int] = {}
    amount_at = None  # the first event that sends its amount among its values
    for j, event in enumerate(customer.events):  # one pass: a request may hold 10,000 events
        etype = event.event_type.strip()
        if etype not in types:
            unknown.setdefault(etype, []).append(j)
        for name in event.values or ():
            if name == "amount":
                amount_at = j if amount_at is None else amount_at
            elif name not in values:
                extra.setdefault(("values", name), j)
        for name in event.contacts or ():
            if name not in contacts:
                extra.setdefault(("contacts", name), j)
    for etype, where in unknown.items():
        many = f" (and {len(where) - 1} more)" if len(where) > 1 else ""
        out.append(f"{prefix}events[{where[0]}].event_type{many}: {etype[:100]!r} is not an "
                   "event type the model has features for: it counts only in the totals"
                   f"{_close(etype, spec.event_types)}")
    for (group, name), j in extra.items():
        known = spec.value_columns if group == "values" else spec.contact_columns
        what = "value" if group == "values" else "contact"
        out.append(f"{prefix}events[{j}].{group}.{name}: is not a {what} column of the model "
                   f"and is ignored{_close(name, known)}")
    if amount_at is not None:  # read from the event's own field
        out.append(f"{prefix}events[{amount_at}].values.amount: is ignored: send the amount as "
                   "the event's amount field")
    if len(out) > MAX_WARNINGS:
        out = [*out[:MAX_WARNINGS - 1], f"{len(out) - MAX_WARNINGS + 1} more warnings"]
    return out


def category_levels(spec: FeatureSpec, encoder_levels: dict[str, list[str]]
                    ) -> dict[str, list[str]]:
    """Each categorical attribute's known values, from the encoder's levels by feature name."""
    slugs = spec.attribute_slugs
    return {a: encoder_levels[slugs[a]] for a in spec.attributes.categorical
            if slugs[a] in encoder_levels}
