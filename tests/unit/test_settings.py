from pathlib import Path

from features.settings import Settings, embedded_uri, local_artifact_root, risk_band, tracking_uri


def test_embedded_store_keeps_artifacts_under_mlruns(tmp_path: Path):
    settings = Settings(home=tmp_path)
    uri = embedded_uri(settings)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert local_artifact_root(settings, uri) == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()


def test_a_server_decides_where_artifacts_go(tmp_path: Path):
    assert local_artifact_root(Settings(home=tmp_path), "http://mlflow.internal:5000") is None


def test_tracking_uri_prefers_the_environment(tmp_path: Path, monkeypatch):
    settings = Settings(home=tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(settings) == embedded_uri(settings)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(settings) == "http://127.0.0.1:5000"


def test_risk_bands():
    assert [risk_band(p, (0.1, 0.3)) for p in (0.05, 0.1, 0.29, 0.3)] == [
        "low", "medium", "medium", "high"]
