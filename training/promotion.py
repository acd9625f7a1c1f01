"""Promotion: the champion gate over the MLflow registry, and the side-by-side run table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.contract import CUSTOMER_ID, load_tables
from features.engine import AS_OF, LABEL, feature_table
from scoring.settings import Settings
from scoring.store import LoadedModel, configure, load_model, version_by_alias

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class Promotion:
    candidate: str
    champion: str | None
    promoted: bool
    reason: str
    rows: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def _candidate_version(client: MlflowClient, name: str, version: str | None) -> str:
    if version is not None:
        try:
            return str(client.get_model_version(name, str(version)).version)
        except MlflowException:
            raise ValueError(f"--version: model {name!r} has no version {version}") from None
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None:
        return str(challenger.version)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ValueError(f"no version of model {name!r} is registered; run `churn train` first")
    return str(max(int(v.version) for v in versions))


def champion_features(champion: LoadedModel, snapshot: pd.DataFrame, dataset: dict) -> pd.DataFrame:
    """The snapshot's features as the champion defines them.

    Columns of the same name mean the same thing under one feature version, so the candidate's
    table is reused when it holds every column the champion needs; otherwise the features are
    rebuilt from the data files the candidate was trained on."""
    spec = champion.model.spec
    cand_version = dataset.get("feature_version", spec.version)
    if cand_version == spec.version and set(spec.feature_names) <= set(snapshot.columns):
        return snapshot
    tables = load_tables(dataset["customers_file"], dataset["events_file"])
    return feature_table(tables.customers, tables.events, spec, snapshot[[CUSTOMER_ID, AS_OF]])


def _score(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"roc_auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p))}


def promote(
    settings: Settings, version: str | None = None, force: bool = False,
    brier_tolerance: float = 0.002,
) -> Promotion:
    """Move `champion` to the candidate if it beats the champion on the candidate's test set.

    Both models are re-scored side by side here. The candidate wins with a higher ROC-AUC and
    a Brier score no worse than the champion's plus `brier_tolerance`. A loser keeps (or gets)
    the `challenger` alias. Moving `champion` is a single registry call."""
    configure(settings)
    client = MlflowClient()
    name = settings.model_name
    candidate = _candidate_version(client, name, version)
    current = version_by_alias(client, name, CHAMPION)
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, candidate)
        return Promotion(candidate, None, True, "there was no champion yet")
    if str(current.version) == candidate:
        return Promotion(candidate, candidate, False, "the candidate is already champion")

    run_id = client.get_model_version(name, candidate).run_id
    snapshot = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="test_snapshot.parquet")
    )
    dataset = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/dataset.json"))
    dataset["feature_version"] = mlflow.get_run(run_id).data.params.get("feature_version")
    cand = load_model(f"models:/{name}/{candidate}")
    champ = load_model(f"models:/{name}/{current.version}")
    y = snapshot[LABEL].to_numpy()
    scores = {
        "candidate": _score(y, cand.model.predict_proba(snapshot)),
        "champion": _score(y, champ.model.predict_proba(champion_features(champ, snapshot, dataset))),
    }
    c, h = scores["candidate"], scores["champion"]
    wins = c["roc_auc"] > h["roc_auc"] and c["brier"] <= h["brier"] + brier_tolerance
    if wins:
        reason = "higher ROC-AUC and Brier within tolerance"
    elif c["roc_auc"] <= h["roc_auc"]:
        reason = "ROC-AUC not higher than the champion's"
    else:
        reason = f"Brier worse than the champion's by more than {brier_tolerance}"
    promoted = wins or force
    if force and not wins:
        reason = f"forced ({reason})"
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, candidate)
        challenger = version_by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == candidate:
            client.delete_registered_model_alias(name, CHALLENGER)
    else:
        client.set_registered_model_alias(name, CHALLENGER, candidate)
    client.set_model_version_tag(name, candidate, "promotion", json.dumps({
        "against": str(current.version), "promoted": promoted, "reason": reason, **{
            f"{who}_{k}": v for who, s in scores.items() for k, v in s.items()}}))
    return Promotion(candidate, str(current.version), promoted, reason, len(y), scores)


def compare(settings: Settings, experiment: str | None = None) -> pd.DataFrame:
    """One row per `churn train` run, newest first, with key test metrics and champion flag."""
    configure(settings)
    name = experiment or settings.experiment
    if mlflow.get_experiment_by_name(name) is None:
        raise ValueError(f"--experiment: no experiment named {name!r}")
    runs = mlflow.search_runs(experiment_names=[name],
                              filter_string="tags.`churn.kind` = 'train'",
                              order_by=["start_time DESC"])
    if runs.empty:
        return pd.DataFrame()
    champion = version_by_alias(MlflowClient(), settings.model_name, CHAMPION)
    champ_version = str(champion.version) if champion is not None else None

    def col(key: str) -> pd.Series:
        return runs[key] if key in runs else pd.Series([np.nan] * len(runs))

    version = col("tags.churn.model_version").astype(str)
    return pd.DataFrame({
        "run": runs["run_id"].str[:8],
        "started": pd.to_datetime(runs["start_time"]).dt.strftime("%Y-%m-%d %H:%M"),
        "data": runs["params.events_file"].map(lambda p: str(p).rsplit("/", 2)[-2:][0]
                                               if isinstance(p, str) else ""),
        "label": col("params.label"),
        "horizon": col("params.horizon_days"),
        "test_rows": col("metrics.rows_test").fillna(0).astype(int),
        "lgbm_auc": col("metrics.lightgbm_test_roc_auc"),
        "auc_ci": [f"{lo:.3f}-{hi:.3f}" if np.isfinite(lo) else "" for lo, hi in zip(
            col("metrics.lightgbm_test_roc_auc_ci_low"),
            col("metrics.lightgbm_test_roc_auc_ci_high"), strict=True)],
        "baseline_auc": col("metrics.baseline_test_roc_auc"),
        "lgbm_brier": col("metrics.lightgbm_test_brier"),
        "lift@10%": col("metrics.lightgbm_test_lift_top10"),
        "version": version,
        "champion": ["yes" if v == champ_version else "" for v in version],
    })
