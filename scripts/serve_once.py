"""Start the service on loopback, make one real prediction from examples/predict.json, stop it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    port = int(os.environ.get("PORT", "3000"))
    log = ROOT / "data" / "demo" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    churn = str(Path(sys.executable).with_name("churn"))
    demo = ROOT / "data" / "demo"
    env = {**os.environ,
           "CHURN_REVIEW_SCORES": str(demo / "scores.parquet"),
           "CHURN_REVIEW_CUSTOMERS": str(demo / "customers.parquet"),
           "CHURN_REVIEW_EVENTS": str(demo / "events.parquet")}
    server = subprocess.Popen([churn, "serve", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                print("the service did not start:\n" + log.read_text()[-2000:])
                return 1
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                print("the service was not ready after 180 s; see " + str(log))
                return 1
            time.sleep(1)
        body = json.loads((ROOT / "examples" / "predict.json").read_text())
        print(f"POST {base}/predict with examples/predict.json:")
        answer = httpx.post(f"{base}/predict", json=body, timeout=60)
        print(json.dumps(answer.json(), indent=2))
        if answer.status_code != 200:
            return 1
        page = httpx.get(f"{base}/review", timeout=60, follow_redirects=True)
        top = pd.read_parquet(demo / "scores.parquet").sort_values(
            "expected_value_at_risk", ascending=False)["customer_id"].iloc[0]
        customer = httpx.get(f"{base}/review/customer/{top}", timeout=60)
        print(f"reviewer page {base}/review: HTTP {page.status_code}; "
              f"customer {top}: HTTP {customer.status_code}")
        print("to browse it: make serve, then open the address above")
        return 0 if page.status_code == customer.status_code == 200 else 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
