"""Prometheus gauges of the last `churn monitor` run, read from the store's monitor_runs
(scoring/health.py) by a background thread of the service, so an alert can fire from /metrics:

- churn_monitor_flagged: 1 when the last run flagged anything (its exit code was 3), else 0
- churn_monitor_drifted_features: how many features it flagged
- churn_monitor_feature_drift{feature}: 1 for a flagged feature, 0 for one flagged before and
  no longer; labelled only by the model's own feature names (at most MAX_FEATURE_LABELS, the
  rest as "other"), so the label values stay bounded
- churn_monitor_score_psi, churn_monitor_realised_auc, churn_monitor_auc_flagged
- churn_monitor_last_run_timestamp_seconds: when it ran (alert when monitoring stops)
"""

from __future__ import annotations

import logging
import threading
import time
from calendar import timegm
from typing import Any

from scoring.health import HealthRow, latest_health
from scoring.records import engine_for
from scoring.settings import Settings

log = logging.getLogger(__name__)
MAX_FEATURE_LABELS = 300
REFRESH_S = 30.0
_gauges: dict[str, Any] = {}
_labelled: set[str] = set()
_started = threading.Event()


def _health_gauges() -> dict[str, Any]:
    """Created on first use, in the worker (after BentoML set up Prometheus' multiprocess
    folder). A gauge shows the value most recently set by any process."""
    if not _gauges:
        from prometheus_client import Gauge

        def gauge(name: str, text: str, labels: tuple[str, ...] = ()) -> Any:
            return Gauge(name, text, labels, multiprocess_mode="mostrecent")

        _gauges.update(
            flagged=gauge("churn_monitor_flagged", "1 when the last churn monitor run flagged "
                          "drift or realised accuracy, else 0."),
            drifted=gauge("churn_monitor_drifted_features", "Features the last churn monitor "
                          "run flagged as drifted."),
            feature=gauge("churn_monitor_feature_drift", "1 for a feature the last churn monitor "
                          "run flagged as drifted, 0 for one flagged earlier and no longer.",
                          ("feature",)),
            score_psi=gauge("churn_monitor_score_psi", "PSI of the score distribution in the "
                            "last churn monitor run's window."),
            auc=gauge("churn_monitor_realised_auc", "Realised ROC-AUC of the monitored version's "
                      "matured predictions in the last churn monitor run."),
            auc_flagged=gauge("churn_monitor_auc_flagged", "1 when the realised ROC-AUC fell below "
                              "the test interval's lower end."),
            last_run=gauge("churn_monitor_last_run_timestamp_seconds", "When churn monitor last "
                           "ran (Unix time)."),
        )
    return _gauges


def _feature_label(name: str) -> str:
    if name not in _labelled and len(_labelled) < MAX_FEATURE_LABELS:
        _labelled.add(name)
    return name if name in _labelled else "other"


def show(row: HealthRow | None) -> None:
    """Set the gauges from a monitor run (None: no run yet, flags at 0)."""
    g = _health_gauges()
    flags = set(row.drift_flags) if row else set()
    g["flagged"].set(float(bool(row and row.flagged)))
    g["drifted"].set(float(len(flags)))
    g["auc_flagged"].set(float(bool(row and row.auc_flagged)))
    for name in sorted(flags | _labelled):
        g["feature"].labels(feature=_feature_label(name)).set(float(name in flags))
    # what the last run did not judge is NaN, never an earlier run's value
    nan = float("nan")
    g["score_psi"].set(nan if row is None or row.score_psi is None else row.score_psi)
    g["auc"].set(nan if row is None or row.realised_auc is None else row.realised_auc)
    if row is not None and row.run_at is not None:
        g["last_run"].set(float(timegm(row.run_at.timetuple())))


def refresh(settings: Settings) -> HealthRow | None:
    row = latest_health(engine_for(settings), settings.model_name)
    show(row)
    return row


def start_health_gauges(settings: Settings, interval_s: float = REFRESH_S) -> None:
    """Set the gauges now and again every `interval_s` seconds in a daemon thread (once per
    process). A store that cannot be read is logged and tried again."""
    if _started.is_set():
        return
    _started.set()

    def loop() -> None:
        while True:
            try:
                refresh(settings)
            except Exception as exc:  # the service runs on without the gauges
                log.warning("monitor gauges not refreshed: %s", exc)
            time.sleep(interval_s)

    threading.Thread(target=loop, name="monitor-gauges", daemon=True).start()
