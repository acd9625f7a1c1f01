"""Reading and writing the tables' files: CSV (plain or compressed) or Parquet, chosen by the
file's extension; a path may name a file, a folder of files or a glob (`expand`, for the scanning
engines of `features.sources`). Times in Parquet files are made naive UTC on reading
(`utc_times`), so every later step and every engine reads the same instants."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.contract import CUSTOMER_ID, DataError

_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.xz", ".tsv", ".tsv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
# what the scanning engines read (DuckDB and Spark read no bz2 or xz)
SCAN_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.zst", ".tsv", ".tsv.gz")
# every suffix of a table file, longest first (what a file's name is without its format)
TABLE_SUFFIXES = tuple(sorted({*_CSV_SUFFIXES, *_PARQUET_SUFFIXES}, key=len, reverse=True))


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



def expand(path: str | Path) -> tuple[list[str], str]:
    """The files a path names (a file, a folder of files, or a glob) and their kind, csv or
    parquet. A DataError when there are none or the kinds are mixed."""
    text = str(path)
    if "://" in text:  # on the engine's own file system (a cluster's): listed by the engine
        kind = "csv" if text.lower().rstrip("/").endswith(SCAN_CSV_SUFFIXES) else "parquet"
        return [text], kind
    text = os.path.abspath(text)  # a Spark Connect server resolves relative paths in its folder
    if any(c in text for c in "*?["):
        files = sorted(glob.glob(text, recursive=True))
    elif os.path.isdir(text):
        files = sorted(str(p) for p in Path(text).rglob("*")
                       if p.is_file() and p.name.lower().endswith(SCAN_CSV_SUFFIXES + _PARQUET_SUFFIXES)
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
        if name.endswith(_PARQUET_SUFFIXES):
            kinds.add("parquet")
        elif name.endswith(SCAN_CSV_SUFFIXES):
            kinds.add("csv")
        else:
            raise DataError(f, None, "unknown file type; use .csv, .csv.gz or .parquet")
    if len(kinds) > 1:
        raise DataError(text, None, "mixes CSV and Parquet files; use one kind")
    return files, kinds.pop()

