"""The data contract: loading and validating the customers and events tables.

Both tables may be CSV (optionally gzipped) or Parquet, chosen by file extension. Every problem
raises a `DataError` that names the file, the column, the problem and an example of a bad row.
Timestamps come back as timezone-naive UTC `datetime64[us]`; customer ids as strings.

Two rules keep rows from being matched or dated by guesswork. A customer id is the text written in
the file (`normalise_ids`). A column of dates written as text is read with one format, ISO 8601
unless the caller names another (`parse_timestamps`); a column that does not fit is refused, never
read value by value, where `01/02/2025` could be January beside `13/02/2025` in February.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

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

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.xz", ".tsv", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
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
# Reading files
# --------------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (plain or compressed) or Parquet file, chosen by its extension."""
    path = Path(path)
    name = path.name.lower()
    if not path.exists():
        raise DataError(str(path), None, "file not found")
    if name.endswith(_PARQUET_SUFFIXES):
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(str(path), None, f"not a readable Parquet file: {exc}") from None
        frame = utc_times(table, str(path)).to_pandas()
    elif name.endswith(_CSV_SUFFIXES):
        try:
            frame = _read_csv(path, "\t" if ".tsv" in name else ",")
        except pd.errors.EmptyDataError:
            raise DataError(str(path), None, "the file is empty") from None
        except Exception as exc:
            raise DataError(str(path), None, f"not a readable CSV file: {exc}") from None
    else:
        raise DataError(
            str(path), None, "unknown file type; use .csv, .csv.gz or .parquet"
        )
    if frame.empty:
        raise DataError(str(path), None, "the file has no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def utc_times(table: pa.Table, source: str) -> pa.Table:
    """Every timestamp and date column of an Arrow table as naive UTC `timestamp[us]`.

    Parquet files carry times in seconds, milliseconds, microseconds or nanoseconds, naive or
    with any zone, and days as `date32`; pandas writes `timestamp[ns, tz=UTC]` by default. One
    unit and zone from the moment a file is opened keeps every later step (and every engine)
    reading the same instants: an aware time is converted to UTC, a naive one is taken as UTC,
    a date is its midnight. Nanoseconds are truncated to the microsecond."""
    columns = {}
    for i, fld in enumerate(table.schema):
        kind = fld.type
        if pa.types.is_timestamp(kind):
            if kind.unit == "us" and kind.tz is None:
                continue
            # an aware column holds UTC instants (Arrow's rule); dropping the zone keeps them
            naive = table.column(i).cast(pa.timestamp(kind.unit))
        elif pa.types.is_date(kind):
            naive = table.column(i).cast(pa.timestamp("s"))
        else:
            continue
        truncate = pa.types.is_timestamp(kind) and kind.unit == "ns"
        try:
            columns[i] = naive.cast(pa.timestamp("us"), safe=not truncate)
        except (pa.ArrowInvalid, OverflowError) as exc:
            import pyarrow.compute as pc

            extreme = pc.min_max(naive)
            raise DataError(source, fld.name, f"a time outside the readable range ({exc})",
                            f"min={extreme['min'].value!r}, max={extreme['max'].value!r}") from None
    for i, column in columns.items():
        table = table.set_column(i, table.schema.field(i).name, column)
    return table


def _read_csv(path: Path, sep: str) -> pd.DataFrame:
    """Read a CSV with its customer id column as text.

    Left to type inference, `007` would become 7 in a column of numbers but stay `007` in a
    column that also holds letters, so the same customer would be spelled differently in two
    files and their rows would not join. The header is read first because the id column may be
    written with spaces around its name."""
    header = pd.read_csv(path, sep=sep, nrows=0).columns
    ids = {col: str for col in header if str(col).strip() == CUSTOMER_ID}
    return pd.read_csv(path, sep=sep, low_memory=False, dtype=ids)


# --------------------------------------------------------------------------------------------
# Column helpers
# --------------------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """numpy scalars as Python values, so messages read 'inf', not 'np.float64(inf)'."""
    return value.item() if isinstance(value, np.generic) else value


def _example(frame: pd.DataFrame, mask: pd.Series | np.ndarray, column: str) -> str:
    idx = np.flatnonzero(np.asarray(mask))[0]
    return f"row {idx + 1}: {column}={_plain(frame[column].iloc[idx])!r}"


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    for col in required:
        if col not in frame.columns:
            have = ", ".join(map(str, frame.columns[:12]))
            raise DataError(source, col, f"required column is missing (columns present: {have})")


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically: a temporary file beside the target, then a rename. Temporary files a
    killed earlier run left beside it (their process is gone) are removed first."""
    write_table(frame, path, "parquet")


def write_table(frame: pd.DataFrame, path: Path, kind: str | None = None) -> None:
    """`write_parquet` for CSV or Parquet, chosen by `kind` or else the file's extension
    (.csv is CSV, anything else Parquet)."""
    kind = kind or ("csv" if path.suffix.lower() == ".csv" else "parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _running(int(pid)):
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if kind == "csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, and someone else's
        return True
    return True


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
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def check_date_format(date_format: str) -> str:
    """The format, if it can date a column: ValueError for a bad directive, or for a format
    without a year, which would put every date in 1900."""
    if not re.search(r"%[Yy]", date_format):
        raise ValueError(f"{date_format!r} has no year (%Y or %y), such as '%d/%m/%Y'")
    _to_datetime(pd.Series([], dtype="string"), date_format)  # pandas checks the directives
    return date_format


def _to_datetime(text: pd.Series, date_format: str) -> pd.Series:
    """Text in one format as UTC times; a value that does not fit is NaT, never guessed."""
    return pd.to_datetime(text, utc=True, errors="coerce", format=date_format)


def _parse_one_format(text: pd.Series, date_format: str | None) -> pd.Series:
    """The column read with `date_format`, or with ISO 8601 when none is given.

    A column wholly in ISO 8601 is accepted under another `date_format` too: with the year first
    there is no day-month doubt, and one export often has ISO event times beside dates in the
    local style. Either way every value of the column is read with the same format."""
    parsed = _to_datetime(text, date_format or ISO_8601)
    if date_format and (parsed.isna() & text.notna()).any():
        iso = _to_datetime(text, ISO_8601)
        if not (iso.isna() & text.notna()).any():
            return iso
    return parsed


def _format_problem(date_format: str | None, some_iso: bool) -> str:
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
            _example(pd.DataFrame({column: raw}), raw.notna().to_numpy(), column)
            if raw.notna().any()
            else None,
        )
    else:
        text = raw.astype("string").str.strip().replace("", pd.NA)
        parsed = _parse_one_format(text, date_format)
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise DataError(
                source, column, _format_problem(date_format, bool(parsed.notna().any())),
                _example(pd.DataFrame({column: raw}), bad.to_numpy(), column),
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[us]")
    if not allow_missing and parsed.isna().any():
        raise DataError(
            source, column, "missing timestamp",
            _example(pd.DataFrame({column: raw}), parsed.isna().to_numpy(), column),
        )
    return parsed


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
            _example(pd.DataFrame({CUSTOMER_ID: values}), values.isna().to_numpy(), CUSTOMER_ID),
        )
    text = _float_ids(values) if pd.api.types.is_float_dtype(values) else values.astype("string")
    ids = text.str.strip()
    blank = ids == ""
    if blank.any():
        raise DataError(
            source, CUSTOMER_ID, "empty customer id",
            _example(pd.DataFrame({CUSTOMER_ID: values}), blank.to_numpy(), CUSTOMER_ID),
        )
    return ids.astype(str)


def _looks_like_dates(values: pd.Series, date_format: str | None) -> bool:
    """Whether a text column holds dates, in one format or in several.

    Guessing each value's format is right for this question alone: a column of dates in two
    formats is still a column of dates, and classing it as a date makes `parse_timestamps`
    refuse it with a pointer to --date-format. As a category of date strings it would quietly
    feed the model nonsense."""
    sample = values.dropna().astype(str).str.strip()
    sample = sample[sample != ""].head(500).astype("string")
    if sample.empty:
        return False
    if date_format and _to_datetime(sample, date_format).notna().all():
        return True
    if not sample.str.contains(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}").all():
        return False
    return bool(_to_datetime(sample, "mixed").notna().all())


def classify_attributes(
    frame: pd.DataFrame, columns: list[str], date_format: str | None = None
) -> AttributeKinds:
    """Numbers stay numbers, date-like columns become dates, everything else a category.

    A date attribute (a date of birth, say) is then read like any timestamp column, with one
    format, so dates in a column that fits no single format are refused, not made a category."""
    numeric, categorical, dates = [], [], []
    for col in columns:
        s = frame[col]
        if pd.api.types.is_bool_dtype(s) or (
            pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s)
        ):
            numeric.append(col)
        elif pd.api.types.is_datetime64_any_dtype(s) or _looks_like_dates(s, date_format):
            dates.append(col)
        else:
            categorical.append(col)
    return AttributeKinds(tuple(numeric), tuple(categorical), tuple(dates))


def clean_attributes(
    frame: pd.DataFrame, kinds: AttributeKinds, source: str, date_format: str | None = None
) -> pd.DataFrame:
    """Cast attributes to their kind: float64, nullable string (blank is missing), or UTC date."""
    missing = [c for c in kinds.all if c not in frame.columns]
    if missing:  # a request may omit attributes the model knows: they are unknown, not errors
        frame = frame.assign(**{c: pd.NA for c in missing})
    out = {}
    for col in kinds.numeric:
        out[col] = frame[col].astype("float64")
    for col in kinds.categorical:
        text = frame[col].astype("string").str.strip()
        out[col] = text.mask(text == "", pd.NA)
    for col in kinds.datetime:
        out[col] = parse_timestamps(frame[col], source, col, allow_missing=True,
                                    date_format=date_format)
    return frame.assign(**out) if out else frame


# --------------------------------------------------------------------------------------------
# Validation of each table
# --------------------------------------------------------------------------------------------


def validate_customers(
    frame: pd.DataFrame, source: str = "customers", kinds: AttributeKinds | None = None,
    *, date_format: str | None = None,
) -> tuple[pd.DataFrame, AttributeKinds]:
    """Check and normalise a customers table. Returns it with the kinds of its attributes.
    Dates written as text are read with `date_format`, ISO 8601 when it is None."""
    if frame.empty:
        raise DataError(source, None, "the table has no rows")
    _require_columns(frame, CUSTOMER_REQUIRED, source)
    ids = normalise_ids(frame[CUSTOMER_ID], source)
    dup = ids.duplicated(keep=False)
    if dup.any():
        first = ids[dup].iloc[0]
        raise DataError(
            source, CUSTOMER_ID,
            f"duplicate customer ids ({int(ids.duplicated().sum())} repeated)",
            f"customer_id={first!r} appears {int((ids == first).sum())} times",
        )
    signup = parse_timestamps(frame[SIGNUP_AT], source, SIGNUP_AT, allow_missing=False,
                              date_format=date_format)
    if CHURNED_AT in frame.columns:
        churned = parse_timestamps(frame[CHURNED_AT], source, CHURNED_AT, allow_missing=True,
                                   date_format=date_format)
    else:
        churned = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    before = (churned < signup).fillna(False).to_numpy()
    if before.any():
        i = int(np.flatnonzero(before)[0])
        raise DataError(
            source, CHURNED_AT, "churned_at is before signup_at",
            f"row {i + 1}: customer_id={ids.iloc[i]!r}, signup_at={signup.iloc[i]}, "
            f"churned_at={churned.iloc[i]}",
        )
    attr_cols = [c for c in frame.columns if c not in (CUSTOMER_ID, SIGNUP_AT, CHURNED_AT)]
    if kinds is None:
        kinds = classify_attributes(frame, attr_cols, date_format)
    out = frame.assign(**{CUSTOMER_ID: ids, SIGNUP_AT: signup, CHURNED_AT: churned})
    out = clean_attributes(out, kinds, source, date_format)
    return out[[CUSTOMER_ID, SIGNUP_AT, CHURNED_AT, *kinds.all]].reset_index(drop=True), kinds


def validate_events(
    frame: pd.DataFrame, source: str = "events", *, date_format: str | None = None
) -> tuple[pd.DataFrame, tuple[str, ...], list[str]]:
    """Check and normalise an events table. Returns it, its numeric value columns and notes.
    Timestamps written as text are read with `date_format`, ISO 8601 when it is None. Text
    columns chosen as contacts (`choose_contact_columns`) stay, after the value columns, as
    text (`contact_text`); `contact_columns_of` names them."""
    if frame.empty:
        raise DataError(source, None, "the table has no rows")
    _require_columns(frame, EVENT_REQUIRED, source)
    notes: list[str] = []
    ids = normalise_ids(frame[CUSTOMER_ID], source)
    ts = parse_timestamps(frame[TIMESTAMP], source, TIMESTAMP, allow_missing=False,
                          date_format=date_format)
    etype = frame[EVENT_TYPE]
    missing = etype.isna() | (etype.astype("string").str.strip() == "")
    if missing.any():
        raise DataError(
            source, EVENT_TYPE, "missing event type", _example(frame, missing.to_numpy(), EVENT_TYPE)
        )
    etype = etype.astype("string").str.strip().astype(str)
    values: dict[str, pd.Series] = {}
    texts: list[str] = []
    for col in frame.columns:
        if col in EVENT_REQUIRED:
            continue
        s = frame[col]
        if col == AMOUNT and not pd.api.types.is_numeric_dtype(s):
            coerced = pd.to_numeric(s, errors="coerce")
            bad = coerced.isna() & s.notna() & (s.astype("string").str.strip() != "")
            if bad.any():
                raise DataError(source, AMOUNT, "amount is not a number",
                                _example(frame, bad.to_numpy(), AMOUNT))
            s = coerced
        if (pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s)
                or isinstance(s.dtype, pd.CategoricalDtype)) and not pd.api.types.is_bool_dtype(s):
            text = contact_text(s)
            coerced = pd.to_numeric(text, errors="coerce")
            if (coerced.isna() & text.notna()).any():  # text, as the engines' TRY_CAST finds
                texts.append(col)
                continue
            s = coerced
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            notes.append(f"{source}: column '{col}' is not numeric and is ignored")
            continue
        s = s.astype("float64")
        inf = np.isinf(s.to_numpy())
        if inf.any():
            raise DataError(source, col, "infinite value", _example(frame, inf, col))
        values[col] = s
    value_cols = tuple(sorted(values, key=lambda c: (c != AMOUNT, c)))
    contacts, contact_notes = choose_contact_columns(texts, source)
    notes += contact_notes
    out = pd.DataFrame({CUSTOMER_ID: ids, TIMESTAMP: ts, EVENT_TYPE: etype, **values,
                        **{c: contact_text(frame[c]) for c in contacts}})
    return out, value_cols, notes


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


def drop_unknown_customers(
    events: pd.DataFrame, customers: pd.DataFrame
) -> tuple[pd.DataFrame, int]:
    known = events[CUSTOMER_ID].isin(customers[CUSTOMER_ID])
    dropped = int((~known).sum())
    if dropped:
        events = events[known.to_numpy()].reset_index(drop=True)
    return events, dropped


def load_tables(
    customers_path: str | Path, events_path: str | Path, *, date_format: str | None = None
) -> Tables:
    """Load both files, validate them and drop events of unknown customers (counted).

    `date_format` (strftime syntax, such as '%d/%m/%Y') is the one format of every date column
    written as text that is not wholly ISO 8601; without it such columns are refused."""
    customers, kinds = validate_customers(read_table(customers_path), str(customers_path),
                                          date_format=date_format)
    events, value_cols, notes = validate_events(read_table(events_path), str(events_path),
                                                date_format=date_format)
    events, dropped = drop_unknown_customers(events, customers)
    if dropped:
        notes.append(f"{events_path}: dropped {dropped} events of customers not in {customers_path}")
    for note in notes:
        log.info(note)  # callers show the notes (the CLI prints each once)
    return Tables(customers, events, kinds, value_cols, dropped, notes,
                  contact_columns_of(events, value_cols))
