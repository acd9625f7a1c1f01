"""What a training run logs to MLflow: the candidates' nested runs (search, plots, SHAP), the
registered model with its signature, the drift reference, and the registered version's
description. Called by training.pipeline.train, the one function that opens the runs."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from features.definitions import FeatureSpec
from scoring.artifact import PYFUNC_ENTRY, ChurnModel
from scoring.settings import Settings
from scoring.store import COMPLETE_TAG
from training import plots
from training.config import TrainConfig, flat_params
from training.explain import shap_frame, shap_importance, shap_sample

log = logging.getLogger(__name__)
# what MLflow prints straight to stderr when it registers a model, whatever its log level
REGISTRY_CHATTER = ("Successfully registered model ", "Registered model ", "Created version ")


def headline(metrics: dict[str, float]) -> str:
    """ROC-AUC with its interval, PR-AUC and Brier, in words."""
    auc = f"ROC-AUC {metrics['roc_auc']:.3f}"
    if "roc_auc_ci_low" in metrics:
        auc += (f" ({metrics.get('ci_level', 0.95):.0%} interval {metrics['roc_auc_ci_low']:.3f}"
                f"–{metrics['roc_auc_ci_high']:.3f})")
    return f"{auc}, PR-AUC {metrics['pr_auc']:.3f}, Brier {metrics['brier']:.4f}"


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, f"plots/{name}.png")
    plt.close(fig)


def log_frame(frame: pd.DataFrame, name: str, tmp: Path) -> None:
    path = tmp / name
    frame.to_parquet(path, index=False)
    mlflow.log_artifact(str(path))


def log_lightgbm(
    model: ChurnModel, fit, config: TrainConfig, spec: FeatureSpec, dataset: dict,
    test: pd.DataFrame, y: np.ndarray, contrib: np.ndarray, x_test: np.ndarray,
    p_lgb: np.ndarray, p_base: np.ndarray, scores: dict, metrics: dict[str, float],
    curve: dict | None, best_k: int, settings: Settings, tmp: Path,
) -> None:
    """The LightGBM candidate's run: its search, plots and SHAP on the test rows."""
    names = list(spec.feature_names)
    mlflow.log_params(flat_params(config))
    mlflow.log_params({"model": "lightgbm", "best_iteration": fit.best_iteration,
                       "feature_version": spec.version, "features": len(names),
                       **{f"chosen.{k}": v for k, v in chosen_params(fit.params).items()}})
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    mlflow.log_metric("validation_roc_auc", fit.validation_auc)
    mlflow.log_dict(dataset, "dataset.json")
    mlflow.log_dict({"trials": fit.trials}, "search_trials.json")
    mlflow.log_dict(json.loads(spec.to_json()), "feature_spec.json")

    log_figure(plots.roc_plot(y, scores), "roc")
    log_figure(plots.pr_plot(y, scores), "pr")
    log_figure(plots.calibration_plot(y, scores), "calibration")
    log_figure(plots.lift_plot(y, scores), "lift_gain")
    gain = pd.Series(model.booster.feature_importance("gain"), index=names)
    log_figure(plots.importance_plot(gain, "Feature importance (gain)"), "feature_importance")

    phi = contrib[:, : len(names)]
    shap_importance(phi, names).to_csv(tmp / "shap_importance.csv", index=False)
    mlflow.log_artifact(str(tmp / "shap_importance.csv"))
    sample = shap_sample(len(test), config.seed)
    shown = pd.DataFrame(x_test[sample], columns=names)
    log_figure(plots.shap_beeswarm(phi[sample], shown, names), "shap_summary")
    if curve is not None:
        log_figure(plots.profit_plot(curve, best_k), "profit_curve")

    log_frame(shap_frame(model, test, contrib, settings.top_reasons),
              "shap_contributions.parquet", tmp)


def log_registered(model: ChurnModel, test: pd.DataFrame, spec: FeatureSpec,
                    config: TrainConfig, settings: Settings, tmp: Path) -> str:
    """Log the model that is to be registered (with its signature and an input example) and its
    SHAP summary on the test rows, in the current run; return the logged model's URI.
    Registering is `register_version`'s, once the run has ended."""
    names = list(spec.feature_names)
    x = model.matrix(test)
    sample = shap_sample(len(test), config.seed)
    phi = model.contributions(x[sample])[:, : len(names)]
    log_figure(plots.shap_beeswarm(phi, pd.DataFrame(x[sample], columns=names), names),
                "shap_summary")
    artifacts = model.save(tmp / "model_files")
    example = test[names].head(5)
    signature = infer_signature(
        example, pd.DataFrame({"churn_probability": model.predict_proba(example)}),
        params={"output": "probability"},
    )
    with registry_chatter_to_log():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(PYFUNC_ENTRY),
            artifacts=artifacts, signature=signature,
            input_example=example, pip_requirements=requirements(),
        )
    return str(info.model_uri)


def register_version(settings: Settings, model_uri: str, run_id: str) -> str:
    """Register the logged model as a new version of the settings' model, tagged incomplete
    (`mark_complete` ends that), and name the version on its run; returns the version."""
    with registry_chatter_to_log():
        mv = mlflow.register_model(model_uri, settings.model_name, tags={COMPLETE_TAG: "false"})
    MlflowClient().set_tag(run_id, "churn.model_version", str(mv.version))
    return str(mv.version)


def mark_complete(settings: Settings, version: str) -> None:
    """The last step of training: the version has everything it needs, and may be promoted
    and served."""
    MlflowClient().set_model_version_tag(settings.model_name, version, COMPLETE_TAG, "true")


# -- runs left RUNNING by a process that died ---------------------------------------------------

PROCESS_TAG = "churn.process"  # host:pid:start of the process that opened a training run


def _started(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, Linux), or "" where unknown: with
    the pid it tells a process from a later one that reuses its number."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tag() -> str:
    """This process as a PROCESS_TAG value."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_started(pid)}"


def process_gone(tag: str) -> bool:
    """True when the process a PROCESS_TAG names has ended; a process on another host, or a tag
    that cannot be read, counts as alive (nothing here can tell)."""
    parts = tag.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    host_pid, recorded = parts[1], parts[2]
    try:
        pid = int(host_pid)
        if pid <= 0:  # 0 and below would signal process groups
            return False
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        pass
    except (ValueError, OverflowError):
        return False
    started = _started(pid)
    return bool(recorded and started and started != recorded)


def fail_abandoned_runs() -> list[str]:
    """Mark FAILED every RUNNING run whose process (PROCESS_TAG) is gone, e.g. a `churn train`
    that was killed; returns their ids. `train`, `promote` and `compare` call it first."""
    client = MlflowClient()
    ids = [e.experiment_id for e in client.search_experiments()]
    failed = []
    for start in range(0, len(ids), 100):
        for run in client.search_runs(ids[start:start + 100], "attributes.status = 'RUNNING'",
                                      max_results=1000):
            tag = run.data.tags.get(PROCESS_TAG)
            if tag and process_gone(tag):
                client.set_tag(run.info.run_id, "churn.failed",
                               "its process ended before the run did (killed or crashed)")
                client.set_terminated(run.info.run_id, "FAILED")
                failed.append(run.info.run_id)
    if failed:
        log.warning("marked %d runs of processes that ended as FAILED", len(failed))
    return failed


def log_reference(frame: pd.DataFrame, dataset: dict, metrics: dict[str, float],
                   tmp: Path) -> None:
    """reference/features.parquet and reference/reference.json (the label and horizon, how the
    sample was drawn, and the test metrics with their intervals) in the model's run."""
    folder = tmp / "reference"
    folder.mkdir(exist_ok=True)
    frame.to_parquet(folder / "features.parquet", index=False)
    about = {"label": dataset["label"], "horizon_days": dataset["horizon_days"],
             "rows": len(frame), "test_rows": dataset["rows"]["test"],
             "observation_times": dataset["observation_times"]["test"],
             "test_metrics": {k: v for k, v in metrics.items() if np.isfinite(v)}}
    (folder / "reference.json").write_text(json.dumps(about, indent=2))
    mlflow.log_artifacts(str(folder), "reference")


@contextlib.contextmanager
def registry_chatter_to_log() -> Iterator[None]:
    """MLflow's registration prints "Successfully registered model" and "Created version" to
    stderr (its eprint ignores log levels), which fills notebooks and the CLI's error stream.
    Those lines go to this module's logger at INFO; anything else written meanwhile still
    reaches stderr."""
    stderr, buffer = sys.stderr, io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    finally:
        for line in buffer.getvalue().splitlines(keepends=True):
            if line.startswith(REGISTRY_CHATTER):
                log.info(line.strip())
            else:
                stderr.write(line)


def chosen_params(params: dict[str, object]) -> dict[str, object]:
    """The LightGBM parameters the search tunes, as it chose them."""
    return {k: v for k, v in params.items()
            if k in ("num_leaves", "learning_rate", "min_child_samples", "feature_fraction",
                     "lambda_l2")}


def requirements() -> list[str]:
    import duckdb
    import sklearn

    return [f"mlflow=={mlflow.__version__}", f"lightgbm=={lgb.__version__}",
            f"pandas=={pd.__version__}", f"numpy=={np.__version__}",
            f"duckdb=={duckdb.__version__}", f"scikit-learn=={sklearn.__version__}"]


def log_baseline(model: ChurnModel, config: TrainConfig, dataset: dict, y: np.ndarray,
                  scores: dict, metrics: dict[str, float]) -> None:
    linear = model.linear
    mlflow.log_params({"model": "logistic_regression", "C": config.candidates.logistic_c,
                       "transform": "signed log1p, median imputed",
                       "scaler": "standard", "calibration": "on validation", "seed": config.seed})
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    mlflow.log_dict(dataset, "dataset.json")
    base_only = {"baseline": scores["baseline"]}
    log_figure(plots.roc_plot(y, base_only), "roc")
    log_figure(plots.pr_plot(y, base_only), "pr")
    log_figure(plots.calibration_plot(y, base_only), "calibration")
    log_figure(plots.lift_plot(y, base_only), "lift_gain")
    size = np.zeros(len(model.feature_names))
    size[linear.numeric] = np.abs(linear.coef_numeric)
    for pos, coef in zip(linear.categorical, linear.coef_levels):
        size[pos] = float(np.abs(coef).max()) if coef else 0.0
    coef = pd.Series(size, index=model.feature_names)
    log_figure(plots.importance_plot(coef, "|coefficient| (scaled features)"),
                "feature_importance")


def log_bgnbd(spec: FeatureSpec, dataset: dict, y: np.ndarray, p: np.ndarray,
               metrics: dict[str, float]) -> None:
    mlflow.log_params({"model": "bgnbd", "fitted": "at each test time, on the events before it",
                       **{f"params_at_last_training_time.{k}": v
                          for k, v in (spec.btyd_params or {}).items()}})
    mlflow.log_metrics({f"test_{k}": v for k, v in metrics.items() if np.isfinite(v)})
    mlflow.log_dict(dataset, "dataset.json")
    only = {"BG/NBD": p}
    log_figure(plots.roc_plot(y, only), "roc")
    log_figure(plots.calibration_plot(y, only), "calibration")
    log_figure(plots.lift_plot(y, only), "lift_gain")


def describe_version(settings: Settings, version: str, run_id: str, data: str, label: str,
                     horizon: int, config_name: str, metrics: dict[str, float],
                     aliases: list[str], dataset: dict | None = None) -> None:
    """Write the registered version's description: what it was trained on, how it scored and
    where it stands (`churn promote` adds its decision below)."""
    if aliases == ["champion"]:
        standing = ("Registered as **champion**: the first version of this model, so no "
                    "promotion gate ran.")
    else:
        standing = ("Registered as **challenger**: `churn promote` decides whether it replaces "
                    "the champion.")
    chosen = (dataset or {}).get("chosen")
    what = "" if chosen is None else (
        f"\n\nModel: {chosen['words']} ({chosen['why']})"
        + (", refitted on every labelled time." if "refit" in dataset else "."))  # type: ignore[operator]
    text = (f"Trained on {data}, label `{label}`, horizon {horizon} days, config {config_name} "
            f"(run `{run_id}`).{what}\n\nTest (evaluation model): {headline(metrics)}."
            f"\n\n{standing}")
    MlflowClient().update_model_version(settings.model_name, version, description=text)
