"""Benchmark: the DuckDB and NumPy feature builds against a plain pandas groupby build.

Run on demand (it is not a test and pytest does not collect it):

    .venv/bin/python benchmarks/bench_features.py                    # ~10M events, a few minutes
    .venv/bin/python benchmarks/bench_features.py --customers 5000   # quick run
    .venv/bin/python benchmarks/bench_features.py --profile          # + where DuckDB spends time
    .venv/bin/python benchmarks/bench_features.py --crossover --customers 100000
                                                # DuckDB vs NumPy by size (the engine's threshold)

What it does:

1. generates a subscription history (`simulation.generate`, ~100 events per customer), validates it
   with the data contract and infers the feature spec;
2. builds the feature table at one observation time for every active customer with
   `features.engine.feature_table` on DuckDB, then with its NumPy evaluator (both generated from
   the same feature entries), and once with `pandas_features` below (pandas
   filter / merge / groupby / unstack, no per-row Python), each in its own forked child process,
   so each peak-memory figure belongs to that build alone;
3. checks that the DuckDB and NumPy tables each agree with pandas column by column (numbers
   with rtol = atol = 1e-9, NaN equal to NaN; categories exactly), which makes the ratios honest;
4. prints rows, events, seconds, events per second and peak memory for each, and the ratio
   pandas seconds / DuckDB seconds against the target (DuckDB at least 10x faster).

Timings include everything `feature_table` does for a caller that holds validated frames
(conversion to the relational form, the query, the post-processing); the pandas build starts from
the same validated frames and returns the same columns. Peak memory is the growth of the child's
peak RSS (`ru_maxrss`) over its RSS at fork time, i.e. what the build needs on top of the input.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.contract import (  # noqa: E402
    CHURNED_AT,
    CUSTOMER_ID,
    EVENT_TYPE,
    SIGNUP_AT,
    TIMESTAMP,
    Tables,
)
from features.definitions import FeatureSpec  # noqa: E402
from features.engine import feature_table  # noqa: E402
from features.relations import AS_OF  # noqa: E402
from features.spec_inference import infer_spec  # noqa: E402
from features.tables import (  # noqa: E402
    drop_unknown_customers,
    validate_customers,
    validate_events,
)
from simulation.generate import generate  # noqa: E402

TARGET = 10.0  # DuckDB must be at least this many times faster than pandas
RTOL = ATOL = 1e-9
EPOCH = pd.Timestamp("1970-01-01")
DAY = 86400.0


# ---------------------------------------------------------------------------------------------
# The pandas implementation of the same features
# ---------------------------------------------------------------------------------------------


def _seconds(values: pd.Series) -> np.ndarray:
    """Datetimes as float seconds since 1970 (NaT becomes NaN)."""
    return (values - EPOCH).dt.total_seconds().to_numpy(dtype="float64")


def _trend(recent: np.ndarray, earlier: np.ndarray, exp_prev: np.ndarray, spec: FeatureSpec):
    """Symmetric change of the daily rate, recent vs. earlier window (see definitions._trend)."""
    r = recent / float(spec.trend_recent)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = earlier / exp_prev
        out = np.where(r + p == 0, 0.0, (r - p) / (r + p))
    return np.where(exp_prev <= 0, np.nan, out)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0 or missing (SQL's x / NULLIF(d, 0))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def pandas_features(
    customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, spec: FeatureSpec
) -> pd.DataFrame:
    """The feature table of every active customer at `as_of`, built with pandas groupbys."""
    t = pd.Timestamp(as_of)
    t_s = (t - EPOCH).total_seconds()
    rec, prev_hi = spec.trend_recent, spec.trend_recent + spec.trend_earlier
    wall = sorted(set(spec.windows) | {rec, prev_hi})
    wmax = max(spec.windows)
    values = spec.value_slugs  # value column -> slug

    # the observations: customers signed up by t and not churned by it
    active = (customers[SIGNUP_AT] <= t) & ~(customers[CHURNED_AT] <= t)
    obs = customers.loc[active].reset_index(drop=True)
    n = len(obs)
    keys = pd.DataFrame({CUSTOMER_ID: obs[CUSTOMER_ID], "obs_id": np.arange(n)})

    # their events strictly before t, with each event's age and window flags
    ts = _seconds(events[TIMESTAMP])
    past = ts < t_s
    ev = events.loc[past, [CUSTOMER_ID, EVENT_TYPE, *values]].assign(ts=ts[past])
    ev = ev.merge(keys, on=CUSTOMER_ID, how="inner").drop(columns=CUSTOMER_ID)
    age = t_s - ev["ts"].to_numpy()
    cols = {"age": age}
    for w in wall:
        cols[f"in_{w}"] = age <= w * DAY
    in_prev = (age > rec * DAY) & (age <= prev_hi * DAY)
    cols["in_prev"] = in_prev
    for col, s in values.items():
        v = ev[col]
        for w in wall:
            cols[f"{s}_v{w}"] = v.where(cols[f"in_{w}"])
        cols[f"{s}_vprev"] = v.where(in_prev)
    ev = ev.assign(**cols)

    # 1. aggregates per observation and event type
    aggs: dict[str, tuple[str, str]] = {f"n_{w}": (f"in_{w}", "sum") for w in wall}
    aggs |= {"n_prev": ("in_prev", "sum"), "n_all": ("age", "size"),
             "min_age": ("age", "min"), "max_age": ("age", "max")}
    for col, s in values.items():
        aggs |= {f"{s}_s{w}": (f"{s}_v{w}", "sum") for w in wall}
        aggs |= {f"{s}_sprev": (f"{s}_vprev", "sum"), f"{s}_c{wmax}": (f"{s}_v{wmax}", "count"),
                 f"{s}_sall": (col, "sum"), f"{s}_call": (col, "count")}
    per_type = ev.groupby(["obs_id", EVENT_TYPE], sort=False).agg(**aggs)

    # 2. totals per observation (all event types)
    tot_aggs = {k: "sum" for k in aggs} | {"min_age": "min", "max_age": "max"}
    tot = per_type.groupby(level="obs_id").agg(tot_aggs).reindex(pd.RangeIndex(n))

    # 3. per event type, one column per (measure, type)
    wide = per_type[[*(f"n_{w}" for w in wall), "n_prev", "min_age"]].unstack(EVENT_TYPE)
    wide = wide.reindex(pd.RangeIndex(n))

    # 4. distinct active days per window: a day counts in a window if its latest event does
    recent = ev.loc[ev[f"in_{wmax}"], ["obs_id", "ts", "age"]]
    day_age = recent.groupby(["obs_id", np.floor(recent["ts"] / DAY)]).age.min()
    act = (
        pd.DataFrame({w: day_age <= w * DAY for w in spec.windows})
        .groupby(level="obs_id").sum()
        .reindex(pd.RangeIndex(n), fill_value=0)
    )

    # 5. the features
    def z(frame: pd.DataFrame, col) -> np.ndarray:
        return frame[col].fillna(0).to_numpy(dtype="float64")

    def raw(frame: pd.DataFrame, col) -> np.ndarray:
        return frame[col].to_numpy(dtype="float64", na_value=np.nan)

    tenure = (t_s - _seconds(obs[SIGNUP_AT])) / DAY
    exp_prev = np.minimum(np.maximum(tenure - float(rec), 0.0), float(spec.trend_earlier))
    n_all, min_age, max_age = z(tot, "n_all"), raw(tot, "min_age"), raw(tot, "max_age")
    several = n_all >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (max_age - min_age) / (n_all - 1)
        mean_gap = np.where(several, (max_age - min_age) / DAY / (n_all - 1), np.nan)
        overdue = np.where(several & (max_age > min_age), min_age / gap, np.nan)

    out: dict[str, object] = {
        "tenure_days": tenure,
        "days_to_anniversary": 365.0 - (tenure - 365.0 * np.floor(tenure / 365.0)),
        "history_days": np.clip(
            (t_s - np.maximum(_seconds(obs[SIGNUP_AT]),
                              -np.inf if spec.log_start is None else spec.log_start)) / DAY,
            0.0, float(wmax)),
    }
    for w in spec.windows:
        out[f"n_events_{w}d"] = z(tot, f"n_{w}")
        out[f"active_days_{w}d"] = act[w].to_numpy(dtype="float64")
    out["days_since_last_event"] = min_age / DAY
    out["events_lifetime"] = n_all
    out["events_per_day_lifetime"] = n_all / np.maximum(np.nan_to_num(max_age) / DAY, 1.0)
    out[f"events_per_active_day_{wmax}d"] = _ratio(raw(tot, f"n_{wmax}"), act[wmax].to_numpy())
    out["mean_gap_days"] = mean_gap
    out["overdue_ratio"] = overdue
    out["trend_events"] = _trend(z(tot, f"n_{rec}"), z(tot, "n_prev"), exp_prev, spec)
    present = set(wide.columns.get_level_values(EVENT_TYPE))
    for etype, s in spec.type_slugs.items():
        if etype in present:
            counts = {w: z(wide, (f"n_{w}", etype)) for w in wall}
            prev, since = z(wide, ("n_prev", etype)), raw(wide, ("min_age", etype)) / DAY
        else:
            counts = {w: np.zeros(n) for w in wall}
            prev, since = np.zeros(n), np.full(n, np.nan)
        for w in spec.windows:
            out[f"n_{s}_{w}d"] = counts[w]
        out[f"days_since_{s}"] = since
        out[f"trend_{s}"] = _trend(counts[rec], prev, exp_prev, spec)
    for s in values.values():
        for w in spec.windows:
            out[f"{s}_sum_{w}d"] = z(tot, f"{s}_s{w}")
        out[f"{s}_mean_{wmax}d"] = _ratio(raw(tot, f"{s}_s{wmax}"), raw(tot, f"{s}_c{wmax}"))
        out[f"{s}_mean_lifetime"] = _ratio(raw(tot, f"{s}_sall"), raw(tot, f"{s}_call"))
        out[f"{s}_trend"] = _trend(z(tot, f"{s}_s{rec}"), z(tot, f"{s}_sprev"), exp_prev, spec)
    attr = spec.attribute_slugs
    for a in spec.attributes.numeric:
        out[attr[a]] = obs[a].to_numpy(dtype="float64", na_value=np.nan)
    for a in spec.attributes.categorical:
        out[attr[a]] = obs[a].astype(object).where(obs[a].notna(), None).to_numpy()
    for a in spec.attributes.datetime:
        since = (t_s - _seconds(obs[a])) / DAY
        out[f"{attr[a]}_days"] = np.where(since >= 0, since, np.nan)  # a future date is unknown

    # a feature added to definitions.py but not here comes out all-NaN, so the check flags it
    unknown = np.full(n, np.nan)
    table = pd.DataFrame({
        CUSTOMER_ID: obs[CUSTOMER_ID].to_numpy(dtype=object),
        AS_OF: pd.Series(t, index=pd.RangeIndex(n)).astype("datetime64[us]"),
        **{name: out.get(name, unknown) for name in spec.feature_names},
    })
    for c in spec.categorical_features:  # object with None for missing, as the engine returns
        table[c] = table[c].astype(object).where(table[c].notna(), None)
    return table


def duckdb_features(
    customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, spec: FeatureSpec
) -> pd.DataFrame:
    """The project's batch build: features.engine.feature_table on DuckDB at one time."""
    return feature_table(customers, events, spec, [pd.Timestamp(as_of)], evaluator="sql")


def numpy_features(
    customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, spec: FeatureSpec
) -> pd.DataFrame:
    """The project's in-process build: the NumPy evaluator of the same feature entries."""
    return feature_table(customers, events, spec, [pd.Timestamp(as_of)], evaluator="numpy")


IMPLEMENTATIONS: dict[str, Callable[..., pd.DataFrame]] = {
    "duckdb": duckdb_features,
    "numpy": numpy_features,
    "pandas": pandas_features,
}

# ---------------------------------------------------------------------------------------------
# Measuring each build in its own forked process
# ---------------------------------------------------------------------------------------------

_INPUT: dict[str, object] = {}  # set in the parent before forking; children inherit it


def _rss_mb() -> float:
    """Current resident set size of this process, in MB (from /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _child(conn, name: str) -> None:
    try:
        func = IMPLEMENTATIONS[name]
        if name == "duckdb" and _INPUT.get("threads"):
            from features.relations import connection  # the engine's per-thread connection

            connection().execute(f"SET threads = {int(_INPUT['threads'])}")
        start_rss, start_peak = _rss_mb(), _maxrss_mb()
        c0 = _cpu_seconds()
        t0 = time.perf_counter()
        table = func(_INPUT["customers"], _INPUT["events"], _INPUT["as_of"], _INPUT["spec"])
        seconds = time.perf_counter() - t0
        cpu = _cpu_seconds() - c0
        peak = _maxrss_mb()
        conn.send({
            "name": name, "seconds": seconds, "cpu": cpu, "rows": len(table),
            "start_rss_mb": start_rss, "start_peak_mb": start_peak, "peak_mb": peak,
            "table": table,
        })
    except BaseException:  # report any failure to the parent instead of dying silently
        conn.send({"name": name, "error": traceback.format_exc()})
    finally:
        conn.close()


def measure(name: str) -> dict:
    """Run one implementation in a fresh forked child; its time, peak memory and output."""
    gc.collect()
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, name))
    proc.start()
    send.close()
    try:
        result = recv.recv()
    except EOFError:
        result = {"name": name, "error": "the child died without reporting (out of memory?)"}
    proc.join()
    if "error" in result:
        raise SystemExit(f"{name} build failed (exit code {proc.exitcode}):\n{result['error']}")
    result["build_mb"] = result["peak_mb"] - result["start_rss_mb"]
    return result


# ---------------------------------------------------------------------------------------------
# Agreement of the two tables
# ---------------------------------------------------------------------------------------------


def compare(a: pd.DataFrame, b: pd.DataFrame, spec: FeatureSpec) -> list[str]:
    """Human-readable disagreements between two feature tables (empty if they agree)."""
    problems = []
    a = a.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    b = b.sort_values(CUSTOMER_ID, kind="stable").reset_index(drop=True)
    if len(a) != len(b):
        return [f"row counts differ: {len(a)} vs {len(b)}"]
    ids_a, ids_b = a[CUSTOMER_ID].astype(str).to_numpy(), b[CUSTOMER_ID].astype(str).to_numpy()
    if not (ids_a == ids_b).all():
        return [f"customer ids differ, e.g. {ids_a[ids_a != ids_b][:3]} vs {ids_b[ids_a != ids_b][:3]}"]
    if not (pd.to_datetime(a[AS_OF]).to_numpy() == pd.to_datetime(b[AS_OF]).to_numpy()).all():
        problems.append(f"{AS_OF}: differs")
    expected = [CUSTOMER_ID, AS_OF, *spec.feature_names]
    for name, frame in (("duckdb", a), ("pandas", b)):
        if list(frame.columns) != expected:
            missing = set(expected) - set(frame.columns)
            extra = [c for c in frame.columns if c not in expected]
            problems.append(f"{name} columns: missing {sorted(missing)}, extra {extra}, "
                            "or a different order")
    categorical = set(spec.categorical_features)
    for col in spec.feature_names:
        if col not in a or col not in b:
            continue
        if col in categorical:
            x = a[col].astype(object).where(a[col].notna(), None).to_numpy()
            y = b[col].astype(object).where(b[col].notna(), None).to_numpy()
            bad = np.array([u != v for u, v in zip(x, y, strict=True)], dtype=bool)
        else:
            x = a[col].to_numpy(dtype="float64", na_value=np.nan)
            y = b[col].to_numpy(dtype="float64", na_value=np.nan)
            if np.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True):
                continue
            bad = ~np.isclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            problems.append(
                f"{col}: {int(bad.sum())} of {len(bad)} rows differ, e.g. customer {ids_a[i]}: "
                f"duckdb={x[i]!r} pandas={y[i]!r}"
            )
    return problems


# ---------------------------------------------------------------------------------------------
# Optional profile of the DuckDB build
# ---------------------------------------------------------------------------------------------


def _print_plan(plan: dict) -> None:
    """A compact operator tree of a DuckDB JSON profile: type, rows, seconds, a short detail."""
    nodes: list[tuple[int, dict]] = []

    def walk(node: dict, depth: int) -> None:
        nodes.append((depth, node))
        for child in node.get("children", []):
            walk(child, depth + 1)

    for root in plan.get("operator", plan.get("children", [])):
        walk(root, 0)
    total = sum(n.get("timing", 0.0) or 0.0 for _, n in nodes) or 1.0
    for depth, node in nodes:
        secs = node.get("timing", 0.0) or 0.0
        if secs / total < 0.02:
            continue
        info = node.get("extra_info") or {}
        detail = "; ".join(
            f"{k}: {v if isinstance(v, str) else ', '.join(map(str, v))}"
            for k, v in info.items()
            if k in ("CTE Name", "Groups", "Join Type", "Conditions", "Aggregates", "Table", "Text")
        )
        label = "  " * min(depth, 20) + str(node.get("type", "?"))
        print(f"  {label:<50} "
              f"{node.get('operator_cardinality', node.get('intermediate_rows', 0)):>12,} rows "
              f"{secs:7.2f} s ({100 * secs / total:4.1f}%)  {detail[:110]}")


def profile_duckdb(customers, events, as_of, spec, threads: int | None) -> None:
    """Time the stages of the DuckDB build and print a compact EXPLAIN ANALYZE of its query."""
    import duckdb
    import pyarrow as pa

    from features.engine import features_of_pairs
    from features.relations import Relations, epoch_seconds, obs_relation
    from features.sql import feature_sql

    def timed(label, func):
        w0, c0 = time.perf_counter(), time.process_time()
        value = func()
        print(f"  {label:<62} {time.perf_counter() - w0:7.2f} s wall {time.process_time() - c0:7.2f} s cpu")
        return value

    t = pd.Timestamp(as_of)
    print("\nDuckDB build, stage by stage (one process; cpu = all threads):")
    rel = timed("Relations(customers, events): conversion to relational form",
                lambda: Relations(customers, events, spec))
    as_objects = timed("  of which: events customer_id .to_numpy(dtype=object)",
                       lambda: events[CUSTOMER_ID].to_numpy(dtype=object))
    timed("  of which: pd.DataFrame() re-infers that object array as str",
          lambda a=as_objects: pd.DataFrame({CUSTOMER_ID: a}))
    del as_objects
    timed("  of which: epoch_seconds(events timestamp)", lambda: epoch_seconds(events[TIMESTAMP]))
    print(f"  (relation types: {', '.join(f'{f.name}={f.type}' for f in rel.events.schema)})")
    active = (customers[SIGNUP_AT] <= t) & ~(customers[CHURNED_AT] <= t)
    obs = pd.DataFrame({CUSTOMER_ID: customers.loc[active, CUSTOMER_ID].to_numpy(), AS_OF: t})
    obs_rel = obs_relation(obs)
    sql = feature_sql(spec)
    timed("feature_sql query on the relations (Relations.query)", lambda: rel.query(sql, obs=obs_rel))
    timed("_features_of_pairs: the same query + sorting and casting",
          lambda: features_of_pairs(rel, obs))

    # what the query costs with no conversion: events handed over as a zero-copy Arrow table
    arrow_events = timed("alternative: events as a zero-copy Arrow table", lambda: pa.table({
        "customer_id": pa.array(events[CUSTOMER_ID].array),
        "ts": events[TIMESTAMP].to_numpy("datetime64[us]").view("int64") / 1e6,
        "event_type": pa.array(events[EVENT_TYPE].array),
        **{f"v_{s}": events[c].to_numpy("float64") for c, s in spec.value_slugs.items()},
    }))
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.register("events", arrow_events)
    con.register("customers", rel.customers)
    con.register("obs", obs_rel)
    timed("feature_sql query on the Arrow events", lambda: con.execute(sql).fetch_df())
    nthreads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    timed("feature_sql query on the Arrow events, 1 thread", lambda: con.execute(sql).fetch_df())
    con.execute(f"SET threads = {nthreads}")
    timed("floor: the join alone (count per observation)", lambda: con.execute(
        "SELECT o.obs_id, COUNT(*) FROM obs o JOIN events e ON e.customer_id = o.customer_id "
        "WHERE e.ts < o.as_of GROUP BY o.obs_id").fetch_df())

    print(f"\nEXPLAIN ANALYZE of feature_sql on the Arrow events ({nthreads} threads; operators "
          "over 2% of the total; seconds are summed over threads and a CTE's time includes "
          "pushing rows to its consumers):")
    plan = json.loads(con.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchall()[0][1])
    _print_plan(plan)
    con.close()


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def prepare(n_customers: int, seed: int) -> Tables:
    raw_customers, raw_events = generate(n_customers, seed=seed, kind="subscription")
    customers, kinds = validate_customers(raw_customers, "customers")
    events, value_cols, notes = validate_events(raw_events, "events")
    del raw_customers, raw_events
    events, dropped = drop_unknown_customers(events, customers)
    return Tables(customers, events, kinds, value_cols, dropped, notes)


def crossover(max_customers: int, seed: int, as_of: pd.Timestamp) -> int:
    """DuckDB against the NumPy evaluator by input size, in this process: the median of a few
    builds each. The engine's ONLINE_MAX_EVENTS should sit near where DuckDB starts to win."""
    from features.engine import ONLINE_MAX_EVENTS

    print(f"DuckDB against NumPy at one observation time; {_load()}")
    print(f"{'customers':>10}{'events':>12}{'duckdb s':>10}{'numpy s':>10}{'duckdb/numpy':>14}")
    sizes = [n for n in (1, 10, 100, 1_000, 3_000, 10_000, 30_000, 100_000) if n <= max_customers]
    first_win = None
    for n in sizes:
        tables = prepare(n, seed)
        spec = infer_spec(tables)
        times = {}
        for name, func in (("duckdb", duckdb_features), ("numpy", numpy_features)):
            runs = []
            for _ in range(5 if len(tables.events) < 1_000_000 else 2):
                t = time.perf_counter()
                func(tables.customers, tables.events, as_of, spec)
                runs.append(time.perf_counter() - t)
            times[name] = float(np.median(runs))
        ratio = times["duckdb"] / times["numpy"]
        if ratio < 1 and first_win is None:
            first_win = len(tables.events)
        print(f"{n:>10,}{len(tables.events):>12,}{times['duckdb']:>10.4f}{times['numpy']:>10.4f}"
              f"{ratio:>13.2f}x", flush=True)
    print(f"DuckDB first faster at {first_win:,} events" if first_win else
          "NumPy faster at every size measured")
    print(f"engine threshold ONLINE_MAX_EVENTS = {ONLINE_MAX_EVENTS:,} (NumPy at or below it)")
    return 0


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000,
                        help="customers to generate (~100 events each; default 100000 = ~10M events)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as-of", default="2026-06-01", help="observation time (default 2026-06-01)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="builds per implementation, each in a fresh process; the fastest counts")
    parser.add_argument("--duckdb-threads", type=int, default=None,
                        help="DuckDB threads (default: DuckDB's own default, one per CPU)")
    parser.add_argument("--profile", action="store_true",
                        help="afterwards, time the DuckDB stages and print EXPLAIN ANALYZE")
    parser.add_argument("--crossover", action="store_true",
                        help="only time DuckDB against NumPy from 1 to --customers customers")
    args = parser.parse_args(argv)
    as_of = pd.Timestamp(args.as_of)
    if args.crossover:
        return crossover(args.customers, args.seed, as_of)

    t0 = time.perf_counter()
    tables = prepare(args.customers, args.seed)
    spec = infer_spec(tables)
    gc.collect()
    n_events = len(tables.events)
    print(f"data: {len(tables.customers):,} customers, {n_events:,} events, "
          f"{len(spec.feature_names)} features, prepared in {time.perf_counter() - t0:.1f} s "
          f"(parent RSS {_rss_mb():,.0f} MB)")
    print(f"as_of {as_of}; DuckDB threads: {args.duckdb_threads or 'default'}; {_load()}")

    _INPUT.update(customers=tables.customers, events=tables.events, as_of=as_of, spec=spec,
                  threads=args.duckdb_threads)
    results: dict[str, dict] = {}
    for rep in range(args.repeat):
        for name in IMPLEMENTATIONS:
            r = measure(name)
            print(f"  run {rep + 1} {name:<7} {r['seconds']:7.2f} s wall {r['cpu']:7.2f} s cpu   "
                  f"build peak {r['build_mb']:7,.0f} MB (child RSS {r['start_rss_mb']:,.0f} MB "
                  f"at start, {r['peak_mb']:,.0f} MB at peak)")
            best = results.get(name)
            peak = max(r["build_mb"], best["build_mb"] if best else 0.0)
            if best is None or r["seconds"] < best["seconds"]:
                results[name] = best = r
            best["build_mb"] = peak
    print(f"  {_load()}")

    problems = compare(results["duckdb"]["table"], results["pandas"]["table"], spec)
    problems += [f"numpy: {p}" for p in
                 compare(results["numpy"]["table"], results["pandas"]["table"], spec)]
    if problems:
        print(f"\nDISAGREEMENT in {len(problems)} column(s):")
        for p in problems:
            print("  " + p)
    else:
        print(f"\nagreement: all {len(spec.feature_names)} feature columns agree "
              f"(numbers: rtol={RTOL:g}, atol={ATOL:g}, NaN == NaN; categories: equal)")

    ratio = results["pandas"]["seconds"] / results["duckdb"]["seconds"]
    cpu_ratio = results["pandas"]["cpu"] / results["duckdb"]["cpu"]
    print(f"\n{'build':<8}{'rows':>9}{'events':>13}{'seconds':>9}{'cpu s':>8}{'events/s':>13}"
          f"{'peak MB':>9}")
    for name in IMPLEMENTATIONS:
        r = results[name]
        print(f"{name:<8}{r['rows']:>9,}{n_events:>13,}{r['seconds']:>9.2f}{r['cpu']:>8.2f}"
              f"{n_events / r['seconds']:>13,.0f}{r['build_mb']:>9,.0f}")
    met = ratio >= TARGET and not problems
    print(f"\nratio pandas s / duckdb s: {ratio:.2f}x (cpu time: {cpu_ratio:.2f}x)   "
          f"target >= {TARGET:g}x: {'MET' if met else 'NOT MET'}"
          + (" (outputs disagree)" if problems else ""))
    print("peak MB: growth of the build's own process peak RSS over its RSS at fork (input shared)")

    if args.profile:
        profile_duckdb(tables.customers, tables.events, as_of, spec, args.duckdb_threads)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
