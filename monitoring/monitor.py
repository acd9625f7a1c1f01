"""`churn monitor`: read the prediction log and the data files, judge drift and realised
accuracy for one model version, and record the verdict (HTML report, MLflow run in the
`monitoring` experiment, a row in the store's `monitor_runs` for the service).

`monitor` composes; the statistics are in drift.py and accuracy.py, the page in report.py."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import false, func, select

from features.contract import CUSTOMER_ID, Tables
from features.engine import feature_table
from features.relations import AS_OF
from monitoring.accuracy import PROBABILITY, VERSION, join_outcomes, latest_per_prediction
from monitoring.accuracy import accuracy_by_group as accuracy_groups
from monitoring.drift import compare_feature, drift_table
from scoring.health import HealthRow, write_health
from scoring.reasons import feature_labels
from scoring.records import engine_for, predictions, read_predictions
from scoring.settings import Monitor, Settings
from scoring.store import LoadedModel, configure, experiment_id, load_model

log = logging.getLogger(__name__)
EXPERIMENT = "monitoring"
SCORE = "churn_probability"
ACCURACY_WEEKS = 13  # realised accuracy looks this far back from --as-of by default
Stage = Callable[[str], Callable[[int, int], None]]


class MonitorError(ValueError):
    """A request `churn monitor` cannot answer, in one line naming the option or the input."""


def _no_stage(_: str) -> Callable[[int, int], None]:
    return lambda done, total: None


@dataclass
class Reference:
    frame: pd.DataFrame
    about: dict

    @property
    def label(self) -> str:
        return str(self.about["label"])

    @property
    def horizon_days(self) -> float:
        return float(self.about["horizon_days"])


@dataclass
class MonitorResult:
    model_name: str
    model_version: str
    as_of: pd.Timestamp
    window_days: int
    thresholds: Monitor
    label: str
    horizon_days: float
    drift: pd.DataFrame  # drift.COLUMNS, most drifted first; empty when not judged
    score: dict | None  # the score distribution's row, as a feature's
    drift_rows: int
    drift_judged: bool
    counts: dict[str, int]
    by_version: dict[str, dict]
    weeks: list[dict]
    test_metrics: dict[str, float]
    auc_flagged: bool
    notes: list[str] = field(default_factory=list)
    since: pd.Timestamp | None = None
    labels: dict[str, str] = field(default_factory=dict)  # each feature in words
    report: Path | None = None
    run_id: str | None = None

    @property
    def drifted(self) -> list[str]:
        if self.drift.empty:
            return []
        return self.drift.loc[self.drift["flagged"], "feature"].tolist()

    @property
    def score_flagged(self) -> bool:
        return bool(self.score and self.score["flagged"])

    @property
    def flagged(self) -> bool:
        return bool(self.drifted) or self.score_flagged or self.auc_flagged

    @property
    def realised(self) -> dict | None:
        """The monitored version's realised metrics over its matured predictions."""
        return self.by_version.get(self.model_version)

    def flags(self) -> list[str]:
        """What was flagged, in words."""
        out = [] if self.drift.empty else [
            f"feature {f} drifted (PSI {p:.3f})" for f, p in zip(
                self.drifted, self.drift.loc[self.drift["flagged"], "psi"], strict=True)]
        if self.score_flagged:
            out.append(f"the score distribution drifted (PSI {self.score['psi']:.3f})")
        if self.auc_flagged:
            r = self.realised or {}
            out.append(f"realised ROC-AUC {r.get('roc_auc', float('nan')):.3f} is below the "
                       f"test interval's lower end {self.test_metrics.get('roc_auc_ci_low'):.3f}")
        return out


def model_uri(settings: Settings, version: str | None) -> str:
    if version is None:
        return f"models:/{settings.model_name}@champion"
    return f"models:/{settings.model_name}/{version}"


def load_monitored(settings: Settings, version: str | None) -> LoadedModel:
    uri = model_uri(settings, version)
    try:
        return load_model(uri)
    except (MlflowException, OSError) as exc:
        what = f"--model-version: no version {version}" if version else "no champion"
        raise MonitorError(f"{what} of model {settings.model_name!r} can be loaded "
                           f"({' '.join(str(exc).split())[:200]})") from None


def load_reference(loaded: LoadedModel) -> Reference:
    """The drift reference logged with the model (training/pipeline.py)."""
    try:
        folder = mlflow.artifacts.download_artifacts(run_id=loaded.run_id, artifact_path="reference")
        frame = pd.read_parquet(Path(folder) / "features.parquet")
        about = json.loads((Path(folder) / "reference.json").read_text())
    except (MlflowException, OSError) as exc:
        raise MonitorError(
            f"model version {loaded.label} has no drift reference (reference/ in run "
            f"{loaded.run_id}; models trained before churn monitor lack it): retrain with "
            f"churn train ({' '.join(str(exc).split())[:120]})") from None
    # the logged probabilities are the evaluation model's; the log holds the registered
    # (possibly refitted) model's. The score's drift compares one model with itself: the
    # monitored model's probabilities of the reference rows.
    model = loaded.model
    if len(frame) and set(model.feature_names) <= set(frame.columns):
        frame = frame.assign(**{SCORE: model.calibrate(model.raw_score(model.matrix(frame)))})
    return Reference(frame, about)


def latest_as_of(engine, name: str | None, version: str) -> pd.Timestamp | None:
    with engine.connect() as conn:
        value = conn.execute(select(func.max(predictions.c.as_of))
                             .where(predictions.c.model_version == version,
                                    predictions.c.model_name == name,
                                    predictions.c.test == false())).scalar()
    return None if value is None else pd.Timestamp(value)


def count_logged(engine, name: str | None, since: datetime, until: datetime,
                 version: str | None = None) -> int:
    query = (select(func.count()).select_from(predictions)
             .where(predictions.c.as_of >= since, predictions.c.as_of < until,
                    predictions.c.model_name == name, predictions.c.test == false()))
    if version is not None:
        query = query.where(predictions.c.model_version == version)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def _window_features(tables: Tables, loaded: LoadedModel, window: pd.DataFrame,
                     limits: Monitor, notes: list[str]) -> pd.DataFrame:
    """Feature rows of the window's (customer, as_of) pairs, recomputed from the data files with
    the model's feature spec; at most `limits.max_rows` pairs (a seeded sample)."""
    known = window[CUSTOMER_ID].isin(tables.customers[CUSTOMER_ID])
    if (~known).any():
        notes.append(f"{int((~known).sum()):,} logged predictions in the window are of customers "
                     "the customers file lacks; left out of drift")
    pairs = window[known]
    if len(pairs) > limits.max_rows:
        notes.append(f"drift on a seeded sample of {limits.max_rows:,} of {len(pairs):,} "
                     "predictions in the window (CHURN_MONITOR__MAX_ROWS)")
        pairs = pairs.sample(limits.max_rows, random_state=0)
    pairs = pairs.reset_index(drop=True)
    feats = feature_table(tables.customers, tables.events, loaded.model.spec,
                          pairs[[CUSTOMER_ID, AS_OF]])
    return feats.assign(**{SCORE: pairs[PROBABILITY].to_numpy()})


LabelSettings = tuple[str, float, tuple[str, ...]]  # label kind, horizon days, activity types


def label_settings(settings: Settings, version: str) -> LabelSettings | None:
    """The label kind, horizon and activity types a registered version was trained with (the
    params of its training run, the parent of the model's run; a run from before activity types
    counted every event), or None when they cannot be read."""
    client = MlflowClient()
    try:
        run = client.get_run(client.get_model_version(settings.model_name, version).run_id)
        parent = run.data.tags.get("mlflow.parentRunId")
        params = client.get_run(parent).data.params if parent else run.data.params
        activity = tuple(json.loads(params.get("activity_types", "[]")))
        return str(params["label"]), float(params["horizon_days"]), activity
    except (MlflowException, OSError, KeyError, ValueError, TypeError):
        return None


def _outcomes(history: pd.DataFrame, tables: Tables, loaded: LoadedModel, reference: Reference,
              settings: Settings, notes: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each version's matured predictions with outcomes by that version's own label and
    horizon and activity types (the monitored version's when another's cannot be read)."""
    mine = (reference.label, reference.horizon_days, loaded.model.spec.activity_types)
    groups: dict[LabelSettings, list[str]] = {}
    for version in sorted(history[VERSION].astype(str).unique()):
        found = mine if version == loaded.label else label_settings(settings, version)
        if found is None:
            notes.append(f"version {version}'s label settings cannot be read; its outcomes use "
                         f"version {loaded.label}'s ({mine[0]}, {mine[1]:g} days)")
            found = mine
        groups.setdefault(found, []).append(version)
    parts, counts = [], {"logged": 0, "not_matured": 0, "not_in_population": 0, "matured": 0}
    for (label, horizon, activity), versions in groups.items():
        part, c = join_outcomes(history[history[VERSION].astype(str).isin(versions)],
                                tables.customers, tables.events, loaded.model.spec, label, horizon,
                                activity)
        parts.append(part)
        counts = {k: counts[k] + c[k] for k in counts}
    if not parts:
        return history.iloc[0:0].assign(label=pd.Series(dtype="int8")), counts
    return pd.concat(parts, ignore_index=True), counts


def monitor(
    settings: Settings,
    tables: Tables,
    model_version: str | None = None,
    as_of: datetime | None = None,
    window_days: int | None = None,
    since: datetime | None = None,
    report: Path | None = None,
    limits: Monitor | None = None,
    stage: Stage = _no_stage,
) -> MonitorResult:
    """Judge one model version (default: the champion) on the prediction log and the data in
    `tables`, then write the report, the MLflow run and the store's row."""
    from monitoring.report import render

    limits = limits or settings.monitor
    window_days = window_days or limits.window_days
    configure(settings)
    loaded = load_monitored(settings, model_version)
    version = loaded.label
    reference = load_reference(loaded)
    engine = engine_for(settings)
    name = loaded.name  # another registered model's version "1" is not this one's
    end = pd.Timestamp(as_of) if as_of is not None else latest_as_of(engine, name, version)
    if end is None:
        raise MonitorError(f"the prediction log holds no prediction of model version {version}: "
                           "score with churn score or the service first")
    notes: list[str] = []
    until = end + pd.Timedelta(microseconds=1)  # --as-of itself is in the window

    # drift: the window's predictions of this version against the reference
    progress = stage("drift: features of the window")
    first = end - pd.Timedelta(days=window_days) + pd.Timedelta(microseconds=1)
    in_window = count_logged(engine, name, first, until, version)
    if in_window > limits.max_log_rows:
        raise MonitorError(
            f"--window: the log holds {in_window:,} predictions of version {version} in the "
            f"{window_days} days to {end:%Y-%m-%d}, more than {limits.max_log_rows:,} "
            "(CHURN_MONITOR__MAX_LOG_ROWS); give a shorter --window")
    window = read_predictions(engine, since=first, until=until, model_version=version,
                              model_name=name, test=False)
    window = latest_per_prediction(window)
    score, judged, drift = None, False, pd.DataFrame()
    feats = pd.DataFrame()
    if len(window) >= limits.min_rows:
        feats = _window_features(tables, loaded, window, limits, notes)
        progress(1, 2)
    if len(window) < limits.min_rows:
        notes.append(f"drift not judged: {len(window):,} predictions of version {version} in the "
                     f"{window_days} days to {end:%Y-%m-%d}, fewer than "
                     f"{limits.min_rows:,} (CHURN_MONITOR__MIN_ROWS)")
    elif len(feats) < limits.min_rows:  # the others' customers are not in --customers
        notes.append(f"drift not judged: only {len(feats):,} of the window's predictions are of "
                     f"customers in --customers, fewer than {limits.min_rows:,} "
                     "(CHURN_MONITOR__MIN_ROWS)")
    else:
        spec = loaded.model.spec
        drift = drift_table(reference.frame, feats, list(spec.feature_names),
                            set(spec.categorical_features), limits.psi, limits.p_value,
                            set(spec.calendar_features))
        score = compare_feature(SCORE, reference.frame[SCORE], feats[SCORE], False, limits.psi,
                                limits.p_value)
        judged = True
        progress(2, 2)

    # realised accuracy: every version's matured predictions since --since
    start = pd.Timestamp(since) if since is not None else end - pd.Timedelta(weeks=ACCURACY_WEEKS)
    logged = count_logged(engine, name, start, until)
    if logged > limits.max_log_rows:
        raise MonitorError(
            f"--since: the log holds {logged:,} predictions from {start:%Y-%m-%d} to "
            f"{end:%Y-%m-%d}, more than {limits.max_log_rows:,} (CHURN_MONITOR__MAX_LOG_ROWS); "
            "give a later --since")
    progress = stage("realised accuracy")
    history = latest_per_prediction(read_predictions(engine, since=start, until=until,
                                                     model_name=name, test=False))
    joined, counts = _outcomes(history, tables, loaded, reference, settings, notes)
    progress(1, 2)
    by_version, weeks = ({}, []) if joined.empty else accuracy_groups(
        joined, limits.level, limits.bootstrap)
    progress(2, 2)
    test = dict(reference.about.get("test_metrics") or {})
    test.update({k[len("test_"):]: v for k, v in loaded.metrics.items() if k.startswith("test_")})
    mine = by_version.get(version)
    low = test.get("roc_auc_ci_low")
    auc_flagged = bool(mine and mine.get("roc_auc") is not None and low is not None
                       and mine["rows"] >= limits.min_rows and mine["roc_auc"] < low)
    if mine is None:
        notes.append(f"no realised accuracy for version {version}: none of its predictions "
                     f"since {start:%Y-%m-%d} has a horizon ({reference.horizon_days:g} days) "
                     "that the data covers")
    elif mine["rows"] < limits.min_rows:
        notes.append(f"realised accuracy of version {version} is not judged against its test "
                     f"interval: {mine['rows']:,} matured predictions, fewer than "
                     f"{limits.min_rows:,}")

    result = MonitorResult(
        settings.model_name, version, end, window_days, limits, reference.label,
        reference.horizon_days, drift, score, len(window), judged, counts, by_version, weeks,
        test, auc_flagged, notes, start, labels=feature_labels(loaded.model.reason_texts))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = report or settings.mlruns / "monitoring" / f"monitor-v{version}-{end:%Y%m%d}-{stamp}.html"
    result.report = Path(target).resolve()
    html = render(result, reference.frame, feats if judged else None)
    _write_atomically(result.report, html)
    result.run_id = _log_run(settings, result)
    write_health(engine, health_row(result))
    return result


def _write_atomically(path: Path, text: str) -> None:
    """The whole file or none: written beside the target, then renamed onto it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary file, not mkstemp's 0600
        os.replace(tmp, path)
    except OSError as exc:
        raise MonitorError(f"--report: cannot write {path}: {exc.strerror or exc}") from None


def flat_metrics(result: MonitorResult) -> dict[str, float]:
    """The run's metrics: counts, the score's and every feature's PSI, realised accuracy."""
    m: dict[str, float] = {"drift_rows": result.drift_rows, "drifted_features": len(result.drifted),
                           "flagged": float(result.flagged), "auc_flagged": float(result.auc_flagged),
                           **{f"rows_{k}": float(v) for k, v in result.counts.items()}}
    if result.score:
        m["score_psi"] = result.score["psi"]
    for r in result.drift.itertuples():
        m[f"psi_{r.feature}"] = r.psi
    for key, value in (result.realised or {}).items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            m[f"realised_{key}"] = value
    return {k: float(v) for k, v in m.items() if v is not None and np.isfinite(float(v))}


def _log_run(settings: Settings, result: MonitorResult) -> str:
    exp = experiment_id(EXPERIMENT, settings)
    with tempfile.TemporaryDirectory() as tmpdir, mlflow.start_run(
        experiment_id=exp, run_name=f"v{result.model_version} · {result.as_of:%Y-%m-%d}",
        tags={"churn.kind": "monitor", "churn.model_version": result.model_version,
              "churn.flagged": str(result.flagged).lower(),
              "mlflow.note.content": "\n".join(["Flags:", *(f"- {f}" for f in result.flags())])
              if result.flagged else "Nothing flagged."},
    ) as run:
        t = result.thresholds
        mlflow.log_params({"model_name": result.model_name, "model_version": result.model_version,
                           "as_of": str(result.as_of), "window_days": result.window_days,
                           "since": str(result.since), "label": result.label,
                           "horizon_days": result.horizon_days, "psi_threshold": t.psi,
                           "p_value": t.p_value, "min_rows": t.min_rows,
                           "bootstrap": t.bootstrap, "level": t.level})
        mlflow.log_metrics(flat_metrics(result))
        tmp = Path(tmpdir)
        if not result.drift.empty:
            result.drift.to_csv(tmp / "drift.csv", index=False)
            mlflow.log_artifact(str(tmp / "drift.csv"))
        mlflow.log_dict({"by_version": result.by_version, "weeks": result.weeks,
                         "counts": result.counts, "flags": result.flags(),
                         "notes": result.notes}, "accuracy.json")
        mlflow.log_artifact(str(result.report), "report")
        return run.info.run_id


def health_row(result: MonitorResult) -> HealthRow:
    mine = result.realised or {}
    drift = {r.feature: {"psi": r.psi, "p_value": r.p_value, "flagged": bool(r.flagged),
                         "calendar": bool(r.calendar), "label": result.labels.get(r.feature),
                         "beyond_chance": bool(r.p_value is not None
                                               and r.p_value < result.thresholds.p_value)}
             for r in result.drift.itertuples()}
    weeks = [{k: w.get(k) for k in ("model_version", "week", "rows", "churners", "roc_auc",
                                    "roc_auc_low", "roc_auc_high", "brier", "lift_top10",
                                    "base_rate", "mean_predicted")}
             for w in result.weeks]
    return HealthRow(
        model_name=result.model_name, model_version=result.model_version,
        as_of=result.as_of.to_pydatetime(), window_days=result.window_days,
        drift_rows=result.drift_rows, drifted=len(result.drifted),
        score_psi=result.score["psi"] if result.score else None,
        score_flagged=result.score_flagged, matured_rows=int(mine.get("rows", 0)),
        realised_auc=mine.get("roc_auc"), realised_auc_low=mine.get("roc_auc_low"),
        realised_auc_high=mine.get("roc_auc_high"),
        test_auc_low=result.test_metrics.get("roc_auc_ci_low"), auc_flagged=result.auc_flagged,
        flagged=result.flagged, test_auc_high=result.test_metrics.get("roc_auc_ci_high"),
        psi_threshold=result.thresholds.psi, drift=drift, weeks=weeks, mlflow_run_id=result.run_id,
        report=str(result.report) if result.report else None)
