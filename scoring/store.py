"""MLflow set-up, done by entry points at run time (never at import)."""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from features.settings import Settings, local_artifact_root, tracking_uri


def configure(settings: Settings) -> str:
    """Point MLflow at the configured store; create mlruns/ for the embedded default."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri(settings)
    if uri.startswith("sqlite:///") and not os.environ.get("MLFLOW_TRACKING_URI"):
        settings.mlruns.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(name: str, settings: Settings) -> str:
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return mlflow.create_experiment(
        name, artifact_location=local_artifact_root(settings, mlflow.get_tracking_uri()))


def version_by_alias(client: MlflowClient, name: str, alias: str):
    """The model version holding `alias`, or None."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
