"""Bounded Prometheus labels. BentoML's traffic middleware labels every request's metrics with
its raw URL path, so each distinct path (every /review/customer/<id>, every path a scanner
tries, even refused with a 401 or 404) adds histogram series that live until the process
exits: memory grows with traffic and /metrics with it. The middleware runs outside ours, so
its metrics are wrapped once at import to label a request by its route instead."""

from __future__ import annotations

from typing import Any

from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

ROUTES = frozenset({
    "/", "/predict", "/predict_features", "/explain", "/batch/submit", "/batch/status",
    "/batch/get", "/model", "/review", "/review/", "/review/filters.js", "/review/export.csv",
    "/review/rescore", "/review/contacts", "/metrics", "/readyz", "/livez", "/healthz", "/docs",
    "/docs.json", "/docs.js", "/score_histories", "/score_feature_rows", "/review/campaigns",
    "/review/health",
})
PREFIXES = (("/review/customer/", "/review/customer/{id}"),
            ("/review/campaigns/", "/review/campaigns/{id}"),
            ("/static_content/", "/static_content/{file}"))
ENDPOINT_METRICS = ("metrics_request_duration", "metrics_request_total",
                    "metrics_request_in_progress", "metrics_websocket_connections",
                    "metrics_websocket_data_received", "metrics_websocket_data_sent")


def endpoint_label(path: str) -> str:
    """A route of this service as itself, a templated route as its template, anything else
    as "other"."""
    if path in ROUTES:
        return path
    for prefix, label in PREFIXES:
        if path.startswith(prefix):
            return label
    return "other"


class _RouteLabels:
    """A metric whose `endpoint` label is the request's route, not its path."""

    def __init__(self, metric: Any):
        self._metric = metric

    def labels(self, *args: Any, **kwargs: Any) -> Any:
        if "endpoint" in kwargs:
            kwargs["endpoint"] = endpoint_label(str(kwargs["endpoint"]))
        return self._metric.labels(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


def bound_endpoint_labels() -> None:
    """Wrap the traffic middleware's metrics when it sets them up (once per process)."""
    cls = RunnerTrafficMetricsMiddleware
    if getattr(cls, "_route_labels", False):
        return
    original = cls._setup

    def setup(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for name in ENDPOINT_METRICS:
            if hasattr(self, name):
                setattr(self, name, _RouteLabels(getattr(self, name)))

    cls._setup = setup
    cls._route_labels = True


# -- predictions and the prediction log ---------------------------------------------------------

BANDS = frozenset({"low", "medium", "high"})
PREDICTION_SOURCES = frozenset({"predict", "predict_features"})
DROP_REASONS = frozenset({"queue_full", "write_failed", "shutdown"})
MAX_VERSION_LABELS = 20  # model versions a process labels by name; later ones count as "other"
_versions: set[str] = set()
_counters: dict[str, Any] = {}


def _prediction_counters() -> dict[str, Any]:
    """Created on first use, in the worker: BentoML sets up Prometheus' multiprocess folder
    after the service module is imported, and a metric made before it would never reach
    /metrics."""
    if not _counters:
        from prometheus_client import Counter

        _counters["predictions"] = Counter(
            "churn_predictions", "Predictions answered, by risk band, model version and endpoint.",
            ["band", "model_version", "source"])
        _counters["dropped"] = Counter(
            "churn_prediction_log_dropped", "Prediction log records given up: queue_full (the "
            "writer's queue was full), write_failed (the database refused them), shutdown (left "
            "when the service stopped).", ["reason"])
    return _counters


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def _version_label(version: str) -> str:
    if version not in _versions and len(_versions) < MAX_VERSION_LABELS:
        _versions.add(version)
    return version if version in _versions else "other"


def count_predictions(answered: list[tuple[str, str]], source: str) -> None:
    """Count answered predictions, given as (band, model version) pairs."""
    counter = _prediction_counters()["predictions"]
    tally: dict[tuple[str, str], int] = {}
    for band, version in answered:
        key = (_bounded(band, BANDS), _version_label(version))
        tally[key] = tally.get(key, 0) + 1
    for (band, version), n in tally.items():
        counter.labels(band=band, model_version=version,
                       source=_bounded(source, PREDICTION_SOURCES)).inc(n)


def count_dropped(reason: str, n: int) -> None:
    """Count prediction log records given up (PredictionLog's `on_drop`)."""
    _prediction_counters()["dropped"].labels(reason=_bounded(reason, DROP_REASONS)).inc(n)


def init_prediction_counters() -> None:
    """Show both counters on /metrics from the start, the drops at zero."""
    counters = _prediction_counters()
    for reason in sorted(DROP_REASONS):
        counters["dropped"].labels(reason=reason)
