"""The BentoML service: real-time and batch churn predictions with reasons.

Two services work together. `ChurnService` is the public one: it answers 4xx errors with a JSON
body naming the field, shapes responses, and scores up to `local_max_inflight` requests in its
own process (a lone request pays no dispatcher wait and no second process hop). The rest go to
`Scorer`, whose batchable endpoints let BentoML's adaptive batching merge concurrent callers into
one feature build and one model call, with the model version the public process names. Both
call the predictor functions `churn score` uses.

Start it with `churn serve`, which binds 127.0.0.1 by default. It reads the settings
(`scoring.settings`) once per process: CHURN_MODEL_URI (default models:/churn@champion),
CHURN_HOME or MLFLOW_TRACKING_URI, bands, limits, the offer and the reviewer page's files.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import anyio
import bentoml
import pandas as pd
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from scoring.predlog import make_row, open_prediction_log
from scoring.settings import Settings, get_settings
from scoring.store import configure
from serving.batch import BatchJobs, get_route, status_route, submit_route
from serving.docs import ApiDocs
from serving.errors import combined, error_body
from serving.guard import Guard
from serving.health_gauges import start_health_gauges
from serving.holder import ModelHolder
from serving.items import (
    HistoryItem,
    ItemResult,
    RowItem,
    explain_history,
    isolated,
    score_histories,
    score_rows,
)
from serving.logs import quiet_client_errors
from serving.memory import start_heap_probe, start_trimming
from serving.metrics import (
    bound_endpoint_labels,
    count_dropped,
    count_predictions,
    init_prediction_counters,
)
from serving.readiness import Readiness
from serving.review import review_app
from serving.schemas import (
    CONTROL_MESSAGE,
    CustomerIn,
    ExplainRequest,
    ExplainResponse,
    ModelInfo,
    PredictFeaturesRequest,
    Prediction,
    PredictRequest,
    PredictResponse,
    RequestError,
    check_limits,
    check_strings,
    has_control,
    resolve_as_of,
)
from serving.test_traffic import TestTraffic, is_test_call
from serving.timeouts import patch_timeout_middleware
from serving.warmup import warm_up

log = logging.getLogger(__name__)
bound_endpoint_labels()
patch_timeout_middleware()  # BentoML's per-request timer held each request for its timeout

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "predict.json"


def open_holder(settings: Settings) -> ModelHolder:
    """Point MLflow at the configured store (read only: the service never creates, migrates or
    writes the registry), load the model once and watch its alias."""
    configure(settings, read_only=True)
    holder = ModelHolder(settings.model_uri, settings.reload_interval_s)
    holder.start_polling()
    return holder


# BentoML sheds requests (503) it expects to miss this bound; a queue is better than a failure
BATCH_LATENCY_MS = 30_000


async def call_scorer(method, arg):
    """Call a Scorer endpoint; retry once when a pooled connection was already closed.

    BentoML's client for dependencies keeps idle connections longer than the server does
    (bentoml/BentoML#4971), so under bursts a reused connection can be dead. Scoring is
    idempotent, so one retry on a connection-level failure is safe."""
    try:
        return await method(arg)
    except aiohttp.ClientConnectionError as exc:
        log.warning("scorer connection dropped (%s); retrying once", type(exc).__name__)
        return await method(arg)


def _json(model: BaseModel) -> Response:
    """A response model as JSON bytes, serialised once by pydantic (BentoML's own output
    handling of a returned model costs milliseconds per request)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


@bentoml.service(name="churn_scorer", workers=1, threads=4, traffic={"timeout": 120})
class Scorer:
    """Holds the model; batchable scoring endpoints used by ChurnService."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.holder = open_holder(self.settings)
        warm_up(self.holder, self.settings.top_reasons, self.settings.risk_bands)
        start_trimming()
        start_heap_probe("scorer")  # debug only (CHURN_DEBUG_HEAP)

    @bentoml.api(batchable=True, max_batch_size=128, max_latency_ms=BATCH_LATENCY_MS)
    def score_histories(self, items: list[HistoryItem]) -> list[ItemResult]:
        s = self.settings
        return _by_version(self.holder, items, lambda loaded, batch: score_histories(
            loaded, batch, s.top_reasons, s.risk_bands))

    @bentoml.api(batchable=True, max_batch_size=512, max_latency_ms=BATCH_LATENCY_MS)
    def score_feature_rows(self, items: list[RowItem]) -> list[ItemResult]:
        s = self.settings
        return _by_version(self.holder, items, lambda loaded, batch: score_rows(
            loaded, batch, s.top_reasons, s.risk_bands))

    @bentoml.api
    def explain(self, item: HistoryItem) -> ItemResult | ExplainResponse:
        s = self.settings
        return _by_version(self.holder, [item], lambda loaded, batch: [explain_history(
            loaded, batch[0], s.top_reasons, s.risk_bands)])[0]


# the scorer's answer to an item whose model version it cannot load: the public service then
# scores the request itself, with the version it holds (never with another one)
VERSION_REFUSED = "model_version"


def _by_version(holder: ModelHolder, items: list, func) -> list:
    """Score each item with the model version it names, isolating failures (`_isolated`); a
    merged batch may hold items of two versions while an alias moves. Items of a version this
    process cannot load are refused (VERSION_REFUSED), never scored with another version."""
    out: list = [None] * len(items)
    groups: dict[str | None, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.version, []).append(i)
    for version, where in groups.items():
        try:
            loaded = holder.at(version)
        except Exception as exc:
            log.warning("cannot load model version %s here (%s); its caller scores it",
                        version, " ".join(str(exc).split())[:200])
            for i in where:
                out[i] = ItemResult(error=error_body(
                    f"this process cannot load model version {version}", VERSION_REFUSED,
                    status=503))
            continue
        results = isolated(lambda batch, m=loaded: func(m, batch), [items[i] for i in where])
        for i, r in zip(where, results, strict=True):
            out[i] = r
    return out


def _refused(result) -> bool:
    """Whether the scorer refused an item for its model version (VERSION_REFUSED)."""
    error = result.get("error") if isinstance(result, dict) else getattr(result, "error", None)
    return isinstance(error, dict) and error.get("field") == VERSION_REFUSED


async def model_info(request: Request) -> JSONResponse:
    """GET /model: the served model's name, version, alias, run, metrics and features: the
    public process's model, the version every request is scored with."""
    holder = bentoml.get_current_service().holder
    loaded = holder.current
    polled = holder.last_poll if holder.poll_age() is not None else None
    info = ModelInfo(
        name=loaded.name, version=loaded.version, aliases=loaded.aliases, uri=loaded.uri,
        run_id=loaded.run_id, feature_version=loaded.model.spec.version,
        metrics=loaded.metrics, features=loaded.model.feature_names,
        last_poll=None if polled is None else datetime.fromtimestamp(polled, UTC),
        poll_error=holder.last_error,
    )
    return JSONResponse(info.model_dump(mode="json"))


pages = Starlette(routes=[Route("/model", model_info, methods=["GET"]),
                         Route("/batch/submit", submit_route, methods=["POST"]),
                         Route("/batch/status", status_route, methods=["GET"]),
                         Route("/batch/get", get_route, methods=["GET"]),
                         Mount("/review", app=review_app)])


@bentoml.asgi_app(pages, path="/")
@bentoml.service(name="churn", workers=1, traffic={"timeout": 600})
class ChurnService:
    """Public endpoints: /predict, /predict_features, /explain, /batch/*; GET /model."""

    scorer = bentoml.depends(Scorer)

    def __init__(self) -> None:
        quiet_client_errors()
        self.settings = get_settings()
        self.holder = open_holder(self.settings)  # for in-process scoring and batch jobs
        warm_up(self.holder, self.settings.top_reasons, self.settings.risk_bands)
        self.jobs = BatchJobs(self.settings)
        init_prediction_counters()
        start_health_gauges(self.settings)  # the last churn monitor run, on /metrics
        # every answered prediction, written by a background thread: a request never waits
        self.predlog = open_prediction_log(self.settings, on_drop=count_dropped)
        start_trimming()
        start_heap_probe("churn")  # debug only (CHURN_DEBUG_HEAP)
        self._local = 0  # requests being scored in this process now
        self._examples: tuple[str | None, dict] | None = None  # (model version, examples)

    async def _score(self, local, remote, arg):
        """Score in this process while fewer than `local_max_inflight` requests are being
        scored here, else hand over to the batching Scorer.

        A lone request then pays neither the dispatcher's wait nor a second process hop, and
        under concurrency the rest is merged into batches by the Scorer in its own process
        (benchmarks/bench_serving.py measures both ways)."""
        if self._local < self.settings.local_max_inflight:
            return await self._score_here(local, arg)
        try:
            with anyio.fail_after(self.settings.scorer_timeout_s):
                result = await call_scorer(remote, arg)
        except (TimeoutError, aiohttp.ClientConnectionError) as exc:
            # the scorer hung or dropped the connection twice (bentoml/BentoML#4971): this
            # process holds the same model, so the caller still gets its answer
            log.warning("scorer failed (%s); scoring in this process", type(exc).__name__)
            return await self._score_here(local, arg)
        if any(_refused(r) for r in (result if isinstance(result, list) else [result])):
            # the scorer could not load the version this process named: score it here
            return await self._score_here(local, arg)
        return result

    async def _score_here(self, local, arg):
        self._local += 1
        try:
            return await anyio.to_thread.run_sync(local, arg)
        finally:
            self._local -= 1

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Churn probability, risk band and top reasons from raw interaction history."""
        s = self.settings
        try:
            check_limits(len(request.customers), sum(len(c.events) for c in request.customers),
                         s.max_customers_per_request, s.max_events_per_request)
            check_strings(request.customers, [f"customers[{i}]." for i in
                                              range(len(request.customers))],
                          s.max_id_chars, s.max_string_chars)
            as_of = resolve_as_of(request.as_of)
        except RequestError as exc:
            return _error(exc)
        when, loaded = as_of.to_pydatetime(), self.holder.current
        items = [HistoryItem.model_construct(customer=c, as_of=when, reasons=request.reasons,
                                             path=f"customers[{i}].", version=loaded.version)
                 for i, c in enumerate(request.customers)]
        scored = await self._score(
            lambda batch: isolated(lambda b: score_histories(loaded, b, s.top_reasons,
                                                              s.risk_bands), batch),
            self.scorer.to_async.score_histories, items)
        return self._respond(scored, as_of, "predict", [when] * len(items))

    @bentoml.api(route="/predict_features")
    async def predict_features(self, request: PredictFeaturesRequest, /) -> PredictResponse:
        """The same response, for callers that already hold feature rows."""
        s = self.settings
        as_of = resolve_as_of(None)
        try:
            check_limits(len(request.rows), 0, s.max_customers_per_request, 1)
            long_id = next((i for i, r in enumerate(request.rows)
                            if r.id_too_long(s.max_id_chars)), None)
            if long_id is not None:
                raise RequestError(f"rows[{long_id}].customer_id",
                                   f"longer than {s.max_id_chars} characters")
            bad_id = next((i for i, r in enumerate(request.rows)
                           if has_control(str(r.customer_id))), None)
            if bad_id is not None:
                raise RequestError(f"rows[{bad_id}].customer_id", CONTROL_MESSAGE)
        except RequestError as exc:
            return _error(exc)
        when, loaded = as_of.to_pydatetime(), self.holder.current
        items = [RowItem.model_construct(row=r, as_of=when, reasons=request.reasons, index=i,
                                         version=loaded.version)
                 for i, r in enumerate(request.rows)]
        scored = await self._score(
            lambda batch: isolated(lambda b: score_rows(loaded, b, s.top_reasons,
                                                         s.risk_bands), batch),
            self.scorer.to_async.score_feature_rows, items)
        return self._respond(scored, as_of, "predict_features",
                             [r.as_of or when for r in request.rows])

    def _respond(self, scored: list, as_of: pd.Timestamp, source: str,
                 times: list[datetime]) -> PredictResponse | JSONResponse:
        """The response of a whole request; its predictions are counted and logged (with each
        one's observation time in `times`) only when every one of them is answered."""
        results = [ItemResult.model_validate(s) if isinstance(s, dict) else s for s in scored]
        bad = [(i, r.error) for i, r in enumerate(results) if r.error is not None]
        if bad:  # the first bad customer or row names its field; detail lists every one
            body, status = combined([e for _, e in bad], index=bad[0][0])
            return JSONResponse(body, status_code=status)
        preds = [r.prediction for r in results]
        self._record(preds, times, source)
        return _json(PredictResponse(as_of=as_of.to_pydatetime(), predictions=preds,
                                     model_version=preds[0].model_version if preds else ""))

    def _record(self, preds: list[Prediction], times: list[datetime], source: str) -> None:
        """Count the answered predictions and queue them for the prediction log; this never
        fails or delays the request (the log's writer is a background thread)."""
        try:
            count_predictions([(p.risk_band, p.model_version) for p in preds], source)
            if self.predlog is not None:
                self.predlog.record([
                    make_row(p.customer_id, when, p.churn_probability, p.risk_band,
                             [r.feature for r in p.reasons], p.model_version, source,
                             model_name=self.holder.current.name,
                             test=self.settings.test_traffic or is_test_call())
                    for p, when in zip(preds, times, strict=True)])
        except Exception:
            log.exception("could not record %d predictions", len(preds))

    @bentoml.on_shutdown
    async def close_prediction_log(self) -> None:
        """On a clean shutdown, store what the log still holds (for prediction_log_drain_s at
        most; what is left then is counted as dropped)."""
        if self.predlog is not None:
            await anyio.to_thread.run_sync(self.predlog.close, self.settings.prediction_log_drain_s)

    @bentoml.api(route="/explain")
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Every feature's value and contribution for one customer, with the base value."""
        s = self.settings
        customer = CustomerIn.model_construct(**{k: getattr(request, k)
                                                 for k in CustomerIn.model_fields})
        try:
            check_limits(1, len(customer.events), 1, s.max_events_per_request, path="")
            check_strings([customer], [""], s.max_id_chars, s.max_string_chars)
            as_of = resolve_as_of(request.as_of)
        except RequestError as exc:
            return _error(exc)
        loaded = self.holder.current
        item = HistoryItem.model_construct(customer=customer, as_of=as_of.to_pydatetime(),
                                           reasons=True, path="", version=loaded.version)
        result = await self._score(
            lambda it: isolated(lambda b: [explain_history(loaded, b[0], s.top_reasons,
                                                            s.risk_bands)], [it])[0],
            self.scorer.to_async.explain, item)
        if isinstance(result, dict) and result.get("error"):
            result = ItemResult.model_validate(result)
        if isinstance(result, ItemResult):
            body, status = combined([result.error or {}])
            return JSONResponse(body, status_code=status)
        return _json(result)

    def batch_model(self) -> str:
        """The URI a batch job scores with: the version this process serves right now."""
        loaded = self.holder.current
        return f"models:/{loaded.name}/{loaded.version}" if loaded.name else self.holder.uri

    def openapi_examples(self) -> dict:
        """Request examples of the OpenAPI document: examples/predict.json for /predict, its
        first customer for /explain, and that customer's feature row under the served model
        for /predict_features (cached per model version)."""
        loaded = self.holder.current
        if self._examples is None or self._examples[0] != loaded.version:
            predict_body = json.loads(EXAMPLES.read_text())
            first = predict_body["customers"][0]
            item = HistoryItem(customer=CustomerIn(**first), as_of=predict_body["as_of"])
            explained = explain_history(loaded, item, self.settings.top_reasons,
                                        self.settings.risk_bands)
            values = {f.feature: f.value for f in explained.features}
            row = {"customer_id": first["customer_id"], "as_of": predict_body["as_of"],
                   **{name: values[name] for name in loaded.model.feature_names}}
            self._examples = (loaded.version, {
                "/predict": predict_body, "/explain": {**first, "as_of": predict_body["as_of"]},
                "/predict_features": {"rows": [row], "reasons": True}})
        return self._examples[1]

    def value_columns(self) -> frozenset[str]:
        """The columns a batch job may value customers by: the served model's features and
        numeric attributes (scoring.predictor.offer_if_valued)."""
        spec = self.holder.current.model.spec
        return frozenset((*spec.feature_names, *spec.attributes.numeric))

    def __is_ready__(self) -> bool:
        """/readyz: unready once the alias could not be read for `max_poll_age_s`."""
        age = self.holder.poll_age()
        return age is None or age <= self.settings.max_poll_age_s


ChurnService.add_asgi_middleware(Guard)  # first added, outermost: every answer passes it
ChurnService.add_asgi_middleware(ApiDocs)
ChurnService.add_asgi_middleware(Readiness)
ChurnService.add_asgi_middleware(TestTraffic)  # innermost: its mark reaches the handler


__all__ = ["ChurnService", "Scorer"]
