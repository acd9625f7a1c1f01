"""The one settings object: store, model, bands, request limits, the offer rule and the reviewer
page's files. Entry points read it once through `get_settings()` (environment variables with the
prefix CHURN_ override every field) and pass it down; library functions never read the
environment themselves."""

from __future__ import annotations

import json
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class Offer(BaseModel):
    """When a retention offer pays: probability x save_rate x value > cost, where value is
    `value_column` (a feature or numeric attribute) times `value_multiplier`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: float = Field(10.0, ge=0, allow_inf_nan=False)
    save_rate: float = Field(0.25, ge=0, le=1)
    value_column: str = Field("amount_sum_30d", min_length=1)
    value_multiplier: float = Field(12.0, gt=0, allow_inf_nan=False)


class Monitor(BaseModel):
    """`churn monitor`'s thresholds and bounds (CHURN_MONITOR__PSI, ...). A feature drifts when
    its population stability index reaches `psi` and its test (KS or chi-square) gives a p-value
    below `p_value`; drift is judged only on `min_rows` or more predictions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_days: int = Field(7, ge=1, le=366)
    psi: float = Field(0.2, gt=0, allow_inf_nan=False)
    p_value: float = Field(0.01, gt=0, lt=1)
    min_rows: int = Field(200, ge=10)
    max_rows: int = Field(50_000, ge=100, description="Window rows sampled for drift at most.")
    max_log_rows: int = Field(2_000_000, ge=1000, description="Logged predictions read at most.")
    bootstrap: int = Field(1000, ge=0, le=100_000)
    level: float = Field(0.95, gt=0, lt=1)


WRITTEN_FILE = "settings.toml"  # under mlruns/: settings the product writes (learned save rate)


def written_settings_path(home: Path | str) -> Path:
    return Path(home).resolve() / "mlruns" / WRITTEN_FILE


def write_settings(home: Path | str, updates: dict[str, dict], writer: str, why: str) -> Path:
    """Merge `updates` ({table: {key: value}}) into the settings file the product writes,
    keeping what else it holds, atomically; `writer` (the command) and `why` head the file as
    comments. ValueError when the file there is not valid TOML."""
    path = written_settings_path(home)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc}); fix or remove it") from None
    for table, values in updates.items():
        data.setdefault(table, {}).update(values)
    lines = [f"# Settings written by churn ({writer}); environment variables "
             "(CHURN_OFFER__SAVE_RATE, ...) override them.", f"# {why}"]
    for table, values in data.items():
        if not isinstance(values, dict):
            lines.insert(2, f"{table} = {json.dumps(values)}")
            continue
        lines += ["", f"[{table}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


class _WrittenSettings(PydanticBaseSettingsSource):
    """Settings the product wrote under mlruns/ (`churn campaign report --apply` writes the
    offer's learned save rate there). Environment variables override them."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path):
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field, field_name):  # the whole file is read in __call__
        return None, field_name, False

    def __call__(self) -> dict:
        try:
            return tomllib.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: not valid TOML: {exc}") from None


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
    model_uri: str = Field("models:/churn@champion",
                           description="The model the service loads (default: model_name's champion).")
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

    # request limits: a body past its bound is refused (413) from Content-Length or while it
    # is read, before any parsing; strings past theirs are a 400 naming the field
    max_customers_per_request: int = Field(1000, gt=0)
    max_events_per_request: int = Field(100_000, gt=0)
    max_body_bytes: int = Field(16 * 2**20, gt=0, description="Largest JSON request body.")
    max_id_chars: int = Field(200, gt=0, description="Longest customer id.")
    max_string_chars: int = Field(1000, gt=0, description="Longest attribute or type string.")

    # /batch jobs: uploads and results live as files under batch_dir, one job runs at a time
    # (as `churn score`, in its own process, so its memory is returned when it ends)
    batch_dir: Path | None = Field(None, description="Job files; default: mlruns/batch.")
    batch_max_upload_bytes: int = Field(1 * 2**30, gt=0, description="Largest upload, both files.")
    batch_max_pending: int = Field(4, gt=0, description="Jobs queued or running before a 429.")
    batch_retention_s: float = Field(24 * 3600.0, gt=0, description="How long a finished job's "
                                     "files are kept.")
    batch_timeout_s: float = Field(3600.0, gt=0, description="A job running longer is stopped.")

    # security, off until set: API keys (Authorization: Bearer <key> or X-API-Key) for the API
    # and /metrics; reviewer keys (HTTP Basic password, or Bearer) for /review, which falls back
    # to the API keys; the Host names served ("*": any); origins allowed to POST from a browser
    api_keys: Annotated[tuple[str, ...], NoDecode] = ()
    review_keys: Annotated[tuple[str, ...], NoDecode] = ()
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ("*",)
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # registry liveness: /readyz turns unready when the alias could not be read for this long
    max_poll_age_s: float = Field(300.0, gt=0)

    # the engine that reads event files for `churn features`, `snapshots`, `train` and
    # `score`: DuckDB in process (memory bounded, spilling to disk past it) or Spark (local
    # mode by default; SPARK_REMOTE or spark_master point it at a cluster)
    engine: Literal["duckdb", "spark"] = "duckdb"
    duckdb_memory_limit: str = Field("4GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$",
                                     description="DuckDB's memory limit, e.g. 4GB.")
    duckdb_temp_dir: Path | None = Field(None, description="Where DuckDB spills; default: "
                                         "the system's temporary folder.")
    spark_master: str | None = Field(None, description="Spark master URL; default local[*].")
    spark_driver_memory: str = Field("4g", pattern=r"^\d+[kmgt]$")

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
    review_export_max_rows: int = Field(50_000, gt=0, description="Most rows in a CSV export.")
    review_currency: str = Field("", max_length=8, description="Shown before money, e.g. €.")
    review_crm_url: str | None = Field(
        None, description="Link to a customer in the CRM: an http(s) URL with {customer_id}.")
    contact_owner_max_chars: int = Field(100, gt=0)
    contact_note_max_chars: int = Field(2000, gt=0)

    # the product's store of records (contacts; campaigns and monitoring later): a database URL,
    # default SQLite at mlruns/churn.db
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: mlruns/churn.db.")

    # the prediction log (scoring/predlog.py): every prediction of /predict, /predict_features,
    # /batch and `churn score` in the store's `predictions` table; the service queues records
    # for one background writer and drops (and counts) those past the queue's bound
    prediction_log: bool = Field(True, description="Record every prediction in the store.")
    test_traffic: bool = Field(False, description="Mark every prediction this process logs as a "
                               "test call (trying the service), which monitoring leaves out.")
    prediction_log_queue: int = Field(10_000, gt=0, description="Records the service holds "
                                      "for the log's writer before it drops new ones.")
    prediction_log_drain_s: float = Field(10.0, ge=0, description="How long a stopping "
                                          "service waits for the log's writer to finish.")

    # `churn monitor`: drift thresholds, bounds and the bootstrap of realised accuracy
    monitor: Monitor = Monitor()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        home = (init_settings.init_kwargs.get("home") or os.environ.get("CHURN_HOME")
                or Path.cwd())
        return (init_settings, env_settings, dotenv_settings,
                _WrittenSettings(settings_cls, written_settings_path(home)), file_secret_settings)

    @model_validator(mode="before")
    @classmethod
    def _champion_of_model_name(cls, data: object) -> object:
        """CHURN_MODEL_NAME alone also names the model the service and `churn score` load."""
        if isinstance(data, dict) and data.get("model_name") and not data.get("model_uri"):
            return {**data, "model_uri": f"models:/{data['model_name']}@champion"}
        return data

    @field_validator("review_scores", "review_customers", "review_events", "review_playbook",
                     "tracking_uri", "batch_dir", "review_crm_url", "database_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("review_crm_url")
    @classmethod
    def _crm_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split(":", 1)[0].lower()
        if scheme not in ("http", "https") or not value.lower().startswith(scheme + "://"):
            raise ValueError("the CRM link must start with http:// or https://")
        if "{customer_id}" not in value:
            raise ValueError("the CRM link must contain {customer_id}")
        return value

    @field_validator("api_keys", "review_keys", "allowed_hosts", "allowed_origins",
                     mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        """CHURN_API_KEYS=a,b as well as the JSON list pydantic-settings reads."""
        if isinstance(value, str):
            if value.strip().startswith("["):
                return tuple(json.loads(value))
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @property
    def mlruns(self) -> Path:
        return self.home.resolve() / "mlruns"

    @property
    def batch_root(self) -> Path:
        return self.batch_dir.resolve() if self.batch_dir else self.mlruns / "batch"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def risk_band(probability: float, edges: tuple[float, float]) -> str:
    low, high = edges
    return "high" if probability >= high else "medium" if probability >= low else "low"
