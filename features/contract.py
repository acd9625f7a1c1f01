"""The data contract: the tables' column names, `DataError`, the validated `Tables`, and the
rules for one value: a time (`to_utc_naive`, `to_utc_datetime`, `parse_timestamps`), a customer id
(`normalise_ids`), a point of contact (`contact_text`).

Reading files is `features.files`; validating whole tables and loading them is
`features.tables`. Every problem raises a `DataError` that names the file, the column, the
problem and an example of a bad row. Timestamps come back as timezone-naive UTC
`datetime64[us]`; customer ids as strings.

Two rules keep rows from being matched or dated by guesswork. A customer id is the text written in
the file (`normalise_ids`). A column of dates written as text is read with one format, ISO 8601
unless the caller names another (`parse_timestamps`); a column that does not fit is refused, never
read value by value, where `01/02/2025` could be January beside `13/02/2025` in February.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CUSTOMER_ID = "customer_id"
SIGNUP_AT = "signup_at"
CHURNED_AT = "churned_at"
TIMESTAMP = "timestamp"
EVENT_TYPE = "event_type"
AMOUNT = "amount"

CUSTOMER_REQUIRED = (CUSTOMER_ID, SIGNUP_AT)
EVENT_REQUIRED = (CUSTOMER_ID, TIMESTAMP, EVENT_TYPE)

# text event columns read as the customer's point of contact (a store, an agent, a channel):
# at most this many, the first by name; each value trimmed and cut to this many characters
MAX_CONTACT_COLUMNS = 3
MAX_CONTACT_CHARS = 200
# a text column so named holds times, not contacts
_TIME_NAME = re.compile(r"(^|_)(at|on|date|time|ts|timestamp|datetime)$|^(date|time)(_|$)", re.I)
MIN_YEAR, MAX_YEAR = 1, 9999  # a time's year once in UTC: Python's datetime holds no other
ISO_8601 = "ISO8601"  # pandas' name for any ISO 8601 form: date, date and time, with or without offset


class DataError(ValueError):
    """A table breaks the data contract. The message is one line meant for the user."""

    def __init__(self, source: str, column: str | None, problem: str, example: object = None):
        where = f"{source}: column '{column}'" if column else source
        text = f"{where}: {problem}"
        if example is not None:
            text += f" (e.g. {example})"
        super().__init__(text)
        self.source = source
        self.column = column
        self.problem = problem


@dataclass(frozen=True)
class AttributeKinds:
    """How each static customer attribute is used: as a number, a category or a date."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    datetime: tuple[str, ...] = ()

    @property
    def all(self) -> tuple[str, ...]:
        return self.numeric + self.categorical + self.datetime


@dataclass
class Tables:
    """Validated customers and events, plus what was dropped on the way."""

    customers: pd.DataFrame
    events: pd.DataFrame
    attributes: AttributeKinds
    value_columns: tuple[str, ...]
    dropped_unknown_events: int = 0
    notes: list[str] = field(default_factory=list)
    contact_columns: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def plain(value: object) -> object:
    """numpy scalars as Python values, so messages read 'inf', not 'np.float64(inf)'."""
    return value.item() if isinstance(value, np.generic) else value


def row_example(frame: pd.DataFrame, mask: pd.Series | np.ndarray, column: str) -> str:
    idx = np.flatnonzero(np.asarray(mask))[0]
    return f"row {idx + 1}: {column}={plain(frame[column].iloc[idx])!r}"


def require_columns(frame: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    for col in required:
        if col not in frame.columns:
            have = ", ".join(map(str, frame.columns[:12]))
            raise DataError(source, col, f"required column is missing (columns present: {have})")



# --------------------------------------------------------------------------------------------
# Times
# --------------------------------------------------------------------------------------------


def to_utc_naive(value: object) -> pd.Timestamp:
    """One date or timestamp (ISO 8601 text, datetime or Timestamp) as naive UTC: an aware
    value is converted to UTC, a naive one is taken as UTC. ValueError when it is not a time.

    The scalar twin of `parse_timestamps`; the CLI, the HTTP schemas and the reviewer page all
    parse times with it."""
    if isinstance(value, bool | int | float):
        raise ValueError(f"{value!r} is a number, not a date or timestamp")
    try:
        if isinstance(value, str):  # ISO 8601 only: 01/02/2025 has two readings
            ts = pd.to_datetime(value.strip(), format="ISO8601")
        else:
            ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"cannot parse {value!r} as an ISO 8601 date or timestamp") from None
    if ts is pd.NaT:
        raise ValueError(f"cannot parse {value!r} as a date or timestamp")
    try:
        ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    except (ValueError, OverflowError):
        ts = None
    if ts is None or not MIN_YEAR <= ts.year <= MAX_YEAR:
        raise ValueError(f"{value!r} is outside the years {MIN_YEAR} to {MAX_YEAR} once "
                         "converted to UTC")
    return ts


def plainly_valid_time(value: object) -> bool:
    """True for a datetime that keeps the rule of `to_utc_datetime` without a parse (6 us,
    and a request checks each of its up to 10,000 events): a naive one lies within the years
    by construction, and an offset (under a day) moves an aware one out of them only from the
    first or last year. False says nothing: the full rule decides."""
    return type(value) is datetime and (value.tzinfo is None
                                         or MIN_YEAR < value.year < MAX_YEAR)


def to_utc_datetime(value: object) -> datetime:
    """The one rule for a valid time, as a Python datetime: `to_utc_naive`, which refuses a
    value that is not a time or whose UTC reading leaves the years 1 to 9999 (what Python's
    datetime, and so every database driver, can hold). Every time a request, the CLI or the
    prediction log takes passes here; ValueError otherwise."""
    if plainly_valid_time(value):
        return value if value.tzinfo is None else (value.replace(tzinfo=None) - value.utcoffset())
    return to_utc_naive(value).to_pydatetime(warn=False)


def check_date_format(date_format: str) -> str:
    """The format, if it can date a column: ValueError for a bad directive, or for a format
    without a year, which would put every date in 1900."""
    if not re.search(r"%[Yy]", date_format):
        raise ValueError(f"{date_format!r} has no year (%Y or %y), such as '%d/%m/%Y'")
    times_in_format(pd.Series([], dtype="string"), date_format)  # pandas checks the directives
    return date_format


def times_in_format(text: pd.Series, date_format: str) -> pd.Series:
    """Text in one format as UTC times; a value that does not fit is NaT, never guessed."""
    return pd.to_datetime(text, utc=True, errors="coerce", format=date_format)


def _parse_one_format(text: pd.Series, date_format: str | None) -> pd.Series:
    """The column read with `date_format`, or with ISO 8601 when none is given.

    A column wholly in ISO 8601 is accepted under another `date_format` too: with the year first
    there is no day-month doubt, and one export often has ISO event times beside dates in the
    local style. Either way every value of the column is read with the same format."""
    parsed = times_in_format(text, date_format or ISO_8601)
    if date_format and (parsed.isna() & text.notna()).any():
        iso = times_in_format(text, ISO_8601)
        if not (iso.isna() & text.notna()).any():
            return iso
    return parsed


def timestamp_problem(date_format: str | None, some_iso: bool) -> str:
    if date_format:
        return (f"unparseable timestamp: does not match --date-format {date_format!r}, and the "
                "column is not all ISO 8601 either; a column is read with one format")
    found = "ISO 8601 mixed with another format" if some_iso else "not ISO 8601"
    return (f"unparseable timestamp: {found}; a column is read with one format, ISO 8601 "
            "(2025-02-13, 2025-02-13T09:30:00Z) unless --date-format names another, such as "
            "'%d/%m/%Y' for day first or '%m/%d/%Y' for month first")


def parse_timestamps(
    values: pd.Series, source: str, column: str, *, allow_missing: bool,
    date_format: str | None = None,
) -> pd.Series:
    """Parse a column to naive UTC datetime64[us]; aware inputs are converted to UTC first.

    Text is read with one format for the whole column (see `_parse_one_format`) and refused
    if any value does not fit it: guessing each value's format reads `01/02/2025` month first
    beside `13/02/2025` day first. Blank text is missing, not an error. Datetime columns (such
    as Parquet timestamps) are taken as they are; numbers are refused, as their unit is unknown."""
    raw = values
    if allow_missing and raw.isna().all():  # e.g. a blank churned_at column: nobody churned yet
        return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us]")
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw if getattr(raw.dt, "tz", None) is None else raw.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        raise DataError(
            source,
            column,
            "expected dates or timestamps, got numbers",
            row_example(pd.DataFrame({column: raw}), raw.notna().to_numpy(), column)
            if raw.notna().any()
            else None,
        )
    else:
        text = raw.astype("string").str.strip().replace("", pd.NA)
        parsed = _parse_one_format(text, date_format)
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise DataError(
                source, column, timestamp_problem(date_format, bool(parsed.notna().any())),
                row_example(pd.DataFrame({column: raw}), bad.to_numpy(), column),
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    if not allow_missing and parsed.isna().any():
        raise DataError(
            source, column, "missing timestamp",
            row_example(pd.DataFrame({column: raw}), parsed.isna().to_numpy(), column),
        )
    return parsed


# --------------------------------------------------------------------------------------------
# Customer ids and points of contact
# --------------------------------------------------------------------------------------------


def _float_ids(values: pd.Series) -> pd.Series:
    """Float ids as text, value by value: a whole number as its integer (7.0 -> '7'), any
    other as its shortest form (1.5 -> '1.5'). Deciding per value, never per column, keeps an
    id's spelling independent of the other rows. Beyond 2**53 a float no longer holds every
    integer exactly, so such values are not taken for integers."""
    exact = ((values % 1 == 0) & (values.abs() <= 2**53)).to_numpy()
    text = values.astype("string")
    text[exact] = values[exact].astype("int64").astype("string")
    return text


def normalise_ids(values: pd.Series, source: str) -> pd.Series:
    """Customer ids as strings, as written but for surrounding spaces, by one rule for both
    tables so that they join.

    Text stays text: `007` is not `7` and `1.0` is not `1` (CSV id columns are read as text
    for this, see `_read_csv`). Integer ids become their decimal digits (7 -> '7'). A float
    column cannot tell how an id was written; pandas makes one of integer ids with a gap, so a
    whole float is taken for that integer (7.0 -> '7', the same customer as a written `7`)."""
    if values.isna().any():
        raise DataError(
            source, CUSTOMER_ID, "missing customer id",
            row_example(pd.DataFrame({CUSTOMER_ID: values}), values.isna().to_numpy(), CUSTOMER_ID),
        )
    text = _float_ids(values) if pd.api.types.is_float_dtype(values) else values.astype("string")
    ids = text.str.strip()
    blank = ids == ""
    if blank.any():
        raise DataError(
            source, CUSTOMER_ID, "empty customer id",
            row_example(pd.DataFrame({CUSTOMER_ID: values}), blank.to_numpy(), CUSTOMER_ID),
        )
    return ids.astype(str)


def contact_text(values: pd.Series) -> pd.Series:
    """A contact column's values as text: trimmed, blank as missing, at most
    MAX_CONTACT_CHARS characters (`features.sources` does the same in SQL)."""
    text = values.astype("string").str.strip().str.slice(0, MAX_CONTACT_CHARS)
    return text.mask(text == "")


def choose_contact_columns(text_columns: list[str], source: str
                           ) -> tuple[tuple[str, ...], list[str]]:
    """Which text event columns become contact columns, and notes on the others: not those
    named like a time (`created_at`, `order_date`), then at most MAX_CONTACT_COLUMNS, the
    first by name, so the choice does not depend on the file's column order."""
    notes, named = [], []
    for col in sorted(text_columns):
        if _TIME_NAME.search(col):
            notes.append(f"{source}: column '{col}' is not numeric and is ignored")
        else:
            named.append(col)
    chosen = tuple(named[:MAX_CONTACT_COLUMNS])
    for col in chosen:
        notes.append(f"{source}: column '{col}' is text: read as a point of contact "
                     "(contact features)")
    for col in named[MAX_CONTACT_COLUMNS:]:
        notes.append(f"{source}: column '{col}' is text and is ignored (at most "
                     f"{MAX_CONTACT_COLUMNS} contact columns)")
    return chosen, notes


def contact_columns_of(events: pd.DataFrame, value_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The contact columns `validate_events` kept: the columns after the value columns."""
    return tuple(c for c in events.columns
                 if c not in (CUSTOMER_ID, TIMESTAMP, EVENT_TYPE, *value_columns))

