"""`churn campaign returning` as a user runs it: a subprocess on small hand-written files."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from tests.unit.test_cli import churn

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


def test_returning_lists_table_json_and_file(tmp_path):
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    (tmp_path / "events.csv").write_text(EVENTS)
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
    written = pd.read_csv(tmp_path / "back.csv")
    assert written[["customer_id", "how", "returned_as", "days_away"]].values.tolist() == [
        ["A", "churn date", "A", 50.0], ["D", "new signup", "E", 76.0], ["C", "lapse", "C", 123.0]]
    assert written["follow_up"].str.startswith("Welcome them back").all()

    payload = json.loads(done["json"].stdout)
    assert payload["by_how"] == {"churn date": 1, "lapse": 1, "new signup": 0}
    assert [r["customer_id"] for r in payload["returning"]] == ["A", "C"]
    assert len(pd.read_parquet(tmp_path / "back.parquet")) == 2

    for name, words in {"bad-out": ["--out", "must end in .csv or .parquet"],
                        "bad-match": ["'phone' is not a column"],
                        "bad-since": ["since must not be after as_of"]}.items():
        proc = done[name]
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and all(w in lines[0] for w in words), (name, proc.stderr)
