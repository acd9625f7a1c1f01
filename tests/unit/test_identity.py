"""Identity and time (issue #12): a customer id is the text written in the file, and a
timestamp column is read with one format.

The attacks these tests replay: `007` read as 7 in one file and `007` in the other, so every
event was dropped with only a note; and `13/02/2025` read as 13 February beside `01/02/2025`
read as 2 January in the same column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import load_tables, normalise_ids

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
