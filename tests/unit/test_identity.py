"""Identity and time (issue #12): a customer id is the text written in the file, and a
timestamp column is read with one format.

The attacks these tests replay: `007` read as 7 in one file and `007` in the other, so every
event was dropped with only a note; and `13/02/2025` read as 13 February beside `01/02/2025`
read as 2 January in the same column.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from features.contract import (
    AttributeKinds,
    DataError,
    check_date_format,
    normalise_ids,
    parse_timestamps,
)
from features.tables import classify_attributes, load_tables, validate_customers
from tests.unit.test_cli import assert_one_line_error, churn

# --------------------------------------------------------------------------------------------
# Customer ids
# --------------------------------------------------------------------------------------------


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "events_ids",
    [pytest.param(["007", "007"], id="numeric-column"), pytest.param(["007", "A1"], id="mixed-column")],
)
def test_zero_padded_ids_in_csv_join_and_keep_their_zeros(tmp_path, events_ids):
    """`007` in an all-digit column and in a mixed one is the same customer `007`."""
    customers = _csv(tmp_path / "c.csv", "customer_id,signup_at\n007,2024-01-01\nA1,2024-01-01\n")
    events = _csv(tmp_path / "e.csv", "customer_id,timestamp,event_type\n"
                  + "".join(f"{i},2024-02-01,login\n" for i in events_ids))
    tables = load_tables(customers, events)
    assert tables.customers["customer_id"].tolist() == ["007", "A1"]
    assert tables.events["customer_id"].tolist() == events_ids
    assert tables.dropped_unknown_events == 0


def test_zero_padded_ids_in_gzipped_csv_keep_their_zeros(tmp_path):
    pd.DataFrame({"customer_id": ["007"], "signup_at": ["2024-01-01"]}).to_csv(
        tmp_path / "c.csv.gz", index=False)
    pd.DataFrame({"customer_id": ["007"], "timestamp": ["2024-02-01"], "event_type": ["login"]}
                 ).to_csv(tmp_path / "e.csv.gz", index=False)
    tables = load_tables(tmp_path / "c.csv.gz", tmp_path / "e.csv.gz")
    assert tables.events["customer_id"].tolist() == ["007"]
    assert tables.dropped_unknown_events == 0


def test_zero_padded_id_and_its_number_are_two_customers(tmp_path):
    """`007` and `7` are different ids: neither merged into one nor refused as duplicates."""
    customers = _csv(tmp_path / "c.csv", "customer_id,signup_at\n007,2024-01-01\n7,2024-01-02\n")
    events = _csv(tmp_path / "e.csv", "customer_id,timestamp,event_type\n7,2024-02-01,login\n")
    tables = load_tables(customers, events)
    assert tables.customers["customer_id"].tolist() == ["007", "7"]
    assert tables.events["customer_id"].tolist() == ["7"]


def test_id_column_with_spaces_in_its_header_is_still_read_as_text(tmp_path):
    customers = _csv(tmp_path / "c.csv", " customer_id ,signup_at\n007,2024-01-01\n")
    events = _csv(tmp_path / "e.csv", "customer_id,timestamp,event_type\n 007 ,2024-02-01,login\n")
    tables = load_tables(customers, events)
    assert tables.customers["customer_id"].tolist() == ["007"]
    assert tables.events["customer_id"].tolist() == ["007"]


def test_one_and_one_point_zero_written_in_csv_are_two_customers(tmp_path):
    """Written text is the id: `1` and `1.0` in a CSV are two customers, each with its events."""
    customers = _csv(tmp_path / "c.csv", "customer_id,signup_at\n1,2024-01-01\n1.0,2024-01-02\n")
    events = _csv(tmp_path / "e.csv", "customer_id,timestamp,event_type\n"
                  "1.0,2024-02-01,login\n1,2024-02-02,login\n2.0,2024-02-03,login\n")
    tables = load_tables(customers, events)
    assert tables.customers["customer_id"].tolist() == ["1", "1.0"]
    assert tables.events["customer_id"].tolist() == ["1.0", "1"]
    assert tables.dropped_unknown_events == 1  # `2.0` is nobody


def test_whole_float_ids_in_parquet_are_their_integers(tmp_path):
    """A float column (integer ids with a gap, as pandas writes them) cannot show how an id was
    written: 7.0 is taken for the integer 7, the customer a CSV writes as `7`, not `7.0`."""
    customers = _csv(tmp_path / "c.csv", "customer_id,signup_at\n7,2024-01-01\n7.0,2024-01-02\n")
    pd.DataFrame({
        "customer_id": [7.0, 8.0],
        "timestamp": pd.to_datetime(["2024-02-01", "2024-02-02"]),
        "event_type": ["login", "login"],
    }).to_parquet(tmp_path / "e.parquet", index=False)
    tables = load_tables(customers, tmp_path / "e.parquet")
    assert tables.events["customer_id"].tolist() == ["7"]
    assert tables.dropped_unknown_events == 1


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param(["007", "7", " 007 "], ["007", "7", "007"], id="text-as-written"),
        pytest.param(["1", "1.0"], ["1", "1.0"], id="text-one-and-one-point-zero"),
        pytest.param([7, 8], ["7", "8"], id="integers"),
        pytest.param(pd.array([7, 8], dtype="Int64"), ["7", "8"], id="nullable-integers"),
        pytest.param([7.0, 8.0], ["7", "8"], id="whole-floats"),
        pytest.param([7.0, 7.5], ["7", "7.5"], id="whole-float-beside-a-fraction"),
        pytest.param([2.0**60], ["1.152921504606847e+18"], id="float-beyond-exact-integers"),
    ],
)
def test_normalise_ids_rule(values, expected):
    assert normalise_ids(pd.Series(values), "s").tolist() == expected


# --------------------------------------------------------------------------------------------
# One format per date column
# --------------------------------------------------------------------------------------------

DAY_FIRST = ["13/02/2025", "01/02/2025"]


def _refused(values: list, date_format: str | None = None) -> str:
    with pytest.raises(DataError) as info:
        parse_timestamps(pd.Series(values), "crm.csv", "signup_at", allow_missing=True,
                         date_format=date_format)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("crm.csv: column 'signup_at': unparseable timestamp")
    return text


def _parsed(values: list | pd.Series, date_format: str | None) -> list:
    parsed = parse_timestamps(pd.Series(values), "s", "t", allow_missing=True,
                              date_format=date_format)
    assert parsed.dtype == "datetime64[us]"
    return [None if pd.isna(v) else str(v) for v in parsed]


def test_day_first_column_is_refused_without_a_date_format():
    """Neither value is guessed: 13/02 cannot be month first, 01/02 could be either."""
    text = _refused(DAY_FIRST)
    for part in ("not ISO 8601", "--date-format", "'%d/%m/%Y'", "row 1: signup_at='13/02/2025'"):
        assert part in text, text


def test_ambiguous_day_and_month_alone_is_refused_without_a_date_format():
    assert "row 1: signup_at='01/02/2025'" in _refused(["01/02/2025"])


def test_day_first_column_is_read_with_its_date_format():
    assert _parsed(DAY_FIRST, "%d/%m/%Y") == ["2025-02-13 00:00:00", "2025-02-01 00:00:00"]


def test_month_first_date_format_refuses_a_thirteenth_month():
    text = _refused(DAY_FIRST, "%m/%d/%Y")
    assert "does not match --date-format '%m/%d/%Y'" in text
    assert "row 1: signup_at='13/02/2025'" in text


def test_month_first_format_reads_month_first():
    assert _parsed(["03/05/2024"], "%m/%d/%Y") == ["2024-03-05 00:00:00"]


@pytest.mark.parametrize("date_format", [None, "%d/%m/%Y"])
def test_column_mixing_iso_and_slash_dates_is_refused(date_format):
    text = _refused(["2025-02-13", "2025-02-14T09:30:00Z", "01/02/2025"], date_format)
    if date_format is None:
        assert "ISO 8601 mixed with another format" in text
        assert "row 3: signup_at='01/02/2025'" in text
    else:
        assert "does not match --date-format '%d/%m/%Y'" in text
        assert "row 1: signup_at='2025-02-13'" in text


def test_a_column_wholly_in_iso_8601_is_read_under_another_date_format():
    """The year first leaves no doubt, so ISO event times work beside day-first signups."""
    assert _parsed(["2025-02-13T09:30:00+01:00", "2025-02-01"], "%d/%m/%Y") == [
        "2025-02-13 08:30:00", "2025-02-01 00:00:00"]


def test_blank_values_are_missing_under_a_date_format():
    assert _parsed(["13/02/2025", "", "  ", None], "%d/%m/%Y") == [
        "2025-02-13 00:00:00", None, None, None]


def test_date_format_with_time_and_offset_gives_naive_utc():
    assert _parsed(["13/02/2025 10:00 +0200"], "%d/%m/%Y %H:%M %z") == ["2025-02-13 08:00:00"]


def test_datetime_columns_ignore_the_date_format():
    """Parquet timestamps carry no text format; numbers stay refused, their unit unknown."""
    times = pd.Series(pd.to_datetime(["2025-02-13 10:00"]))
    assert _parsed(times, "%d/%m/%Y") == ["2025-02-13 10:00:00"]
    with pytest.raises(DataError, match="expected dates or timestamps, got numbers"):
        parse_timestamps(pd.Series([1739440800]), "s", "t", allow_missing=False,
                         date_format="%d/%m/%Y")


def test_load_tables_reads_day_first_csv_with_a_date_format(tmp_path):
    customers = _csv(tmp_path / "c.csv", "customer_id,signup_at,churned_at\n"
                     "007,13/02/2025,\n008,01/02/2025,01/03/2025\n")
    events = _csv(tmp_path / "e.csv", "customer_id,timestamp,event_type\n"
                  "007,2025-02-20T10:00:00Z,login\n008,2025-02-21T10:00:00Z,login\n")
    with pytest.raises(DataError) as info:
        load_tables(customers, events)
    assert str(info.value).startswith(f"{customers}: column 'signup_at': unparseable timestamp")
    tables = load_tables(customers, events, date_format="%d/%m/%Y")
    c = tables.customers
    assert c["signup_at"].tolist() == [pd.Timestamp("2025-02-13"), pd.Timestamp("2025-02-01")]
    assert c["churned_at"].iloc[1] == pd.Timestamp("2025-03-01")
    assert tables.events["timestamp"].iloc[0] == pd.Timestamp("2025-02-20 10:00")


# --------------------------------------------------------------------------------------------
# Date attributes follow the same rule
# --------------------------------------------------------------------------------------------


def _customers(**attributes) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["a", "b"], "signup_at": ["2024-01-01", "2024-01-02"],
                         **attributes})


@pytest.mark.parametrize(
    "birth",
    [pytest.param(DAY_FIRST, id="day-first"), pytest.param(["1990-05-01", "01/02/1985"], id="mixed")],
)
def test_date_attribute_in_no_single_format_is_refused(birth):
    """A column of dates is refused like a timestamp column, not used as a category of text."""
    with pytest.raises(DataError) as info:
        validate_customers(_customers(date_of_birth=birth), "crm.csv")
    assert str(info.value).startswith("crm.csv: column 'date_of_birth': unparseable timestamp")
    assert "--date-format" in str(info.value)


@pytest.mark.parametrize("date_format", ["%d/%m/%Y", "%d.%m.%Y"])
def test_date_attribute_is_read_with_the_date_format(date_format):
    birth = [d.replace("/", date_format[2]) for d in DAY_FIRST]
    customers, kinds = validate_customers(
        _customers(date_of_birth=birth, code=["A-1", "B-2"]), date_format=date_format)
    assert kinds == AttributeKinds(categorical=("code",), datetime=("date_of_birth",))
    assert customers["date_of_birth"].tolist() == [pd.Timestamp("2025-02-13"),
                                                   pd.Timestamp("2025-02-01")]


def test_text_that_is_not_dates_stays_categorical():
    kinds = classify_attributes(_customers(note=["born 2024-01-01", "12/34/56"]), ["note"])
    assert kinds == AttributeKinds(categorical=("note",))


# --------------------------------------------------------------------------------------------
# The format itself
# --------------------------------------------------------------------------------------------


def test_check_date_format():
    assert check_date_format("%d/%m/%Y %H:%M") == "%d/%m/%Y %H:%M"
    with pytest.raises(ValueError, match="bad directive"):
        check_date_format("%d/%Q/%Y")
    with pytest.raises(ValueError, match="has no year"):
        check_date_format("%d/%m")


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------

DAY_FIRST_CSV = "customer_id,signup_at\n007,13/02/2025\n008,01/02/2025\n"
ISO_EVENTS_CSV = ("customer_id,timestamp,event_type\n"
                  "007,2025-03-01T10:00:00Z,login\n008,2025-03-02T10:00:00Z,login\n")

# id: (extra arguments, exit code, words the single stderr line must contain)
CLI = {
    "with-date-format": (["--date-format", "%d/%m/%Y"], 0, []),
    "without-date-format": (
        [], 2, ["data error:", "day_first.csv: column 'signup_at': unparseable timestamp: not ISO 8601",
                "--date-format", "(e.g. row 1: signup_at='13/02/2025')"],
    ),
    "bad-date-format": (
        ["--date-format", "%d/%Q/%Y"], 2, ["error:", "'--date-format'", "bad directive"],
    ),
}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory) -> tuple[Path, dict[str, subprocess.CompletedProcess[str]]]:
    folder = tmp_path_factory.mktemp("day_first")
    customers = _csv(folder / "day_first.csv", DAY_FIRST_CSV)
    events = _csv(folder / "iso.csv", ISO_EVENTS_CSV)
    with ThreadPoolExecutor(max_workers=len(CLI)) as pool:
        futures = {
            name: pool.submit(churn, "features", "--customers", customers, "--events", events,
                              "--as-of", "2025-06-01", "--out", folder / f"{name}.parquet", *extra)
            for name, (extra, _, _) in CLI.items()
        }
        return folder, {name: f.result() for name, f in futures.items()}


def test_cli_date_format_reads_day_first_dates_and_ids_keep_their_zeros(cli_runs):
    folder, runs = cli_runs
    assert runs["with-date-format"].returncode == 0, runs["with-date-format"].stderr
    table = pd.read_parquet(folder / "with-date-format.parquet")
    # signed up on 13 and 1 February (108 and 120 days before 1 June), not on 2 January
    assert table.set_index("customer_id")["tenure_days"].to_dict() == {"007": 108, "008": 120}


@pytest.mark.parametrize("name", [n for n, (_, code, _) in CLI.items() if code])
def test_cli_refuses_in_one_line(cli_runs, name):
    folder, runs = cli_runs
    _, code, words = CLI[name]
    assert_one_line_error(runs[name], code, words)
    assert not (folder / f"{name}.parquet").exists()


def test_train_reads_day_first_dates_with_its_date_format(tmp_path):
    """`churn train --date-format` reaches the loader: the two customers are read and training
    then stops on its own grounds (too few rows), not on the dates."""
    customers = _csv(tmp_path / "day_first.csv", DAY_FIRST_CSV)
    events = _csv(tmp_path / "iso.csv", ISO_EVENTS_CSV)
    args = ["train", "--customers", customers, "--events", events, "--label", "inactivity",
            "--horizon", "30"]
    without = churn(*args)
    assert without.returncode == 2 and "--date-format" in without.stderr, without.stderr
    given = churn(*args, "--date-format", "%d/%m/%Y")
    assert given.returncode == 2 and "the log covers" in given.stderr, given.stderr
