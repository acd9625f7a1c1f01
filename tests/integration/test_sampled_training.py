"""`churn train` over the memory budget: it trains on a sample of customers, records it in the
run, and its test ROC-AUC agrees with the whole log's run (the session's `trained`)."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest

from scoring.settings import Settings
from scoring.store import load_model
from training.config import TrainConfig
from training.pipeline import train
from training.sample import PEAK_PER_TABLE_BYTE, row_bytes


@pytest.fixture(scope="module")
def sampled(trained, tmp_path_factory):
    """The session's log trained again within a budget that holds about half its snapshots."""
    whole = trained.result["dataset"]["sample"]
    assert not whole["sampled"]
    trained.use_store()
    spec = load_model("models:/churn@champion").model.spec
    memory_mb = 0.5 * whole["rows_estimated"] * PEAK_PER_TABLE_BYTE * row_bytes(spec) / 1e6
    config = TrainConfig.model_validate({"bootstrap": 50, "search": {"trials": 2},
                                         "refit": {"enabled": False},
                                         "sample": {"memory_mb": memory_mb}})
    home = tmp_path_factory.mktemp("sampled_home")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        # a store of its own: the session's (in MLFLOW_TRACKING_URI) gets no run of this
        settings = Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlruns' / 'mlflow.db'}")
        result = train(trained.customers, trained.events, "explicit", 30, None, config,
                       settings, "sampled")
        run = mlflow.get_run(result.run_id)
        dataset = json.loads(mlflow.artifacts.load_text(f"{run.info.artifact_uri}/dataset.json"))
        tested = pd.read_parquet(mlflow.artifacts.download_artifacts(
            f"{run.info.artifact_uri}/test_predictions.parquet", dst_path=str(home)))
    finally:
        mlflow.set_tracking_uri(before[0])  # the session's store, for the tests after these
        mlflow.set_registry_uri(before[1])
    return result, run, dataset, tested


def test_the_run_records_its_sample(sampled):
    result, run, dataset, _ = sampled
    sample = dataset["sample"]
    assert sample["sampled"] and 0.4 < sample["fraction"] < 0.6
    params = run.data.params
    assert params["sampled"] == "True"
    assert int(params["sample_customers_kept"]) == sample["customers_kept"]
    assert int(params["sample_customers"]) == sample["customers"] > sample["customers_kept"]
    for name in ("churners", "non_churners"):
        assert abs(float(params[f"sample_fraction.{name}"]) - sample["fraction"]) < 0.01
    assert any(n.startswith(f"trained on a sample of {sample['customers_kept']:,}")
               for n in dataset["notes"])
    assert "Sampled:" in run.data.tags["mlflow.note.content"]
    assert result.dataset["sample"] == sample
    # the sample's rows: about half of the whole run's, in every split
    assert sum(dataset["rows"].values()) < 0.6 * sample["rows_estimated"]


def test_the_test_rows_are_the_kept_customers_at_every_time(sampled, trained):
    _, _, dataset, tested = sampled
    per_time = tested.groupby("as_of")["customer_id"].apply(set)
    assert len(per_time) == len(dataset["observation_times"]["test"])
    kept = set().union(*per_time)
    # a customer kept is in every test time it is active at: the later time has everyone
    # kept at the earlier one who has not churned by then
    customers = pd.read_parquet(trained.customers)
    customers = customers.set_index(customers["customer_id"].astype(str))
    later = per_time.index.max()
    for t, ids in per_time.items():
        still = {c for c in ids if not customers.loc[c, "churned_at"] <= later}
        assert still <= per_time[later], t
    assert len(kept) <= dataset["sample"]["customers_kept"]


def test_a_sampled_run_agrees_with_the_whole_run_within_their_intervals(sampled, trained):
    result, _, _, _ = sampled
    part, whole = result.metrics["lightgbm"], trained.result["metrics"]["lightgbm"]
    assert part["roc_auc_ci_low"] <= whole["roc_auc_ci_high"]
    assert whole["roc_auc_ci_low"] <= part["roc_auc_ci_high"]
    assert abs(part["roc_auc"] - whole["roc_auc"]) < 0.05
    assert part["roc_auc"] > 0.6  # a model, not noise
