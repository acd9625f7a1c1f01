"""`churn ui`: the MLflow UI over the product's store, opened on the training runs.

MLflow 3.17's UI no longer picks its view from the experiment's `mlflow.experimentKind` tag: a
switch in its sidebar ("GenAI" / "Model training") decides for every experiment, kept in the
browser's local storage and GenAI until a user changes it. Only the page address overrides it
(`?workflowType=machine_learning`), so this command prints the addresses to open.
Registered on cli/main.py's app there."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import UsageError, err, out

# the UI's WorkflowType value for its classic runs view (MLflow 3.17's UI bundle)
TRAINING_VIEW = "workflowType=machine_learning"


def ui_link(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI address of an experiment's runs (or one run) in the model-training view."""
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/{page}?{TRAINING_VIEW}"


def ui(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 5000,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="MLflow experiment to open (default: the settings', churn).")] = None,
) -> None:
    """Start the MLflow UI on the store and print where its training runs are.

    With MLFLOW_TRACKING_URI on an MLflow server, print that server's address instead."""
    import mlflow

    from scoring.settings import get_settings
    from scoring.store import configure, registry_problem, store_uri

    settings = get_settings()
    name = experiment or settings.experiment
    try:
        uri = configure(settings, read_only=True)
        exp = mlflow.get_experiment_by_name(name)
    except Exception as exc:
        raise UsageError(f"cannot open the store: {registry_problem(store_uri(settings), exc)}"
                         ) from None
    if exp is None:
        raise UsageError(f"--experiment: no experiment {name!r} in {uri}; run `churn train` first")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.`churn.kind` = 'train'",
                              order_by=["attributes.start_time DESC"], max_results=1,
                              output_format="list")
    remote = uri.startswith(("http://", "https://"))
    base = uri if remote else f"http://{host}:{port}"
    out.print(f"training runs: {ui_link(base, exp.experiment_id)}", soft_wrap=True)
    if runs:
        out.print(f"latest training run: {ui_link(base, exp.experiment_id, runs[0].info.run_id)}",
                  soft_wrap=True)
    if remote:
        return
    err.print(f"MLflow UI on {uri}; Ctrl+C stops it")
    sys.stdout.flush()
    sys.stderr.flush()
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    # what the UI itself creates (an experiment made there) goes under mlruns/, not the cwd
    os.execve(mlflow_cli, [mlflow_cli, "server", "--backend-store-uri", uri, "--host", host,
                           "--port", str(port), "--workers", "1",
                           "--artifacts-destination", str(settings.mlruns / "artifacts")], env)
