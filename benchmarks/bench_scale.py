"""The cost curve: `churn features`, `churn score` and `churn train` on logs of 1M, 10M and 100M
events, on DuckDB and on Spark local[2] (`train` on DuckDB alone).

Each log is written to disk in chunks by DuckDB's COPY (a folder of Parquet parts, 10M events
each), never held whole in memory: one customer per 100 events, 24 months, eight event types with
skewed rates, amounts on payments. Every command runs as the CLI a user would type, in its own
process; wall time and the peak RSS of its whole process tree (the JVM included) are sampled
every 0.1 s. A model is trained once on the smallest log and scores every size. The train stage
trains on each log with the bench's fast config (no search, no intervals) and the packaged memory
budget, registering as `churn-bench` so the scoring model stays champion.

    .venv/bin/python benchmarks/bench_scale.py                      # 1M, 10M, 100M; both engines
    .venv/bin/python benchmarks/bench_scale.py --sizes 1,10 --engines duckdb
    .venv/bin/python benchmarks/bench_scale.py --spark-max 10       # Spark up to 10M events
    .venv/bin/python benchmarks/bench_scale.py --sizes 1 --commands train

It prints one row per (engine, command, size) with the growth factor of time and memory from the
size before, the targets with their verdicts, and writes the rows as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import psutil

ROOT = Path(__file__).resolve().parents[1]
CHURN = str(Path(sys.executable).with_name("churn"))
AS_OF = "2026-06-30"
EVENTS_PER_CUSTOMER = 100
CHUNK = 10_000_000
TYPES = ["login", "page_view", "feature_use", "payment", "support_ticket", "complaint",
         "late_payment", "cancel_request"]
WEIGHTS = [0.40, 0.30, 0.15, 0.08, 0.03, 0.02, 0.015, 0.005]

FAST_CONFIG = """
bootstrap = 0
num_threads = 2
[search]
trials = 0
"""


def generate(folder: Path, events: int, seed: int = 0) -> None:
    """customers.parquet and events/part-*.parquet with `events` events, written by DuckDB."""
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    customers = events // EVENTS_PER_CUSTOMER
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SELECT setseed({seed / 1000})")
    con.execute(f"""
        COPY (
          SELECT CAST(100000 + i AS VARCHAR) AS customer_id,
                 TIMESTAMP '2024-07-01' + INTERVAL (CAST(random() * 540 AS INT)) DAY AS signup_at,
                 CASE WHEN random() < 0.25
                      THEN TIMESTAMP '2026-01-01' + INTERVAL (CAST(random() * 300 AS INT)) DAY
                 END AS churned_at,
                 ['basic', 'pro', 'team'][1 + CAST(floor(random() * 3) AS INT)] AS plan,
                 ['monthly', 'annual'][1 + CAST(floor(random() * 2) AS INT)] AS contract,
                 ['DE', 'FR', 'US', 'GB', 'ES', 'IT', NULL][1 + CAST(floor(random() * 7) AS INT)]
                   AS country
          FROM range({customers}) t(i)
        ) TO '{folder / "customers.parquet"}' (FORMAT parquet)""")
    # per type, the cumulative weight it ends at: one random draw picks the type
    edges, total = [], 0.0
    for w in WEIGHTS:
        total += w
        edges.append(total)
    pick = "CASE " + " ".join(f"WHEN u < {e!r} THEN '{t}'" for t, e in zip(TYPES, edges)) + \
        f" ELSE '{TYPES[-1]}' END"
    (folder / "events").mkdir(exist_ok=True)
    for part, start in enumerate(range(0, events, CHUNK)):
        n = min(CHUNK, events - start)
        con.execute(f"""
            COPY (
              SELECT customer_id, ts AS timestamp, event_type,
                     CASE WHEN event_type = 'payment' THEN round(5 + random() * 95, 2) END AS amount
              FROM (
                SELECT CAST(100000 + CAST(floor(pow(random(), 1.3) * {customers}) AS BIGINT)
                            AS VARCHAR) AS customer_id,
                       TIMESTAMP '2024-07-01' + INTERVAL (CAST(random() * 63072000 AS BIGINT)) SECOND
                         AS ts,
                       {pick} AS event_type
                FROM (SELECT random() AS u FROM range({n}))
              )
            ) TO '{folder / "events" / f"part-{part:03d}.parquet"}' (FORMAT parquet)""")
        print(f"  generated {start + n:,} of {events:,} events", file=sys.stderr, flush=True)
    (folder / "done").write_text("ok")


def run(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a command; its wall time and the peak RSS of its process tree, sampled every 0.1 s."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree if p.is_running())
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
            time.sleep(0.1)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    done.set()
    thread.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-2000:]}")
    return {"seconds": wall, "peak_rss_mb": peak[0] / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100", help="millions of events, comma-separated")
    parser.add_argument("--engines", default="duckdb,spark")
    parser.add_argument("--commands", default="features,score,train",
                        help="stages, comma-separated: features, score, train (DuckDB only)")
    parser.add_argument("--spark-max", type=float, default=100.0,
                        help="largest size (millions of events) run on Spark")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "churn-scale")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    opts = parser.parse_args()
    sizes = [float(s) for s in opts.sizes.split(",")]
    engines = opts.engines.split(",")
    commands = opts.commands.split(",")
    work = opts.workdir
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "fast.toml").write_text(FAST_CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")

    logs = {}
    for size in sizes:
        folder = work / f"log-{size:g}M"
        print(f"log of {size:g}M events -> {folder}", file=sys.stderr)
        generate(folder, int(size * 1_000_000))
        logs[size] = folder
    small = logs[min(sizes)]
    if not (home / "trained").exists() and {"features", "score"} & set(commands):
        print("training a model on the smallest log", file=sys.stderr)
        run([CHURN, "train", "--customers", str(small / "customers.parquet"), "--events",
             str(small / "events"), "--label", "explicit", "--horizon", "30", "--config",
             str(home / "fast.toml")], env)
        (home / "trained").write_text("ok")

    rows = []
    for engine in engines:
        for size in sizes:
            if engine == "spark" and size > opts.spark_max:
                continue
            folder = logs[size]
            common = ["--customers", str(folder / "customers.parquet"), "--events",
                      str(folder / "events"), "--as-of", AS_OF, "--engine", engine]
            if engine == "spark":
                common += ["--spark-master", "local[2]"]
            for command in commands:
                if command == "train" and engine != "duckdb":
                    continue
                print(f"{engine} {command} {size:g}M", file=sys.stderr, flush=True)
                if command == "train":
                    m = run([CHURN, "train", "--customers", str(folder / "customers.parquet"),
                             "--events", str(folder / "events"), "--label", "explicit",
                             "--horizon", "30", "--config", str(home / "fast.toml"),
                             "--engine", engine, "--model-name", "churn-bench"], env)
                else:
                    out = work / f"out-{engine}-{command}-{size:g}M.parquet"
                    m = run([CHURN, command, *common, "--out", str(out)], env)
                m.update(engine=engine, command=command, events=int(size * 1_000_000),
                         customers=int(size * 1_000_000) // EVENTS_PER_CUSTOMER)
                m["events_per_s"] = m["events"] / m["seconds"]
                rows.append(m)
                print(f"  {m['seconds']:.1f} s, peak RSS {m['peak_rss_mb']:,.0f} MB",
                      file=sys.stderr, flush=True)
    report(rows)
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=1))


def report(rows: list[dict]) -> None:
    print(f"{'engine':7} {'command':9} {'events':>12} {'customers':>10} {'seconds':>9} "
          f"{'peak RSS MB':>12} {'events/s':>12} {'time x':>7} {'RSS x':>6}")
    prev: dict[tuple, dict] = {}
    for r in rows:
        key = (r["engine"], r["command"])
        p = prev.get(key)
        tx = f"{r['seconds'] / p['seconds']:.2f}" if p else "-"
        mx = f"{r['peak_rss_mb'] / p['peak_rss_mb']:.2f}" if p else "-"
        print(f"{r['engine']:7} {r['command']:9} {r['events']:>12,} {r['customers']:>10,} "
              f"{r['seconds']:>9.1f} {r['peak_rss_mb']:>12,.0f} {r['events_per_s']:>12,.0f} "
              f"{tx:>7} {mx:>6}")
        prev[key] = r
    by = {(r["engine"], r["command"], r["events"]): r for r in rows}
    print("\ntargets (this machine):")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    f100 = by.get(("duckdb", "features", 100_000_000))
    if f100:
        print(f"  duckdb features, 100M events: {f100['seconds']:.0f} s (target <= 90 s) "
              f"{verdict(f100['seconds'] <= 90)}; peak RSS {f100['peak_rss_mb'] / 1024:.1f} GB "
              f"(target <= 6 GB) {verdict(f100['peak_rss_mb'] <= 6 * 1024)}")
    s100 = by.get(("duckdb", "score", 100_000_000))
    if s100:
        print(f"  duckdb score, 1M customers and 100M events: {s100['seconds']:.0f} s "
              f"(target <= 240 s) {verdict(s100['seconds'] <= 240)}")
    for size, seconds, gb in ((10_000_000, 300, 4), (100_000_000, 1200, 8)):
        t = by.get(("duckdb", "train", size))
        if t:
            print(f"  duckdb train, {size // EVENTS_PER_CUSTOMER:,} customers and "
                  f"{size // 10**6}M events: {t['seconds']:.0f} s (target <= {seconds} s) "
                  f"{verdict(t['seconds'] <= seconds)}; peak RSS {t['peak_rss_mb'] / 1024:.1f} GB "
                  f"(target <= {gb} GB) {verdict(t['peak_rss_mb'] <= gb * 1024)}")
    for command in ("features", "score"):
        d10, s10 = by.get(("duckdb", command, 10_000_000)), by.get(("spark", command, 10_000_000))
        if d10 and s10:
            ratio = s10["seconds"] / d10["seconds"]
            print(f"  spark/duckdb {command}, 10M events: {ratio:.1f}x (target <= 4x) "
                  f"{verdict(ratio <= 4)}")
        for size in (1_000_000, 10_000_000):
            a, b = by.get(("duckdb", command, size)), by.get(("duckdb", command, size * 10))
            if a and b:
                g = b["seconds"] / a["seconds"]
                print(f"  duckdb {command} growth {size // 10**6}M -> {size // 10**5}M events: "
                      f"{g:.1f}x time per 10x events (linear within 1.3x: <= 13x) "
                      f"{verdict(g <= 13)}")


if __name__ == "__main__":
    main()
