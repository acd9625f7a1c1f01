"""The candidates `churn train` weighs: the best on validation is registered, refitted on every
labelled time; every kind of model explains itself with contributions that add up."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from features.btyd import BGNBDParams
from scoring.artifact import ChurnModel
from scoring.settings import Settings
from scoring.store import load_model
from simulation.bgnbd import simulate_bgnbd_events
from training.config import TrainConfig
from training.pipeline import train
from training.promotion import evaluation_model


def _bgnbd_shop(folder: Path, n: int = 1500, seed: int = 5) -> tuple[Path, Path]:
    """A shop whose purchases follow BG/NBD exactly: signups over the first 120 days of a
    450-day log, then the model's repeat purchases; no churn dates."""
    rng = np.random.default_rng(seed)
    params = BGNBDParams(r=0.6, alpha=12.0, a=0.8, b=3.0)
    first = rng.uniform(0.0, 120.0, n)
    cohort = simulate_bgnbd_events(params, n, 450.0 - first, seed=rng)
    start = pd.Timestamp("2025-01-01")
    ids = np.array([f"S{i:05d}" for i in range(n)])
    events = pd.DataFrame({
        "customer_id": ids[cohort.customer],
        "timestamp": start + pd.to_timedelta(np.round((first[cohort.customer] + cohort.time)
                                                      * 86400), unit="s"),
        "event_type": "purchase",
    })
    customers = pd.DataFrame({"customer_id": ids,
                              "signup_at": start + pd.to_timedelta(np.round(first * 86400), unit="s"),
                              "churned_at": pd.NaT})
    folder.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(folder / "customers.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return folder / "customers.parquet", folder / "events.parquet"


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("bgnbd_home")
    customers, events = _bgnbd_shop(home / "data")
    settings = Settings(home=home)
    config = TrainConfig.model_validate({"bootstrap": 200, "search": {"trials": 1}})
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    result = train(customers, events, "inactivity", 60, None, config, settings, "bgnbd-shop")
    yield result, settings
    mlflow.set_tracking_uri(before[0])  # the session's trained store, for the tests after these
    mlflow.set_registry_uri(before[1])


def test_a_bgnbd_world_registers_a_model_at_least_as_good_as_bgnbd(shop_run):
    result, _ = shop_run
    assert set(result.candidates) == {"lightgbm", "logistic", "bgnbd", "lightgbm_bgnbd", "blend"}
    assert result.candidates[result.chosen]["chosen"]
    if result.chosen != "bgnbd":
        # BG/NBD minus the chosen one, paired on the test rows: never better beyond noise
        bgnbd = result.candidates["bgnbd"]
        assert bgnbd["roc_auc_minus_chosen"]["low"] <= 0, bgnbd
        assert bgnbd["brier_minus_chosen"]["high"] >= 0, bgnbd


def test_the_chosen_candidate_had_the_best_validation_score_and_is_what_is_registered(shop_run):
    result, settings = shop_run
    run = mlflow.get_run(result.run_id)
    val = {k.removesuffix("_validation_roc_auc"): v for k, v in run.data.metrics.items()
           if k.endswith("_validation_roc_auc")}
    key = {"logistic": "baseline"}.get(result.chosen, result.chosen)
    if val[key] < max(val.values()):  # only the blend or BG/NBD, standing while nothing beats it
        assert result.chosen in ("blend", "bgnbd")
        assert "within noise" in result.dataset["chosen"]["why"]
    else:
        assert val[key] == max(val.values())
    assert run.data.tags["churn.chosen"] == result.chosen
    loaded = load_model(f"models:/{settings.model_name}/{result.model_version}")
    assert loaded.model.kind == result.chosen
    assert loaded.run_id == result.run_id  # the registered model hangs off the parent run


def test_the_registered_model_is_the_refit_and_the_gate_uses_the_evaluation_model(shop_run):
    result, settings = shop_run
    dataset = result.dataset
    times = dataset["observation_times"]
    # the refit learned from every labelled time, the test's and the purged ones included
    assert set(times["test"]) <= set(dataset["refit"]["times"])
    assert set(times["train"]) | set(times["validation"]) <= set(dataset["refit"]["times"])
    # every snapshot row, the purged ones included, though the table is not kept whole
    assert dataset["refit"]["rows"] == dataset["refit"]["snapshot_rows"]
    assert dataset["refit"]["rows"] >= sum(dataset["rows"].values())
    registered = load_model(f"models:/{settings.model_name}/{result.model_version}").model
    evaluation = evaluation_model(settings.model_name, result.model_version, result.run_id).model
    snap = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="test_snapshot.parquet"))
    p_eval = evaluation.predict_proba(snap)
    p_reg = registered.predict_proba(snap)
    assert not np.allclose(p_eval, p_reg)
    # the evaluation model reproduces the test metrics the run reports as its estimate
    from sklearn.metrics import roc_auc_score
    key = {"logistic": "baseline"}.get(result.chosen, result.chosen)
    assert roc_auc_score(snap["label"], p_eval) == pytest.approx(result.metrics[key]["roc_auc"])
    # the BG/NBD parameters the registered model scores with are fitted on the whole log
    assert registered.spec.btyd_params != evaluation.spec.btyd_params
    # calibrated on out-of-fold predictions: near the churn rate of what it learned from
    assert abs(p_reg.mean() - snap["label"].mean()) < 0.1


@pytest.mark.parametrize("kind", ["lightgbm", "logistic", "bgnbd", "lightgbm_bgnbd", "blend"])
def test_every_kind_of_model_has_contributions_that_add_up_to_its_score(shop_run, kind, tmp_path):
    result, _ = shop_run
    folder = Path(mlflow.artifacts.download_artifacts(run_id=result.run_id,
                                                      artifact_path="evaluation_model"))
    base = ChurnModel.load_folder(folder)
    snap = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="test_snapshot.parquet")).head(400)
    from training.candidates import fit_candidates
    from training.config import TrainConfig as Config
    config = Config.model_validate({"search": {"trials": 1}, "candidates": {"include": [kind]}})
    train_rows, val_rows = snap.iloc[:250], snap.iloc[250:]
    cands = fit_candidates(train_rows, train_rows["label"].to_numpy(), val_rows,
                           val_rows["label"].to_numpy(), base.spec, config)
    model = cands.winner.model
    assert model.kind == kind
    # it survives a save and a load, and explains every row exactly
    model.save(tmp_path / kind)
    model = ChurnModel.load_folder(tmp_path / kind)
    x = model.matrix(snap)
    contrib = model.contributions(x)
    np.testing.assert_allclose(contrib.sum(axis=1), model.raw_score(x), atol=1e-9)
    # a value that overflowed (a sum of huge amounts is infinite) still gives a number
    huge = x[:5].copy()
    huge[:, :-1] = np.where(np.arange(huge.shape[1] - 1) % 2, np.inf, -np.inf)
    assert np.isfinite(model.calibrate(model.raw_score(huge))).all()
    assert np.isfinite(model.contributions(huge)).all()
    if kind == "bgnbd":  # its whole story is the purchase rhythm
        names = model.feature_names
        moved = np.flatnonzero(np.abs(contrib[:, :-1]).sum(axis=0) > 0)
        assert [names[i] for i in moved] == ["btyd_p_inactive"]


def test_train_json_says_which_candidate_won(trained):
    body = trained.result
    assert body["chosen"] in body["candidates"] and body["candidates"][body["chosen"]]["chosen"]
    assert body["registered"] == "refit"
    uri = f"sqlite:///{trained.home / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    version = client.get_model_version("churn", body["model_version"])
    assert version.run_id == body["run_id"]
    assert "refitted on every labelled time" in version.description
    described = json.loads(mlflow.artifacts.load_text(f"runs:/{body['run_id']}/dataset.json"))
    assert described["chosen"]["candidate"] == body["chosen"]



@pytest.mark.parametrize(("rule", "leader", "standing", "seed", "says"), [
    ("prefer_blend", "lightgbm", "blend", 3, "LightGBM"),
    ("prefer_bgnbd", "lightgbm_bgnbd", "bgnbd", 4, "BG/NBD stands"),
])
def test_a_standing_candidate_stays_unless_beaten_beyond_noise(rule, leader, standing, seed, says):
    """A lead within the paired validation interval keeps the standing candidate (the blend,
    or BG/NBD), and says why; a lead beyond it registers the leader."""
    from training import candidates as module
    from training.candidates import Candidate

    prefer = getattr(module, rule)
    rng = np.random.default_rng(seed)
    n = 4000
    customers = np.array([f"c{i // 2}" for i in range(n)])
    signal = rng.normal(size=n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(2 * signal - 1)))).astype(int)
    cands = {name: Candidate(name, None, None, 0.0) for name in (leader, standing)}  # type: ignore[arg-type]
    tied = {leader: 2 * signal + rng.normal(0, 0.05, n), standing: 2 * signal}
    why = prefer(cands, leader, tied, y, customers, seed=0)
    assert why is not None and "within noise" in why and says in why
    ahead = {leader: 2 * signal, standing: signal + rng.normal(0, 1.5, n)}
    assert prefer(cands, leader, ahead, y, customers, seed=0) is None
    assert prefer(cands, standing, tied, y, customers, seed=0) is None
