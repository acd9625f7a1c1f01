"""The one settings object: store, model, bands, request limits, the offer rule and the reviewer
page's files. Entry points read it once through `get_settings()` (environment variables with the
prefix CHURN_ override every field) and pass it down; library functions never read the
environment themselves."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Offer(BaseModel):
    """When a retention offer pays: probability x save_rate x value > cost, where value is
    `value_column` (a feature or numeric attribute) times `value_multiplier`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: float = Field(10.0, ge=0, allow_inf_nan=False)
    save_rate: float = Field(0.25, ge=0, le=1)
    value_column: str = Field("amount_sum_30d", min_length=1)
    value_multiplier: float = Field(12.0, gt=0, allow_inf_nan=False)


class Settings(BaseSettings):
    """Runtime settings. Environment variables override (CHURN_HOME, CHURN_RISK_BANDS, ...)."""


    model_config = SettingsConfigDict(env_prefix="CHURN_", env_nested_delimiter="__", frozen=True,
                                      populate_by_name=True)

    # the store
    home: Path = Field(default_factory=Path.cwd, description="Folder that holds mlruns/.")
    tracking_uri: str | None = Field(
        None, validation_alias=AliasChoices("CHURN_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="An MLflow server or database; default: SQLite under mlruns/.")
    model_name: str = "churn"
    experiment: str = "churn"
    model_uri: str = Field("models:/churn@champion", description="The model the service loads.")
    reload_interval_s: float = Field(10.0, description="How often the service checks the alias.")
    promotion_level: float = Field(0.95, gt=0, lt=1,
                                   description="Confidence level of the promotion gate's intervals.")

    # post-processing of scores
    risk_bands: tuple[float, float] = (0.1, 0.3)  # low below the first, high from the second
    top_reasons: int = Field(3, ge=1, le=20)

    # real time: requests scored in the public process at once before the rest go to the
    # batching scorer process (0: always the scorer); 2 measured best on 2 cores
    # (benchmarks/bench_serving.py)
    local_max_inflight: int = Field(2, ge=0)
    # a scorer call that takes longer is given up and scored in the public process instead
    scorer_timeout_s: float = Field(15.0, gt=0)

    # request limits
    max_customers_per_request: int = 1000
    max_events_per_request: int = 100_000

    # the offer rule, used by `churn train` (profit curve), `churn score` and the reviewer page;
    # CHURN_OFFER__COST, CHURN_OFFER__SAVE_RATE, ... override it
    offer: Offer = Offer()

    # the reviewer page (/review)
    review_scores: Path | None = Field(None, description="Scores Parquet written by `churn score`.")
    review_customers: Path | None = Field(None, description="Customers file (CSV or Parquet).")
    review_events: Path | None = Field(None, description="Events file (CSV or Parquet).")
    review_playbook: Path | None = Field(None, description="Playbook TOML; default: the packaged one.")
    review_page_size: int = Field(50, gt=0)
    review_max_page_size: int = Field(1000, gt=0)
    review_waterfall_steps: int = Field(10, gt=0)

    @field_validator("review_scores", "review_customers", "review_events", "review_playbook",
                     "tracking_uri", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def mlruns(self) -> Path:
        return self.home.resolve() / "mlruns"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def risk_band(probability: float, edges: tuple[float, float]) -> str:
    low, high = edges
    return "high" if probability >= high else "medium" if probability >= low else "low"
