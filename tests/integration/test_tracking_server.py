"""MLFLOW_TRACKING_URI points training, the registry, promotion and scoring at a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from benchmarks.server import free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("w")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, (tmp_path / "mlflow-server.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_train_register_and_score_against_a_tracking_server(trained, mlflow_server, tmp_path):
    env = {**trained.env, "MLFLOW_TRACKING_URI": mlflow_server}
    work = tmp_path / "work"
    work.mkdir()

    def churn(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(BIN / "churn"), *args], cwd=work, env=env, text=True,
                              capture_output=True, timeout=900, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    result = json.loads(churn(
        "train", "--customers", str(trained.customers), "--events", str(trained.events),
        "--label", "explicit", "--horizon", "30", "--config", str(trained.home / "weak.toml"),
        "--json").stdout)
    assert result["model_version"] == "1" and result["aliases"] == ["champion"]

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    assert str(client.get_model_version_by_alias("churn", "champion").version) == "1"
    plots = {a.path for a in client.list_artifacts(result["model_run_id"], "plots")}
    assert "plots/shap_summary.png" in plots
    # the artifacts went to the server, nothing to a local store
    assert any((tmp_path / "server-artifacts").rglob("MLmodel"))
    assert not (work / "mlruns").exists()

    scores = work / "scores.parquet"
    churn("score", "--customers", str(trained.customers), "--events", str(trained.events),
          "--as-of", "2026-06-15", "--out", str(scores))
    assert scores.exists()
    assert "no training runs" not in churn("compare").stdout
