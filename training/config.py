"""The training configuration: a small TOML file parsed into a frozen, typed object."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LightGBMParams(_Frozen):
    num_leaves: int = Field(15, ge=2, le=1024)
    learning_rate: float = Field(0.05, gt=0, le=1)
    min_child_samples_frac: float = Field(0.002, ge=0, le=0.2,
                                          description="min_child_samples as a share of rows")
    min_child_samples_floor: int = Field(20, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    lambda_l2: float = Field(1.0, ge=0)
    max_rounds: int = Field(600, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)


class SearchConfig(_Frozen):
    trials: int = Field(6, ge=0, description="Optuna trials on validation; 0 skips the search")
    timeout_s: float = Field(300, gt=0)


class SplitConfig(_Frozen):
    validation_times: int = Field(2, ge=1)
    test_times: int = Field(2, ge=1)
    purge: bool = Field(True, description="drop observation times whose label window overlaps "
                                          "the next split's first observation time")


CandidateName = Literal["lightgbm", "logistic", "bgnbd", "lightgbm_bgnbd", "blend"]
CANDIDATES: tuple[CandidateName, ...] = get_args(CandidateName)  # the one list of candidates


class CandidatesConfig(_Frozen):
    include: tuple[CandidateName, ...] = Field(
        CANDIDATES, min_length=1,
        description="the candidates that may be registered (every one is weighed and reported); "
                    "bgnbd and lightgbm_bgnbd need an inactivity label")
    logistic_c: float = Field(0.5, gt=0, description="inverse L2 strength of the logistic model")
    prefer_blend: bool = Field(
        True, description="register the blend unless a single candidate's validation ROC-AUC "
                          "beats it beyond noise (a paired customer bootstrap)")
    prefer_bgnbd: bool = Field(
        True, description="register BG/NBD (inactivity labels) unless the candidate chosen "
                          "otherwise beats its validation ROC-AUC beyond noise (a paired "
                          "customer bootstrap)")


class RefitConfig(_Frozen):
    enabled: bool = Field(True, description="register the winner refitted on every labelled time")
    folds: int = Field(3, ge=2, le=10, description="customer folds of the out-of-fold calibration")
    round_factor: float = Field(1.1, gt=0, le=3,
                                description="boosting rounds of the refit, x the evaluation's")
    calibration_share: float = Field(
        1.0, gt=0, le=1, description="share of the newest labelled times whose out-of-fold "
                                     "predictions calibrate the refit (1: every time)")
    btyd_whole_log: bool = Field(
        True, description="the refit reads every row's BG/NBD columns with the parameters "
                          "fitted on the whole log, those scoring uses (false: those fitted on "
                          "the log before each row's time, as the evaluation model does)")


class SampleConfig(_Frozen):
    memory_mb: float = Field(
        3300, ge=0, description="peak memory the snapshot rows may take in training; above it, "
                                "train on a stratified sample of customers (0: never sample)")


class TrainConfig(_Frozen):
    seed: int = 0
    num_threads: int = Field(2, ge=1)
    max_event_types: int = Field(30, ge=1)
    activity_types: tuple[str, ...] = Field(
        (), description="event types that count as activity (the inactivity label, recency, "
                        "the activity totals, BG/NBD); empty: every event")
    min_history_days: int = Field(28, ge=0, description="log history before the first "
                                                        "observation time")
    calibration: Literal["auto", "isotonic", "sigmoid"] = Field(
        "auto", description="auto: Platt (sigmoid) below 1000 validation churners, else isotonic")
    lightgbm: LightGBMParams = LightGBMParams()
    search: SearchConfig = SearchConfig()
    split: SplitConfig = SplitConfig()
    candidates: CandidatesConfig = CandidatesConfig()
    refit: RefitConfig = RefitConfig()
    sample: SampleConfig = SampleConfig()
    confidence_level: float = Field(0.95, gt=0, lt=1, description="level of metric intervals")
    bootstrap: int | None = Field(
        None, ge=0, description="customer resamples for metric intervals; default: enough for the "
                                "level (1,000 at 95%); 0 skips the intervals")


def load_config(path: Path | None = None) -> TrainConfig:
    """Parse a TOML config (the packaged default when no path is given)."""
    path = path or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--config: file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config: {path} is not valid TOML: {exc}") from None
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"--config: {path}: {where}: {first['msg']}") from None


def flat_params(config: TrainConfig) -> dict[str, object]:
    """The whole config as flat key -> value pairs for MLflow params."""
    out: dict[str, object] = {}

    def walk(prefix: str, obj: dict) -> None:
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(name + ".", value)
            elif isinstance(value, (list, tuple)):  # a JSON list, readable back from MLflow
                out[name] = json.dumps(list(value))
            else:
                out[name] = value

    walk("", config.model_dump())
    return out


def config_changes(config: TrainConfig, base: TrainConfig | None = None) -> dict[str, object]:
    """The keys whose value differs from `base` (the packaged default), as flat key -> value."""
    before = flat_params(base or load_config())
    return {k: v for k, v in flat_params(config).items() if before.get(k) != v}
