"""Runtime settings, read once from the environment (prefix CHURN_) through `get_settings()`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where models live and how scores are post-processed. Environment variables override."""

    model_config = SettingsConfigDict(env_prefix="CHURN_", frozen=True)

    home: Path = Field(default_factory=Path.cwd, description="Folder that holds mlruns/.")
    model_name: str = "churn"
    experiment: str = "churn"
    risk_bands: tuple[float, float] = (0.1, 0.3)  # low below the first, high from the second
    top_reasons: int = 3
    max_customers_per_request: int = 1000
    max_events_per_request: int = 100_000
    reload_interval_s: float = 10.0

    @property
    def mlruns(self) -> Path:
        return self.home.resolve() / "mlruns"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def risk_band(probability: float, edges: tuple[float, float]) -> str:
    low, high = edges
    return "high" if probability >= high else "medium" if probability >= low else "low"


def embedded_uri(settings: Settings) -> str:
    return f"sqlite:///{settings.mlruns / 'mlflow.db'}"


def tracking_uri(settings: Settings) -> str:
    """MLFLOW_TRACKING_URI when set, else SQLite under mlruns/ (the embedded default)."""
    import os

    return os.environ.get("MLFLOW_TRACKING_URI") or embedded_uri(settings)


def local_artifact_root(settings: Settings, uri: str) -> str | None:
    """Where new experiments keep artifacts: mlruns/artifacts with the embedded store, else
    wherever the server decides. (MLflow's set_tracking_uri also sets MLFLOW_TRACKING_URI, so
    the URI itself, not the environment, tells which store is in use.)"""
    if uri != embedded_uri(settings):
        return None
    return (settings.mlruns / "artifacts").as_uri()
