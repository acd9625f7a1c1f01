"""A retention campaign end to end, as a user runs it: `churn score` an earlier batch, `churn
campaign plan` two campaigns, let the generator's treatment effect act on one of them, import
the call centre's file and the churn from the data, and `churn campaign report`.

The campaigns use their own home (store, written settings) and the session's trained model
through CHURN_TRACKING_URI, so nothing here changes what other tests see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from scoring.settings import Settings
from tests.helpers import Trained

AS_OF = "2026-05-01"
HORIZON_END = pd.Timestamp(AS_OF) + pd.Timedelta(days=30)
# the contact works for these families only; the others get factor 1 (no effect)
EFFECT = {"complaints": 0.2, "payment": 0.2, "cancel_intent": 0.2, "contact_drop": 0.2}


@dataclass
class Run:
    t: Trained
    home: Path

    def churn(self, *args, check: bool = True):
        env = {**self.t.env, "CHURN_HOME": str(self.home),
               "CHURN_TRACKING_URI": f"sqlite:///{self.t.home / 'mlruns' / 'mlflow.db'}"}
        return Trained(self.home, self.t.data, env, {}).churn(*map(str, args), check=check)

    def json(self, *args):
        return json.loads(self.churn(*args, "--json").stdout)


@dataclass
class Planned:
    run: Run
    effective: dict  # the plan whose treatment works (EFFECT), with every outcome imported
    idle: dict  # a plan whose treatment does nothing, with churn from the data
    world: Path  # the effective campaign's treated world


def _plan(run: Run, seed: int, out: str, *more) -> dict:
    return run.json("campaign", "plan", "--scores", run.home / "scores.parquet",
                    "--budget", 2000, "--control-share", 0.3, "--seed", seed,
                    "--out", run.home / out, "--name", f"seed {seed}", *more)


@pytest.fixture(scope="module")
def planned(trained: Trained, tmp_path_factory) -> Planned:
    run = Run(trained, tmp_path_factory.mktemp("campaign"))
    run.churn("score", "--customers", trained.customers, "--events", trained.events,
              "--as-of", AS_OF, "--out", run.home / "scores.parquet")
    effective = _plan(run, 1, "calls.csv")
    cid = effective["campaign_id"]
    world = run.home / "world"
    effects = [a for f, x in EFFECT.items() for a in ("--effect", f"{f}={x}")]
    run.churn("campaign", "simulate", "--campaign", cid, "--customers", trained.customers,
              "--events", trained.events, "--out", world, *effects)
    effective["imported"] = run.json("campaign", "outcomes", "--campaign", cid,
                                     "--file", world / "calls.csv")
    run.churn("campaign", "outcomes", "--campaign", cid, "--customers",
              world / "customers.parquet", "--events", world / "events.parquet")
    # the same customers over the same days are refused unless asked for: the ineffective
    # campaign is a second design on the untreated world, so it asks
    refused = run.churn("campaign", "plan", "--scores", run.home / "scores.parquet",
                        "--out", run.home / "refused.csv", check=False)
    assert refused.returncode == 2 and "--allow-overlap" in refused.stderr
    assert not (run.home / "refused.csv").exists()
    idle = _plan(run, 2, "calls2.parquet", "--allow-overlap")
    run.churn("campaign", "outcomes", "--campaign", idle["campaign_id"], "--customers",
              trained.customers, "--events", trained.events)
    return Planned(run, effective, idle, world)


def left_in_horizon(customers: pd.DataFrame, ids) -> pd.Series:
    ids_ = customers["customer_id"].astype(str)  # the generator's file has integer ids
    churn = customers.assign(customer_id=ids_).set_index("customer_id")["churned_at"].reindex(ids)
    assert churn.index.isin(ids_).all()
    return (churn > pd.Timestamp(AS_OF)) & (churn <= HORIZON_END)


def test_simulated_campaign_recovers_the_uplift_and_an_ineffective_one_shows_none(
        planned: Planned):
    run, plan = planned.run, planned.effective
    cid = plan["campaign_id"]
    assert plan["horizon_days"] == 30 and plan["label"] == "explicit"  # from the model's run
    calls = pd.read_csv(run.home / "calls.csv", dtype=str)
    assert len(calls) == plan["treatment"] and "arm" not in calls  # the control arm is not called
    assert plan["imported"]["file"]["bad"] == 0
    assert plan["imported"]["file"]["stored"] == plan["treatment"]
    report = run.json("campaign", "report", "--campaign", cid, "--no-mlflow")["report"]

    # the true effect: the untreated world against the treated one, on the treatment arm
    from campaigns.store import campaign_members
    from scoring.records import engine_for

    members = campaign_members(engine_for(Settings(home=run.home)), cid)
    treated = members.loc[members["arm"] == "treatment", "customer_id"]
    before = left_in_horizon(pd.read_parquet(run.t.customers), treated).mean()
    after = left_in_horizon(pd.read_parquet(planned.world / "customers.parquet"), treated).mean()
    true_uplift = before - after
    assert true_uplift > 0.05
    uplift = report["overall"]["uplift"]
    assert uplift["low"] <= true_uplift <= uplift["high"] and uplift["low"] > 0
    assert report["pending"] == 0 and report["contacts"]["imported"] == plan["treatment"]
    assert report["reasons"] and report["suggested_save_rate"]["value"] > 0

    # an ineffective campaign: nobody's churn changes
    none = run.json("campaign", "report", "--campaign", planned.idle["campaign_id"],
                    "--no-mlflow")["report"]
    assert none["pending"] == 0
    assert none["overall"]["uplift"]["low"] <= 0 <= none["overall"]["uplift"]["high"]
    assert none["overall"]["save_rate"]["low"] <= 0 <= none["overall"]["save_rate"]["high"]
    # and its save rate is not written into the offer settings
    applied = run.churn("campaign", "report", "--campaign", planned.idle["campaign_id"],
                        "--apply", "--no-mlflow", check=False)
    assert applied.returncode == 2 and "includes 0" in applied.stderr
    assert not (run.home / "mlruns" / "settings.toml").exists()


def test_report_is_logged_beside_the_model_and_apply_writes_the_save_rate(planned: Planned):
    run, cid = planned.run, planned.effective["campaign_id"]
    written = run.home / "mlruns" / "settings.toml"
    written.write_text("[offer]\ncost = 12.5\n")  # what the file held before is kept
    first = run.json("campaign", "report", "--campaign", cid, "--apply")
    again = run.json("campaign", "report", "--campaign", cid)
    assert first["mlflow_run_id"] == again["mlflow_run_id"]  # one run per campaign
    client = MlflowClient(f"sqlite:///{run.t.home / 'mlruns' / 'mlflow.db'}")
    logged = client.get_run(first["mlflow_run_id"])
    model_run = client.get_model_version("churn", first["model_version"]).run_id
    assert logged.data.tags["churn.campaign_id"] == cid
    assert logged.data.tags["mlflow.parentRunId"] == model_run
    assert logged.data.tags["churn.model_version"] == first["model_version"]
    assert logged.data.metrics["uplift"] == pytest.approx(first["report"]["overall"]["uplift"]["value"])

    suggested = first["report"]["suggested_save_rate"]["value"]
    assert first["applied"]["save_rate"] == suggested
    offer = Settings(home=run.home).offer
    assert offer.save_rate == pytest.approx(round(suggested, 4)) and offer.cost == 12.5
    assert "campaign " + cid in written.read_text()


def test_bad_outcome_rows_are_named_and_nothing_stored_is_lost(planned: Planned):
    run, cid = planned.run, planned.idle["campaign_id"]
    calls = pd.read_parquet(run.home / "calls2.parquet")
    first = calls.head(3).assign(reached="yes", result="stayed", reason="price")
    first.to_csv(run.home / "first.csv", index=False)
    run.churn("campaign", "outcomes", "--campaign", cid, "--file", run.home / "first.csv")

    later = calls.head(3).assign(reached=["yes", "perhaps", "yes"], result="left",
                                 reason=["moved", "", "elsewhere"])
    later.to_csv(run.home / "later.csv", index=False)
    proc = run.churn("campaign", "outcomes", "--campaign", cid, "--file", run.home / "later.csv",
                     check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "1 outcomes stored, 2 bad rows" in proc.stdout
    assert "row 3, reached: 'perhaps' is not yes or no" in proc.stderr
    assert "row 4, reason: 'elsewhere' is not one of price" in proc.stderr

    from campaigns.store import campaign_outcomes
    from scoring.records import engine_for

    stored = campaign_outcomes(engine_for(Settings(home=run.home)), cid, source="import")
    stored = stored.set_index("customer_id")
    ids = calls["customer_id"].head(3).tolist()
    assert stored.loc[ids[0], "reason"] == "moved"  # replaced by the later good row
    assert stored.loc[ids[1], "reason"] == "price"  # the bad rows left the earlier ones
    assert stored.loc[ids[2], "reason"] == "price"

    for args, message in [
        (["--file", run.home / "later.xlsx"], "--file: later.xlsx: give a CSV file"),
        (["--customers", run.t.customers], "--customers and --events go together"),
        ([], "give --file"),
    ]:
        proc = run.churn("campaign", "outcomes", "--campaign", cid, *args, check=False)
        assert proc.returncode == 2 and message in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = run.churn("campaign", "report", "--campaign", "nope", check=False)
    assert proc.returncode == 2 and "no campaign 'nope'" in proc.stderr
