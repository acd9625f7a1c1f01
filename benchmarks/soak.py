"""Soak test: `churn serve` under sustained mixed traffic, hostile requests and a killed scorer.

Run on demand, never as a test:

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--concurrency 32] [--fuzz 10000]

It generates data, trains and promotes one model in a temporary home (as bench_serving.py does),
scores the customers with `churn score` and starts `churn serve` with the reviewer page
configured (CHURN_REVIEW_SCORES / _CUSTOMERS / _EVENTS, as `make serve`). Then, for --minutes:

- --concurrency clients (httpx.AsyncClient) send a mix of valid requests: /predict (1-5
  customers with their real histories, reasons on), /explain (one customer),
  /predict_features (feature rows of real customers, read back from /explain and jittered),
  GET /review/ and GET /review/customer/<id>. Any non-2xx answer or transport error is an error.
- a separate task spreads --fuzz malformed or hostile requests over the run (wrong types,
  missing fields, huge numbers, dates outside the calendar, text/plain, garbage bytes, deep
  nesting, unknown fields, 10,000-character ids, 5 MB bodies, ...). 4xx is expected; a 5xx or a
  dropped connection is an error.
- every minute it prints the RSS of the server's processes (the public `churn` worker, the
  `churn_scorer` worker and the arbiter), found through /proc from the server's pid, and the
  error counts so far.
- once, halfway, it kills the scorer with SIGKILL and measures when BentoML's arbiter has a new
  scorer process, when it logs "initialized", and when it first answers a request (the
  scorer's access-log lines, 1 s resolution); valid requests failing around the kill are
  counted.

Targets: 0 errors; RSS growth of each process <= 5% from the end of the first minute to the
end (a restarted scorer is judged from the end of its own first minute); the scorer back and
answering within 15 s of the kill with no failed request. The exit status is 1 when a target
is missed. The temporary home, with the server log (serve.log), is kept and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from server import Server, descendants, free_port  # benchmarks/server.py, beside this file

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
AS_OF = pd.Timestamp("2026-06-15")
AS_OF_TEXT = "2026-06-15T00:00:00"
JSON = {"content-type": "application/json"}
MB = 2**20
GROWTH_TARGET = 0.05
RECOVERY_TARGET_S = 15.0
FUZZ_PARALLEL = 4  # fuzz requests in flight at once
FORGED = "soak-forged-log-line"  # sent after an encoded newline in a path; never a log line


# --------------------------------------------------------------------------------------------
# Setup: data, model, scores, server
# --------------------------------------------------------------------------------------------


def prepare(home: Path, customers: int) -> dict[str, str]:
    """Generate data, train and promote a model, score the customers; the server's env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", BENTOML_DO_NOT_TRACK="true",
               PYTHONDONTWRITEBYTECODE="1", PATH=f"{BIN}:{env.get('PATH', '')}")
    (home / "fast.toml").write_text("bootstrap = 0\n[search]\ntrials = 1\n")
    churn = str(BIN / "churn")
    data = home / "data"

    def run(*args: str) -> str:
        """One `churn` command; its stdout, or its stderr's end as the reason to stop."""
        done = subprocess.run([churn, *args], env=env, cwd=home, capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise SystemExit(f"churn {args[0]} failed ({done.returncode}):\n"
                             f"{done.stderr[-3000:]}")
        return done.stdout

    t = time.monotonic()
    run("generate", "--customers", str(customers), "--seed", "5", "--out", str(data))
    trained = json.loads(run("train", "--customers", str(data / "customers.parquet"), "--events",
                             str(data / "events.parquet"), "--label", "explicit", "--horizon",
                             "30", "--config", "fast.toml", "--json"))
    if "champion" not in trained["aliases"]:
        run("promote", "--version", str(trained["model_version"]), "--force")
    run("score", "--customers", str(data / "customers.parquet"), "--events",
        str(data / "events.parquet"), "--as-of", AS_OF_TEXT, "--out", str(home / "scores.parquet"))
    print(f"data, model version {trained['model_version']} (champion) and scores ready in "
          f"{time.monotonic() - t:.0f} s", flush=True)
    return {**env, "CHURN_REVIEW_SCORES": str(home / "scores.parquet"),
            "CHURN_REVIEW_CUSTOMERS": str(data / "customers.parquet"),
            "CHURN_REVIEW_EVENTS": str(data / "events.parquet")}


def plain(value: object) -> object:
    """A table cell as JSON: missing as null, times as ISO text, numpy scalars as Python."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def customer_pool(home: Path, n: int, rng: random.Random) -> list[dict]:
    """Up to `n` customers active at AS_OF with 1-600 events before it, as /predict sends them
    (tests/integration/test_serving.py `customer_body`, for any attribute columns)."""
    table = pd.read_parquet(home / "data/customers.parquet")
    events = pd.read_parquet(home / "data/events.parquet")
    events = events[events["timestamp"] < AS_OF]
    counts = events.groupby("customer_id").size()
    active = table[(table["signup_at"] <= AS_OF) & ~(table["churned_at"] <= AS_OF)]
    active = active[active["customer_id"].map(counts).fillna(0).between(1, 600)]
    ids = sorted(active["customer_id"])
    chosen = set(rng.sample(ids, min(n, len(ids))))
    attrs = [c for c in table.columns if c not in ("customer_id", "signup_at", "churned_at")]
    by_id = dict(tuple(events[events["customer_id"].isin(chosen)].groupby("customer_id")))
    out = []
    for row in active[active["customer_id"].isin(chosen)].itertuples(index=False):
        ev = by_id[row.customer_id]
        out.append({
            "customer_id": plain(row.customer_id),
            "signup_at": row.signup_at.isoformat(),
            "attributes": {a: plain(getattr(row, a)) for a in attrs},
            "events": [{"timestamp": ts.isoformat(), "event_type": et,
                        **({} if pd.isna(am) else {"amount": float(am)})}
                       for ts, et, am in zip(ev["timestamp"], ev["event_type"], ev["amount"],
                                             strict=True)],
        })
    return out


def feature_rows(base: str, pool: list[dict], n: int) -> tuple[list[str], list[dict]]:
    """Feature names from GET /model, and real feature rows: each customer's values as /explain
    reports them (the same features the model sees)."""
    names = httpx.get(f"{base}/model", timeout=30).json()["features"]
    rows = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for c in pool[:n]:
            r = client.post("/explain", json={**c, "as_of": AS_OF_TEXT})
            r.raise_for_status()
            values = {f["feature"]: f["value"] for f in r.json()["features"]}
            assert set(values) == set(names), "the /explain features differ from /model's"
            rows.append({"customer_id": c["customer_id"], "as_of": AS_OF_TEXT, **values})
    return names, rows


def jitter(row: dict, rng: random.Random) -> dict:
    """A plausible neighbour of a real row: each numeric feature times 0.9-1.1."""
    out = {}
    for k, v in row.items():
        if k not in ("customer_id", "as_of") and isinstance(v, int | float) \
                and not isinstance(v, bool):
            out[k] = round(v * rng.uniform(0.9, 1.1), 4)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# The server's processes
# --------------------------------------------------------------------------------------------


def server_processes(root: int) -> dict[str, int]:
    """{"arbiter": pid, "public": pid, "scorer": pid} from the descendants' command lines."""
    out = {"arbiter": root}
    for pid in descendants(root):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--service-name" in args:
            name = args[args.index("--service-name") + 1]
            out[{"churn": "public", "churn_scorer": "scorer"}.get(name, name)] = pid
    return out


def scorer_socket(public: int) -> str | None:
    """The unix socket the public worker reaches the scorer on (BentoML's runner map in its
    environment); the arbiter holds it, so it outlives a scorer process."""
    try:
        env = Path(f"/proc/{public}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for item in env:
        if item.startswith(b"BENTOML_RUNNER_MAP="):
            uri = json.loads(item.split(b"=", 1)[1]).get("churn_scorer", "")
            return uri.removeprefix("file://") if uri.startswith("file://") else None
    return None


async def scorer_ready(sock: str) -> bool:
    """Whether the scorer answers GET /readyz with 200 on its socket within 2 s."""
    try:
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=sock),
                                     timeout=2) as client:
            return (await client.get("http://scorer/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------------------------
# Bookkeeping
# --------------------------------------------------------------------------------------------


@dataclass
class Failure:
    at: float  # wall time (time.time()) the request started
    kind: str  # "valid" or "fuzz"
    name: str  # endpoint, or fuzz case
    status: str
    request: str
    answer: str
    seconds: float


@dataclass
class Book:
    valid: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    valid_done: list[tuple[float, float, str, bool]] = field(default_factory=list)  # start, s, ep, ok
    fuzz: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    fuzz_latency: list[float] = field(default_factory=list)
    fuzz_paths: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    failures: list[Failure] = field(default_factory=list)
    fuzz_sent: int = 0

    def valid_errors(self) -> int:
        return sum(1 for f in self.failures if f.kind == "valid")

    def fuzz_errors(self) -> int:
        return sum(1 for f in self.failures if f.kind == "fuzz")


def status_of(resp: httpx.Response | None, exc: Exception | None) -> str:
    return str(resp.status_code) if resp is not None else type(exc).__name__


def short(content: bytes | None, n: int = 240) -> str:
    if not content:
        return "(no body)"
    text = content[:n].decode("utf-8", errors="backslashreplace")
    return text + (f"... ({len(content):,} bytes)" if len(content) > n else "")


# --------------------------------------------------------------------------------------------
# Valid traffic
# --------------------------------------------------------------------------------------------


@dataclass
class ValidMix:
    predict: list[bytes]
    explain: list[bytes]
    features: list[bytes]
    review_ids: list[str]
    levels: dict[str, list[str]]

    # (endpoint, weight)
    WEIGHTS = (("POST /predict", 40), ("POST /explain", 15), ("POST /predict_features", 25),
               ("GET /review/", 8), ("GET /review/customer/{id}", 12))

    def pick(self, rng: random.Random) -> tuple[str, str, str, bytes | None]:
        ep = rng.choices([e for e, _ in self.WEIGHTS], [w for _, w in self.WEIGHTS])[0]
        if ep == "POST /predict":
            return ep, "POST", "/predict", rng.choice(self.predict)
        if ep == "POST /explain":
            return ep, "POST", "/explain", rng.choice(self.explain)
        if ep == "POST /predict_features":
            return ep, "POST", "/predict_features", rng.choice(self.features)
        if ep == "GET /review/":
            query = rng.choice(["", "?band=high", "?band=medium&limit=100", "?limit=20",
                                *[f"?{k}={v}" for k, vs in self.levels.items() for v in vs[:2]]])
            return ep, "GET", "/review/" + query, None
        return ep, "GET", f"/review/customer/{rng.choice(self.review_ids)}", None


def build_mix(pool: list[dict], rows: list[dict], home: Path, rng: random.Random) -> ValidMix:
    predict = []
    for _ in range(600):
        chosen = rng.sample(pool, rng.randint(1, 5))
        predict.append(json.dumps({"customers": chosen, "as_of": AS_OF_TEXT,
                                   "reasons": True}).encode())
    explain = [json.dumps({**c, "as_of": AS_OF_TEXT}).encode() for c in pool]
    features = []
    for _ in range(600):
        chosen = [jitter(r, rng) for r in rng.sample(rows, rng.randint(1, 5))]
        features.append(json.dumps({"rows": chosen, "reasons": True}).encode())
    scores = pd.read_parquet(home / "scores.parquet")
    ids = [str(i) for i in scores["customer_id"]]
    customers = pd.read_parquet(home / "data/customers.parquet")
    levels = {c: sorted(customers[c].dropna().astype(str).unique())
              for c in ("plan", "contract") if c in customers.columns}
    return ValidMix(predict, explain, features, rng.sample(ids, min(400, len(ids))), levels)


async def valid_client(client: httpx.AsyncClient, mix: ValidMix, book: Book, stop_at: float,
                       rng: random.Random) -> None:
    while time.monotonic() < stop_at:
        ep, method, path, content = mix.pick(rng)
        start, t = time.time(), time.perf_counter()
        resp, exc = None, None
        try:
            resp = await client.request(method, path, content=content,
                                        headers=JSON if content is not None else None)
        except httpx.HTTPError as e:
            exc = e
        seconds = time.perf_counter() - t
        status = status_of(resp, exc)
        ok = resp is not None and 200 <= resp.status_code < 300
        book.valid[ep][status] += 1
        book.latency[ep].append(seconds)
        book.valid_done.append((start, seconds, ep, ok))
        if not ok:
            book.failures.append(Failure(start, "valid", ep, status, f"{method} {path} "
                                         f"{short(content)}", resp.text[:400] if resp is not None
                                         else repr(exc), seconds))


# --------------------------------------------------------------------------------------------
# Fuzz: malformed and hostile requests
# --------------------------------------------------------------------------------------------

ODD_DATES = ["2300-01-01T00:00:00.5Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
             "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999", "1677-09-21T00:12:43",
             "2262-04-11T23:47:17", "1900-01-01", "2026-02-30T00:00:00", "2026-06-15T25:00:00",
             "not a date", "", "20260615", "2026-06-15T00:00:00+99:00", "-2026-01-01",
             "+002026-01-01T00:00:00", "2026-W24-1", "1e10"]
HUGE = ["1e308", "-1e308", "1" + "0" * 400, "-" + "9" * 400, "1e999", "-1e999", "NaN", "Infinity",
        "-Infinity", "9" * 5000, "123456789012345678901234567890", "4.9e-324", "-0.0"]


class Fuzzer:
    """Builds one hostile request per call: (case, method, path, headers, body)."""

    def __init__(self, customer: dict, row: dict, review_id: str, rng: random.Random):
        # a small, valid customer and feature row to mutate
        self.customer = {**customer, "events": customer["events"][-5:]}
        self.row = row
        self.review_id = review_id
        self.rng = rng
        big = 5 * MB
        self.big = {  # the 5 MB bodies, built once
            "5mb.customer_id": json.dumps({"customers": [{**self.customer,
                                                          "customer_id": "x" * big}]}).encode(),
            "5mb.attribute": json.dumps({"customers": [{**self.customer, "attributes": {
                **self.customer["attributes"], "plan": "p" * big}}]}).encode(),
            "5mb.unknown_field": json.dumps({"customers": [self.customer],
                                             "padding": [1.5] * (big // 5)}).encode(),
            "5mb.feature_row": json.dumps({"rows": [{**row, "pad": "y" * big}]}).encode(),
            "5mb.garbage": rng.randbytes(big),
            "5mb.text_plain": json.dumps({"customers": [self.customer] * 1,
                                          "pad": "z" * big}).encode(),
            "5mb.nested_list": ("[" * (big // 2) + "]" * (big // 2)).encode(),
        }
        self.cases = [(name, getattr(self, name)) for name in dir(self)
                      if name.startswith("c_")]

    def pick(self) -> tuple[str, str, str, dict, bytes | None]:
        if self.rng.random() < 0.01:  # about 1% of fuzz requests are 5 MB bodies
            name = self.rng.choice(list(self.big))
            path = "/predict_features" if name == "5mb.feature_row" else "/predict"
            headers = {"content-type": "text/plain"} if name == "5mb.text_plain" else JSON
            return name, "POST", path, headers, self.big[name]
        name, case = self.rng.choice(self.cases)
        method, path, headers, body = case()
        return name[2:], method, path, headers, body

    # helpers ----------------------------------------------------------------------------------

    def cust(self, **change) -> dict:
        return {**json.loads(json.dumps(self.customer)), **change}

    @staticmethod
    def post(path: str, body: object) -> tuple[str, str, dict, bytes]:
        return "POST", path, JSON, json.dumps(body).encode()

    @staticmethod
    def raw(path: str, text: str | bytes, headers: dict | None = None) -> tuple:
        return "POST", path, JSON if headers is None else headers, \
            text if isinstance(text, bytes) else text.encode()

    def predict(self, **change) -> tuple:
        return self.post("/predict", {"customers": [self.cust(**change)], "as_of": AS_OF_TEXT})

    def date(self) -> str:
        return self.rng.choice(ODD_DATES)

    def huge(self) -> str:
        return self.rng.choice(HUGE)

    def endpoint(self) -> str:
        return self.rng.choice(["/predict", "/explain", "/predict_features"])

    def valid_body(self, path: str) -> dict:
        if path == "/predict":
            return {"customers": [self.cust()], "as_of": AS_OF_TEXT}
        if path == "/explain":
            return {**self.cust(), "as_of": AS_OF_TEXT}
        return {"rows": [dict(self.row)]}

    # wrong types ------------------------------------------------------------------------------

    def c_type_customers_text(self):
        return self.post("/predict", {"customers": "abc"})

    def c_type_customers_object(self):
        return self.post("/predict", {"customers": {"customer_id": 1}})

    def c_type_id(self):
        return self.predict(customer_id=self.rng.choice([1.5, True, [1], {"a": 1}, None, -0.0]))

    def c_type_signup_number(self):
        return self.predict(signup_at=self.rng.choice([1700000000, 1.7e9, True, [], {}]))

    def c_type_events_object(self):
        return self.predict(events=self.rng.choice([{}, "login", 5, [1, 2], [None], [[]]]))

    def c_type_amount(self):
        c = self.cust()
        c["events"][0]["amount"] = self.rng.choice(["abc", [], {}, True, "1,5"])
        return self.post("/predict", {"customers": [c], "as_of": AS_OF_TEXT})

    def c_type_event_values(self):
        c = self.cust()
        c["events"][0]["values"] = self.rng.choice([{"q": "x"}, [1], "v", {"q": [1]}, {"q": {}}])
        return self.post("/predict", {"customers": [c], "as_of": AS_OF_TEXT})

    def c_type_reasons(self):
        path = self.rng.choice(["/predict", "/predict_features"])
        return self.post(path, {**self.valid_body(path),
                                "reasons": self.rng.choice(["yes", 1, None, [], "true"])})

    def c_type_as_of(self):
        return self.post("/predict", {"customers": [self.cust()],
                                      "as_of": self.rng.choice([5, 1.5e9, True, [], {}])})

    def c_type_attributes(self):
        return self.predict(attributes=self.rng.choice([[1, 2], "plan", 3, None]))

    def c_type_attribute_value(self):
        attrs = dict(self.customer["attributes"])
        attrs[self.rng.choice(list(attrs) or ["plan"])] = self.rng.choice(
            [{"x": 1}, [1, 2], "many", True, -1, 0.5, ""])
        return self.predict(attributes=attrs)

    def c_type_feature_value(self):
        row = dict(self.row)
        row[self.rng.choice([k for k in row if k not in ("customer_id", "as_of")])] = \
            self.rng.choice(["abc", True, [], {}, "1.5", 12])
        return self.post("/predict_features", {"rows": [row]})

    def c_type_rows(self):
        return self.post("/predict_features", {"rows": self.rng.choice(
            [{}, "row", [1], [[]], [None], self.row])})

    def c_type_explain_list(self):
        return self.post("/explain", [self.cust()])

    # missing fields ---------------------------------------------------------------------------

    def c_missing_customers(self):
        return self.post("/predict", self.rng.choice([{}, {"as_of": AS_OF_TEXT},
                                                      {"customers": []}, {"customers": None}]))

    def c_missing_customer_field(self):
        c = self.cust()
        c.pop(self.rng.choice(["customer_id", "signup_at"]))
        return self.post(self.rng.choice(["/predict", "/explain"]),
                         {"customers": [c]} if self.rng.random() < 0.5 else c)

    def c_missing_event_field(self):
        c = self.cust()
        c["events"][0].pop(self.rng.choice(["timestamp", "event_type"]))
        return self.post("/predict", {"customers": [c]})

    def c_missing_feature(self):
        row = dict(self.row)
        row.pop(self.rng.choice(list(row)))
        return self.post("/predict_features", {"rows": [row]})

    def c_missing_rows(self):
        return self.post("/predict_features", self.rng.choice([{}, {"rows": []}, {"rows": None}]))

    def c_missing_body(self):
        return self.raw(self.endpoint(), self.rng.choice(["", "null", "[]", "{}", "1", '""',
                                                          "true", " ", "\n"]))

    # huge numbers -----------------------------------------------------------------------------

    def c_huge_attribute(self):
        attrs = dict(self.customer["attributes"])
        attrs[self.rng.choice(list(attrs) or ["seats"])] = "@@HUGE@@"
        text = json.dumps({"customers": [self.cust(attributes=attrs)], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.replace('"@@HUGE@@"', self.huge()))

    def c_huge_seats(self):
        attrs = {**self.customer["attributes"], "seats": "@@HUGE@@"}
        text = json.dumps({"customers": [self.cust(attributes=attrs)], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.replace('"@@HUGE@@"', self.huge()))

    def c_huge_amount(self):
        c = self.cust()
        for e in c["events"]:
            e["amount"] = "@@HUGE@@"
        text = json.dumps({"customers": [c], "as_of": AS_OF_TEXT})
        return self.raw(self.rng.choice(["/predict"]), text.replace('"@@HUGE@@"', self.huge()))

    def c_huge_amount_explain(self):
        c = self.cust(as_of=AS_OF_TEXT)
        c["events"][-1]["amount"] = "@@HUGE@@"
        return self.raw("/explain", json.dumps(c).replace('"@@HUGE@@"', self.huge()))

    def c_huge_event_value(self):
        c = self.cust()
        c["events"][0]["values"] = {"quantity": "@@HUGE@@"}
        text = json.dumps({"customers": [c], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.replace('"@@HUGE@@"', self.huge()))

    def c_huge_feature(self):
        row = dict(self.row)
        row[self.rng.choice([k for k in row if k not in ("customer_id", "as_of")])] = "@@HUGE@@"
        text = json.dumps({"rows": [row]})
        return self.raw("/predict_features", text.replace('"@@HUGE@@"', self.huge()))

    def c_huge_all_features(self):
        value = self.huge()
        row = {k: ("@@HUGE@@" if k not in ("customer_id", "as_of") and isinstance(v, int | float)
                   else v) for k, v in self.row.items()}
        return self.raw("/predict_features",
                        json.dumps({"rows": [row]}).replace('"@@HUGE@@"', value))

    def c_huge_id_number(self):
        text = json.dumps({"customers": [self.cust(customer_id="@@HUGE@@")], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.replace('"@@HUGE@@"', self.huge()))

    def c_limit_customers(self):
        return self.post("/predict", {"customers": [self.cust(customer_id=i)
                                                    for i in range(1001)], "as_of": AS_OF_TEXT})

    # dates ------------------------------------------------------------------------------------

    def c_date_as_of(self):
        return self.post("/predict", {"customers": [self.cust()], "as_of": self.date()})

    def c_date_as_of_explain(self):
        return self.post("/explain", {**self.cust(), "as_of": self.date()})

    def c_date_signup(self):
        return self.post(self.rng.choice(["/predict", "/explain"]),
                         {"customers": [self.cust(signup_at=self.date())], "as_of": AS_OF_TEXT}
                         if self.rng.random() < 0.5 else {**self.cust(signup_at=self.date()),
                                                          "as_of": AS_OF_TEXT})

    def c_date_signup_far_as_of(self):
        return self.post("/predict", {"customers": [self.cust(signup_at=self.date())],
                                      "as_of": self.rng.choice(ODD_DATES[:5])})

    def c_date_event(self):
        c = self.cust()
        c["events"][self.rng.randrange(len(c["events"]))]["timestamp"] = self.date()
        return self.post("/predict", {"customers": [c],
                                      "as_of": self.rng.choice([AS_OF_TEXT, *ODD_DATES[:3]])})

    def c_date_attribute(self):
        attrs = {**self.customer["attributes"], "date_of_birth": self.date()}
        return self.predict(attributes=attrs)

    def c_date_row_as_of(self):
        return self.post("/predict_features", {"rows": [{**self.row, "as_of": self.date()}]})

    def c_date_review(self):
        from urllib.parse import quote
        return "GET", f"/review/customer/{self.review_id}?as_of={quote(self.date())}", {}, None

    # content types and bytes ------------------------------------------------------------------

    def c_ctype_text_plain(self):
        path = self.endpoint()
        return self.raw(path, json.dumps(self.valid_body(path)), {"content-type": self.rng.choice(
            ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
             "application/xml", "text/plain; charset=utf-8", "application/jsonx"])})

    def c_ctype_missing(self):
        path = self.endpoint()
        return self.raw(path, json.dumps(self.valid_body(path)), {})

    def c_ctype_utf16(self):
        path = self.endpoint()
        return self.raw(path, json.dumps(self.valid_body(path)).encode("utf-16"),
                        {"content-type": "application/json; charset=utf-16"})

    def c_bytes_garbage(self):
        return self.raw(self.endpoint(), self.rng.randbytes(self.rng.randint(1, 4096)))

    def c_bytes_bad_utf8(self):
        text = json.dumps({"customers": [self.cust(customer_id="@@ID@@")], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.encode().replace(
            b"@@ID@@", self.rng.choice([b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"a\x00b"])))

    def c_bytes_bom(self):
        path = self.endpoint()
        return self.raw(path, b"\xef\xbb\xbf" + json.dumps(self.valid_body(path)).encode())

    def c_bytes_truncated(self):
        path = self.endpoint()
        body = json.dumps(self.valid_body(path)).encode()
        return self.raw(path, body[:self.rng.randrange(1, len(body))])

    def c_unicode_id(self):
        text = json.dumps({"customers": [self.cust(customer_id="@@ID@@")], "as_of": AS_OF_TEXT})
        return self.raw(self.rng.choice(["/predict"]), text.replace(
            "@@ID@@", self.rng.choice(["\\ud800", "\\udfff\\ud800", "\\u0000", "a\\u0000b"])))

    def c_unicode_event_type(self):
        c = self.cust()
        c["events"][0]["event_type"] = "@@T@@"
        return self.raw("/predict", json.dumps({"customers": [c]}).replace(
            "@@T@@", self.rng.choice(["\\ud800", "\\u0000", "\\u202e", " "])))

    def c_bytes_duplicate_keys(self):
        text = json.dumps({"customers": [self.cust()], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text[:-1] + ', "as_of": 5, "customers": "x"}')

    # deep nesting -----------------------------------------------------------------------------

    def c_nested_top(self):
        depth = self.rng.choice([100, 1000, 10_000, 100_000])
        open_, close = self.rng.choice([("[", "]"), ('{"a":', "}")])
        return self.raw(self.endpoint(), open_ * depth + "1" + close * depth)

    def c_nested_attribute(self):
        depth = self.rng.choice([100, 1000, 50_000])
        text = json.dumps({"customers": [self.cust()], "as_of": AS_OF_TEXT})
        return self.raw("/predict", text.replace(
            '"attributes": {', '"attributes": {"deep": ' + "[" * depth + "]" * depth + ", ", 1))

    def c_nested_unknown(self):
        depth = self.rng.choice([1000, 50_000])
        path = self.endpoint()
        text = json.dumps(self.valid_body(path))
        return self.raw(path, text[:-1] + ', "deep": ' + '{"a":' * depth + "null" + "}" * depth
                        + "}")

    def c_nested_feature(self):
        depth = self.rng.choice([1000, 50_000])
        row = dict(self.row)
        row[self.rng.choice([k for k in row if k not in ("customer_id", "as_of")])] = "@@D@@"
        return self.raw("/predict_features", json.dumps({"rows": [row]}).replace(
            '"@@D@@"', "[" * depth + "]" * depth))

    # unknown fields ---------------------------------------------------------------------------

    def c_unknown_top(self):
        path = self.endpoint()
        return self.post(path, {**self.valid_body(path), "admin": True, "__proto__": {"x": 1}})

    def c_unknown_customer(self):
        return self.predict(password="hunter2")

    def c_unknown_event(self):
        c = self.cust()
        c["events"][0]["extra"] = 1
        return self.post("/predict", {"customers": [c]})

    def c_unknown_feature(self):
        return self.post("/predict_features", {"rows": [{**self.row, "not_a_feature": 1.0}]})

    def c_unknown_explain_reasons(self):
        return self.post("/explain", {**self.cust(), "as_of": AS_OF_TEXT, "reasons": False})

    # long strings -----------------------------------------------------------------------------

    def c_long_id(self):
        path = self.endpoint()
        long = "x" * 10_000
        if path == "/predict":
            return self.post(path, {"customers": [self.cust(customer_id=long)]})
        if path == "/explain":
            return self.post(path, self.cust(customer_id=long))
        return self.post(path, {"rows": [{**self.row, "customer_id": long}]})

    def c_long_event_type(self):
        c = self.cust()
        c["events"][0]["event_type"] = "t" * 10_000
        return self.post("/predict", {"customers": [c]})

    def c_long_attribute(self):
        attrs = dict(self.customer["attributes"])
        if self.rng.random() < 0.5:
            attrs["a" * 10_000] = 1
        else:
            attrs[self.rng.choice(list(attrs) or ["plan"])] = "v" * 10_000
        return self.predict(attributes=attrs)

    def c_limit_attributes(self):
        return self.predict(attributes={f"a{i}": i for i in range(self.rng.choice([501, 5000]))})

    def c_long_review_id(self):
        return "GET", "/review/customer/" + "9" * 10_000, {}, None

    def c_long_category(self):
        row = dict(self.row)
        cats = [k for k, v in row.items() if isinstance(v, str) and k not in ("customer_id",
                                                                              "as_of")]
        if cats:
            row[self.rng.choice(cats)] = "c" * 10_000
        return self.post("/predict_features", {"rows": [row]})

    # pages, methods, headers ------------------------------------------------------------------

    def c_page_review_query(self):
        return "GET", "/review/?" + self.rng.choice([
            "band=nope", "limit=0", "limit=-1", "limit=99999999999999999999999", "limit=1e3",
            "limit=abc", "unknown=1", "plan=" + "p" * 10_000, "band=" + "%00", "band=high&band=low",
            "limit=" + "9" * 5000, "plan=%ff%fe", "contract=", "%ff=1", "limit=%C2%B2",
            "limit=%E2%91%A0", "limit=%D9%A1%D9%A0"]), {}, None

    def c_page_review_paths(self):
        return "GET", self.rng.choice([
            "/review/customer/..%2F..%2F..%2Fetc%2Fpasswd", "/review/customer/%00",
            "/review/customer/", "/review/customer/-1", "/review/customer/%ff%fe",
            "/review/customer/<script>alert(1)</script>", "/review/customer/a/b/c",
            f"/review/customer/{self.review_id}?foo=1", f"/review/customer/{self.review_id}?as_of=",
            "/review/nope", "/review/customer/1e400", "/review/filters.js?x=" + "y" * 5000,
            "/review/../model", "/predict/../review/", f"/review/customer/x%0A{FORGED}",
            f"/review/customer/x%0D%0A{FORGED}"]), {}, None

    def c_page_batch(self):
        from urllib.parse import quote
        task = self.rng.choice(["../../etc/passwd", "%00", "x" * 10_000, "", "nope", "1e400",
                                "..", "/", "' OR 1=1 --"])
        return "GET", f"/batch/{self.rng.choice(['status', 'get'])}?task_id={quote(task)}", {}, None

    def c_page_batch_submit(self):
        return self.raw("/batch/submit", self.rng.choice([
            b"", b"garbage", json.dumps({"customers": [self.cust()]}).encode(),
            b"--x\r\nContent-Disposition: form-data; name=\"customers\"\r\n\r\nabc\r\n--x--\r\n"]),
            self.rng.choice([JSON, {"content-type": "multipart/form-data; boundary=x"},
                             {"content-type": "multipart/form-data"}, {}]))

    def c_http_method(self):
        method, path = self.rng.choice([("GET", "/predict"), ("PUT", "/explain"),
                                        ("DELETE", "/predict_features"), ("POST", "/review/"),
                                        ("PATCH", "/model"), ("POST", "/model"),
                                        ("DELETE", "/review/customer/1")])
        return method, path, JSON, b"{}" if method != "GET" else None

    def c_http_host(self):
        path = self.endpoint()
        return "POST", path, {**JSON, "host": self.rng.choice(
            ["evil.example", "127.0.0.1.evil.example", "", "localhost:99999", "[::1"])}, \
            json.dumps(self.valid_body(path)).encode()

    def c_http_origin(self):
        path = self.endpoint()
        return "POST", path, {**JSON, "origin": self.rng.choice(
            ["http://evil.example", "null", "file://", "http://127.0.0.1.evil.example"])}, \
            json.dumps(self.valid_body(path)).encode()

    def c_http_path(self):
        return self.rng.choice(["GET", "POST"]), self.rng.choice(
            ["/predict2", "/admin", "/.env", "/predict/", "//predict", "/%2e%2e/etc/passwd",
             "/explain?x=" + "y" * 8000, "/docs.json/../model"]), JSON, b"{}"


def fuzz_path(method: str, path: str) -> str:
    """The endpoint of a fuzz request, for the per-endpoint counts."""
    path = path.split("?", maxsplit=1)[0]
    if path.startswith("/review/customer/"):
        path = "/review/customer/*"
    return f"{method} {path if len(path) <= 40 else path[:37] + '...'}"


CLIENT_SIDE = (httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.InvalidURL)


async def fuzz_task(client: httpx.AsyncClient, fuzzer: Fuzzer, book: Book, n: int,
                    t0: float, duration: float, grace: float) -> None:
    """Send `n` fuzz requests evenly spread over `duration` s from monotonic time t0, at most
    FUZZ_PARALLEL at once; whatever is still unsent `grace` s after the end is dropped."""
    sem = asyncio.Semaphore(FUZZ_PARALLEL)
    tasks: set[asyncio.Task] = set()

    async def one(case: str, method: str, path: str, headers: dict, body: bytes | None) -> None:
        start, t = time.time(), time.perf_counter()
        resp, exc = None, None
        try:
            resp = await client.request(method, path, content=body, headers=headers)
        except CLIENT_SIDE as e:  # httpx would not send it: nothing reached the server
            book.fuzz[case][f"not sent ({type(e).__name__})"] += 1
            return
        except httpx.HTTPError as e:
            exc = e
        finally:
            sem.release()
        seconds = time.perf_counter() - t
        status = status_of(resp, exc)
        book.fuzz[case][status] += 1
        book.fuzz_paths[fuzz_path(method, path)][status] += 1
        book.fuzz_latency.append(seconds)
        if resp is None or resp.status_code >= 500:
            book.failures.append(Failure(start, "fuzz", case, status, f"{method} {path[:200]} "
                                         f"headers={headers} body={short(body)}",
                                         resp.text[:400] if resp is not None else repr(exc),
                                         seconds))

    for i in range(n):
        due = t0 + duration * i / n
        now = time.monotonic()
        if now > t0 + duration + grace:
            break
        if due > now:
            await asyncio.sleep(due - now)
        await sem.acquire()
        case, method, path, headers, body = fuzzer.pick()
        book.fuzz_sent += 1
        task = asyncio.create_task(one(case, method, path, headers, body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


# --------------------------------------------------------------------------------------------
# Memory and the scorer kill
# --------------------------------------------------------------------------------------------


@dataclass
class Memory:
    # per minute mark: {role: (pid, MB)}
    marks: list[tuple[float, dict[str, tuple[int, float | None]]]] = field(default_factory=list)

    def sample(self, root: int, minute: float) -> dict[str, tuple[int, float | None]]:
        procs = server_processes(root)
        got = {role: (pid, rss_mb(pid)) for role, pid in procs.items()}
        self.marks.append((minute, got))
        return got


async def monitor(server: Server, memory: Memory, book: Book, t0: float, minutes: int) -> None:
    for k in range(1, minutes + 1):
        await asyncio.sleep(max(0.0, t0 + 60 * k - time.monotonic()))
        server.track()  # remember every process, so the final stop reaches a restarted one
        got = memory.sample(server.proc.pid, k)
        valid = sum(sum(c.values()) for c in book.valid.values())
        fuzz = sum(sum(c.values()) for c in book.fuzz.values())
        procs = "  ".join(f"{role} {pid}: {mb:.0f} MB" if mb else f"{role} {pid}: gone"
                          for role, (pid, mb) in sorted(got.items()))
        print(f"[minute {k:2d}] {procs} | valid {valid:,} requests, {book.valid_errors()} errors"
              f" | fuzz {fuzz:,} sent, {book.fuzz_errors()} 5xx/dropped | load "
              f"{os.getloadavg()[0]:.1f}", flush=True)


@dataclass
class Kill:
    old_pid: int = 0
    at: float = 0.0  # wall time of the SIGKILL
    new_pid: int = 0
    new_pid_after: float | None = None  # seconds from the kill to a new scorer process
    ready_after: float | None = None  # to the new scorer's first 200 on GET /readyz
    initialized_after: float | None = None  # to its "Service churn_scorer initialized" line
    first_answer_after: float | None = None  # to its first 2xx access-log line
    # the public process's "scorer connection dropped; retrying once" and "scorer failed;
    # scoring in this process" warnings, with their log times
    retries: list[float] = field(default_factory=list)
    fallbacks: list[tuple[float, str]] = field(default_factory=list)


async def kill_scorer(server: Server, kill: Kill, at: float) -> None:
    """SIGKILL the scorer at monotonic time `at`; then watch for a new scorer process (/proc,
    every 50 ms) and for the scorer's socket to answer GET /readyz again (every 100 ms)."""
    root = server.proc.pid
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    procs = server_processes(root)
    sock = scorer_socket(procs["public"])
    if sock and not await scorer_ready(sock):
        sock = None  # the readiness probe does not work here: the log tells instead
    kill.old_pid = procs["scorer"]
    kill.at = time.time()
    os.kill(kill.old_pid, signal.SIGKILL)
    print(f"[kill] SIGKILL to the scorer, pid {kill.old_pid}", flush=True)

    async def new_process() -> None:
        while True:
            pid = server_processes(root).get("scorer")
            if pid and pid != kill.old_pid:
                kill.new_pid, kill.new_pid_after = pid, time.time() - kill.at
                server.track()
                print(f"[kill] new scorer pid {pid} after {kill.new_pid_after:.2f} s", flush=True)
                return
            await asyncio.sleep(0.05)

    async def ready() -> None:
        while not await scorer_ready(sock):
            await asyncio.sleep(0.1)
        kill.ready_after = time.time() - kill.at
        print(f"[kill] the scorer answers /readyz after {kill.ready_after:.2f} s", flush=True)

    try:
        async with asyncio.timeout(120):
            await asyncio.gather(new_process(), *([ready()] if sock else []))
    except TimeoutError:
        print("[kill] the scorer was not back within 120 s", flush=True)


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) ")


def log_time(line: str) -> float | None:
    m = LOG_TIME.match(line)
    return datetime.fromisoformat(m.group(1)).timestamp() if m else None


def read_kill_log(log: Path, kill: Kill) -> None:
    """From the server log: when the new scorer said it was initialized and first answered a
    request (the log's timestamps are whole seconds: a line stamped at second s happened in
    [s, s+1), so s+1 - kill is reported, an upper bound), and the public process's warnings
    about the scorer over the whole run."""
    floor = int(kill.at)
    for line in log.read_text(errors="replace").splitlines():
        t = log_time(line)
        if t is None:
            continue
        if "[entry_service:churn" in line and "WARNING" in line:
            if "scorer connection dropped" in line:
                kill.retries.append(t)
            elif "scoring in this process" in line:
                kill.fallbacks.append((t, line))
        if t < floor:
            continue
        if "[service:churn_scorer" in line and "initialized" in line \
                and kill.initialized_after is None:
            kill.initialized_after = t + 1 - kill.at
        elif ("[service:churn_scorer" in line and "status=2" in line
              and kill.initialized_after is not None and kill.first_answer_after is None):
            kill.first_answer_after = t + 1 - kill.at


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def print_log_digest(log: Path) -> None:
    """The server log's ERROR entries grouped by where they were raised (the innermost frame of
    this project) and the exception, and its 5xx access-log lines grouped by path."""
    lines = log.read_text(errors="replace").splitlines()
    errors: dict[tuple[str, str, str], list] = {}
    for i, line in enumerate(lines):
        if " [ERROR] " not in line:
            continue
        head = re.sub(r"\s*\(trace=.*$", "", line)
        frames, exc, j = [], "", i + 1
        while j < len(lines) and not LOG_TIME.match(lines[j]):
            text = lines[j].strip()
            if text.startswith('File "'):
                frames.append(text)
            elif text and not lines[j].startswith(" ") and not text.startswith(
                    ("Traceback", "The above exception", "During handling")):
                exc = text
            j += 1
        ours = [f for f in frames if str(ROOT) in f and "/.venv/" not in f]
        where = (ours or frames or [""])[-1].replace(f'"{ROOT}/', '"')
        key = (re.sub(r"^\S+ \[ERROR\] ", "", head)[:120], where, exc[:300])
        errors.setdefault(key, [0, head[:25]])[0] += 1
    fives: dict[str, list] = {}
    for line in lines:
        m = re.search(r"\[(\w*service:[\w]+):\d\].*method=(\w+),path=([^,]*),.*status=(5\d\d)", line)
        if m:
            key = f"{m.group(1)} {m.group(2)} {m.group(3)[:60]} -> {m.group(4)}"
            fives.setdefault(key, [0, line[:25]])[0] += 1
    forged = sum(1 for line in lines if line.startswith(FORGED))
    print(f"\nServer log {log}: {len(lines):,} lines; {sum(v[0] for v in errors.values())} ERROR "
          f"entries, {sum(v[0] for v in fives.values())} 5xx access lines")
    if forged:
        print(f"  {forged} lines begin with text a client put after %0A in a request path: the "
              f"access log writes decoded paths raw, so a client can forge log lines")
    for (head, where, exc), (n, first) in sorted(errors.items(), key=lambda kv: kv[1][1]):
        print(f"  x{n:<4} first {first}  {head}\n        at {where}\n        {exc}")
    for key, (n, first) in sorted(fives.items(), key=lambda kv: kv[1][1]):
        print(f"  x{n:<4} first {first}  {key}")


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:,.0f}" if values else "-"


def growth(memory: Memory, role: str, kill: Kill) -> list[tuple[str, float | None]]:
    """(description, growth) per process of `role` that lived through at least two minute
    marks after its own first minute: from the first such mark to its last."""
    lives: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for minute, got in memory.marks:
        if role in got and got[role][1]:
            lives[got[role][0]].append((minute, got[role][1]))
    out = []
    for pid, marks in lives.items():
        if role == "scorer" and pid == kill.new_pid and kill.at:
            # a restarted scorer: its own first minute is warm-up, like minute 1 for the others
            kept = [(m, mb) for m, mb in marks if m >= marks[0][0] + 1]
        else:
            kept = marks
        if len(kept) < 2:
            out.append((f"pid {pid}: too few minute marks", None))
            continue
        (m0, a), (m1, b) = kept[0], kept[-1]
        out.append((f"pid {pid}: minute {m0:g} {a:.0f} MB -> minute {m1:g} {b:.0f} MB", b / a - 1))
    return out


def report(book: Book, memory: Memory, kill: Kill, log: Path, args, elapsed: float) -> bool:
    line = "=" * 100
    print(f"\n{line}\nSOAK SUMMARY: {args.minutes} min, {args.concurrency} clients, "
          f"{book.fuzz_sent:,} of {args.fuzz:,} fuzz requests sent; {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.2f}; ran {elapsed:.0f} s\n{line}")

    print(f"\nValid requests (every one should be 2xx):\n{'endpoint':28} {'requests':>9} "
          f"{'req/s':>6} {'2xx':>8} {'errors':>7}  {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}  "
          f"statuses")
    for ep, _ in ValidMix.WEIGHTS:
        c = book.valid.get(ep, Counter())
        n = sum(c.values())
        ok = sum(v for s, v in c.items() if s.startswith("2"))
        lat = book.latency.get(ep, [])
        print(f"{ep:28} {n:9,} {n / (args.minutes * 60):6.1f} {ok:8,} {n - ok:7,}  "
              f"{pct(lat, 50):>7} {pct(lat, 99):>7} {pct(lat, 100):>7}  "
              f"{dict(sorted(c.items()))}")
    total = sum(sum(c.values()) for c in book.valid.values())
    print(f"{'all':28} {total:9,} {total / (args.minutes * 60):6.1f}")

    print(f"\nFuzz requests ({book.fuzz_sent:,} sent; 4xx expected, 5xx or a dropped connection "
          f"is an error; p50/p99 {pct(book.fuzz_latency, 50)}/{pct(book.fuzz_latency, 99)} ms):")
    by_family: dict[str, Counter] = defaultdict(Counter)
    for case, c in book.fuzz.items():
        by_family[case.split("_")[0].split(".")[0]].update(c)
    print(f"{'family':12} {'requests':>9}  statuses")
    for fam, c in sorted(by_family.items()):
        print(f"{fam:12} {sum(c.values()):9,}  {dict(sorted(c.items()))}")
    print(f"{'endpoint':44} {'requests':>9}  statuses")
    for path, c in sorted(book.fuzz_paths.items(), key=lambda kv: -sum(kv[1].values())):
        print(f"{path:44} {sum(c.values()):9,}  {dict(sorted(c.items()))}")
    bad_cases = {case: c for case, c in book.fuzz.items()
                 if any(s[0] not in "234n" for s in c)}
    for case, c in sorted(bad_cases.items()):
        print(f"  ERROR case {case}: {dict(sorted(c.items()))}")
    twoxx = sorted(case for case, c in book.fuzz.items() if any(s.startswith("2") for s in c))
    if twoxx:
        print(f"  (cases answered 2xx at least once, not an error: {', '.join(twoxx)})")

    print("\nErrors by status:")
    errs: dict[tuple[str, str, str], list[Failure]] = defaultdict(list)
    for f in book.failures:
        errs[(f.kind, f.name, f.status)].append(f)
    if not errs:
        print("  none")
    for (kind, name, status), fs in sorted(errs.items()):
        f = fs[0]
        print(f"  {kind:5} {name:32} {status:>22} x{len(fs):<5} first at "
              f"{datetime.fromtimestamp(f.at).isoformat(timespec='seconds')}, {f.seconds:.2f} s\n"
              f"        request: {f.request[:600]}\n        answer:  {f.answer[:400]}")

    print("\nRSS (MB) per process at each minute mark:")
    roles = ["public", "scorer", "arbiter"]
    print(f"{'minute':>6}  " + "  ".join(f"{r + ' (pid)':>22}" for r in roles))
    for minute, got in memory.marks:
        print(f"{minute:6g}  " + "  ".join(
            f"{(f'{got[r][1]:.0f}' if got.get(r) and got[r][1] else 'gone'):>12} "
            f"({got[r][0] if r in got else '-':>7})" for r in roles))
    print("Growth after the first minute (target <= 5%):")
    mem_ok = True
    judged = 0
    for role in ("public", "scorer", "arbiter"):
        for what, g in growth(memory, role, kill):
            target = role != "arbiter"
            if g is None:
                print(f"  {role:8} {what}")
                continue
            verdict = ""
            if target:
                judged += 1
                mem_ok &= g <= GROWTH_TARGET
                verdict = "PASS" if g <= GROWTH_TARGET else "MISS"
            print(f"  {role:8} {what}: {g * 100:+.1f}% {verdict or '(not judged)'}")
    mem_ok &= judged > 0

    print("\nScorer kill:")
    # the most precise measure there is: /readyz on the scorer's socket, else the log
    recovery = next((x for x in (kill.ready_after, kill.first_answer_after,
                                 kill.initialized_after, kill.new_pid_after) if x is not None),
                    None)
    failed_near = []
    if kill.at:
        latest = max((x for x in (kill.ready_after, kill.first_answer_after,
                                  kill.initialized_after, kill.new_pid_after) if x is not None),
                     default=0.0)
        window_end = kill.at + latest + 30
        near = [(s, sec, ep, ok) for s, sec, ep, ok in book.valid_done
                if kill.at - 2 <= s <= window_end or s < kill.at <= s + sec]
        failed_near = [f for f in book.failures if f.kind == "valid" and (
            kill.at - 2 <= f.at <= window_end or f.at < kill.at <= f.at + f.seconds)]
        slow = max((sec for _s, sec, _ep, _ok in near), default=0.0)
        print(f"  killed pid {kill.old_pid} at "
              f"{datetime.fromtimestamp(kill.at).isoformat(timespec='milliseconds')}")
        print(f"  new scorer process (pid {kill.new_pid or '-'}) after: "
              + (f"{kill.new_pid_after:.2f} s" if kill.new_pid_after is not None else "never"))
        print("  it answers GET /readyz on the scorer's socket after: "
              + (f"{kill.ready_after:.2f} s (polled every 0.1 s)" if kill.ready_after is not None
                 else "not measured"))
        print("  it logged 'initialized' within: "
              + (f"{kill.initialized_after:.0f} s" if kill.initialized_after is not None
                 else "not seen in the log") + " (whole-second log stamps: upper bounds)")
        print("  it logged its first successful request within: "
              + (f"{kill.first_answer_after:.0f} s" if kill.first_answer_after is not None
                 else "not seen in the log"))
        print(f"  valid requests in flight or started from 2 s before the kill to 30 s after "
              f"recovery: {len(near):,}, failed: {len(failed_near)}, slowest {slow:.1f} s")
        end = window_end
        window = end - kill.at + 1
        near_retries = sum(1 for t in kill.retries if int(kill.at) <= t <= end)
        rate = (len(kill.retries) - near_retries) / max(1.0, elapsed - window)
        print(f"  public process, from the kill to 30 s after recovery ({window:.0f} s): "
              f"{near_retries} 'scorer connection dropped; retrying once' warnings (the rest of "
              f"the run: {rate * window:.0f} per {window:.0f} s on average, "
              f"{len(kill.retries)} in all); "
              f"{sum(1 for t, _ in kill.fallbacks if int(kill.at) <= t <= end)} fallbacks to "
              f"scoring in the public process ({len(kill.fallbacks)} in all)")
        for _, w in kill.fallbacks[:3]:
            print(f"    {w[:300]}")
    else:
        print("  the scorer was not killed (the run ended first)")
    rec_ok = bool(kill.at) and recovery is not None and recovery <= RECOVERY_TARGET_S \
        and not failed_near

    print_log_digest(log)

    errors_ok = not book.failures
    n_valid, n_fuzz = book.valid_errors(), book.fuzz_errors()
    print(f"\n{line}\nTARGETS")
    print(f"  0 errors: {n_valid} valid non-2xx/failed, {n_fuzz} fuzz 5xx/dropped"
          f"{'':20} {'PASS' if errors_ok else 'MISS'}")
    print(f"  memory growth <= 5% after the first minute (public, scorer){'':14} "
          f"{('PASS' if mem_ok else 'MISS') if judged else 'MISS (run too short to judge)'}")
    rec_text = "no recovery seen" if recovery is None else f"back within {recovery:.1f} s"
    print(f"  scorer kill: {rec_text} (<= 15 s), {len(failed_near)} failed valid requests"
          f"{'':8} {'PASS' if rec_ok else 'MISS'}")
    print(line)
    return errors_ok and mem_ok and rec_ok


# --------------------------------------------------------------------------------------------


async def soak(server: Server, mix: ValidMix, fuzzer: Fuzzer, args, book: Book, memory: Memory,
               kill: Kill) -> None:
    duration = args.minutes * 60
    t0 = time.monotonic()
    stop_at = t0 + duration
    # the server closes a connection idle for 5 s (uvicorn's timeout_keep_alive), as long as
    # httpx keeps one (keepalive_expiry): a request sent on a pooled connection just as the
    # server closes it fails with ReadError (a few in 20,000 requests at 100 req/s); the
    # clients drop idle connections sooner, so only the server's own failures are counted
    limits = httpx.Limits(max_connections=args.concurrency,
                          max_keepalive_connections=args.concurrency, keepalive_expiry=2.0)
    timeout = httpx.Timeout(120, connect=30)
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout, limits=limits) as valid, \
            httpx.AsyncClient(base_url=server.url, timeout=timeout,
                              limits=httpx.Limits(keepalive_expiry=2.0)) as fuzz:
        seed = args.seed
        jobs = [asyncio.create_task(valid_client(valid, mix, book, stop_at,
                                                 random.Random(seed * 1000 + i)))
                for i in range(args.concurrency)]
        jobs.append(asyncio.create_task(fuzz_task(fuzz, fuzzer, book, args.fuzz, t0, duration,
                                                  grace=60)))
        jobs.append(asyncio.create_task(monitor(server, memory, book, t0, args.minutes)))
        # halfway, 5 s past a minute mark so the kill never coincides with a memory sample
        jobs.append(asyncio.create_task(kill_scorer(server, kill, t0 + duration / 2 + 5)))
        try:
            await asyncio.gather(*jobs)
        finally:
            for j in jobs:
                j.cancel()


def code_version() -> str:
    """The commit the server runs, and the tracked files changed on top of it (the server
    imports the working tree)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout
    changed = [line[3:] for line in git("status", "--short", "--untracked-files=no").splitlines()]
    return (git("rev-parse", "--short", "HEAD").strip() or "(no git)") + (
        f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--fuzz", type=int, default=10_000, help="hostile requests over the run")
    ap.add_argument("--customers", type=int, default=2000, help="customers to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, default=None,
                    help="work in this directory; reuse its data, model and scores when a "
                         "previous run prepared them there (the run's env is kept in env.json)")
    ap.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                    help="an environment variable for the server only (repeatable), e.g. "
                         "CHURN_PREDICTION_LOG=false to measure without a suspect")
    args = ap.parse_args()
    if args.minutes < 1:
        ap.error("--minutes must be at least 1")

    signal.signal(signal.SIGTERM, interrupted)  # handled as Ctrl+C: the server is stopped
    rng = random.Random(args.seed)
    if args.home is not None:
        home = args.home.resolve()
        home.mkdir(parents=True, exist_ok=True)
    else:
        home = Path(tempfile.mkdtemp(prefix="soak-"))
    log = home / "serve.log"
    extra = dict(kv.split("=", 1) for kv in args.server_env)
    print(f"working in {home}; serving the code of {code_version()}", flush=True)
    book, memory, kill = Book(), Memory(), Kill()
    server: Server | None = None
    ok = False
    try:
        saved = home / "env.json"
        if saved.exists():
            env = {**{k: v for k, v in os.environ.items()
                      if not k.startswith(("MLFLOW_", "CHURN_"))},
                   **json.loads(saved.read_text())}
            print(f"reusing the data, model and scores prepared in {home}", flush=True)
        else:
            env = prepare(home, args.customers)
            saved.write_text(json.dumps({k: v for k, v in env.items() if k.startswith(
                ("CHURN_", "MLFLOW_", "BENTOML_", "PYTHON"))}))
        env.update(extra)
        if extra:
            print(f"server environment: {extra}", flush=True)
        port = free_port()
        server = Server.start([str(BIN / "churn"), "serve", "--port", str(port)], cwd=home,
                              env=env, log=log, port=port)
        server.wait_ready(180)
        print(f"server pid {server.proc.pid} on {server.url}: "
              f"{server_processes(server.proc.pid)}; log {log}", flush=True)
        pool = customer_pool(home, 300, rng)
        names, rows = feature_rows(server.url, pool, 60)
        mix = build_mix(pool, rows, home, rng)
        fuzzer = Fuzzer(pool[0], rows[0], mix.review_ids[0], rng)
        print(f"{len(pool)} customers ({min(len(c['events']) for c in pool)}-"
              f"{max(len(c['events']) for c in pool)} events), {len(rows)} feature rows of "
              f"{len(names)} features, {len(fuzzer.cases)} fuzz cases; soaking for "
              f"{args.minutes} min", flush=True)
        started = time.monotonic()
        asyncio.run(soak(server, mix, fuzzer, args, book, memory, kill))
        elapsed = time.monotonic() - started
        time.sleep(1.5)  # let the last access-log lines reach the file
        if kill.at:
            read_kill_log(log, kill)
        ok = report(book, memory, kill, log, args, elapsed)
    except KeyboardInterrupt:
        print("\ninterrupted", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not skip the stop
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if server is not None:
            survived, left = server.stop(20)
            print(f"server stopped (processes that needed SIGKILL: {survived or 'none'}; "
                  f"still running: {left or 'none'})", flush=True)
        print(f"files kept in {home}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
