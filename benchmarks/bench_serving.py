"""Serving benchmark: churn-service (BentoML) against `mlflow models serve` on the same model.

Run on demand, never as a test:

    .venv/bin/python benchmarks/bench_serving.py [--customers 3000] [--requests 300]

It generates data, trains and registers one model in a temporary MLflow store, starts both
servers on loopback, sends the same feature rows to both and prints, for each: p50/p99 of
sequential single-customer requests, throughput and p99 at concurrency 16 and 64, and for our
service the cost of /predict (raw history, with reasons) against /predict_features. Ratios are
against MLflow measured in the same run. Targets: >= 3x MLflow's throughput at concurrency 16,
<= 0.5x its sequential p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent
AS_OF = pd.Timestamp("2026-06-15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], env: dict, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def jsonable(v: object) -> object:
    if isinstance(v, float | np.floating):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def payloads(home: Path, env: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """Per customer: our /predict body, our /predict_features body, MLflow's body."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(("CHURN_", "MLFLOW_"))})
    from features.contract import load_tables
    from features.engine import feature_table
    from scoring.settings import get_settings
    from scoring.store import configure, load_model

    configure(get_settings())
    loaded = load_model("models:/churn/1")
    tables = load_tables(home / "data/customers.parquet", home / "data/events.parquet")
    feats = feature_table(tables.customers, tables.events, loaded.model.spec, [AS_OF]).head(200)
    names = loaded.model.feature_names
    ours_hist, ours_rows, mlflow_rows = [], [], []
    attrs = list(loaded.model.spec.attributes.all)
    cust = tables.customers.set_index("customer_id")
    for _, row in feats.iterrows():
        cid = row["customer_id"]
        values = {f: jsonable(row[f]) for f in names}
        ours_rows.append({"rows": [{"customer_id": cid, "as_of": AS_OF.isoformat(), **values}],
                          "reasons": False})
        mlflow_rows.append({"dataframe_split": {"columns": names,
                                                "data": [[values[f] for f in names]]}})
        ev = tables.events[(tables.events["customer_id"] == cid)
                           & (tables.events["timestamp"] < AS_OF)]
        c = cust.loc[cid]
        ours_hist.append({"as_of": AS_OF.isoformat(), "customers": [{
            "customer_id": cid, "signup_at": c["signup_at"].isoformat(),
            "attributes": {a: (None if pd.isna(c[a]) else
                               c[a].isoformat() if isinstance(c[a], pd.Timestamp) else jsonable(c[a]))
                           for a in attrs},
            "events": [{"timestamp": t.isoformat(), "event_type": e,
                        "amount": jsonable(a)} for t, e, a in
                       zip(ev["timestamp"], ev["event_type"], ev["amount"], strict=True)],
        }]})
    return ours_hist, ours_rows, mlflow_rows


def sequential(url: str, bodies: list[dict], n: int) -> np.ndarray:
    lat = []
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            t = time.perf_counter()
            r = client.post(url, json=bodies[i % len(bodies)])
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise SystemExit(f"{url} answered {r.status_code}: {r.text[:300]}")
    return np.array(lat)


async def concurrent(url: str, bodies: list[dict], n: int, workers: int) -> tuple[float, np.ndarray]:
    lat: list[float] = []
    counter = iter(range(n))
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            for i in counter:
                t = time.perf_counter()
                r = await client.post(url, json=bodies[i % len(bodies)])
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise SystemExit(f"{url} answered {r.status_code}: {r.text[:300]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        wall = time.perf_counter() - t0
    return n / wall, np.array(lat)


def ms(x: float) -> str:
    return f"{x * 1000:8.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, default=3000)
    ap.add_argument("--requests", type=int, default=300, help="sequential requests per server")
    ap.add_argument("--concurrent-requests", type=int, default=800)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true",
               PATH=f"{BIN}:{env.get('PATH', '')}")
    (home / "fast.toml").write_text("bootstrap = 0\n[search]\ntrials = 1\n")
    churn = str(BIN / "churn")
    print(f"working in {home}", flush=True)
    subprocess.run([churn, "generate", "--customers", str(args.customers), "--seed", "5",
                    "--out", str(home / "data")], env=env, cwd=home, check=True)
    subprocess.run([churn, "train", "--customers", str(home / "data/customers.parquet"),
                    "--events", str(home / "data/events.parquet"), "--label", "explicit",
                    "--horizon", "30", "--config", "fast.toml", "--json"],
                   env=env, cwd=home, check=True, stdout=subprocess.DEVNULL)
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    hist, rows, mlf = payloads(home, {**env, "MLFLOW_TRACKING_URI": uri})

    ours_port, mlflow_port = free_port(), free_port()
    ours = start([churn, "serve", "--port", str(ours_port), "--model", "models:/churn/1"],
                 env, home, home / "ours.log")
    theirs = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/churn/1",
                    "--env-manager", "local", "--host", "127.0.0.1", "--port", str(mlflow_port)],
                   {**env, "MLFLOW_TRACKING_URI": uri}, home, home / "mlflow.log")
    try:
        wait_ready(f"http://127.0.0.1:{ours_port}/readyz", ours, home / "ours.log")
        wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", theirs, home / "mlflow.log")
        urls = {
            "mlflow /invocations": (f"http://127.0.0.1:{mlflow_port}/invocations", mlf),
            "ours /predict_features": (f"http://127.0.0.1:{ours_port}/predict_features", rows),
        }
        with_reasons = [{**b, "reasons": True} for b in rows]
        extra = {
            "ours /predict_features + reasons": (urls["ours /predict_features"][0], with_reasons),
            "ours /predict (history + reasons)": (f"http://127.0.0.1:{ours_port}/predict", hist),
        }
        # same answers from both servers before timing anything
        a = httpx.post(urls["mlflow /invocations"][0], json=mlf[0]).json()
        b = httpx.post(urls["ours /predict_features"][0], json=rows[0]).json()
        p_mlflow = a["predictions"][0]["churn_probability"]
        p_ours = b["predictions"][0]["churn_probability"]
        assert abs(p_mlflow - p_ours) < 1e-9, (p_mlflow, p_ours)

        results: dict[str, dict[str, float]] = {}
        for name, (url, bodies) in {**urls, **extra}.items():
            sequential(url, bodies, 20)  # warm-up
            lat = sequential(url, bodies, args.requests)
            res = {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99))}
            for c in (16, 64):
                tput, clat = asyncio.run(concurrent(url, bodies, args.concurrent_requests, c))
                res[f"tput{c}"], res[f"p99_{c}"] = tput, float(np.percentile(clat, 99))
            results[name] = res
            print(f"measured {name}", flush=True)
    finally:
        stop(ours)
        stop(theirs)

    print(f"\n{args.requests} sequential single-customer requests; "
          f"{args.concurrent_requests} requests at each concurrency; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'server':36} {'p50 ms':>8} {'p99 ms':>8} {'req/s@16':>9} {'p99@16':>8} "
          f"{'req/s@64':>9} {'p99@64':>8}")
    for name, r in results.items():
        print(f"{name:36} {ms(r['p50'])} {ms(r['p99'])} {r['tput16']:9.1f} {ms(r['p99_16'])} "
              f"{r['tput64']:9.1f} {ms(r['p99_64'])}")
    m, o = results["mlflow /invocations"], results["ours /predict_features"]
    t_ratio, p_ratio = o["tput16"] / m["tput16"], o["p99"] / m["p99"]
    print(f"\nthroughput at 16, ours / mlflow: {t_ratio:.2f}x (target >= 3x: "
          f"{'met' if t_ratio >= 3 else 'NOT MET'})")
    print(f"sequential p99, ours / mlflow:   {p_ratio:.2f}x (target <= 0.5x: "
          f"{'met' if p_ratio <= 0.5 else 'NOT MET'})")
    r, f = results["ours /predict (history + reasons)"], results["ours /predict_features"]
    print(f"/predict with reasons vs /predict_features without: p50 {r['p50'] / f['p50']:.1f}x, "
          f"throughput@16 {r['tput16'] / f['tput16']:.2f}x")
    print(json.dumps({"results": results}, indent=1))


if __name__ == "__main__":
    main()
