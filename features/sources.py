"""Events read where they lie, by a query engine (`features.engines`: DuckDB or Spark).

`open_tables` is `features.tables.load_tables` for logs too large for memory. The customers
table (one row per customer) is read and validated as before, by the same pandas rules. The events
table is never copied whole into Python: its files (CSV, gzipped CSV or Parquet; a file, a folder
of files or a glob) are scanned by the engine, validated by one query whose checks and messages
follow `validate_events`, and exposed as the `events` relation of `features.definitions`, so the
feature and label SQL runs on them unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.contract import (
    AMOUNT,
    CUSTOMER_ID,
    EVENT_REQUIRED,
    EVENT_TYPE,
    MAX_CONTACT_CHARS,
    TIMESTAMP,
    DataError,
    Tables,
    choose_contact_columns,
    plain,
    timestamp_problem,
)
from features.definitions import FeatureSpec
from features.engines import column_kind, utc_relation
from features.files import expand, read_table
from features.relations import customer_relation
from features.tables import validate_customers

log = logging.getLogger(__name__)


def _sum_if(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@dataclass
class _Column:
    name: str  # as written in the file
    clean: str  # without surrounding spaces, the name the contract uses
    kind: str
    sql_type: str = ""  # the engine's type, for messages


class EventFiles:
    """The events table as a scan in an engine: what `features.relations` asks of an events
    table (its size, time range, type counts, and the relations the SQL reads)."""

    def __init__(self, engine, path: str | Path, *, date_format: str | None = None):
        self.engine = engine
        self.path = str(path)
        files, kind = expand(path)
        sep = "\t" if files[0].lower().endswith((".tsv", ".tsv.gz")) else ","
        self.files = files
        try:
            self._scan = engine.scan(files, kind, sep)
        except Exception as exc:  # noqa: BLE001 - each engine raises its own types
            raise DataError(self.path, None, f"cannot be read by {engine.dialect.name}: "
                            f"{_first_line(exc)}") from None
        try:
            self.raw = utc_relation(engine, self._scan)
            schema = engine.schema(self.raw)
        except Exception as exc:  # noqa: BLE001
            raise self._unreadable(exc) from None
        self.columns = [_Column(n, n.strip(), column_kind(t), t) for n, t in schema]
        self.date_format = date_format
        self.notes: list[str] = []
        have = {c.clean for c in self.columns}
        for col in EVENT_REQUIRED:
            if col not in have:
                present = ", ".join(c.clean for c in self.columns[:12])
                raise DataError(self.path, col,
                                f"required column is missing (columns present: {present})")
        self.num_rows = 0
        self.dropped = 0
        self.value_columns: tuple[str, ...] = ()
        self.contact_columns: tuple[str, ...] = ()
        self._value_sql: dict[str, str] = {}
        self._all_stats: tuple[pd.Series, float | None, float | None] | None = None

    # -- column expressions --------------------------------------------------------------------
    def _col(self, clean: str) -> _Column:
        return next(c for c in self.columns if c.clean == clean)

    def _ref(self, clean: str) -> str:
        return self.engine.dialect.quote(self._col(clean).name)

    def _id_sql(self) -> str:
        """`features.contract.normalise_ids` as SQL: text trimmed, integers as their digits, a
        whole float as its integer."""
        c = self._col(CUSTOMER_ID)
        ref = self._ref(CUSTOMER_ID)
        if c.kind == "integer":
            return f"CAST({ref} AS STRING)"
        if c.kind == "float":
            return (f"CASE WHEN {ref} = FLOOR({ref}) AND ABS({ref}) <= 9007199254740992 "
                    f"THEN CAST(CAST({ref} AS BIGINT) AS STRING) ELSE CAST({ref} AS STRING) END")
        return f"TRIM(CAST({ref} AS STRING))"

    def _ts_parse(self, date_format: str | None) -> str:
        c = self._col(TIMESTAMP)
        ref = self._ref(TIMESTAMP)
        if c.kind in ("timestamp", "date"):
            return ref
        return self.engine.dialect.parse(f"NULLIF(TRIM({ref}), '')", date_format)

    def _number(self, c: _Column) -> tuple[str, str | None]:
        """A value column as DOUBLE, and for text the condition of a value that is no number."""
        ref = self.engine.dialect.quote(c.name)
        if c.kind != "string":
            return f"CAST({ref} AS DOUBLE)", None
        text = f"NULLIF(TRIM({ref}), '')"
        return (f"TRY_CAST({text} AS DOUBLE)",
                f"{text} IS NOT NULL AND TRY_CAST({text} AS DOUBLE) IS NULL")

    def _text(self, clean: str) -> str:
        return f"NULLIF(TRIM(CAST({self._ref(clean)} AS STRING)), '')"

    # -- validation ----------------------------------------------------------------------------
    def _unreadable(self, exc: Exception) -> DataError:
        """An engine's error while reading the files, as the contract's one line: the file, the
        first column the engine cannot read (each is tried alone) and a value of it."""
        problem = f"cannot be read by {self.engine.dialect.name}: {_first_line(exc)}"
        try:
            schema = self.engine.schema(self._scan)
        except Exception:  # noqa: BLE001 - not even the columns: the file itself
            return DataError(self.path, None, problem)
        for name, sql_type in schema:
            ref = self.engine.dialect.quote(name)
            expr = self.engine.dialect.utc_timestamp(ref, sql_type) or ref
            try:
                self.engine.query(f"SELECT MIN({expr}) AS lo, MAX({expr}) AS hi FROM {self._scan}")
            except Exception:  # noqa: BLE001 - this column is the one
                return DataError(self.path, name.strip(), problem, self._raw_value(name))
        return DataError(self.path, None, problem)

    def _raw_value(self, name: str) -> str | None:
        """One value of a column as written in the file, for an error message."""
        ref = self.engine.dialect.quote(name)
        try:
            row = self.engine.query(f"SELECT CAST({ref} AS STRING) AS v FROM {self._scan} "
                                    f"WHERE {ref} IS NOT NULL LIMIT 1")
            if not row.empty:
                return f"{name.strip()}={row.iloc[0, 0]!r}"
        except Exception:  # noqa: BLE001 - the engine cannot show it either: ask pyarrow
            pass
        try:
            import pyarrow.parquet as pq

            column = pq.ParquetFile(self.files[0]).read_row_group(0, columns=[name]).column(0)
            return f"{name.strip()}={str(column.drop_null()[0])!r}"
        except Exception:  # noqa: BLE001 - no example, the message still names the column
            return None

    def _example(self, condition: str, *columns: str) -> str:
        cols = ", ".join(self._ref(c) for c in columns)
        row = self.engine.query(f"SELECT {cols} FROM {self.raw} WHERE {condition} LIMIT 1")
        if row.empty:
            return ""
        return ", ".join(f"{c}={plain(row.iloc[0, i])!r}" for i, c in enumerate(columns))

    def check(self, known: str) -> None:
        """Validate the events against the contract in one scan, and count those of customers
        not in `known` (a relation with a known_id column); they are left out (a note)."""
        tcol = self._col(TIMESTAMP)
        if tcol.kind in ("integer", "float"):
            raise DataError(self.path, TIMESTAMP, "expected dates or timestamps, got numbers",
                            self._example(f"{self._ref(TIMESTAMP)} IS NOT NULL", TIMESTAMP))
        if tcol.kind not in ("string", "timestamp", "date"):  # a time of day, a struct, ...
            raise DataError(self.path, TIMESTAMP, "expected dates or timestamps, got values of "
                            f"type {tcol.sql_type}", self._raw_value(tcol.name))
        id_text = self._text(CUSTOMER_ID)
        checks = {
            "n": "COUNT(*)",
            "id_missing": _sum_if(f"{self._ref(CUSTOMER_ID)} IS NULL"),
            "id_blank": _sum_if(f"{self._ref(CUSTOMER_ID)} IS NOT NULL AND {id_text} IS NULL"),
            "type_missing": _sum_if(f"{self._text(EVENT_TYPE)} IS NULL"),
            "unknown": _sum_if("k.known_id IS NULL"),
        }
        ts_text = None
        if tcol.kind in ("timestamp", "date"):
            checks["ts_missing"] = _sum_if(f"{self._ref(TIMESTAMP)} IS NULL")
        else:
            ts_text = self._text(TIMESTAMP)
            checks["ts_missing"] = _sum_if(f"{ts_text} IS NULL")
            checks["ts_bad"] = _sum_if(f"{ts_text} IS NOT NULL AND {self._ts_parse(self.date_format)} "
                                       "IS NULL")
            checks["ts_iso_bad"] = _sum_if(f"{ts_text} IS NOT NULL AND {self._ts_parse(None)} IS NULL")
        candidates = [c for c in self.columns if c.clean not in EVENT_REQUIRED]
        numbers = [self._number(c) for c in candidates]
        for i, (c, (number, not_number)) in enumerate(zip(candidates, numbers, strict=True)):
            if not_number is not None:
                checks[f"nonnum_{i}"] = _sum_if(not_number)
            if c.kind in ("string", "integer", "float"):
                checks[f"inf_{i}"] = _sum_if(f"ABS({number}) = CAST('Infinity' AS DOUBLE)")
        select = ", ".join(f"{expr} AS {name}" for name, expr in checks.items())
        try:
            stats = self.engine.query(
                f"SELECT {select} FROM (SELECT *, {self._id_sql()} AS churn_id FROM {self.raw}) r "
                f"LEFT JOIN {known} k ON r.churn_id = k.known_id").iloc[0]
        except Exception as exc:  # noqa: BLE001 - each engine raises its own types
            raise self._unreadable(exc) from None
        stats = {k: int(0 if pd.isna(v) else v) for k, v in stats.items()}
        if stats["n"] == 0:
            raise DataError(self.path, None, "the table has no rows")
        if stats["id_missing"]:
            raise DataError(self.path, CUSTOMER_ID, "missing customer id",
                            self._example(f"{self._ref(CUSTOMER_ID)} IS NULL", TIMESTAMP))
        if stats["id_blank"]:
            raise DataError(self.path, CUSTOMER_ID, "empty customer id",
                            self._example(f"{self._ref(CUSTOMER_ID)} IS NOT NULL AND {id_text} IS NULL",
                                          CUSTOMER_ID))
        date_format = self.date_format
        if ts_text is not None and stats["ts_bad"]:
            if date_format and not stats["ts_iso_bad"]:
                date_format = None  # wholly ISO 8601: read as such (`parse_timestamps`)
            else:
                some_ok = stats["ts_bad"] < stats["n"] - stats["ts_missing"]
                bad = f"{ts_text} IS NOT NULL AND {self._ts_parse(date_format)} IS NULL"
                raise DataError(self.path, TIMESTAMP, timestamp_problem(date_format, some_ok),
                                self._example(bad, TIMESTAMP))
        self.date_format = date_format
        if stats["ts_missing"]:
            raise DataError(self.path, TIMESTAMP, "missing timestamp",
                            self._example(f"{self._ref(TIMESTAMP)} IS NULL", CUSTOMER_ID))
        if stats["type_missing"]:
            raise DataError(self.path, EVENT_TYPE, "missing event type",
                            self._example(f"{self._text(EVENT_TYPE)} IS NULL", EVENT_TYPE))
        values: dict[str, str] = {}
        texts: list[str] = []
        for i, (c, (number, not_number)) in enumerate(zip(candidates, numbers, strict=True)):
            if stats.get(f"nonnum_{i}"):
                if c.clean == AMOUNT:
                    raise DataError(self.path, AMOUNT, "amount is not a number",
                                    self._example(not_number, c.clean))
                texts.append(c.clean)
                continue
            if c.kind not in ("string", "integer", "float"):
                self.notes.append(f"{self.path}: column '{c.clean}' is not numeric and is ignored")
                continue
            if stats.get(f"inf_{i}"):
                raise DataError(self.path, c.clean, "infinite value", self._example(
                    f"ABS({number}) = CAST('Infinity' AS DOUBLE)", c.clean))
            values[c.clean] = f"CASE WHEN isnan({number}) THEN NULL ELSE {number} END"
        self.value_columns = tuple(sorted(values, key=lambda c: (c != AMOUNT, c)))
        self._value_sql = values
        self.contact_columns, contact_notes = choose_contact_columns(texts, self.path)
        self.notes += contact_notes
        self.dropped = stats["unknown"]
        self.num_rows = stats["n"] - stats["unknown"]

    # -- what features.relations asks of an events table -----------------------------------------
    def __len__(self) -> int:
        return self.num_rows

    def relations(self, customers: pd.DataFrame, spec: FeatureSpec) -> EngineRelations:
        """The relations the feature and label SQL reads, in this events' engine."""
        return EngineRelations(customers, self, spec)

    def _contact_sql(self, clean: str) -> str:
        """`features.contract.contact_text` as SQL: trimmed, blank as NULL, cut short."""
        return (f"SUBSTRING(NULLIF(TRIM(CAST({self._ref(clean)} AS STRING)), ''), 1, "
                f"{MAX_CONTACT_CHARS})")

    def relation_sql(self, value_slugs: dict[str, str],
                     contact_slugs: dict[str, str] | None = None) -> str:
        """The events relation (`features.definitions`): customer_id, ts (epoch seconds),
        event_type, v_<slug> per value column and c_<slug> per contact column, of the
        customers in `customers`."""
        ts = self._ts_parse(self.date_format)
        cols = [f"{self._id_sql()} AS customer_id", f"{self.engine.dialect.epoch(ts)} AS ts",
                f"TRIM(CAST({self._ref(EVENT_TYPE)} AS STRING)) AS event_type"]
        for col, s in value_slugs.items():
            cols.append(f"{self._value_sql.get(col, 'CAST(NULL AS DOUBLE)')} AS v_{s}")
        for col, s in (contact_slugs or {}).items():
            text = (self._contact_sql(col) if col in self.contact_columns
                    else "CAST(NULL AS STRING)")
            cols.append(f"{text} AS c_{s}")
        return (f"SELECT {', '.join(cols)} FROM {self.raw} "
                f"WHERE {self._id_sql()} IN (SELECT customer_id FROM customers)")

    def query(self, sql: str) -> pd.DataFrame:
        """A query over these events in their engine. The checks ran over every row, but the
        files are read again now (and may have changed): whatever the engine raises is the
        contract's one line naming the file, and the column when one alone fails."""
        try:
            return self.engine.query(sql)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - each engine raises its own types
            raise self._unreadable(exc) from None

    def stats(self, before: float | None = None) -> tuple[pd.Series, float | None, float | None]:
        """Event counts per type, and the first and last event time (epoch seconds), of the
        known customers' events strictly before `before` (None: all, computed once)."""
        if before is None and self._all_stats is not None:
            return self._all_stats
        where = "" if before is None else f" WHERE ts < {float(before)!r}E0"
        rows = self.query(
            f"SELECT event_type, COUNT(*) AS n, MIN(ts) AS first, MAX(ts) AS last "
            f"FROM events{where} GROUP BY event_type")
        counts = pd.Series(rows["n"].to_numpy(dtype="int64"), index=rows["event_type"].astype(str))
        first = float(rows["first"].min()) if len(rows) else None
        last = float(rows["last"].max()) if len(rows) else None
        if before is None:
            self._all_stats = (counts, first, last)
        return counts, first, last


class EngineRelations:
    """Customers and events as relations in an engine, for one feature spec: what
    `features.relations.relations` gives for scanned events (the twin of the in-memory
    `Relations`)."""

    def __init__(self, customers: pd.DataFrame, events: EventFiles, spec: FeatureSpec):
        self.spec = spec
        self.events = events
        self.engine = events.engine
        self.engine.register("customers", customer_relation(customers, spec))
        self.engine.view("events", events.relation_sql(spec.value_slugs, spec.contact_slugs))

    def query(self, sql: str, **extra: pd.DataFrame | pa.Table) -> pd.DataFrame:
        for name, frame in extra.items():
            table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
                frame, preserve_index=False)
            self.engine.register(name, table)
        try:
            return self.events.query(sql)
        finally:
            for name in extra:
                self.engine.unregister(name)

    def frame(self, sql: str, **extra: pa.Table):
        """The query as a Spark DataFrame (Spark only): the result stays in Spark."""
        for name, table in extra.items():
            self.engine.register(name, table)
        return self.engine.frame(sql)


def open_tables(customers_path: str | Path, events_path: str | Path, engine,
                *, date_format: str | None = None) -> Tables:
    """Load the customers file, scan and validate the events in `engine`, and count the
    events of unknown customers (left out, with a note), as `load_tables` does in memory."""
    customers_files, _ = expand(customers_path)
    frames = [read_table(f) for f in customers_files]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    customers, kinds = validate_customers(frame, str(customers_path), date_format=date_format)
    events = EventFiles(engine, events_path, date_format=date_format)
    engine.register("churn_known", pa.table({"known_id": pa.array(
        customers[CUSTOMER_ID].to_numpy(dtype=object), type=pa.string())}))
    try:
        events.check("churn_known")
    finally:
        engine.unregister("churn_known")
    notes = list(events.notes)
    if events.dropped:
        notes.append(f"{events_path}: dropped {events.dropped} events of customers not in "
                     f"{customers_path}")
    for note in notes:
        log.info(note)
    # the events relation reads the customers relation: register them for the stats
    EngineRelations(customers, events, FeatureSpec(event_types=(), attributes=kinds,
                                                   value_columns=events.value_columns))
    return Tables(customers, events, kinds, events.value_columns, events.dropped, notes,
                  events.contact_columns)
