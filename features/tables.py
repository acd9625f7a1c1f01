"""The customers and events tables validated against the data contract (`features.contract`),
and both loaded from their files in memory (`load_tables`); `features.sources.open_tables` is
its twin for events scanned where they lie."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import (
    AMOUNT,
    CHURNED_AT,
    CUSTOMER_ID,
    CUSTOMER_REQUIRED,
    EVENT_REQUIRED,
    EVENT_TYPE,
    SIGNUP_AT,
    TIMESTAMP,
    AttributeKinds,
    DataError,
    Tables,
    choose_contact_columns,
    contact_columns_of,
    contact_text,
    normalise_ids,
    parse_timestamps,
    require_columns,
    row_example,
    times_in_format,
)
from features.files import read_table

log = logging.getLogger(__name__)


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
    if date_format and times_in_format(sample, date_format).notna().all():
        return True
    if not sample.str.contains(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}/\d{2,4}").all():
        return False
    return bool(times_in_format(sample, "mixed").notna().all())


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
    require_columns(frame, CUSTOMER_REQUIRED, source)
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
    require_columns(frame, EVENT_REQUIRED, source)
    notes: list[str] = []
    ids = normalise_ids(frame[CUSTOMER_ID], source)
    ts = parse_timestamps(frame[TIMESTAMP], source, TIMESTAMP, allow_missing=False,
                          date_format=date_format)
    etype = frame[EVENT_TYPE]
    missing = etype.isna() | (etype.astype("string").str.strip() == "")
    if missing.any():
        raise DataError(
            source, EVENT_TYPE, "missing event type", row_example(frame, missing.to_numpy(), EVENT_TYPE)
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
                                row_example(frame, bad.to_numpy(), AMOUNT))
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
            raise DataError(source, col, "infinite value", row_example(frame, inf, col))
        values[col] = s
    value_cols = tuple(sorted(values, key=lambda c: (c != AMOUNT, c)))
    contacts, contact_notes = choose_contact_columns(texts, source)
    notes += contact_notes
    out = pd.DataFrame({CUSTOMER_ID: ids, TIMESTAMP: ts, EVENT_TYPE: etype, **values,
                        **{c: contact_text(frame[c]) for c in contacts}})
    return out, value_cols, notes


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
