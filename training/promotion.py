"""Promotion: the champion gate over the MLflow registry, and the side-by-side run table."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.contract import CUSTOMER_ID
from features.engine import feature_table
from features.observations import LABEL
from features.relations import AS_OF
from features.tables import load_tables
from scoring.artifact import ChurnModel
from scoring.settings import Settings
from scoring.store import (
    LoadedModel,
    check_complete,
    configure,
    incomplete_reason,
    load_model,
    store_lock,
    version_by_alias,
)
from training.intervals import Interval, paired_difference
from training.tracking import fail_abandoned_runs

CHAMPION, CHALLENGER = "champion", "challenger"


class ChampionMoved(RuntimeError):
    """The champion alias moved between the gate reading it and the decision being applied, so
    the decision was made against a model that is no longer champion. A runtime conflict, not
    a usage error: promoting again decides against the new champion."""


@dataclass
class Promotion:
    """The gate's decision, with the evidence it was made on."""

    candidate: str
    champion: str | None
    promoted: bool
    reason: str
    level: float = 0.95
    rows: int = 0
    customers: int = 0
    times: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    # candidate minus champion on the same rows, with paired customer-bootstrap intervals
    differences: dict[str, Interval] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        """What the registry tag keeps: the decision, the reason and every interval."""
        return {
            "against": self.champion, "promoted": self.promoted, "reason": self.reason,
            "level": self.level, "rows": self.rows, "customers": self.customers,
            "times": self.times,
            **{f"{who}_{k}": v for who, s in self.scores.items() for k, v in s.items()},
            **{f"{m}_difference_{part}": getattr(iv, part) for m, iv in self.differences.items()
               for part in ("estimate", "low", "high")},
        }

    def summary(self) -> dict[str, object]:
        """The decision as `churn promote --json` prints it."""
        return {
            "candidate": self.candidate, "champion": self.champion, "promoted": self.promoted,
            "reason": self.reason, "level": self.level, "rows": self.rows,
            "customers": self.customers, "times": self.times, "scores": self.scores,
            "differences": {m: {"estimate": iv.estimate, "low": iv.low, "high": iv.high}
                            for m, iv in self.differences.items()},
        }

    def in_words(self) -> str:
        """The decision as a sentence for the version's description."""
        against = "no champion" if self.champion is None else f"version {self.champion}"
        verdict = "promoted to champion" if self.promoted else "not promoted"
        where = (f" on {self.rows:,} test rows ({self.customers:,} customers) at "
                 f"{', '.join(self.times)}" if self.rows else "")
        return f"{verdict} against {against}{where}: {self.reason}."


def _candidate_version(client: MlflowClient, name: str, version: str | None) -> str:
    """`version`, else the challenger, else the latest complete version; a version that is not
    complete (a killed `churn train`'s) is refused in one line, --force or not."""
    if version is not None:
        try:
            mv = client.get_model_version(name, str(version))
        except MlflowException:
            raise ValueError(f"--version: model {name!r} has no version {version}") from None
        reason = incomplete_reason(mv)
        if reason is not None:
            raise ValueError(f"--version: {reason}")
        return str(mv.version)
    challenger = version_by_alias(client, name, CHALLENGER)
    if challenger is not None:
        check_complete(challenger)
        return str(challenger.version)
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ValueError(f"no version of model {name!r} is registered; run `churn train` first")
    complete = [v for v in versions if incomplete_reason(v) is None]
    if not complete:
        raise ValueError(f"no version of model {name!r} is complete (every one is a training "
                         "run that did not finish); run `churn train`")
    return str(max(int(v.version) for v in complete))


def champion_features(champion: LoadedModel, snapshot: pd.DataFrame, dataset: dict) -> pd.DataFrame:
    """The snapshot's features as the champion defines them.

    Columns of the same name mean the same thing under one feature version, so the candidate's
    table is reused when it holds every column the champion needs; otherwise the features are
    rebuilt from the data files the candidate was trained on."""
    spec = champion.model.spec
    if dataset.get("feature_version") == spec.version and set(spec.feature_names) <= set(snapshot.columns):
        return snapshot
    tables = load_tables(dataset["customers_file"], dataset["events_file"],
                         date_format=dataset.get("date_format"))
    return feature_table(tables.customers, tables.events, spec, snapshot[[CUSTOMER_ID, AS_OF]])


def evaluation_record(client: MlflowClient, name: str, version: str) -> dict:
    """What a registered version was trained and evaluated on (its run's dataset.json) and its
    feature version."""
    run_id = client.get_model_version(name, version).run_id
    dataset = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/dataset.json"))
    dataset["feature_version"] = mlflow.get_run(run_id).data.params.get("feature_version")
    dataset["run_id"] = run_id
    return dataset


def evaluation_model(name: str, version: str, run_id: str) -> LoadedModel:
    """The model a version was evaluated as: fitted on its training times only. A version whose
    registered model is a refit keeps it beside the model (evaluation_model/ in its run); the
    gate compares these, so neither side has trained on the rows it is judged on. A version
    registered without a refit is its own evaluation model."""
    loaded = load_model(f"models:/{name}/{version}")
    try:
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation_model")
    except (MlflowException, OSError):
        return loaded
    return replace(loaded, model=ChurnModel.load_folder(Path(folder)))


# the files a version was trained on (its run's dataset.json) name the data it belongs to
DATA_FILES = ("customers_file", "events_file")


def other_data_problem(candidate: dict, champion: dict) -> str | None:
    """Why the champion cannot judge the candidate because it was trained on other data (other
    customers and events files), in one line; None when the files are the same (a re-export
    written over the same files counts as the same data) or a record does not name them."""
    if not all(candidate.get(k) and champion.get(k) for k in DATA_FILES):
        return None
    if all(str(candidate[k]) == str(champion[k]) for k in DATA_FILES):
        return None
    return (f"champion was trained on other data ({champion['events_file']}, not "
            f"{candidate['events_file']}); give each dataset a model of its own with "
            "--model-name or CHURN_MODEL_NAME")


def comparability_problems(candidate: dict, champion: dict) -> list[str]:
    """Why the two models answer different questions: other data, label, horizon or feature
    version."""
    other = other_data_problem(candidate, champion)
    problems = [other] if other else []
    for key, what in (("label", "label"), ("horizon_days", "horizon (days)"),
                      ("feature_version", "feature version")):
        if str(candidate.get(key)) != str(champion.get(key)):
            problems.append(f"{what} differs: candidate {candidate.get(key)}, "
                            f"champion {champion.get(key)}")
    return problems


def comparison_times(candidate: dict, champion: dict) -> list[str]:
    """The candidate's test times that neither model trained, validated or calibrated on: every
    training and validation label window of both ends at or before the time."""
    horizon = pd.Timedelta(days=int(candidate["horizon_days"]))
    seen = [pd.Timestamp(t) for record in (candidate, champion)
            for split in ("train", "validation") for t in record["observation_times"][split]]
    last_seen = max(seen) + horizon if seen else pd.Timestamp.min
    return [t for t in candidate["observation_times"]["test"] if pd.Timestamp(t) >= last_seen]


def decide(differences: dict[str, Interval], level: float) -> tuple[bool, str]:
    """Promote only when the ROC-AUC gain's interval lies above zero and the Brier score is not
    worse beyond its own interval."""
    auc, brier = differences["roc_auc"], differences["brier"]
    pct = f"{level:.0%}"
    auc_text = f"ROC-AUC {auc.estimate:+.4f} [{auc.low:+.4f}, {auc.high:+.4f}]"
    brier_text = f"Brier {brier.estimate:+.4f} [{brier.low:+.4f}, {brier.high:+.4f}]"
    if not auc.low > 0:
        why = "lies below zero" if auc.high < 0 else "includes zero: the gain may be noise"
        return False, f"the {pct} interval of the gain in {auc_text} {why}"
    if brier.low > 0:
        return False, f"{auc_text} is a real gain, but {brier_text} is worse beyond its {pct} interval"
    return True, f"{auc_text} lies above zero at {pct}, and {brier_text} is no worse beyond noise"


def promote(settings: Settings, version: str | None = None, force: bool = False,
            level: float | None = None) -> Promotion:
    """Move `champion` to the candidate only if it beats the champion on the same rows.

    The rows are the candidate's test snapshot at the times neither model trained, validated
    or calibrated on; both models must answer the same question (label, horizon, feature
    version). The decision uses paired, customer-clustered bootstrap intervals of the ROC-AUC
    and Brier differences at `level`. A loser keeps (or gets) the `challenger` alias; `--force`
    promotes anyway and says so. Every decision, refusals included, is tagged on the version.
    The decision is applied only if the champion is still the one it was made against;
    otherwise ChampionMoved, and nothing is moved or tagged."""
    configure(settings)
    fail_abandoned_runs()
    level = settings.promotion_level if level is None else level
    client = MlflowClient()
    name = settings.model_name
    candidate = _candidate_version(client, name, version)
    champion = _champion(client, name)
    if champion == candidate:
        return Promotion(candidate, candidate, False, "the candidate is already champion", level)
    if champion is None:
        result = Promotion(candidate, None, True, "there was no champion yet", level)
    else:
        result = _judge(client, name, candidate, champion, level)
        if force and not result.promoted:
            result.promoted, result.reason = True, f"forced ({result.reason})"
    return _apply_unless_moved(settings, client, name, result)


def champion_on_other_data(settings: Settings, version: str) -> str | None:
    """Why `churn promote` will not judge a newly registered version against the champion of
    its model because the champion was trained on other data, or None."""
    configure(settings)
    client, name = MlflowClient(), settings.model_name
    champion = _champion(client, name)
    if champion is None or champion == str(version):
        return None
    problem = other_data_problem(evaluation_record(client, name, str(version)),
                                 evaluation_record(client, name, champion))
    if problem is None:
        return None
    return problem.replace("champion", f"{name}'s champion (version {champion})", 1)


def _champion(client: MlflowClient, name: str) -> str | None:
    current = version_by_alias(client, name, CHAMPION)
    return None if current is None else str(current.version)


def initial_alias(settings: Settings, version: str) -> list[str]:
    """A newly registered version's alias: the first model ever registered becomes champion;
    later ones start as challenger (`promote` decides). Under the store lock, else two first
    runs finishing together both find no champion and both report being it."""
    client, name = MlflowClient(), settings.model_name
    with store_lock(settings):
        alias = CHAMPION if _champion(client, name) is None else CHALLENGER
        client.set_registered_model_alias(name, alias, version)
        return [alias]


def _apply_unless_moved(settings: Settings, client: MlflowClient, name: str, result: Promotion
                        ) -> Promotion:
    """Compare and set: apply the decision only if the champion is still the one it was made
    against. The store lock is held from the re-read through the alias move, so of two promotes
    that read the same champion only the first moves it; the second finds it moved and raises
    ChampionMoved, or, if it was moved to the same candidate, says it is already champion."""
    with store_lock(settings):
        now = _champion(client, name)
        if now == result.candidate:
            return Promotion(result.candidate, now, False,
                             "the candidate is already champion (another promote moved it "
                             "there while this one decided)", result.level)
        if now != result.champion:
            raise ChampionMoved(f"champion moved from {_named(result.champion)} to "
                                f"{_named(now)} while deciding; run promote again")
        _apply(client, name, result)
    return result


def _named(version: str | None) -> str:
    return "no version" if version is None else f"version {version}"


def _judge(client: MlflowClient, name: str, candidate: str, champion: str, level: float
           ) -> Promotion:
    cand_rec = evaluation_record(client, name, candidate)
    champ_rec = evaluation_record(client, name, champion)
    problems = comparability_problems(cand_rec, champ_rec)
    if problems:
        return Promotion(candidate, champion, False,
                         "not comparable: " + "; ".join(problems), level)
    if not cand_rec["observation_times"]["test"]:
        return Promotion(candidate, champion, False,
                         "the candidate has no out-of-time test (its log was too short for one); "
                         "train it on a longer log", level)
    times = comparison_times(cand_rec, champ_rec)
    if not times:
        return Promotion(
            candidate, champion, False,
            "no test time of the candidate is free of both models' training and validation "
            "labels (the champion may have been trained on later data); train the candidate on "
            "a newer export", level)
    snapshot = pd.read_parquet(mlflow.artifacts.download_artifacts(
        run_id=cand_rec["run_id"], artifact_path="test_snapshot.parquet"))
    snapshot = snapshot[snapshot[AS_OF].isin(pd.to_datetime(times))].reset_index(drop=True)
    cand = evaluation_model(name, candidate, cand_rec["run_id"])
    champ = evaluation_model(name, champion, champ_rec["run_id"])
    y = snapshot[LABEL].to_numpy()
    p_cand = cand.model.predict_proba(snapshot)
    p_champ = champ.model.predict_proba(champion_features(champ, snapshot, cand_rec))
    customers = snapshot[CUSTOMER_ID].to_numpy()
    result = Promotion(candidate, champion, False, "", level, len(y), len(np.unique(customers)),
                       times)
    if len(np.unique(y)) < 2:
        result.reason = "the comparison rows hold only one class; a gate cannot rank on them"
        return result
    result.scores = {who: {"roc_auc": float(roc_auc_score(y, p)), "brier": float(brier_score_loss(y, p))}
                     for who, p in (("candidate", p_cand), ("champion", p_champ))}
    result.differences = {k: v for k, v in paired_difference(y, p_cand, p_champ, customers,
                                                             level=level).items()
                          if k in ("roc_auc", "brier")}
    result.promoted, result.reason = decide(result.differences, level)
    return result


def _apply(client: MlflowClient, name: str, result: Promotion) -> None:
    """Move the aliases and tag the decision on the candidate version."""
    if result.promoted:
        client.set_registered_model_alias(name, CHAMPION, result.candidate)
        challenger = version_by_alias(client, name, CHALLENGER)
        if challenger is not None and str(challenger.version) == result.candidate:
            client.delete_registered_model_alias(name, CHALLENGER)
    else:
        client.set_registered_model_alias(name, CHALLENGER, result.candidate)
    client.set_model_version_tag(name, result.candidate, "promotion",
                                 json.dumps(result.record(), default=float))
    previous = client.get_model_version(name, result.candidate).description or ""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    client.update_model_version(name, result.candidate, description=(
        f"{previous}\n\n**Promotion gate, {when}:** {result.in_words()}").strip())


def headline_metric(col, key: str) -> pd.Series:
    """The registered model's test metric, its evaluation model's (runs before the candidates
    logged LightGBM's only)."""
    return col(f"metrics.test_{key}").fillna(col(f"metrics.lightgbm_test_{key}"))


def compare(settings: Settings, experiment: str | None = None) -> pd.DataFrame:
    """One row per `churn train` run, newest first: the data, the question, the config, the
    registered candidate and its evaluation model's test metrics beside the baseline's ROC-AUC,
    the version and the champion flag."""
    configure(settings)
    fail_abandoned_runs()
    name = experiment or settings.experiment
    if mlflow.get_experiment_by_name(name) is None:
        raise ValueError(f"--experiment: no experiment named {name!r}")
    runs = mlflow.search_runs(experiment_names=[name],
                              filter_string="tags.`churn.kind` = 'train' "
                                            "AND attributes.status = 'FINISHED'",
                              order_by=["start_time DESC"])
    if runs.empty:
        return pd.DataFrame()
    champion = version_by_alias(MlflowClient(), settings.model_name, CHAMPION)
    champ_version = str(champion.version) if champion is not None else None

    def col(key: str) -> pd.Series:
        return runs[key] if key in runs else pd.Series([np.nan] * len(runs))

    def text(key: str) -> pd.Series:
        return col(key).map(lambda v: v if isinstance(v, str) else "")

    version = text("tags.churn.model_version")
    folder = text("params.events_file").map(lambda p: p.rsplit("/", 2)[-2:][0] if p else "")
    return pd.DataFrame({
        "run_id": runs["run_id"],
        "started": pd.to_datetime(runs["start_time"]).dt.strftime("%Y-%m-%d %H:%M"),
        # runs logged before churn.data existed show their events file's folder
        "data": text("tags.churn.data").where(text("tags.churn.data") != "", folder),
        "label": text("params.label"),
        "horizon_days": pd.to_numeric(col("params.horizon_days"), errors="coerce"),
        "config": text("tags.churn.config"),
        "config_changes": text("tags.churn.config_changes").map(
            lambda v: json.loads(v) if v else {}),
        "test_rows": col("metrics.rows_test").fillna(0).astype(int),
        # runs from before the candidates registered LightGBM
        "model": text("tags.churn.chosen").replace("", "lightgbm"),
        **{key: headline_metric(col, key) for key in (
            "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "ci_level", "pr_auc", "brier",
            "lift_top10")},
        "baseline_roc_auc": col("metrics.baseline_test_roc_auc"),
        "version": version,
        "champion": [bool(v) and v == champ_version for v in version],
    })
