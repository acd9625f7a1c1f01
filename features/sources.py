"""Events read where they lie, by a query engine: DuckDB (embedded, the default) or Spark.

`open_tables` is `features.contract.load_tables` for logs too large for memory. The customers
table (one row per customer) is read and validated as before, by the same pandas rules. The events
table is never copied whole into Python: its files (CSV, gzipped CSV or Parquet; a file, a folder
of files or a glob) are scanned by the engine, validated by one query whose checks and messages
follow `validate_events`, and exposed as the `events` relation of `features.definitions`, so the
feature and label SQL runs on them unchanged. Every difference between the engines is one method
of `Dialect`.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import tempfile
import warnings
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
    _format_problem,
    _plain,
    choose_contact_columns,
    read_table,
    validate_customers,
)

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "spark")
_CSV = (".csv", ".csv.gz", ".csv.zst", ".tsv", ".tsv.gz")
_PARQUET = (".parquet", ".pq")


# ---------------------------------------------------------------------------------------------
# Where the two engines differ
# ---------------------------------------------------------------------------------------------

# strftime directives and their Java DateTimeFormatter twins (Spark parses with the latter)
_JAVA_PATTERN = {"%Y": "yyyy", "%y": "yy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm",
                 "%S": "ss", "%f": "SSSSSS", "%b": "MMM", "%B": "MMMM", "%p": "a", "%I": "hh",
                 "%z": "XX", "%j": "DDD", "%%": "%"}


def java_pattern(date_format: str) -> str:
    """A strftime format as a Java date pattern; ValueError for a directive Spark lacks."""
    out, i = [], 0
    while i < len(date_format):
        if date_format[i] == "%":
            key = date_format[i:i + 2]
            if key not in _JAVA_PATTERN:
                raise ValueError(f"--date-format: {key} is not supported with --engine spark "
                                 f"(supported: {' '.join(sorted(_JAVA_PATTERN))})")
            out.append(_JAVA_PATTERN[key])
            i += 2
        else:
            ch = date_format[i]
            out.append(f"'{ch}'" if ch.isalpha() else ("''" if ch == "'" else ch))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between DuckDB and Spark: quoting, time parsing, epoch seconds."""

    name: str

    def quote(self, column: str) -> str:
        q = '"' if self.name == "duckdb" else "`"
        return q + column.replace(q, q + q) + q

    def epoch(self, ts: str) -> str:
        """A TIMESTAMP (naive, taken as UTC), TIMESTAMPTZ or DATE as DOUBLE epoch seconds."""
        if self.name == "duckdb":
            return f"(epoch_us(CAST({ts} AS TIMESTAMP)) / 1e6)"
        return f"(unix_micros(CAST({ts} AS TIMESTAMP)) / 1e6)"

    def utc_timestamp(self, ref: str, sql_type: str) -> str | None:
        """A time or date column as it is read from a file, as a naive UTC TIMESTAMP in
        microseconds (`features.contract.utc_times` in SQL); None when it is one already.

        DuckDB reads Parquet as TIMESTAMP_S/_MS/_NS, TIMESTAMP WITH TIME ZONE, TIMESTAMPTZ_NS or
        DATE, and cannot cast TIMESTAMPTZ_NS to TIMESTAMP directly; through TIMESTAMPTZ (the
        session is in UTC) every one becomes the same instant. Spark reads naive Parquet times as
        TIMESTAMP_NTZ, taken as UTC by the cast."""
        t = sql_type.lower()
        if t == "timestamp":
            return None
        if t == "date":
            return f"CAST({ref} AS TIMESTAMP)"
        if t.startswith("timestamp"):
            if self.name == "duckdb":
                return f"CAST(CAST({ref} AS TIMESTAMPTZ) AS TIMESTAMP)"
            return f"CAST({ref} AS TIMESTAMP)"
        return None

    def parse(self, text: str, date_format: str | None) -> str:
        """Text as a timestamp, NULL where it does not fit: ISO 8601, or the one format."""
        if date_format is None:
            return (f"TRY_CAST({text} AS TIMESTAMPTZ)" if self.name == "duckdb"
                    else f"try_to_timestamp({text})")
        if self.name == "duckdb":
            return f"try_strptime({text}, {_literal(date_format)})"
        return f"try_to_timestamp({text}, {_literal(java_pattern(date_format))})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _kind(sql_type: str) -> str:
    """An engine's column type as one of string, integer, float, bool, timestamp, date, other."""
    t = sql_type.lower()
    if t in ("varchar", "string") or t.startswith(("varchar", "char")):
        return "string"
    if t.startswith(("timestamp",)):
        return "timestamp"
    if t == "date":
        return "date"
    if t in ("boolean", "bool"):
        return "bool"
    if t in ("tinyint", "smallint", "int", "integer", "bigint", "hugeint", "utinyint", "usmallint",
             "uinteger", "ubigint", "uhugeint", "long", "short", "byte"):
        return "integer"
    if t in ("float", "double", "real") or t.startswith("decimal"):
        return "float"
    return "other"


# ---------------------------------------------------------------------------------------------
# Engines: DuckDB in process, Spark through one shared session
# ---------------------------------------------------------------------------------------------


def expand(path: str | Path) -> tuple[list[str], str]:
    """The files a path names (a file, a folder of files, or a glob) and their kind, csv or
    parquet. A DataError when there are none or the kinds are mixed."""
    text = str(path)
    if "://" in text:  # on the engine's own file system (a cluster's): listed by the engine
        kind = "csv" if text.lower().rstrip("/").endswith(_CSV) else "parquet"
        return [text], kind
    text = os.path.abspath(text)  # a Spark Connect server resolves relative paths in its folder
    if any(c in text for c in "*?["):
        files = sorted(glob.glob(text, recursive=True))
    elif os.path.isdir(text):
        files = sorted(str(p) for p in Path(text).rglob("*")
                       if p.is_file() and p.name.lower().endswith(_CSV + _PARQUET)
                       and not p.name.startswith((".", "_")))
    else:
        if not os.path.exists(text):
            raise DataError(text, None, "file not found")
        files = [text]
    if not files:
        raise DataError(text, None, "no CSV or Parquet files found")
    kinds = set()
    for f in files:
        name = f.lower()
        if name.endswith(_PARQUET):
            kinds.add("parquet")
        elif name.endswith(_CSV):
            kinds.add("csv")
        else:
            raise DataError(f, None, "unknown file type; use .csv, .csv.gz or .parquet")
    if len(kinds) > 1:
        raise DataError(text, None, "mixes CSV and Parquet files; use one kind")
    return files, kinds.pop()


class DuckEngine:
    """An in-process DuckDB connection with its memory bounded: past `memory_limit` it spills
    to `temp_directory` instead of growing."""

    dialect = Dialect("duckdb")

    def __init__(self, memory_limit: str = "4GB", temp_directory: str | None = None,
                 threads: int | None = None):
        import duckdb

        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"SET memory_limit = {_literal(memory_limit)}")
        temp = temp_directory or os.path.join(tempfile.gettempdir(), "churn-duckdb")
        self.con.execute(f"SET temp_directory = {_literal(temp)}")
        self.con.execute("SET preserve_insertion_order = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._n = 0

    def relation(self, sql: str) -> str:
        """A query as a temporary view with a fresh name, the name returned."""
        self._n += 1
        name = f"churn_rel_{self._n}"
        self.view(name, sql)
        return name

    def scan(self, files: list[str], kind: str, sep: str = ",") -> str:
        remote = [f for f in files if "://" in f]
        if remote:
            raise DataError(remote[0], None, "a path on a cluster's file system needs --engine spark")
        listed = "[" + ", ".join(_literal(f) for f in files) + "]"
        if kind == "parquet":
            return f"read_parquet({listed}, union_by_name = true)"
        # every column as text: types are decided by the checks below, over every row, as pandas
        # decides them, never from a sample (a sniffer would also guess date formats)
        return (f"read_csv({listed}, header = true, all_varchar = true, union_by_name = true, "
                f"delim = {_literal(sep)})")

    def view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def schema(self, sql: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()]

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).fetch_df()

    def close(self) -> None:
        self.con.close()


_SPARK = None


def spark_session(master: str | None = None, driver_memory: str = "4g"):
    """The one Spark session of this process: Spark Connect when SPARK_REMOTE is set, else
    `master` (default local[*]). Times are UTC; ANSI mode stays on, as Spark 4 ships it."""
    global _SPARK
    if _SPARK is not None:
        return _SPARK
    warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
    # Python workers run this interpreter, which has this package (on a cluster, install the
    # package on the executors' Python)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("churn-service")
    if not os.environ.get("SPARK_REMOTE"):
        master = master or "local[*]"
        builder = (builder.master(master)
                   .config("spark.driver.memory", driver_memory)
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false"))
        local = re.fullmatch(r"local\[(\d+|\*)(,\d+)?\]|local", master)
        if local:  # two shuffle partitions per core (measured best at 10M events on local[2])
            cores = os.cpu_count() or 2
            if local.group(1) and local.group(1) != "*":
                cores = int(local.group(1))
            elif master == "local":
                cores = 1
            builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    _SPARK = builder.getOrCreate()
    if not os.environ.get("SPARK_REMOTE"):
        _SPARK.sparkContext.setLogLevel("ERROR")
    return _SPARK


class SparkEngine:
    """The same relations and SQL text on Spark, through `spark.sql`."""

    dialect = Dialect("spark")

    def __init__(self, master: str | None = None, driver_memory: str = "4g"):
        self.spark = spark_session(master, driver_memory)
        self._n = 0

    def scan(self, files: list[str], kind: str, sep: str = ",") -> str:
        reader = self.spark.read
        if kind == "parquet":
            nanos = parquet_nanosecond_columns(files)
            if nanos:  # Spark refuses TIMESTAMP(NANOS) unless read as the integer it is
                self.spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
            frame = reader.option("mergeSchema", "true").parquet(*files)
            if nanos:
                from pyspark.sql import functions as F

                frame = frame.withColumns({
                    c: F.expr(f"timestamp_micros((`{c}` - pmod(`{c}`, 1000)) DIV 1000)")
                    for c in nanos if c in frame.columns})
        else:  # every column as text, as in DuckEngine
            frame = reader.csv(files, header=True, sep=sep, inferSchema=False)
        self._n += 1
        name = f"churn_scan_{self._n}"
        frame.createOrReplaceTempView(name)
        return name

    def relation(self, sql: str) -> str:
        """A query as a temporary view with a fresh name, the name returned."""
        self._n += 1
        name = f"churn_rel_{self._n}"
        self.view(name, sql)
        return name

    def view(self, name: str, sql: str) -> None:
        self.spark.sql(sql).createOrReplaceTempView(name)

    def schema(self, sql: str) -> list[tuple[str, str]]:
        return list(self.spark.sql(f"SELECT * FROM {sql}").dtypes)

    def register(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def query(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(sql).toArrow().to_pandas()

    def frame(self, sql: str):
        return self.spark.sql(sql)

    def close(self) -> None:
        pass  # the session is shared by the process


def make_engine(name: str, *, memory_limit: str = "4GB", temp_directory: str | None = None,
                spark_master: str | None = None, spark_driver_memory: str = "4g"):
    if name == "duckdb":
        return DuckEngine(memory_limit, temp_directory)
    if name == "spark":
        return SparkEngine(spark_master, spark_driver_memory)
    raise ValueError(f"--engine: must be one of {', '.join(ENGINES)}, not {name!r}")


# ---------------------------------------------------------------------------------------------
# The events, scanned and checked where they lie
# ---------------------------------------------------------------------------------------------


def _sum_if(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


def parquet_nanosecond_columns(files: list[str]) -> set[str]:
    """Columns stored as nanosecond timestamps in the local Parquet files (read from their
    footers). A file on a cluster's file system is not opened here."""
    import pyarrow.parquet as pq

    found: set[str] = set()
    for f in files:
        if "://" in f:
            continue
        try:
            schema = pq.read_schema(f)
        except Exception:  # noqa: BLE001 - the engine's read reports an unreadable file
            continue
        found |= {fld.name for fld in schema
                  if pa.types.is_timestamp(fld.type) and fld.type.unit == "ns"}
    return found


def utc_relation(engine, raw: str) -> str:
    """The scanned relation with every time and date column as a naive UTC TIMESTAMP in
    microseconds (`Dialect.utc_timestamp`), so the checks and the feature SQL see one type
    whatever unit and zone the file was written with; `raw` itself when nothing changes."""
    exprs, changed = [], False
    for name, sql_type in engine.schema(raw):
        ref = engine.dialect.quote(name)
        expr = engine.dialect.utc_timestamp(ref, sql_type)
        exprs.append(ref if expr is None else f"{expr} AS {ref}")
        changed |= expr is not None
    return engine.relation(f"SELECT {', '.join(exprs)} FROM {raw}") if changed else raw


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


@dataclass
class _Column:
    name: str  # as written in the file
    clean: str  # without surrounding spaces, the name the contract uses
    kind: str


class EventFiles:
    """The events table as a scan in an engine: what `features.engine` asks of an events
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
        self.columns = [_Column(n, n.strip(), _kind(t)) for n, t in schema]
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
        return ", ".join(f"{c}={_plain(row.iloc[0, i])!r}" for i, c in enumerate(columns))

    def check(self, known: str) -> None:
        """Validate the events against the contract in one scan, and count those of customers
        not in `known` (a relation with a known_id column); they are left out (a note)."""
        tcol = self._col(TIMESTAMP)
        if tcol.kind in ("integer", "float"):
            raise DataError(self.path, TIMESTAMP, "expected dates or timestamps, got numbers",
                            self._example(f"{self._ref(TIMESTAMP)} IS NOT NULL", TIMESTAMP))
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
                date_format = None  # wholly ISO 8601: read as such (`_parse_one_format`)
            else:
                some_ok = stats["ts_bad"] < stats["n"] - stats["ts_missing"]
                bad = f"{ts_text} IS NOT NULL AND {self._ts_parse(date_format)} IS NULL"
                raise DataError(self.path, TIMESTAMP, _format_problem(date_format, some_ok),
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

    # -- what features.engine asks of an events table -----------------------------------------
    def __len__(self) -> int:
        return self.num_rows

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

    def stats(self, before: float | None = None) -> tuple[pd.Series, float | None, float | None]:
        """Event counts per type, and the first and last event time (epoch seconds), of the
        known customers' events strictly before `before` (None: all, computed once)."""
        if before is None and self._all_stats is not None:
            return self._all_stats
        where = "" if before is None else f" WHERE ts < {float(before)!r}E0"
        rows = self.engine.query(
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
    `features.engine` queries (the twin of its in-memory `Relations`)."""

    def __init__(self, customers: pd.DataFrame, events: EventFiles, spec):
        from features.engine import customer_relation

        self.spec = spec
        self.engine = events.engine
        self.engine.register("customers", customer_relation(customers, spec))
        self.engine.view("events", events.relation_sql(spec.value_slugs, spec.contact_slugs))

    def query(self, sql: str, **extra: pd.DataFrame | pa.Table) -> pd.DataFrame:
        for name, frame in extra.items():
            table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
                frame, preserve_index=False)
            self.engine.register(name, table)
        try:
            return self.engine.query(sql)
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
    from features.definitions import FeatureSpec

    EngineRelations(customers, events, FeatureSpec(event_types=(), attributes=kinds,
                                                   value_columns=events.value_columns))
    return Tables(customers, events, kinds, events.value_columns, events.dropped, notes,
                  events.contact_columns)
