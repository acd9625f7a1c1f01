"""The model's health as `churn monitor` last saw it: one row per monitor run in the product's
store (scoring/records.py's database), so the service can show it without importing the
monitoring package. `churn monitor` writes a row; the service's "Model health" page and its
Prometheus gauges read them.

A row holds the run's headline numbers in columns and its detail as JSON text: every feature's
drift (`drift`: feature -> {psi, p_value, flagged}) and the realised accuracy per week
(`weeks`: a list of {week, rows, roc_auc, roc_auc_low, roc_auc_high, brier, lift_top10}).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, DateTime, Engine, Float, Integer, String, Table, Text, select

from scoring.records import metadata

monitor_runs = Table(
    "monitor_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_at", DateTime, nullable=False, index=True),  # UTC, naive: when it ran
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(200), nullable=False),
    Column("as_of", DateTime, nullable=False),  # the end of the drift window
    Column("window_days", Integer, nullable=False),
    Column("drift_rows", Integer, nullable=False),  # logged predictions in the window
    Column("drifted", Integer, nullable=False),  # features flagged
    Column("score_psi", Float, nullable=True),
    Column("score_flagged", Boolean, nullable=False),
    Column("matured_rows", Integer, nullable=False),  # predictions whose horizon has passed
    Column("realised_auc", Float, nullable=True),
    Column("realised_auc_low", Float, nullable=True),
    Column("realised_auc_high", Float, nullable=True),
    Column("test_auc_low", Float, nullable=True),  # the version's test interval
    Column("test_auc_high", Float, nullable=True),
    Column("auc_flagged", Boolean, nullable=False),
    Column("flagged", Boolean, nullable=False),  # anything above: the exit code was 3
    Column("psi_threshold", Float, nullable=True),  # the PSI that flagged a feature
    Column("drift", Text, nullable=False, default="{}"),
    Column("weeks", Text, nullable=False, default="[]"),
    Column("mlflow_run_id", String(64), nullable=True),
    Column("report", Text, nullable=True),  # where the HTML report was written
)


@dataclass(frozen=True)
class HealthRow:
    """One monitor run as stored."""

    model_name: str
    model_version: str
    as_of: datetime
    window_days: int
    drift_rows: int
    drifted: int
    score_psi: float | None
    score_flagged: bool
    matured_rows: int
    realised_auc: float | None
    realised_auc_low: float | None
    realised_auc_high: float | None
    test_auc_low: float | None
    auc_flagged: bool
    flagged: bool
    test_auc_high: float | None = None
    psi_threshold: float | None = None
    drift: dict[str, dict] = field(default_factory=dict)
    weeks: list[dict] = field(default_factory=list)
    mlflow_run_id: str | None = None
    report: str | None = None
    run_at: datetime | None = None
    id: int | None = None

    @property
    def drift_flags(self) -> list[str]:
        """The flagged features, most drifted first."""
        flagged = [(v.get("psi") or 0.0, k) for k, v in self.drift.items() if v.get("flagged")]
        return [k for _, k in sorted(flagged, reverse=True)]


def _finite(value: object) -> float | None:
    """JSON and SQL hold no NaN: a missing number is None."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _clean(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    return value


def write_health(engine: Engine, row: HealthRow, now: datetime | None = None) -> HealthRow:
    """Store one monitor run in its own transaction; returns it with its id and time."""
    run_at = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    values = {k: getattr(row, k) for k in (
        "model_name", "model_version", "as_of", "window_days", "drift_rows", "drifted",
        "score_flagged", "matured_rows", "auc_flagged", "flagged", "mlflow_run_id", "report")}
    values.update({k: _finite(getattr(row, k)) for k in (
        "score_psi", "realised_auc", "realised_auc_low", "realised_auc_high", "test_auc_low",
        "test_auc_high", "psi_threshold")})
    values.update(run_at=run_at, drift=json.dumps(_clean(row.drift)),
                  weeks=json.dumps(_clean(row.weeks)))
    with engine.begin() as conn:
        new_id = conn.execute(monitor_runs.insert().values(**values)).inserted_primary_key[0]
    return _row({**values, "id": int(new_id)})


def _row(m: dict) -> HealthRow:
    data = dict(m)
    data["drift"] = json.loads(data["drift"] or "{}")
    data["weeks"] = json.loads(data["weeks"] or "[]")
    return HealthRow(**data)


def read_health(engine: Engine, limit: int = 100, model_name: str | None = None) -> list[HealthRow]:
    """The latest `limit` monitor runs, oldest first (for plots over time)."""
    query = select(monitor_runs).order_by(monitor_runs.c.run_at.desc(), monitor_runs.c.id.desc())
    if model_name is not None:
        query = query.where(monitor_runs.c.model_name == model_name)
    with engine.connect() as conn:
        rows = [_row(dict(r._mapping)) for r in conn.execute(query.limit(limit))]
    return rows[::-1]


def latest_health(engine: Engine, model_name: str | None = None) -> HealthRow | None:
    rows = read_health(engine, 1, model_name)
    return rows[-1] if rows else None
