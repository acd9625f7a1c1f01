"""`churn train`: load, build snapshots, split in time, fit, evaluate, explain, log, register.

`train` composes the steps. The fitting, evaluation and plotting steps it calls are data in,
data out (training.explain for SHAP, training.metrics for the profit curve); only `train` and
training.tracking's `log_*` helpers, which it calls inside its runs, write to MLflow."""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID, Tables
from features.definitions import FeatureSpec
from features.engine import build_snapshots, with_btyd
from features.files import TABLE_SUFFIXES
from features.observations import LABEL, ObservationPlan, data_end, plan_observations
from features.relations import AS_OF
from features.sources import open_tables
from features.spec_inference import describe_columns, infer_spec
from features.tables import load_tables
from scoring.predictor import customer_value, offer_if_valued
from scoring.settings import Offer, Settings
from scoring.store import configure, experiment_id
from training import plots
from training.candidates import fit_candidates, refit
from training.config import TrainConfig, config_changes, flat_params
from training.intervals import paired_difference
from training.metrics import best_campaign, metrics_with_intervals
from training.promotion import initial_alias
from training.sample import restrict, sample_customers
from training.split import TimeSplit, split_masks, split_times
from training.tracking import (
    PROCESS_TAG,
    chosen_params,
    describe_version,
    fail_abandoned_runs,
    headline,
    log_baseline,
    log_bgnbd,
    log_figure,
    log_frame,
    log_lightgbm,
    log_reference,
    log_registered,
    mark_complete,
    process_tag,
    register_version,
)

StageProgress = Callable[[str], Callable[[int, int], None]]
log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_id: str
    model_version: str
    model_run_id: str  # the run that holds the registered model: the parent run
    aliases: list[str]
    metrics: dict[str, dict[str, float]]
    dataset: dict[str, object] = field(default_factory=dict)
    model_name: str = "churn"
    chosen: str = "lightgbm"  # the candidate registered (its metrics key: METRIC_KEYS)
    candidates: dict[str, dict] = field(default_factory=dict)


# each candidate's key in the metrics (the logistic baseline keeps its old name)
METRIC_KEYS = {"logistic": "baseline"}


def _no_progress(_: str) -> Callable[[int, int], None]:
    return lambda done, total: None


def describe_dataset(
    tables: Tables, customers_path: Path, events_path: Path, label: str, horizon: int,
    plan: ObservationPlan, split: TimeSplit, frames: dict[str, pd.DataFrame], spec: FeatureSpec,
) -> dict[str, object]:
    return {
        "log_days": round(plan.log_days, 1),
        "cadence_chosen": "automatically from the log's length" if plan.automatic else "--cadence",
        "validation_scheme": split.validation_scheme,
        "test_scheme": split.test_scheme,
        # what the loader ignored, how every other column is used, then the split's notes
        "notes": [*tables.notes, describe_columns(tables, spec), *split.notes],
        # static attributes hold their value at export time, applied to every past time
        "attributes": {"as_of": "export", "used": list(spec.attributes.all),
                       "left_out_changing_dates": [a for a in tables.attributes.datetime
                                                   if a not in spec.attributes.datetime]},
        "customers_file": str(Path(customers_path).resolve()),
        "events_file": str(Path(events_path).resolve()),
        "customers": len(tables.customers),
        "events": len(tables.events),
        "dropped_unknown_events": tables.dropped_unknown_events,
        "label": label,
        "horizon_days": horizon,
        "cadence_days": plan.cadence_days,
        "observation_times": {
            name: [str(t.date()) for t in times]
            for name, times in (("train", split.train), ("validation", split.validation),
                                ("test", split.test), ("purged", split.purged))
        },
        "rows": {name: len(f) for name, f in frames.items()},
        "churn_rate": {name: float(f[LABEL].mean()) for name, f in frames.items()},
    }


def data_name(events_path: Path, end: pd.Timestamp) -> str:
    """What a run was trained on, in a few words: the events file's folder when the file is
    called events (`events.parquet`, `events.csv.gz`, ...), else the file's own name as
    written (`shop_log.csv.gz`), and the last day the log observes."""
    path = Path(events_path)
    base = path.name
    for suffix in TABLE_SUFFIXES:  # longest first, so .csv.gz is taken whole
        if base.lower().endswith(suffix):
            base = base[:-len(suffix)]
            break
    where = path.resolve().parent.name if base == "events" else path.name
    return f"{where or 'data'} to {end:%Y-%m-%d}"


def run_name(data: str, label: str, horizon: int, config_name: str) -> str:
    """A parent run's name: the data, the question and the config, e.g.
    `data to 2026-06-14 · explicit 30d · fast`."""
    return f"{data} · {label} {horizon}d · {config_name}"


def describe_run(data: str, dataset: dict, config_name: str, changes: dict[str, object],
                 metrics: dict[str, float], offer: Offer | None) -> str:
    """The run's description (MLflow's `mlflow.note.content`, shown on the run page)."""
    changed = (", ".join(f"`{k}` = {v}" for k, v in changes.items()) if changes
               else "none (the packaged default)")
    rows = dataset["rows"]
    sample = dataset.get("sample", {})
    sampled = ([f"Sampled: {sample['customers_kept']:,} of {sample['customers']:,} customers "
                f"({sample['fraction']:.1%} of each label and cohort), at every time they are "
                "active: the whole log's snapshots exceed the memory budget."]
               if sample.get("sampled") else [])
    lines = [
        f"Trained on **{data}** ({dataset['customers']:,} customers, {dataset['events']:,} events "
        f"in `{dataset['events_file']}`): label `{dataset['label']}`, horizon "
        f"{dataset['horizon_days']} days, a snapshot every {dataset['cadence_days']} days.",
        *sampled,
        "",
        f"Config **{config_name}**; changed from training/default.toml: {changed}.",
        "",
        f"Rows: {rows['train']:,} train, {rows['validation']:,} validation, {rows['test']:,} test "
        f"(validation by {dataset['validation_scheme'].replace('_', ' ')}, test by "
        f"{dataset['test_scheme'].replace('_', ' ')}).",
        "",
        f"Registered: **{dataset['chosen']['words']}**, chosen on validation "
        f"({dataset['chosen']['why']})"
        + (f", refitted on every labelled time ({dataset['refit']['rows']:,} rows)."
           if "refit" in dataset else "."),
        "",
        f"Its evaluation model on the out-of-time test (the honest estimate): {headline(metrics)}.",
    ]
    if offer is not None and "campaign_best_k" in metrics:
        lines += ["", campaign_text(metrics, offer)]
    return "\n".join(lines)


def campaign_text(metrics: dict[str, float], offer: Offer) -> str:
    return (f"Best campaign on the test rows: contact {int(metrics['campaign_best_k']):,}; "
            f"expected profit {metrics['campaign_expected_profit']:,.0f} (from the model's "
            f"probabilities), realised profit {metrics['campaign_realised_profit']:,.0f} (from "
            f"the actual churn in the test labels); offer cost {offer.cost:g}, save rate "
            f"{offer.save_rate:g}, value `{offer.value_column}` × {offer.value_multiplier:g}.")


def input_datasets(frames: dict[str, pd.DataFrame], source: Path, data: str) -> dict[str, object]:
    """The train, validation and test snapshots as MLflow datasets (digest, schema, profile),
    whose source is the events file they were built from."""
    with warnings.catch_warnings():
        # a local path matches both local artifact sources MLflow registers ('' and file://)
        warnings.filterwarnings("ignore", message="The specified dataset source can be "
                                "interpreted in multiple ways", category=UserWarning)
        # the dataset's schema is a record, not the model's signature: its integer hint is noise
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer",
                                category=UserWarning)
        datasets = {part: mlflow.data.from_pandas(frame, source=str(Path(source).resolve()),
                                                  targets=LABEL, name=f"{data} · {part}")
                    for part, frame in frames.items()}
        for ds in datasets.values():
            _ = ds.schema  # inferred once and cached here, inside the filter, not at log_input
    return datasets


def evaluate(y: np.ndarray, p: np.ndarray, customers: np.ndarray, config: TrainConfig
             ) -> dict[str, float]:
    return metrics_with_intervals(y, p, customers, config.confidence_level, config.bootstrap,
                                  config.seed)


def train(
    customers_path: Path,
    events_path: Path,
    label: str,
    horizon: int,
    cadence: int | None,
    config: TrainConfig,
    settings: Settings,
    experiment: str | None = None,
    stage: StageProgress = _no_progress,
    date_format: str | None = None,
    config_name: str | None = None,
    engine: object | None = None,
) -> TrainResult:
    """Train on the log at `customers_path`/`events_path`; `cadence=None` chooses it from the
    log's length. `date_format` reads text dates not in ISO 8601 (recorded in dataset.json, so
    the promotion gate reads the files the same way). `config_name` names the config in the
    run's name (default: `default` when it is the packaged default, else `custom`)."""
    configure(settings)
    fail_abandoned_runs()
    # the snapshot stage runs where the events lie: in `engine` (features.sources) when given
    tables = (load_tables(customers_path, events_path, date_format=date_format) if engine is None
              else open_tables(customers_path, events_path, engine, date_format=date_format))
    plan = plan_observations(tables.customers, tables.events, horizon, cadence,
                             config.min_history_days)
    split = split_times(plan.times, horizon, config.split.validation_times,
                        config.split.test_times, config.split.purge)
    # the columns are chosen from what training sees: events before the last training time
    spec = infer_spec(tables, before=max(split.train), max_event_types=config.max_event_types,
                      activity_types=config.activity_types)
    if label == "inactivity":  # repeat-buying signals, with BG/NBD fitted on the past
        spec = with_btyd(tables, spec, horizon, max(split.train))
    # every labelled time, purged ones included: the refit learns from all of them
    snap_times = plan.times if config.refit.enabled else split.used
    # decided before any snapshot is built: the rows of customers left out are never held
    sample = sample_customers(tables, spec, label, horizon, snap_times, config.sample.memory_mb,
                              config.seed)
    snaps = build_snapshots(restrict(tables, sample.ids), spec, label, horizon,
                            plan.cadence_days, times=snap_times,
                            progress=stage("building snapshots"))
    masks = split_masks(snaps, split, AS_OF, CUSTOMER_ID, config.seed)
    frames = {name: snaps[mask].reset_index(drop=True) for name, mask in masks.items()}
    # the rows no split holds (purged times; a test customer's rows at other times): with the
    # splits, every row the refit learns from. The whole table is not kept beside its parts.
    held = ~(masks["train"] | masks["validation"] | masks["test"])
    rest = snaps[held].reset_index(drop=True)
    # where each part's rows were: the refit's matrix keeps the table's row order
    positions = [np.flatnonzero(masks[name]) for name in ("train", "validation", "test")]
    positions.append(np.flatnonzero(held))
    refit_facts = {"times": [str(pd.Timestamp(t).date()) for t in sorted(snaps[AS_OF].unique())],
                   "snapshot_rows": len(snaps), "folds": config.refit.folds}
    del snaps, masks, held
    for name, frame in frames.items():
        if frame[LABEL].nunique() < 2:
            raise ValueError(
                f"the {name} split has {'no churners' if frame[LABEL].sum() == 0 else 'only churners'}"
                f" ({len(frame)} rows); use more customers, a longer --horizon or another --label"
            )
    ys = {name: f[LABEL].to_numpy() for name, f in frames.items()}
    dataset = describe_dataset(tables, customers_path, events_path, label, horizon, plan,
                               split, frames, spec)
    dataset["date_format"] = date_format
    dataset["sample"] = sample.describe()
    if sample.sampled:
        dataset["notes"] = [*dataset["notes"], (
            f"trained on a sample of {sample.kept:,} of {sample.customers:,} customers "
            f"({sample.fraction:.1%} of each label and cohort, every time they are active): "
            f"{sample.rows_estimated:,} snapshot rows exceed the memory budget of "
            f"{config.sample.memory_mb:g} MB (about {sample.rows_budget:,} rows; "
            "[sample] memory_mb)")]
    data = data_name(events_path, data_end(tables.customers, tables.events))
    changes = config_changes(config)
    config_name = config_name or ("custom" if changes else "default")

    cands = fit_candidates(frames["train"], ys["train"], frames["validation"], ys["validation"],
                           spec, config, progress=stage("tuning LightGBM on validation"))
    fit = cands.search
    winner = cands.winner

    test = frames["test"]
    model = fit.model
    x_test = model.matrix(test)
    contrib = model.contributions(x_test)
    customers_test = test[CUSTOMER_ID].to_numpy()
    probs = {name: c.model.calibrate(c.model.raw_score(x_test))
             for name, c in cands.candidates.items()}
    metrics = {METRIC_KEYS.get(name, name): evaluate(ys["test"], p, customers_test, config)
               for name, p in probs.items()}
    p_lgb, p_chosen = probs.get("lightgbm", probs[winner.name]), probs[winner.name]
    p_base = probs.get("logistic", p_chosen)
    comparisons = candidate_comparisons(ys["test"], probs, winner.name, customers_test, config)
    offer = offer_if_valued(settings.offer, spec)
    chosen_metrics = metrics[METRIC_KEYS.get(winner.name, winner.name)]
    curve, best_k = None, 0
    if offer is not None:
        curve, best_k, campaign = best_campaign(p_chosen, customer_value(test, offer, spec),
                                                offer, ys["test"])
        chosen_metrics.update(campaign)
    else:
        dataset["notes"] = [*dataset["notes"], (
            f"no profit curve: the offer's value column {settings.offer.value_column!r} is "
            "neither a feature nor a numeric attribute of this log (set CHURN_OFFER__VALUE_COLUMN "
            "to one, e.g. a spend feature)")]
    dataset["chosen"] = {"candidate": winner.name, "words": winner.words, "why": cands.reason()}
    registered = winner.model
    if config.refit.enabled:
        refit_spec = spec
        if spec.btyd_features:
            # each snapshot's BG/NBD columns use parameters fitted on the log before its time,
            # as scoring at a time does: the registered model scores with those fitted on the
            # whole log (BG/NBD needs no labels), not on the log up to the last training time
            end = data_end(tables.customers, tables.events)
            refit_spec = with_btyd(tables, spec, horizon, end)
        pool, rest = [frames["train"], frames["validation"], frames["test"], rest], None
        dataset["refit"] = {**refit_facts, "rows": sum(len(f) for f in pool),
                            "times": sorted({str(pd.Timestamp(t).date())
                                             for f in pool for t in f[AS_OF].unique()})}
        registered = refit(winner, pool, refit_spec, config,
                           progress=stage("refitting the winner"), positions=positions)
        if spec.btyd_features:
            dataset["refit"]["btyd_params_at"] = str(end.date())

    exp_id = experiment_id(experiment or settings.experiment, settings)
    inputs = input_datasets(frames, events_path, data)
    with tempfile.TemporaryDirectory() as tmpdir, mlflow.start_run(
        experiment_id=exp_id, run_name=run_name(data, label, horizon, config_name),
        tags={"churn.kind": "train", "churn.label": label, "churn.data": data,
              "churn.config": config_name, "churn.config_changes": json.dumps(changes),
              "churn.chosen": winner.name, PROCESS_TAG: process_tag(),
              "mlflow.note.content": describe_run(data, dataset, config_name, changes,
                                                  chosen_metrics, offer)},
    ) as parent:
        tmp = Path(tmpdir)
        for part, ds in inputs.items():
            mlflow.log_input(ds, context=part)
        # the parent carries what a comparison needs: the config, the tuned values, the
        # offer and the headline metrics (below); the nested runs keep the detail
        mlflow.log_params(flat_params(config))
        mlflow.log_params({"best_iteration": fit.best_iteration, "chosen_candidate": winner.name,
                           "registered": "refit" if config.refit.enabled else "evaluation model",
                           **{f"chosen.{k}": v for k, v in chosen_params(fit.params).items()},
                           **{f"offer.{k}": v for k, v in settings.offer.model_dump().items()}})
        mlflow.log_dict(config.model_dump(), "config.json")
        mlflow.log_dict({"changed_from_default": changes}, "config_changes.json")
        mlflow.log_dict(settings.offer.model_dump(), "offer.json")
        mlflow.log_params({"label": label, "horizon_days": horizon,
                           "cadence_days": plan.cadence_days,
                           "validation_scheme": split.validation_scheme,
                           "test_scheme": split.test_scheme,
                           "feature_version": spec.version,
                           "customers_file": dataset["customers_file"],
                           "events_file": dataset["events_file"],
                           "attributes_as_of": "export", **sample.params()})
        mlflow.log_dict(dataset, "dataset.json")
        mlflow.log_dict(comparisons, "candidates.json")
        for name, m in metrics.items():
            mlflow.log_metrics({f"{name}_test_{k}": v for k, v in m.items() if np.isfinite(v)})
        # the version's own test metrics, as its run carries them: its evaluation model's
        mlflow.log_metrics({f"test_{k}": v for k, v in chosen_metrics.items()
                            if np.isfinite(v)})
        mlflow.log_metrics({f"{METRIC_KEYS.get(n, n)}_validation_roc_auc": c.validation_auc
                            for n, c in cands.candidates.items()})
        mlflow.log_metrics({f"rows_{k}": float(len(f)) for k, f in frames.items()})
        scores = {"LightGBM": p_lgb, "baseline": p_base}
        if "bgnbd" in probs:
            scores["BG/NBD"] = probs["bgnbd"]
        if winner.name not in ("lightgbm", "logistic", "bgnbd"):
            scores[winner.words] = p_chosen
        log_figure(plots.roc_plot(ys["test"], scores), "roc")
        log_figure(plots.calibration_plot(ys["test"], scores), "calibration")

        mine = {PROCESS_TAG: process_tag()}  # a killed process's runs are failed later
        with mlflow.start_run(run_name="lightgbm", nested=True, experiment_id=exp_id, tags=mine):
            for part, ds in inputs.items():
                mlflow.log_input(ds, context=part)
            mlflow.log_dict(settings.offer.model_dump(), "offer.json")
            log_lightgbm(model, fit, config, spec, dataset, test, ys["test"], contrib,
                         x_test, p_lgb, p_base, scores, metrics["lightgbm"], curve, best_k,
                         settings, tmp)
        if "logistic" in cands.candidates:
            with mlflow.start_run(run_name="baseline", nested=True, experiment_id=exp_id,
                                  tags=mine):
                log_baseline(cands.candidates["logistic"].model, config, dataset, ys["test"],
                              scores, metrics["baseline"])
        if "bgnbd" in cands.candidates:
            with mlflow.start_run(run_name="bgnbd", nested=True, experiment_id=exp_id, tags=mine):
                log_bgnbd(spec, dataset, ys["test"], probs["bgnbd"], metrics["bgnbd"])
        # the registered model and the evaluation model it came from hang off the parent run,
        # the run a user opens first
        log_reference(reference_sample(test, ys["test"], p_chosen, list(spec.feature_names),
                                        config.seed), dataset, chosen_metrics, tmp)
        winner.model.save(tmp / "evaluation_model")
        mlflow.log_artifacts(str(tmp / "evaluation_model"), "evaluation_model")
        # the rows the promotion gate judges this version's evaluation model on
        log_frame(test.assign(**{LABEL: ys["test"]}), "test_snapshot.parquet", tmp)
        # every candidate's probabilities on the test rows (churn_probability: the chosen one's
        # evaluation model), and the registered model's, which reproduce what it serves; after
        # a refit it has trained on these rows, so they are no estimate of its accuracy
        log_frame(pd.DataFrame({
            CUSTOMER_ID: test[CUSTOMER_ID], AS_OF: test[AS_OF], LABEL: ys["test"],
            "churn_probability": p_chosen, "baseline_probability": p_base,
            "registered_probability": registered.predict_proba(test),
            **{f"{name}_probability": p for name, p in probs.items()}}),
            "test_predictions.parquet", tmp)
        model_uri = log_registered(registered, test, spec, config, settings, tmp)

    # registered only now that everything the version needs is logged and its runs have ended;
    # complete is the last mark, before any alias can point at it
    version = register_version(settings, model_uri, parent.info.run_id)
    mark_complete(settings, version)
    aliases = initial_alias(settings, version)
    describe_version(settings, version, parent.info.run_id, data, label, horizon, config_name,
                     chosen_metrics, aliases, dataset)
    return TrainResult(parent.info.run_id, version, parent.info.run_id, aliases, metrics, dataset,
                       settings.model_name, winner.name, comparisons)


def candidate_comparisons(y: np.ndarray, probs: dict[str, np.ndarray], chosen: str,
                          customers: np.ndarray, config: TrainConfig) -> dict[str, dict]:
    """Every candidate against the chosen one on the test rows: the paired, customer-clustered
    interval of the ROC-AUC and Brier differences (candidate minus chosen)."""
    out: dict[str, dict] = {}
    for name, p in probs.items():
        row: dict[str, object] = {"chosen": name == chosen}
        if name != chosen and config.bootstrap != 0:
            diff = paired_difference(y, p, probs[chosen], customers,
                                     level=config.confidence_level, seed=config.seed)
            for key in ("roc_auc", "brier"):
                iv = diff[key]
                row[f"{key}_minus_chosen"] = {"estimate": iv.estimate, "low": iv.low,
                                              "high": iv.high}
        out[name] = row
    return out


REFERENCE_ROWS = 20_000  # test rows kept as `churn monitor`'s drift reference


def reference_sample(test: pd.DataFrame, y: np.ndarray, p: np.ndarray, names: list[str],
                     seed: int) -> pd.DataFrame:
    """What `churn monitor` compares later traffic with: the test rows' features, calibrated
    probabilities and labels; a seeded sample of REFERENCE_ROWS when there are more."""
    frame = test[[CUSTOMER_ID, AS_OF, *names]].assign(churn_probability=p, **{LABEL: y})
    if len(frame) > REFERENCE_ROWS:
        frame = frame.sample(REFERENCE_ROWS, random_state=seed)
    return frame.reset_index(drop=True)


__all__ = ["TrainResult", "train"]
