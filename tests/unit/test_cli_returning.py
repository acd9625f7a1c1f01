"""`churn campaign returning` as a user runs it: a subprocess on small hand-written files."""

from __future__ import annotations

import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pandas as pd
from sqlalchemy import create_engine

from campaigns.store import Campaign, create_campaign, record_outcomes
from scoring.records import metadata
from tests.unit.test_cli import CHURN, ROOT

CUSTOMERS = """customer_id,signup_at,churned_at,email
A,2025-01-01,2026-01-10,a@x.com
B,2025-01-01,2026-01-10,
C,2025-01-01,,c@x.com
D,2025-01-01,2025-12-01,d@x.com
E,2026-02-15,,D@X.COM
"""
EVENTS = """customer_id,timestamp,event_type
A,2026-01-05,login
A,2026-03-01,login
B,2026-01-12,login
C,2025-10-01,login
C,2026-02-01,login
D,2025-11-20,login
E,2026-02-16,login
"""


def _store_with_a_reason(url: str) -> None:
    """A campaign in which A told the call centre why they were leaving."""
    engine = create_engine(url)
    metadata.create_all(engine)
    members = pd.DataFrame({"customer_id": ["A", "C"], "arm": ["treatment", "control"],
                            "risk_band": "high", "value_segment": "top", "probability": 0.5,
                            "customer_value": 100.0, "action_family": "complaints",
                            "action": "call"})
    create_campaign(engine, Campaign("winter", "Winter", "1", datetime(2025, 12, 1), 30, 0.2, 1,
                                     "all"), members)
    record_outcomes(engine, "winter", [
        {"customer_id": "A", "reached": True, "result": "stayed", "reason": "price",
         "reason_text": "Too dear", "source": "import", "recorded_at": datetime(2025, 12, 5)}])
    engine.dispose()


def test_returning_lists_table_json_and_file(tmp_path):
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    (tmp_path / "events.csv").write_text(EVENTS)
    store = f"sqlite:///{tmp_path / 'churn.db'}"
    _store_with_a_reason(store)
    no_store = tmp_path / "none" / "churn.db"

    def churn(*args: object) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
        env["CHURN_DATABASE_URL"] = store if "--json" not in args else f"sqlite:///{no_store}"
        return subprocess.run([str(CHURN), *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=180, check=False)
    base = ["campaign", "returning", "--customers", tmp_path / "customers.csv",
            "--events", tmp_path / "events.csv"]
    runs = {
        "table": [*base, "--horizon", "90", "--match-column", "email",
                  "--out", tmp_path / "back.csv"],
        "json": [*base, "--horizon", "90", "--json", "--out", tmp_path / "back.parquet"],
        "bad-out": [*base, "--out", tmp_path / "back.txt"],
        "bad-match": [*base, "--match-column", "phone"],
        "bad-since": [*base, "--since", "2026-03-01", "--as-of", "2026-01-01"],
    }
    with ThreadPoolExecutor(3) as pool:
        done = dict(zip(runs, pool.map(lambda a: churn(*a), runs.values()), strict=True))

    table = done["table"]
    assert table.returncode == 0, table.stderr
    assert "3 returns of 3 customers (1 by churn date, 1 by lapse, 1 by new signup)" in table.stdout
    assert "Welcome them back" in table.stdout  # the playbook's win-back follow-up
    assert "said before" in table.stdout and "Price: Too dear" in table.stdout
    written = pd.read_csv(tmp_path / "back.csv", keep_default_na=False)
    assert written["said_before"].tolist() == ["Price: Too dear", "", ""]
    assert written[["customer_id", "how", "returned_as", "days_away"]].values.tolist() == [
        ["A", "churn date", "A", 50.0], ["D", "new signup", "E", 76.0], ["C", "lapse", "C", 123.0]]
    assert written["follow_up"].str.startswith("Welcome them back").all()

    payload = json.loads(done["json"].stdout)
    assert payload["by_how"] == {"churn date": 1, "lapse": 1, "new signup": 0}
    assert [r["customer_id"] for r in payload["returning"]] == ["A", "C"]
    assert len(pd.read_parquet(tmp_path / "back.parquet")) == 2
    assert "said_before" not in payload["returning"][0]  # no store: nothing said, none created
    assert not no_store.parent.exists()

    for name, words in {"bad-out": ["--out", "must end in .csv or .parquet"],
                        "bad-match": ["'phone' is not a column"],
                        "bad-since": ["since must not be after as_of"]}.items():
        proc = done[name]
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and all(w in lines[0] for w in words), (name, proc.stderr)
