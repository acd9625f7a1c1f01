from pathlib import Path

import pytest

from scoring.settings import Offer, Settings, risk_band
from scoring.store import ModelRef, embedded_uri, local_artifact_root, parse_model_uri, store_uri


def test_embedded_store_keeps_artifacts_under_mlruns(tmp_path: Path):
    settings = Settings(home=tmp_path)
    uri = embedded_uri(settings)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    assert local_artifact_root(settings, uri) == (tmp_path.resolve() / "mlruns" / "artifacts").as_uri()


def test_a_server_decides_where_artifacts_go(tmp_path: Path):
    assert local_artifact_root(Settings(home=tmp_path), "http://mlflow.internal:5000") is None


def test_the_store_comes_from_the_environment_once(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("CHURN_TRACKING_URI", raising=False)
    settings = Settings(home=tmp_path)
    assert store_uri(settings) == embedded_uri(settings)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert store_uri(settings) == embedded_uri(settings)  # read when the settings were made
    assert store_uri(Settings(home=tmp_path)) == "http://127.0.0.1:5000"


def test_every_setting_can_come_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    monkeypatch.setenv("CHURN_MODEL_URI", "models:/churn/3")
    monkeypatch.setenv("CHURN_RISK_BANDS", "[0.2, 0.5]")
    monkeypatch.setenv("CHURN_OFFER__COST", "4.5")
    monkeypatch.setenv("CHURN_OFFER__VALUE_COLUMN", "seats")
    monkeypatch.setenv("CHURN_REVIEW_SCORES", str(tmp_path / "scores.parquet"))
    monkeypatch.setenv("CHURN_REVIEW_EVENTS", "  ")
    s = Settings()
    assert (s.home, s.model_uri, s.risk_bands) == (tmp_path, "models:/churn/3", (0.2, 0.5))
    assert s.offer == Offer(cost=4.5, value_column="seats")
    assert s.review_scores == tmp_path / "scores.parquet" and s.review_events is None


def test_a_model_name_alone_also_names_the_champion_served(tmp_path: Path, monkeypatch):
    assert Settings(home=tmp_path).model_uri == "models:/churn@champion"
    monkeypatch.setenv("CHURN_MODEL_NAME", "shop")
    assert Settings(home=tmp_path).model_uri == "models:/shop@champion"
    monkeypatch.setenv("CHURN_MODEL_URI", "models:/churn/3")  # named outright: kept
    assert Settings(home=tmp_path).model_uri == "models:/churn/3"


def test_bad_offer_settings_are_refused(monkeypatch):
    monkeypatch.setenv("CHURN_OFFER__SAVE_RATE", "1.5")
    with pytest.raises(ValueError, match="save_rate"):
        Settings()


@pytest.mark.parametrize(("uri", "ref"), [
    ("models:/churn@champion", ModelRef("churn", alias="champion")),
    ("models:/churn/7", ModelRef("churn", version="7")),
    ("runs:/abc/model", None),
    ("/tmp/model", None),
])
def test_model_uris(uri, ref):
    assert parse_model_uri(uri) == ref


def test_risk_bands():
    assert [risk_band(p, (0.1, 0.3)) for p in (0.05, 0.1, 0.29, 0.3)] == [
        "low", "medium", "medium", "high"]


def test_a_model_of_another_feature_version_is_refused_with_the_reason():
    from features.definitions import FEATURE_VERSION
    from scoring.store import feature_version_problem

    assert feature_version_problem(FEATURE_VERSION) is None
    problem = feature_version_problem("2")
    assert problem is not None
    assert "feature version 2" in problem and f"feature version {FEATURE_VERSION}" in problem
    assert "churn train" in problem
