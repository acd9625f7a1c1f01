"""Events read where they lie (features.sources): the same tables, features, labels and errors as
the in-memory loader, from every file form, on DuckDB. tests/integration/test_spark.py runs the
same checks on Spark."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import DataError
from features.engine import build_snapshots, feature_table
from features.engines import DuckEngine, java_pattern
from features.observations import plan_observations
from features.sources import open_tables
from features.spec_inference import infer_spec
from features.tables import load_tables
from simulation.generate import generate
from tests.unit.test_contract import EVENT_ERRORS

AS_OF = pd.Timestamp("2026-05-01")


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """A subscription log, a shop log (no churn dates) and a subscription log with a store
    column (contacts), as Parquet files."""
    root = tmp_path_factory.mktemp("logs")
    out = {}
    for name, kind, seed in (("subscription", "subscription", 3), ("retail", "retail", 4),
                             ("stores", "subscription", 5)):
        customers, events = generate(300, seed=seed, kind=kind, contacts=name == "stores")
        folder = root / name
        folder.mkdir()
        customers.to_parquet(folder / "customers.parquet", index=False)
        events.to_parquet(folder / "events.parquet", index=False)
        out[name] = folder
    return out


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True),
                                  check_exact=False, rtol=1e-9, atol=1e-9)


def check_engine_parity(engine, folder: Path, label: str) -> None:
    """Spec, observation plan, features and labelled snapshots from `engine` equal the
    in-memory path's, to 1e-9 on every column."""
    c, e = folder / "customers.parquet", folder / "events.parquet"
    mem = load_tables(c, e)
    eng = open_tables(c, e, engine)
    assert len(eng.events) == len(mem.events)
    assert eng.value_columns == mem.value_columns and eng.attributes == mem.attributes
    assert eng.contact_columns == mem.contact_columns
    spec = infer_spec(mem, before=AS_OF)
    assert infer_spec(eng, before=AS_OF) == spec
    want = feature_table(mem.customers, mem.events, spec, [AS_OF], evaluator="sql")
    assert len(want) > 100
    assert_same_table(feature_table(eng.customers, eng.events, spec, [AS_OF]), want)
    plan = plan_observations(mem.customers, mem.events, 30, None)
    assert plan_observations(eng.customers, eng.events, 30, None) == plan
    times = plan.times[-2:]
    snaps = build_snapshots(mem, spec, label, 30, plan.cadence_days, times=times)
    assert snaps["label"].nunique() == 2
    assert_same_table(build_snapshots(eng, spec, label, 30, plan.cadence_days, times=times), snaps)


@pytest.mark.parametrize(("kind", "label"), [("subscription", "explicit"),
                                             ("retail", "inactivity"), ("stores", "explicit")])
def test_duckdb_scan_equals_the_in_memory_path(logs, kind, label):
    check_engine_parity(DuckEngine(), logs[kind], label)


def _forms(folder: Path, tmp: Path) -> dict[str, Path]:
    """The events of `folder` as CSV, gzipped CSV, a folder of Parquet parts and a glob."""
    events = pd.read_parquet(folder / "events.parquet")
    events.to_csv(tmp / "events.csv", index=False)
    with open(tmp / "events.csv", "rb") as src, gzip.open(tmp / "events.csv.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    parts = tmp / "parts"
    parts.mkdir()
    for i, chunk in enumerate(np.array_split(np.arange(len(events)), 3)):
        events.iloc[chunk].to_parquet(parts / f"part-{i}.parquet", index=False)
    return {"csv": tmp / "events.csv", "csv.gz": tmp / "events.csv.gz", "folder": parts,
            "glob": parts / "part-*.parquet"}


def test_every_file_form_gives_the_same_features(logs, tmp_path):
    folder = logs["subscription"]
    c = folder / "customers.parquet"
    mem = load_tables(c, folder / "events.parquet")
    spec = infer_spec(mem, before=AS_OF)
    want = feature_table(mem.customers, mem.events, spec, [AS_OF], evaluator="sql")
    for name, path in _forms(folder, tmp_path).items():
        tables = open_tables(c, path, DuckEngine())
        assert len(tables.events) == len(mem.events), name
        assert_same_table(feature_table(tables.customers, tables.events, spec, [AS_OF]), want)


def _write(path: Path, frame: pd.DataFrame) -> Path:
    if path.name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


CUSTOMERS = pd.DataFrame({"customer_id": [1, 2], "signup_at": ["2023-12-01", "2023-12-02"]})


def check_same_error(engine, tmp: Path, data: dict, column: str, fmt: str) -> DataError:
    """The engine refuses the events file with the in-memory loader's column and problem."""
    c = _write(tmp / "customers.csv", CUSTOMERS)
    e = _write(tmp / f"events.{fmt}", pd.DataFrame(data))
    with pytest.raises(DataError) as mem:
        load_tables(c, e)
    with pytest.raises(DataError) as eng:
        open_tables(c, e, engine)
    assert (eng.value.column, eng.value.problem) == (mem.value.column, mem.value.problem) \
        == (column, mem.value.problem)
    assert str(eng.value).startswith(str(e)) and "\n" not in str(eng.value)
    return eng.value


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("data", "column", "parts"), EVENT_ERRORS)
def test_duckdb_refuses_what_the_contract_refuses(tmp_path, data, column, parts, fmt):
    error = check_same_error(DuckEngine(), tmp_path, data, column, fmt)
    assert parts[0] in str(error)


def test_bad_timestamp_example_names_the_value(tmp_path):
    data = {"customer_id": [1, 2], "timestamp": ["2024-01-01", "13/02/2024"],
            "event_type": ["login", "login"]}
    error = check_same_error(DuckEngine(), tmp_path, data, "timestamp", "csv")
    assert "timestamp='13/02/2024'" in str(error) and "--date-format" in str(error)


def test_date_format_reads_a_day_first_column(tmp_path):
    c = _write(tmp_path / "c.csv", CUSTOMERS)
    e = _write(tmp_path / "e.csv", pd.DataFrame({
        "customer_id": [1, 2], "timestamp": ["02/01/2024", "13/02/2024"],
        "event_type": ["login", "login"]}))
    mem = load_tables(c, e, date_format="%d/%m/%Y")
    eng = open_tables(c, e, DuckEngine(), date_format="%d/%m/%Y")
    _, first, last = eng.events.stats()
    assert pd.to_datetime([first, last], unit="s").tolist() == sorted(mem.events["timestamp"])


def test_ids_join_as_the_contract_spells_them(tmp_path):
    """Integer and whole-float ids in one file match text ids in the other; '007' stays '007';
    events of unknown customers are left out and counted."""
    c = _write(tmp_path / "c.csv", pd.DataFrame({
        "customer_id": ["1", "2", "007"], "signup_at": ["2024-01-01"] * 3}))
    e = _write(tmp_path / "e.parquet", pd.DataFrame({
        "customer_id": [1.0, 2.0, 7.0, 3.0],
        "timestamp": pd.to_datetime(["2024-02-01", "2024-02-02", "2024-02-03", "2024-02-04"]),
        "event_type": ["login"] * 4}))
    mem = load_tables(c, e)
    eng = open_tables(c, e, DuckEngine())
    assert eng.dropped_unknown_events == mem.dropped_unknown_events == 2
    assert len(eng.events) == len(mem.events) == 2
    assert eng.notes == mem.notes


def test_text_columns_are_contacts_with_a_note_and_numbers_kept(tmp_path):
    c = _write(tmp_path / "c.csv", CUSTOMERS)
    e = _write(tmp_path / "e.csv", pd.DataFrame({
        "customer_id": [1, 2], "timestamp": ["2024-01-01", "2024-01-02"],
        "event_type": ["login", "payment"], "channel": ["web", "app"], "amount": [None, 9.5],
        "items": [1, 2], "sent_at": ["2024-01-01", "2024-01-02"]}))
    mem = load_tables(c, e)
    eng = open_tables(c, e, DuckEngine())
    assert eng.value_columns == mem.value_columns == ("amount", "items")
    assert eng.contact_columns == mem.contact_columns == ("channel",)
    assert eng.notes == mem.notes and any("'channel' is text: read as a point of contact" in n
                                          for n in eng.notes)
    assert any("'sent_at' is not numeric and is ignored" in n for n in eng.notes)


def test_duckdb_memory_is_bounded_and_spills_where_told(tmp_path):
    engine = DuckEngine(memory_limit="1GB", temp_directory=str(tmp_path / "spill"))
    limit, temp = engine.con.execute(
        "SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit.replace(" ", "") in ("1.0GiB", "953.6MiB", "1GB", "1.0GB", "953.6MB")
    assert temp == str(tmp_path / "spill")


def test_missing_and_mixed_inputs_are_one_line_errors(tmp_path):
    c = _write(tmp_path / "c.csv", CUSTOMERS)
    with pytest.raises(DataError, match="file not found"):
        open_tables(c, tmp_path / "nope.parquet", DuckEngine())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no CSV or Parquet files"):
        open_tables(c, tmp_path / "empty", DuckEngine())
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write(mixed / "a.csv", pd.DataFrame({"customer_id": [1]}))
    _write(mixed / "b.parquet", pd.DataFrame({"customer_id": [1]}))
    with pytest.raises(DataError, match="mixes CSV and Parquet"):
        open_tables(c, mixed, DuckEngine())


@pytest.mark.parametrize(("fmt", "java"), [("%d/%m/%Y", "dd/MM/yyyy"),
                                           ("%Y-%m-%dT%H:%M:%S", "yyyy-MM-dd'T'HH:mm:ss"),
                                           ("%m/%d/%y %I:%M %p", "MM/dd/yy hh:mm a")])
def test_strftime_formats_become_java_patterns_for_spark(fmt, java):
    assert java_pattern(fmt) == java


def test_a_directive_spark_lacks_is_refused():
    with pytest.raises(ValueError, match="%a is not supported with --engine spark"):
        java_pattern("%a %d/%m/%Y")


def test_a_timestamp_column_of_another_type_is_named_not_an_engine_error(tmp_path):
    """A Parquet time of day (or any type that is no date) is refused naming the column, its
    type and a value, never with the engine's own text."""
    import datetime

    c = _write(tmp_path / "c.csv", CUSTOMERS)
    e = _write(tmp_path / "e.parquet", pd.DataFrame({
        "customer_id": [1, 2], "timestamp": [datetime.time(9, 30), datetime.time(10, 0)],
        "event_type": ["login", "login"]}))
    with pytest.raises(DataError) as err:
        open_tables(c, e, DuckEngine())
    assert err.value.column == "timestamp"
    assert "expected dates or timestamps, got values of type TIME" in str(err.value)
    assert "timestamp='09:30:00'" in str(err.value) and "Error" not in str(err.value)


def test_an_engine_error_after_the_checks_is_one_line_naming_the_file(logs, tmp_path):
    """The files are read again by every query: one that changed after the checks fails with
    the contract's one line naming it, not with the engine's exception."""
    folder = tmp_path / "log"
    shutil.copytree(logs["subscription"], folder)
    events = folder / "events.parquet"
    tables = open_tables(folder / "customers.parquet", events, DuckEngine())
    spec = infer_spec(tables, before=AS_OF)
    frame = pd.read_parquet(events)
    frame.assign(amount="lots").to_parquet(events, index=False)  # was numbers when checked
    with pytest.raises(DataError) as err:
        feature_table(tables.customers, tables.events, spec, [AS_OF])
    assert str(err.value).startswith(f"{events}: cannot be read by duckdb: ")
    assert "\n" not in str(err.value)


def test_the_column_note_says_how_every_column_is_used_and_why_one_is_not(tmp_path):
    """`describe_columns`: what `churn train`, `features`, `snapshots` and `score` print."""
    from dataclasses import replace

    from features.spec_inference import describe_columns

    c = _write(tmp_path / "c.csv", CUSTOMERS.assign(plan=["basic", "pro"], seats=[1, 3]))
    e = _write(tmp_path / "e.csv", pd.DataFrame({
        "customer_id": [1, 2], "timestamp": ["2024-01-01", "2024-01-02"],
        "event_type": ["login", "payment"], "channel": ["web", "app"], "amount": [None, 9.5],
        "sent_at": ["2024-01-01", "2024-01-02"]}))
    for tables in (load_tables(c, e), open_tables(c, e, DuckEngine())):
        spec = infer_spec(tables)
        assert describe_columns(tables, spec) == (
            "columns used: events: amount as numbers; channel as points of contact; "
            "customers: seats as numbers; plan as categories")
        assert any("'sent_at' is not numeric and is ignored" in n for n in tables.notes)
        # a model trained without the channel, and with a column these files lack
        older = replace(spec, contact_columns=(), value_columns=("amount", "quantity"))
        assert describe_columns(tables, older) == (
            "columns used: events: amount, quantity as numbers; customers: seats as numbers; "
            "plan as categories; left out: channel (the model was trained without it); "
            "not in these files, read as missing: quantity")
