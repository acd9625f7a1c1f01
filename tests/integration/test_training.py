"""`churn train`, `promote`, `compare` and `score` against a real MLflow store."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from scoring.store import load_model
from tests.helpers import Trained, churn_env, copy_store

TABLE_WIDTH = 100
BOX = set("┏┃┡│└")  # a line of a rich table starts with one of these

PLOTS = ["roc", "pr", "calibration", "lift_gain", "feature_importance", "shap_summary",
         "profit_curve"]


def child_runs(parent_id: str) -> dict[str, mlflow.entities.Run]:
    """The candidates' runs under a training run (campaign reports nest there too, later)."""
    parent = mlflow.get_run(parent_id)
    runs = MlflowClient().search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {r.info.run_name: r for r in runs if r.data.tags.get("churn.kind") != "campaign"}


def test_first_model_is_registered_as_champion(trained):
    assert trained.result["model_version"] == "1"
    assert trained.result["aliases"] == ["champion"]
    mv = MlflowClient().get_model_version_by_alias("churn", "champion")
    assert str(mv.version) == "1"


def test_artifacts_live_beside_the_embedded_store(trained):
    exp = mlflow.get_experiment_by_name("churn")
    assert exp.artifact_location == (trained.home / "mlruns" / "artifacts").resolve().as_uri()
    assert any((trained.home / "mlruns" / "artifacts").rglob("MLmodel"))


def test_the_experiment_opens_as_model_training_in_the_mlflow_ui(trained):
    # MLflow 3.17's UI reads this tag (ExperimentKind); without it the GenAI view opens
    tags = mlflow.get_experiment_by_name("churn").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_train_says_how_every_column_is_used(trained, tmp_path):
    """`churn train` prints what `features` and `score` print: how each column is used, and
    which are left out and why (here a text column read as a point of contact and one named
    like a time, which is ignored)."""
    notes = trained.result["dataset"]["notes"]
    assert ("columns used: events: amount as numbers; customers: seats as numbers; plan, "
            "contract, country as categories; date_of_birth as dates (days before the "
            "observation time)") in notes
    events = pd.read_parquet(trained.events)
    events = events.assign(store=events["customer_id"].map(lambda c: f"store {c % 5}"),
                           sent_at=events["timestamp"].astype(str))
    events.to_parquet(tmp_path / "events.parquet", index=False)
    home = tmp_path / "home"  # a store of its own: the shared one's versions stay as they are
    home.mkdir()
    proc = Trained(home, trained.data, churn_env(home), {}).churn(
        "train", "--customers", str(trained.customers), "--events",
        str(tmp_path / "events.parquet"), "--label", "explicit", "--horizon", "30", "--config",
        str(trained.home / "weak.toml"))
    said = " ".join(proc.stderr.split())
    assert "column 'store' is text: read as a point of contact" in said, said
    assert "column 'sent_at' is not numeric and is ignored" in said, said
    assert "columns used: events: amount as numbers; store as points of contact;" in said, said


def test_parent_run_is_named_described_and_carries_config_metrics_and_datasets(trained):
    parent = mlflow.get_run(trained.result["run_id"])
    assert parent.info.run_name.startswith("data to 2026-")
    assert parent.info.run_name.endswith(" · explicit 30d · fast")
    params = parent.data.params
    assert params["search.trials"] == "2" and params["lightgbm.num_leaves"] == "15"
    assert {"chosen.num_leaves", "best_iteration", "offer.cost", "offer.value_column"} <= set(params)
    for key in ("roc_auc", "pr_auc", "brier", "lift_top10"):
        assert f"lightgbm_test_{key}" in parent.data.metrics
    # the version's own test metrics (its chosen candidate's), the campaign's among them
    for key in ("roc_auc", "brier", "campaign_realised_profit"):
        assert f"test_{key}" in parent.data.metrics
    # fast.toml changes two keys of the default (its num_threads = 2 is the default's)
    assert json.loads(parent.data.tags["churn.config_changes"]) == {"bootstrap": 50,
                                                                    "search.trials": 2}
    note = parent.data.tags["mlflow.note.content"]
    assert "`search.trials` = 2" in note and "`bootstrap` = 50" in note
    assert "expected profit" in note and "realised profit" in note
    inputs = {d.tags[0].value: d.dataset for d in parent.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    for split, ds in inputs.items():
        assert ds.digest and ds.name.endswith(f" · {split}")
        assert json.loads(ds.source)["uri"] == str(trained.events.resolve())
        assert json.loads(ds.profile)["num_rows"] == trained.result["dataset"]["rows"][split]


def test_each_registered_version_has_a_description(trained):
    text = MlflowClient().get_model_version("churn", "1").description
    assert "explicit" in text and "ROC-AUC" in text and "PR-AUC" in text
    assert "champion" in text and "no promotion gate ran" in text


def _locations(home: Path) -> list[str]:
    """Every artifact location the store keeps: experiments, runs, logged models, versions."""
    db = sqlite3.connect(home / "mlruns" / "mlflow.db")
    try:
        return [v for sql in ("SELECT artifact_location FROM experiments",
                              "SELECT artifact_uri FROM runs",
                              "SELECT artifact_location FROM logged_models",
                              "SELECT storage_location FROM model_versions")
                for (v,) in db.execute(sql)]
    finally:
        db.close()


def _files(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


def test_a_copied_store_trains_under_its_new_root(trained, tmp_path):
    """Copy mlruns/ elsewhere, point CHURN_HOME at the copy and train: everything new lands
    under the copy, nothing in the original changes."""
    old = trained.home / "mlruns"
    new_home = tmp_path / "moved"
    copy_store(old, new_home / "mlruns", skip=())
    before = {p: (old / p).stat().st_mtime_ns for p in _files(old)}
    moved = Trained(new_home, trained.data, churn_env(new_home), {})
    proc = moved.churn("train", "--customers", str(trained.customers), "--events",
                       str(trained.events), "--label", "explicit", "--horizon", "30",
                       "--config", str(trained.home / "weak.toml"))
    assert "the store was moved" in proc.stderr and str(new_home / "mlruns") in proc.stderr
    # the text output labels the campaign's expected and realised profit apart
    assert "expected" in proc.stdout and "realised" in proc.stdout
    assert "who really churned" in proc.stdout
    run_id = re.search(r"^run ([0-9a-f]{32}) ", proc.stdout, re.MULTILINE).group(1)

    new_root = (new_home / "mlruns").resolve()
    locations = _locations(new_home)
    assert locations and all(str(old) not in v for v in locations), locations
    assert all(str(new_root) in v for v in locations if "/mlruns/" in v)
    assert (new_root / "artifacts" / run_id).is_dir()
    uri = f"sqlite:///{new_root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    newest = max(client.search_model_versions("name='churn'"), key=lambda v: int(v.version))
    assert newest.run_id != trained.result["model_run_id"]
    stored = Path(client.get_model_version_download_uri("churn", newest.version)
                  .removeprefix("file://"))
    assert stored.is_relative_to(new_root) and (stored / "MLmodel").exists()
    # the original: the same files, untouched, and no trace of the new run
    assert {p: (old / p).stat().st_mtime_ns for p in _files(old)} == before
    assert not (old / "artifacts" / run_id).exists()


def test_a_store_copied_without_its_artifacts_is_refused_in_one_line(trained, tmp_path):
    home = tmp_path / "half"
    (home / "mlruns").mkdir(parents=True)
    shutil.copy(trained.home / "mlruns" / "mlflow.db", home / "mlruns" / "mlflow.db")
    proc = Trained(home, trained.data, churn_env(home), {}).churn("compare", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "copy the whole mlruns/ folder" in proc.stderr and str(trained.home) in proc.stderr


def test_lightgbm_beats_the_baseline_on_test(trained):
    m = trained.result["metrics"]
    assert m["lightgbm"]["roc_auc"] > m["baseline"]["roc_auc"]
    assert m["lightgbm"]["pr_auc"] > m["baseline"]["pr_auc"]
    # a useful but honest model: clearly above chance, clearly below perfect
    assert 0.65 < m["lightgbm"]["roc_auc"] < 0.95
    for key in ("brier", "log_loss", "lift_top10", "capture_top10", "ece", "base_rate", "rows"):
        assert np.isfinite(m["lightgbm"][key]) and np.isfinite(m["baseline"][key])


def test_calibrated_probabilities_match_the_churn_rate(trained):
    m = trained.result["metrics"]["lightgbm"]
    assert abs(m["mean_predicted"] - m["base_rate"]) < 0.5 * m["base_rate"]
    assert m["ece"] < 0.03


def test_parent_run_has_nested_lightgbm_and_baseline_runs(trained):
    children = child_runs(trained.result["run_id"])
    assert set(children) == {"lightgbm", "baseline"}
    lgbm = children["lightgbm"]
    assert lgbm.data.params["lightgbm.num_leaves"]  # the whole config is logged
    assert lgbm.data.params["split.test_times"] == "2"
    assert "test_roc_auc" in lgbm.data.metrics and "test_roc_auc_ci_low" in lgbm.data.metrics
    dataset = json.loads(mlflow.artifacts.load_text(f"runs:/{lgbm.info.run_id}/dataset.json"))
    assert dataset["label"] == "explicit" and dataset["horizon_days"] == 30
    times = dataset["observation_times"]
    assert max(times["train"]) < min(times["validation"]) < min(times["test"])


def test_plots_and_shap_artifacts_exist(trained):
    for name, run in child_runs(trained.result["run_id"]).items():
        client = MlflowClient()
        plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        expected = PLOTS if name == "lightgbm" else PLOTS[:5]
        assert {f"plots/{p}.png" for p in expected} <= plots
    lgbm = child_runs(trained.result["run_id"])["lightgbm"].info.run_id
    shap = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=lgbm, artifact_path="shap_contributions.parquet"))
    assert {"customer_id", "as_of", "base_value", "reason_1_text"} <= set(shap.columns)
    importance = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=lgbm, artifact_path="shap_importance.csv"))
    assert importance["mean_abs_shap"].is_monotonic_decreasing


def test_logged_model_has_a_signature_and_returns_probabilities(trained):
    info = mlflow.models.get_model_info("models:/churn@champion")
    assert info.signature is not None
    assert info.signature.outputs.input_names() == ["churn_probability"]


def _test_snapshot(trained) -> tuple[pd.DataFrame, pd.DataFrame]:
    snap = pd.read_parquet(mlflow.artifacts.download_artifacts(  # beside the registered model
        run_id=trained.result["run_id"], artifact_path="test_snapshot.parquet"))
    preds = pd.read_parquet(mlflow.artifacts.download_artifacts(  # beside the registered model
        run_id=trained.result["run_id"], artifact_path="test_predictions.parquet"))
    return snap, preds


def test_champion_reproduces_the_logged_test_predictions(trained):
    snap, preds = _test_snapshot(trained)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    names = model.metadata.get_input_schema().input_names()
    got = model.predict(snap[names])["churn_probability"].to_numpy()
    # the registered model is the refit; its probabilities on the test rows are logged beside
    # the evaluation models' (churn_probability: LightGBM's, fitted on the training times only)
    np.testing.assert_allclose(got, preds["registered_probability"].to_numpy(), rtol=0, atol=1e-12)
    assert ((got > 0) & (got < 1)).all()


def test_shap_contributions_plus_base_value_equal_the_raw_score(trained):
    snap, _ = _test_snapshot(trained)
    pyfunc = mlflow.pyfunc.load_model("models:/churn@champion")
    names = pyfunc.metadata.get_input_schema().input_names()
    contrib = pyfunc.predict(snap[names].head(300), params={"output": "contributions"})
    assert list(contrib.columns[-1:]) == ["base_value"]
    model = load_model("models:/churn@champion").model
    raw = model.raw_score(model.matrix(snap.head(300)))
    np.testing.assert_allclose(contrib.sum(axis=1).to_numpy(), raw, atol=1e-9)


def test_the_gate_rebuilds_champion_features_missing_from_the_candidates_table(trained):
    """A champion whose columns the candidate's table lacks gets them from the data files."""
    from training.promotion import champion_features, evaluation_record

    snap, _ = _test_snapshot(trained)
    champ = load_model("models:/churn/1")
    record = evaluation_record(MlflowClient(), "churn", "1")
    assert champion_features(champ, snap, record) is snap  # nothing missing: reused as it is
    dropped = ["n_events_30d", "days_since_last_event"]
    rebuilt = champion_features(champ, snap.drop(columns=dropped), record)
    assert set(dropped) <= set(rebuilt.columns)
    # the model sees the same inputs from the rebuilt table as from the logged one
    np.testing.assert_allclose(champ.model.matrix(rebuilt), champ.model.matrix(snap), rtol=1e-9)


def test_promotion_gate_keeps_a_better_champion_unless_forced(trained):
    proc = trained.churn("train", "--customers", str(trained.customers), "--events",
                         str(trained.events), "--label", "explicit", "--horizon", "30",
                         "--config", "weak.toml", "--json")
    weak = json.loads(proc.stdout)
    assert weak["aliases"] == ["challenger"]
    client = MlflowClient()

    gate = trained.churn("promote")
    assert "not promoted" in gate.stdout and "ROC-AUC" in gate.stdout
    assert "95% interval (paired)" in gate.stdout and "lies below zero" in gate.stdout
    tag = json.loads(client.get_model_version("churn", weak["model_version"]).tags["promotion"])
    assert tag["promoted"] is False and tag["against"] == "1" and tag["level"] == 0.95
    assert tag["roc_auc_difference_high"] < 0 < tag["rows"]
    low, mid, high = (tag[f"roc_auc_difference_{k}"] for k in ("low", "estimate", "high"))
    assert low <= mid <= high
    assert tag["times"] and all(len(t) == 10 for t in tag["times"])  # YYYY-MM-DD test times
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("churn", "challenger").version) == weak["model_version"]
    # the table fits 100 columns on a wide terminal; the decision is in the version's words
    table = [line for line in gate.stdout.splitlines() if line[:1] in BOX]
    assert table and max(map(len, table)) <= TABLE_WIDTH, gate.stdout
    described = client.get_model_version("churn", weak["model_version"]).description
    assert "Registered as **challenger**" in described
    assert "not promoted against version 1" in described and "lies below zero" in described

    decided = json.loads(trained.churn("promote", "--json").stdout)
    assert decided["candidate"] == weak["model_version"] and decided["champion"] == "1"
    assert decided["promoted"] is False and "lies below zero" in decided["reason"]
    assert decided["rows"] > 0 and decided["times"] == tag["times"]
    assert decided["scores"]["candidate"]["roc_auc"] < decided["scores"]["champion"]["roc_auc"]
    roc = decided["differences"]["roc_auc"]
    assert roc["low"] <= roc["estimate"] <= roc["high"] < 0

    forced = trained.churn("promote", "--version", weak["model_version"], "--force")
    assert "promoted to champion" in forced.stdout and "forced" in forced.stdout
    assert str(client.get_model_version_by_alias("churn", "champion").version) == weak["model_version"]

    # the better model wins its way back
    back = trained.churn("promote", "--version", "1")
    assert "version 1: promoted to champion" in back.stdout
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"

    listing = trained.churn("compare", "--json")
    runs = json.loads(listing.stdout)["runs"]
    assert len(runs) >= 2
    assert [r["version"] for r in runs if r["champion"]] == ["1"]
    by_version = {r["version"]: r for r in runs}
    assert by_version["1"]["config"] == "fast" and by_version[weak["model_version"]]["config"] == "weak"
    assert by_version[weak["model_version"]]["config_changes"]["lightgbm.max_rounds"] == 1
    first = by_version["1"]
    assert first["run_id"] == trained.result["run_id"] and first["label"] == "explicit"
    chosen = {"logistic": "baseline"}.get(trained.result["chosen"], trained.result["chosen"])
    assert first["pr_auc"] == pytest.approx(trained.result["metrics"][chosen]["pr_auc"])
    assert first["roc_auc_ci_low"] < first["roc_auc"] < first["roc_auc_ci_high"]

    env = {**trained.env, "COLUMNS": "300"}  # a wide terminal: the table's own width shows
    shown = Trained(trained.home, trained.data, env, {}).churn("compare").stdout
    lines = shown.rstrip().splitlines()
    assert max(map(len, lines)) <= TABLE_WIDTH, shown
    assert "PR-AUC" in shown and "config" in shown and "1 ★" in shown and "weak" in shown


def test_promote_an_unknown_version_fails_cleanly(trained):
    proc = trained.churn("promote", "--version", "999", check=False)
    assert proc.returncode == 2
    assert "no version 999" in proc.stderr and "Traceback" not in proc.stderr


def test_score_writes_probabilities_reasons_and_targeting(trained):
    out = trained.home / "scores.parquet"
    trained.churn("score", "--customers", str(trained.customers), "--events", str(trained.events),
                  "--as-of", "2026-06-15", "--out", str(out), "--value-column", "amount_sum_30d")
    scores = pd.read_parquet(out)
    expected = {"customer_id", "churn_probability", "risk_band", "model_version",
                "expected_value_at_risk", "contact"}
    expected |= {f"reason_{i}_{k}" for i in (1, 2, 3) for k in ("feature", "contribution", "text")}
    assert expected <= set(scores.columns)
    assert scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_band"]) <= {"low", "medium", "high"}
    # reasons raise the risk: positive contributions, largest first, None when fewer apply
    with_reason = scores["reason_1_text"].notna()
    assert with_reason.mean() > 0.9 and scores.loc[with_reason, "reason_1_text"].str.len().gt(0).all()
    assert (scores["reason_1_contribution"].dropna() > 0).all()
    both = scores["reason_2_contribution"].notna()
    assert (scores.loc[both, "reason_1_contribution"] >= scores.loc[both, "reason_2_contribution"]).all()


@pytest.mark.parametrize("args, message", [
    (["--model", "models:/churn/999"], "--model"),
    (["--as-of", "not a date"], "--as-of"),
])
def test_score_failure_leaves_no_output(trained, args, message):
    out = trained.home / "never.parquet"
    base = {"--customers": str(trained.customers), "--events": str(trained.events),
            "--as-of": "2026-06-15", "--out": str(out)}
    base.update(dict(zip(args[::2], args[1::2])))
    proc = trained.churn("score", *[x for kv in base.items() for x in kv], check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("label", ["explicit", "inactivity"])
def test_snapshots_and_score_see_the_same_customers(trained, label):
    """The population test, through the CLI as a user runs it: at a snapshot time, `churn
    snapshots` labels exactly the customers `churn score` scores."""
    snaps_path = trained.home / f"snaps-{label}.parquet"
    trained.churn("snapshots", "--customers", str(trained.customers), "--events",
                  str(trained.events), "--label", label, "--horizon", "30", "--out",
                  str(snaps_path))
    snaps = pd.read_parquet(snaps_path)
    t = pd.Timestamp(snaps["as_of"].max())
    scores_path = trained.home / f"scores-{label}.parquet"
    trained.churn("score", "--customers", str(trained.customers), "--events", str(trained.events),
                  "--as-of", str(t), "--out", str(scores_path))
    scored = set(pd.read_parquet(scores_path)["customer_id"].astype(str))
    labelled = set(snaps.loc[snaps["as_of"] == t, "customer_id"].astype(str))
    assert labelled == scored and len(scored) > 1000


@pytest.mark.parametrize(("kind", "label", "horizon", "days"), [
    ("retail", "inactivity", 91, 150),  # a shop whose log began five months ago
    ("subscription", "explicit", 31, 120),  # four months of a subscription product
])
def test_the_default_command_trains_on_a_short_log(trained, tmp_path, kind, label, horizon, days):
    """No cadence, no config beyond fewer resamples and no search (neither is checked here):
    the cadence and the split schemes are chosen from the log and recorded; a shop run carries
    the BG/NBD baseline."""
    data = tmp_path / kind
    (tmp_path / "short.toml").write_text("bootstrap = 50\n[search]\ntrials = 0\n")
    trained.churn("generate", "--customers", "2500", "--seed", "2", "--kind", kind,
                  "--history-days", str(days), "--out", str(data))
    proc = trained.churn("train", "--customers", str(data / "customers.parquet"), "--events",
                         str(data / "events.parquet"), "--label", label, "--horizon", str(horizon),
                         "--experiment", f"short-{kind}", "--config", str(tmp_path / "short.toml"),
                         "--json")
    result = json.loads(proc.stdout)
    dataset = result["dataset"]
    assert dataset["cadence_chosen"].startswith("automatically") and dataset["cadence_days"] == 7
    assert dataset["log_days"] <= days + 1
    assert dataset["validation_scheme"] == "customer_groups" and dataset["notes"]
    if label == "inactivity":  # 150 days hold no time a 91-day horizon before the latest
        assert dataset["test_scheme"] == "customer_groups"
        assert "bgnbd" in result["metrics"]
        assert 0.5 < result["metrics"]["bgnbd"]["roc_auc"] < 1
    else:
        assert dataset["test_scheme"] == "time" and dataset["observation_times"]["test"]
    assert 0.5 < result["metrics"]["lightgbm"]["roc_auc"] < 1
    assert result["metrics"]["lightgbm"]["roc_auc_ci_low"] < result["metrics"]["lightgbm"]["roc_auc"]
