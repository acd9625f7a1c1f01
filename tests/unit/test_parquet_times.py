"""Parquet times as writers write them (issue #25): every Arrow timestamp unit, naive or with a
zone, and date32, read by the in-memory loader and by DuckDB as the same instants, so the
feature table does not depend on how a file was written. tests/integration/test_spark.py runs
the same forms on Spark."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import engines
from features.contract import DataError
from features.engine import feature_table
from features.engines import DuckEngine
from features.files import read_table
from features.sources import open_tables
from features.spec_inference import infer_spec
from features.tables import load_tables
from simulation.generate import generate

AS_OF = pd.Timestamp("2026-05-01")
UNITS = ("s", "ms", "us", "ns")
ZONES = (None, "UTC", "Europe/Berlin")
TIME_COLUMNS = {"customers": ("signup_at",), "events": ("timestamp",)}


def _times(values: pd.Series, unit: str, zone: str | None) -> pa.Array:
    """Naive UTC times as an Arrow timestamp array in `unit`, naive or in `zone` (the same
    instants: an aware array holds UTC and shows them in its zone)."""
    array = pa.array(values.astype("datetime64[us]"), pa.timestamp("us")).cast(pa.timestamp(unit))
    return array if zone is None else array.cast(pa.timestamp(unit, zone))


def _table(frame: pd.DataFrame, times: tuple[str, ...], unit: str | None, zone: str | None
           ) -> pa.Table:
    """The frame with explicit Arrow types; `unit=None` writes the time columns as date32."""
    columns = {}
    for col in frame.columns:
        if col in times:
            columns[col] = (_times(frame[col], unit, zone) if unit else
                            pa.array(frame[col].dt.date, pa.date32()))
        elif col == "date_of_birth":
            columns[col] = pa.array(frame[col].dt.date, pa.date32())
        elif col == "customer_id" or frame[col].dtype.kind in "OUT":
            columns[col] = pa.array(frame[col].astype(object), pa.string())
        else:
            columns[col] = pa.array(frame[col])
    return pa.table(columns)


def small_log() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small shop log whose signups are midnights (so that date32 holds them exactly), with a
    date attribute; event times keep their time of day."""
    customers, events = generate(150, seed=11, kind="retail")
    customers = customers.assign(
        signup_at=pd.to_datetime(customers["signup_at"]).dt.floor("D"),
        date_of_birth=pd.to_datetime(customers["date_of_birth"], errors="coerce"),
    )
    events = events.assign(timestamp=pd.to_datetime(events["timestamp"]).dt.floor("s"))
    return customers, events


def write_forms(root: Path) -> dict[str, Path]:
    """The same log as Parquet with its times in every unit and zone, and with its dates as
    date32 (the events stay in microseconds there, as they have a time of day)."""
    customers, events = small_log()
    forms = {}
    for unit in UNITS:
        for zone in ZONES:
            forms[f"{unit}-{zone or 'naive'}"] = (unit, zone, unit, zone)
    forms["date32"] = (None, None, "us", None)
    out = {}
    for name, (c_unit, c_zone, e_unit, e_zone) in forms.items():
        folder = root / name
        folder.mkdir(parents=True)
        # coerce_timestamps=None keeps each unit (pyarrow writes seconds as milliseconds, as
        # Parquet has no seconds unit)
        pq.write_table(_table(customers, TIME_COLUMNS["customers"], c_unit, c_zone),
                       folder / "customers.parquet", coerce_timestamps=None)
        pq.write_table(_table(events, TIME_COLUMNS["events"], e_unit, e_zone),
                       folder / "events.parquet", coerce_timestamps=None)
        out[name] = folder
    return out


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict[str, Path]:
    return write_forms(tmp_path_factory.mktemp("times"))


def reference(forms: dict[str, Path]) -> tuple[object, pd.DataFrame]:
    """The spec and feature table of the microsecond naive form, read in memory."""
    ref = forms["us-naive"]
    mem = load_tables(ref / "customers.parquet", ref / "events.parquet")
    spec = infer_spec(mem, before=AS_OF)
    want = feature_table(mem.customers, mem.events, spec, [AS_OF], evaluator="sql")
    assert len(want) > 50 and mem.attributes.datetime == ("date_of_birth",)
    return spec, want


def check_same_features(engine, forms: dict[str, Path], names: tuple[str, ...] | None = None
                        ) -> None:
    """Every form (or the named ones) gives the reference's feature table through `engine`."""
    spec, want = reference(forms)
    for name, folder in forms.items():
        if names is not None and name not in names:
            continue
        tables = open_tables(folder / "customers.parquet", folder / "events.parquet", engine)
        assert infer_spec(tables, before=AS_OF) == spec, name
        got = feature_table(tables.customers, tables.events, spec, [AS_OF])
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-9,
                                      obj=name)


def test_every_time_type_gives_the_same_features_on_duckdb(forms):
    check_same_features(DuckEngine(), forms)


def test_every_time_type_gives_the_same_tables_in_memory(forms):
    ref = load_tables(forms["us-naive"] / "customers.parquet", forms["us-naive"] / "events.parquet")
    for name, folder in forms.items():
        got = load_tables(folder / "customers.parquet", folder / "events.parquet")
        assert str(got.customers["signup_at"].dtype) == "datetime64[us]", name
        assert str(got.events["timestamp"].dtype) == "datetime64[us]", name
        pd.testing.assert_frame_equal(got.customers, ref.customers, obj=name)
        pd.testing.assert_frame_equal(got.events, ref.events, obj=name)


def test_pandas_default_parquet_is_read_by_duckdb(tmp_path):
    """The report: pandas writes an aware column as timestamp[ns, tz=UTC] by default."""
    customers, events = small_log()
    c, e = tmp_path / "customers.parquet", tmp_path / "events.parquet"
    customers.assign(signup_at=customers["signup_at"].dt.tz_localize("UTC")).to_parquet(c)
    events.assign(timestamp=events["timestamp"].astype("datetime64[ns]").dt.tz_localize("UTC")
                  .dt.tz_convert("Europe/Berlin")).to_parquet(e)
    assert pq.read_schema(e).field("timestamp").type == pa.timestamp("ns", "Europe/Berlin")
    tables = open_tables(c, e, DuckEngine())
    spec = infer_spec(tables, before=AS_OF)
    got = feature_table(tables.customers, tables.events, spec, [AS_OF])
    mem = load_tables(c, e)
    want = feature_table(mem.customers, mem.events, spec, [AS_OF], evaluator="sql")
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9, atol=1e-9)


def test_nanoseconds_are_truncated_to_the_microsecond(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"t": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", "UTC"))}),
                   path)
    assert read_table(path)["t"].iloc[0] == pd.Timestamp("2023-11-14 22:13:20.123456")


def test_a_time_beyond_microseconds_is_a_one_line_error(tmp_path):
    path = tmp_path / "customers.parquet"
    far = pa.array([0, 10**14], pa.timestamp("s"))  # the second is in the year ~3.2 million
    pq.write_table(pa.table({"customer_id": ["1", "2"], "signup_at": far}), path,
                   coerce_timestamps=None)
    with pytest.raises(DataError) as err:
        read_table(path)
    text = str(err.value)
    assert text.startswith(f"{path}: column 'signup_at': ") and "\n" not in text
    assert "e.g. min=" in text


def test_an_engine_error_while_reading_names_the_file_column_and_a_value(tmp_path, monkeypatch):
    """Any engine error during the scan becomes the contract's one line. Simulated by undoing
    the fix: DuckDB 2.0 cannot cast TIMESTAMPTZ_NS to TIMESTAMP directly."""
    customers, events = small_log()
    c, e = tmp_path / "customers.parquet", tmp_path / "events.parquet"
    pq.write_table(_table(customers, ("signup_at",), "us", None), c)
    pq.write_table(_table(events, ("timestamp",), "ns", "UTC"), e, coerce_timestamps=None)
    original = engines.Dialect.utc_timestamp

    def broken(self, ref, sql_type):
        if sql_type.lower() == "timestamptz_ns":
            return f"CAST({ref} AS TIMESTAMP)"
        return original(self, ref, sql_type)

    monkeypatch.setattr(engines.Dialect, "utc_timestamp", broken)
    with pytest.raises(DataError) as err:
        open_tables(c, e, DuckEngine())
    text = str(err.value)
    assert text.startswith(f"{e}: column 'timestamp': cannot be read by duckdb: ")
    assert "TIMESTAMPTZ_NS" in text and "(e.g. timestamp='" in text and "\n" not in text
