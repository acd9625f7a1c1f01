"""The data contract: every validation error, and the normalisations that loading performs."""

from __future__ import annotations

import gzip
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import (
    AttributeKinds,
    DataError,
    contact_columns_of,
    normalise_ids,
    parse_timestamps,
    plainly_valid_time,
    to_utc_datetime,
    to_utc_naive,
)
from features.files import read_table
from features.tables import classify_attributes, load_tables, validate_customers, validate_events

SOURCE = "crm/customers.csv"
EVENTS_SOURCE = "crm/events.csv"
TWO_SIGNUPS = ["2024-01-01", "2024-01-02"]


def _raises(func, frame: pd.DataFrame, source: str) -> DataError:
    with pytest.raises(DataError) as info:
        func(frame, source)
    return info.value


def _assert_message(error: DataError, source: str, column: str | None, *parts: str) -> None:
    text = str(error)
    assert "\n" not in text
    assert text.startswith(source)
    assert error.source == source
    assert error.column == column
    if column is not None:
        assert f"column '{column}'" in text
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"


# --------------------------------------------------------------------------------------------
# Validation errors on in-memory tables
# --------------------------------------------------------------------------------------------

CUSTOMER_ERRORS = [
    pytest.param(
        {"customer_id": [1, 2], "plan": ["a", "b"]}, "signup_at",
        ["required column is missing", "columns present: customer_id, plan"], id="missing-signup_at",
    ),
    pytest.param(
        {"id": [1, 2], "signup_at": TWO_SIGNUPS}, "customer_id",
        ["required column is missing", "columns present: id, signup_at"], id="missing-customer_id",
    ),
    pytest.param(
        {"customer_id": [1, 2], "signup_at": ["2024-01-01", "not a date"]}, "signup_at",
        ["unparseable timestamp", "row 2: signup_at='not a date'"], id="unparseable-signup",
    ),
    pytest.param(
        {"customer_id": [1, 2], "signup_at": TWO_SIGNUPS, "churned_at": ["2024-03-01", "whenever"]},
        "churned_at", ["unparseable timestamp", "row 2: churned_at='whenever'"],
        id="unparseable-churn",
    ),
    pytest.param(
        {"customer_id": [1, 2], "signup_at": ["2024-01-01", None]}, "signup_at",
        ["missing timestamp", "row 2: signup_at="], id="missing-signup",
    ),
    pytest.param(
        {"customer_id": [1, 2], "signup_at": [20240101, 20240102]}, "signup_at",
        ["expected dates or timestamps, got numbers", "row 1: signup_at=", "20240101"],
        id="numeric-signup",
    ),
    pytest.param(
        {"customer_id": [5, 6, 5], "signup_at": [*TWO_SIGNUPS, "2024-01-03"]}, "customer_id",
        ["duplicate customer ids (1 repeated)", "customer_id='5' appears 2 times"],
        id="duplicate-ids",
    ),
    pytest.param(
        {"customer_id": ["7", " 7 "], "signup_at": TWO_SIGNUPS}, "customer_id",
        ["duplicate customer ids", "customer_id='7' appears 2 times"],
        id="duplicate-after-strip",
    ),
    pytest.param(
        {"customer_id": [1, 2], "signup_at": TWO_SIGNUPS, "churned_at": [None, "2023-12-31"]},
        "churned_at",
        ["churned_at is before signup_at", "row 2: customer_id='2'", "signup_at=2024-01-02",
         "churned_at=2023-12-31"],
        id="churn-before-signup",
    ),
    pytest.param(
        {"customer_id": [1.0, np.nan], "signup_at": TWO_SIGNUPS}, "customer_id",
        ["missing customer id", "row 2: customer_id="], id="missing-id",
    ),
    pytest.param(
        {"customer_id": ["a", "  "], "signup_at": TWO_SIGNUPS}, "customer_id",
        ["empty customer id", "row 2: customer_id='  '"], id="blank-id",
    ),
]


@pytest.mark.parametrize(("data", "column", "parts"), CUSTOMER_ERRORS)
def test_customer_errors_name_source_column_and_example(data, column, parts):
    error = _raises(validate_customers, pd.DataFrame(data), SOURCE)
    _assert_message(error, SOURCE, column, *parts)


def _events(**overrides) -> dict:
    data = {"customer_id": [1, 2], "timestamp": ["2024-01-01", "2024-01-02"],
            "event_type": ["login", "payment"]}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


EVENT_ERRORS = [
    pytest.param(
        {"customer_id": [1], "event_type": ["login"]}, "timestamp",
        ["required column is missing", "columns present: customer_id, event_type"],
        id="missing-timestamp-column",
    ),
    pytest.param(
        {"customer_id": [1], "timestamp": ["2024-01-01"]}, "event_type",
        ["required column is missing", "columns present: customer_id, timestamp"],
        id="missing-event_type-column",
    ),
    pytest.param(
        {"user": [1], "timestamp": ["2024-01-01"], "event_type": ["login"]}, "customer_id",
        ["required column is missing", "columns present: user, timestamp, event_type"],
        id="missing-customer_id-column",
    ),
    pytest.param(
        _events(timestamp=["2024-01-01", "soon"]), "timestamp",
        ["unparseable timestamp", "row 2: timestamp='soon'"], id="unparseable-timestamp",
    ),
    pytest.param(
        _events(timestamp=["2024-01-01", None]), "timestamp",
        ["missing timestamp", "row 2: timestamp="], id="missing-timestamp",
    ),
    pytest.param(
        _events(event_type=["login", None]), "event_type",
        ["missing event type", "row 2: event_type="], id="missing-event-type",
    ),
    pytest.param(
        _events(event_type=["login", "   "]), "event_type",
        ["missing event type", "row 2: event_type='   '"], id="blank-event-type",
    ),
    pytest.param(
        _events(amount=["1.5", "twelve"]), "amount",
        ["amount is not a number", "row 2: amount='twelve'"], id="non-numeric-amount",
    ),
    pytest.param(
        _events(amount=[1.5, np.inf]), "amount",
        ["infinite value", "row 2: amount=", "inf"], id="infinite-amount",
    ),
    pytest.param(
        _events(quantity=[-np.inf, 2.0]), "quantity",
        ["infinite value", "row 1: quantity=", "-inf"], id="infinite-other-value",
    ),
]


@pytest.mark.parametrize(("data", "column", "parts"), EVENT_ERRORS)
def test_event_errors_name_source_column_and_example(data, column, parts):
    error = _raises(validate_events, pd.DataFrame(data), EVENTS_SOURCE)
    _assert_message(error, EVENTS_SOURCE, column, *parts)


@pytest.mark.parametrize(
    ("func", "data", "plain"),
    [
        pytest.param(validate_events, _events(amount=[1.5, np.inf]), "amount=inf", id="inf"),
        pytest.param(
            validate_customers, {"customer_id": [1], "signup_at": [20240101]},
            "signup_at=20240101", id="int",
        ),
        pytest.param(
            validate_customers, {"customer_id": [1.0, np.nan], "signup_at": TWO_SIGNUPS},
            "customer_id=nan", id="nan",
        ),
    ],
)
def test_error_examples_show_plain_values_not_numpy_reprs(func, data, plain):
    """The message is for the user: a value reads as in the file, not as `np.float64(inf)`."""
    text = str(_raises(func, pd.DataFrame(data), SOURCE))
    assert "np." not in text
    assert plain in text


@pytest.mark.parametrize("func", [validate_customers, validate_events])
def test_empty_table_is_an_error(func):
    error = _raises(func, pd.DataFrame({"customer_id": []}), "memory")
    _assert_message(error, "memory", None, "the table has no rows")


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def _write(path: Path, frame: pd.DataFrame) -> Path:
    name = path.name
    if name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)  # pandas compresses .csv.gz by extension
    return path


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        pytest.param("customers.csv", b"customer_id,signup_at\n", "the file has no rows",
                     id="csv-header-only"),
        pytest.param("customers.csv", b"", "the file is empty", id="csv-zero-bytes"),
        pytest.param("customers.csv.gz", gzip.compress(b"customer_id,signup_at\n"),
                     "the file has no rows", id="gz-header-only"),
        pytest.param("customers.csv.gz", b"not gzip at all", "not a readable CSV file",
                     id="gz-corrupt"),
        pytest.param("customers.parquet", b"PAR1 garbage", "not a readable Parquet file",
                     id="parquet-corrupt"),
        pytest.param("customers.xlsx", b"whatever", "unknown file type; use .csv, .csv.gz or .parquet",
                     id="unknown-extension"),
        pytest.param("customers", b"customer_id,signup_at\n1,2024-01-01\n", "unknown file type",
                     id="no-extension"),
    ],
)
def test_read_table_errors_name_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_table(path)
    _assert_message(info.value, str(path), None, problem)


def test_read_table_file_not_found(tmp_path):
    path = tmp_path / "nowhere" / "customers.csv"
    with pytest.raises(DataError) as info:
        read_table(path)
    _assert_message(info.value, str(path), None, "file not found")


def test_load_tables_reports_the_failing_file_and_column(tmp_path):
    customers = _write(tmp_path / "c.csv", pd.DataFrame({"customer_id": [1], "signup_at": ["2024-01-01"]}))
    events = _write(tmp_path / "e.csv", pd.DataFrame({"customer_id": [1], "timestamp": ["2024-01-01"]}))
    with pytest.raises(DataError) as info:
        load_tables(customers, events)
    _assert_message(info.value, str(events), "event_type", "required column is missing")


@pytest.mark.parametrize(
    ("name", "sep"), [("events.tsv", "\t"), ("events.TSV.GZ", "\t"), ("events.pq", None)]
)
def test_read_table_other_supported_extensions(tmp_path, name, sep):
    frame = pd.DataFrame({"customer_id": [1, 2], "timestamp": ["2024-01-01", "2024-01-02"]})
    path = tmp_path / name
    if sep is None:
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, sep=sep, index=False, compression="gzip" if name.endswith("GZ") else None)
    assert read_table(path).shape == (2, 2)


def test_read_table_strips_header_whitespace(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(" customer_id , signup_at\n1,2024-01-01\n")
    assert list(read_table(path).columns) == ["customer_id", "signup_at"]


# --------------------------------------------------------------------------------------------
# load_tables on real files: formats, unknown customers, id matching
# --------------------------------------------------------------------------------------------

FORMATS = ["csv", "csv.gz", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_tables_drops_and_counts_events_of_unknown_customers(tmp_path, fmt):
    customers = pd.DataFrame({
        "customer_id": [1, 2],
        "signup_at": ["2024-01-01", "2024-02-01"],
        "churned_at": ["2024-05-01", None],
        "plan": ["pro", "basic"],
    })
    events = pd.DataFrame({
        "customer_id": [1, 2, 99, 1, 98],
        "timestamp": ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04", "2024-03-05"],
        "event_type": ["login", "login", "login", "payment", "login"],
        "amount": [None, None, None, 19.0, None],
    })
    c_path = _write(tmp_path / f"customers.{fmt}", customers)
    e_path = _write(tmp_path / f"events.{fmt}", events)

    if fmt == "csv.gz":
        assert e_path.read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    tables = load_tables(c_path, e_path)

    assert tables.dropped_unknown_events == 2
    assert any("dropped 2 events" in note for note in tables.notes)
    assert tables.events["customer_id"].tolist() == ["1", "2", "1"]
    assert tables.events["event_type"].tolist() == ["login", "login", "payment"]
    assert tables.value_columns == ("amount",)
    assert tables.attributes == AttributeKinds(categorical=("plan",))
    assert tables.customers["customer_id"].tolist() == ["1", "2"]
    assert tables.customers["churned_at"].iloc[0] == pd.Timestamp("2024-05-01")
    assert pd.isna(tables.customers["churned_at"].iloc[1])
    for frame, col in [(tables.customers, "signup_at"), (tables.customers, "churned_at"),
                       (tables.events, "timestamp")]:
        assert frame[col].dtype == "datetime64[us]"


def test_load_tables_without_unknown_customers_drops_nothing(tmp_path):
    c = _write(tmp_path / "c.csv", pd.DataFrame({"customer_id": [1], "signup_at": ["2024-01-01"]}))
    e = _write(tmp_path / "e.csv", pd.DataFrame(
        {"customer_id": [1], "timestamp": ["2024-01-02"], "event_type": ["login"]}))
    tables = load_tables(c, e)
    assert tables.dropped_unknown_events == 0
    assert tables.notes == []
    assert tables.value_columns == ()


def test_blank_churned_at_column_in_csv_means_nobody_churned(tmp_path):
    """A CSV export where no customer has churned yet has an all-blank churned_at column."""
    c = tmp_path / "c.csv"
    c.write_text("customer_id,signup_at,churned_at\n1,2024-01-01,\n2,2024-02-01,\n")
    e = tmp_path / "e.csv"
    e.write_text("customer_id,timestamp,event_type\n1,2024-03-01,login\n")
    tables = load_tables(c, e)
    assert tables.customers["churned_at"].isna().all()
    assert tables.customers["churned_at"].dtype == "datetime64[us]"


def test_integer_ids_in_one_file_match_string_ids_in_the_other(tmp_path):
    c = _write(tmp_path / "c.parquet", pd.DataFrame(
        {"customer_id": [101, 102], "signup_at": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
    e = _write(tmp_path / "e.parquet", pd.DataFrame({
        "customer_id": ["101", " 102", "103"],
        "timestamp": pd.to_datetime(["2024-02-01", "2024-02-02", "2024-02-03"]),
        "event_type": ["login", "login", "login"],
    }))
    tables = load_tables(c, e)
    assert tables.customers["customer_id"].tolist() == ["101", "102"]
    assert tables.events["customer_id"].tolist() == ["101", "102"]
    assert tables.dropped_unknown_events == 1


def test_float_ids_in_parquet_match_integer_ids_in_csv(tmp_path):
    c = _write(tmp_path / "c.csv", pd.DataFrame({"customer_id": [1, 2], "signup_at": TWO_SIGNUPS}))
    e = _write(tmp_path / "e.parquet", pd.DataFrame({
        "customer_id": [1.0, 2.0],
        "timestamp": pd.to_datetime(["2024-02-01", "2024-02-02"]),
        "event_type": ["login", "login"],
    }))
    tables = load_tables(c, e)
    assert tables.events["customer_id"].tolist() == ["1", "2"]
    assert tables.dropped_unknown_events == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([1.0, 2.0], ["1", "2"], id="float-integers"),
        pytest.param([1, 20], ["1", "20"], id="int"),
        pytest.param(["A1", " b2 "], ["A1", "b2"], id="strings-stripped"),
        pytest.param([1.5, 2.0], ["1.5", "2"], id="each-float-on-its-own"),
    ],
)
def test_normalise_ids(values, expected):
    assert normalise_ids(pd.Series(values), "s").tolist() == expected


# --------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["2024-01-01T10:00:00+02:00"], ["2024-01-01 08:00"], id="offset"),
        pytest.param(["2024-01-01T10:00:00Z"], ["2024-01-01 10:00"], id="zulu"),
        pytest.param(["2024-01-01T00:30:00-05:00", "2024-01-01T10:00:00+02:00"],
                     ["2024-01-01 05:30", "2024-01-01 08:00"], id="mixed-offsets"),
        pytest.param(["2024-01-01", "2024-01-01 10:00:00"], ["2024-01-01", "2024-01-01 10:00"],
                     id="naive-is-utc"),
        pytest.param([" 2024-03-05 ", ""], ["2024-03-05", None], id="blank-is-missing"),
    ],
)
def test_parse_timestamps_returns_naive_utc(values, expected):
    parsed = parse_timestamps(pd.Series(values), "s", "t", allow_missing=True)
    want = pd.Series([pd.Timestamp(v) if v else pd.NaT for v in expected], dtype="datetime64[us]")
    pd.testing.assert_series_equal(parsed, want, check_names=False)


def test_parse_timestamps_converts_aware_datetimes():
    aware = pd.Series(pd.to_datetime(["2024-07-01 12:00"]).tz_localize("Europe/Berlin"))
    parsed = parse_timestamps(aware, "s", "t", allow_missing=False)
    assert parsed.dtype == "datetime64[us]"
    assert parsed.iloc[0] == pd.Timestamp("2024-07-01 10:00")


def test_validate_events_normalises_timezones_to_utc():
    events, _, _ = validate_events(pd.DataFrame({
        "customer_id": [1], "timestamp": ["2024-01-01T10:00:00+02:00"], "event_type": ["login"],
    }))
    assert events["timestamp"].iloc[0] == pd.Timestamp("2024-01-01 08:00")
    assert events["timestamp"].dt.tz is None


# --------------------------------------------------------------------------------------------
# Attributes and value columns
# --------------------------------------------------------------------------------------------


def test_classify_attributes():
    frame = pd.DataFrame({
        "date_of_birth": ["1990-05-01", None, "1985-12-31"],
        "signed_contract": pd.to_datetime(["2020-01-01", "2021-01-01", "2022-01-01"]),
        "seats": [1, 5, 3],
        "mrr": [19.0, np.nan, 49.5],
        "loyalty_member": [True, False, True],
        "country": ["US", "DE", ""],
        "plan": ["basic", "pro", "pro"],
        "code": ["A-1", "B-2", "C-3"],
    })
    kinds = classify_attributes(frame, list(frame.columns))
    assert kinds == AttributeKinds(
        numeric=("seats", "mrr", "loyalty_member"),
        categorical=("country", "plan", "code"),
        datetime=("date_of_birth", "signed_contract"),
    )
    assert kinds.all == ("seats", "mrr", "loyalty_member", "country", "plan", "code",
                         "date_of_birth", "signed_contract")


def test_validate_customers_casts_attributes_by_kind():
    customers, kinds = validate_customers(pd.DataFrame({
        "customer_id": [1, 2, 3],
        "signup_at": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "seats": [1, 2, 3],
        "country": ["US", "", "  "],
        "date_of_birth": ["1990-05-01", None, "2000-02-29"],
    }))
    assert kinds == AttributeKinds(("seats",), ("country",), ("date_of_birth",))
    assert list(customers.columns) == [
        "customer_id", "signup_at", "churned_at", "seats", "country", "date_of_birth"]
    assert customers["seats"].dtype == "float64"
    assert customers["country"].iloc[0] == "US"
    assert customers["country"].iloc[1:].isna().all()  # blank strings become missing
    assert customers["date_of_birth"].dtype == "datetime64[us]"
    assert customers["date_of_birth"].iloc[2] == pd.Timestamp("2000-02-29")
    assert pd.isna(customers["date_of_birth"].iloc[1])
    assert customers["churned_at"].isna().all()


def test_validate_customers_uses_given_kinds():
    """Serving passes the training-time kinds, so a numeric-looking plan code stays a category."""
    kinds = AttributeKinds(categorical=("plan",))
    customers, got = validate_customers(
        pd.DataFrame({"customer_id": [1], "signup_at": ["2024-01-01"], "plan": [3]}), kinds=kinds)
    assert got is kinds
    assert customers["plan"].tolist() == ["3"]


def test_validate_customers_does_not_mutate_its_input():
    frame = pd.DataFrame({"customer_id": [1], "signup_at": ["2024-01-01"], "country": [""]})
    before = frame.copy()
    validate_customers(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_validate_events_value_columns_and_notes():
    events, value_cols, notes = validate_events(pd.DataFrame({
        "customer_id": [1, 2],
        "timestamp": ["2024-01-01", "2024-01-02"],
        "event_type": [" login ", "payment"],
        "quantity": [1, 2],
        "amount": ["19.5", ""],
        "channel": ["web", "app"],
        "flag": [True, False],
    }), "ev.csv")
    assert value_cols == ("amount", "quantity")  # amount first, then by name
    # a text column is kept as a point of contact, after the value columns
    assert list(events.columns) == ["customer_id", "timestamp", "event_type", "quantity", "amount",
                                    "channel"]
    assert contact_columns_of(events, value_cols) == ("channel",)
    assert events["event_type"].tolist() == ["login", "payment"]
    assert events["amount"].iloc[0] == 19.5
    assert np.isnan(events["amount"].iloc[1])  # blank amount is missing, not an error
    assert events["quantity"].dtype == "float64"
    assert notes == [
        "ev.csv: column 'flag' is not numeric and is ignored",
        "ev.csv: column 'channel' is text: read as a point of contact (contact features)",
    ]


def test_text_event_columns_are_bounded_contacts():
    """At most MAX_CONTACT_COLUMNS text columns, the first by name, not those named like a
    time; values trimmed, blank missing, cut at MAX_CONTACT_CHARS; numbers as text stay values."""
    from features.contract import MAX_CONTACT_CHARS, MAX_CONTACT_COLUMNS

    long = "x" * (MAX_CONTACT_CHARS + 50)
    events, value_cols, notes = validate_events(pd.DataFrame({
        "customer_id": [1, 2], "timestamp": ["2024-01-01", "2024-01-02"],
        "event_type": ["login", "payment"],
        "store": [" Berlin ", long], "agent": ["", "ann"], "zone": ["a", "b"], "team": ["t", "u"],
        "created_at": ["2024-01-01", "2024-01-02"], "qty": ["1", " 2 "],
    }), "ev.csv")
    assert MAX_CONTACT_COLUMNS == 3
    assert value_cols == ("qty",) and events["qty"].tolist() == [1.0, 2.0]
    assert contact_columns_of(events, value_cols) == ("agent", "store", "team")
    assert events["store"].tolist() == ["Berlin", "x" * MAX_CONTACT_CHARS]
    assert events["agent"].isna().tolist() == [True, False]
    assert "ev.csv: column 'zone' is text and is ignored (at most 3 contact columns)" in notes
    assert "ev.csv: column 'created_at' is not numeric and is ignored" in notes


@pytest.mark.parametrize("text", ["01/02/2025", "2 Jan 2025", "yesterday"])
def test_a_time_given_as_text_is_iso_8601_or_refused(text):
    from features.contract import to_utc_naive

    with pytest.raises(ValueError, match="ISO 8601"):
        to_utc_naive(text)
    assert to_utc_naive("2025-02-01T10:00:00+01:00") == pd.Timestamp("2025-02-01 09:00")


@pytest.mark.parametrize("value", [
    datetime(2025, 2, 13, 9, 30),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59),
    datetime(2025, 2, 13, 9, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(2, 1, 1, 1, tzinfo=timezone(timedelta(hours=23))),
    datetime(9998, 12, 31, 23, tzinfo=timezone(timedelta(hours=-23))),
    datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=5))),  # year 0 in UTC
    datetime(9999, 12, 31, 22, tzinfo=timezone(timedelta(hours=-5))),  # year 10000 in UTC
])
def test_the_quick_time_rule_agrees_with_the_full_parse(value):
    """`to_utc_datetime`'s shortcut for a datetime gives what the full parse gives, and the
    shortcut is taken only where the parse could not refuse."""
    try:
        full = to_utc_naive(value).to_pydatetime(warn=False)
    except ValueError:
        assert not plainly_valid_time(value)
        with pytest.raises(ValueError, match="outside the years 1 to 9999"):
            to_utc_datetime(value)
        return
    got = to_utc_datetime(value)
    assert got == full and got.tzinfo is None and type(got) is datetime
