"""The BentoML service: real-time and batch churn predictions with reasons.

Two services work together. `ChurnService` is the public one: it validates requests, answers
4xx errors with a JSON body naming the field, and shapes responses. `Scorer` holds the model and
exposes batchable endpoints, so BentoML's adaptive batching merges concurrent callers into one
feature query and one model call. Both call the predictor functions `churn score` uses.

Start it with `churn serve`, which binds 127.0.0.1 by default. It reads the settings
(`scoring.settings`) once per process: CHURN_MODEL_URI (default models:/churn@champion),
CHURN_HOME or MLFLOW_TRACKING_URI, bands, limits, the offer and the reviewer page's files.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime
from pathlib import Path

import aiohttp
import bentoml
import pandas as pd
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from features.contract import load_tables, to_utc_naive
from features.engine import feature_table
from scoring.predictor import offer_if_valued, predict, score_batch
from scoring.settings import Settings, get_settings
from scoring.store import LoadedModel, configure
from serving.holder import ModelHolder
from serving.review import review_app
from serving.schemas import (
    CustomerIn,
    ExplainRequest,
    ExplainResponse,
    FeatureContribution,
    FeatureRow,
    ModelInfo,
    PredictFeaturesRequest,
    Prediction,
    PredictRequest,
    PredictResponse,
    RequestError,
    check_limits,
    histories_to_frames,
    json_value,
    predictions_from,
    resolve_as_of,
    rows_to_features,
)

log = logging.getLogger(__name__)


def open_holder(settings: Settings) -> ModelHolder:
    """Point MLflow at the configured store, load the model once and watch its alias."""
    configure(settings)
    holder = ModelHolder(settings.model_uri, settings.reload_interval_s)
    holder.start_polling()
    return holder


# BentoML sheds requests (503) it expects to miss this bound; a queue is better than a failure
BATCH_LATENCY_MS = 30_000


class HistoryItem(BaseModel):
    customer: CustomerIn
    as_of: datetime
    reasons: bool = True


class RowItem(BaseModel):
    row: FeatureRow
    as_of: datetime
    reasons: bool = True


def _predictions_for(loaded: LoadedModel, feats: pd.DataFrame, items: list, ids: list, top_k: int,
                     bands: tuple[float, float]) -> list[Prediction]:
    """Predict a batch; TreeSHAP runs only if some caller in the batch asked for reasons."""
    want = [i.reasons for i in items]
    out = predict(loaded, feats, top_k, bands, with_reasons=any(want))
    reasons = [r if w else [] for r, w in zip(out.reasons, want, strict=True)]
    lowering = [r if w else [] for r, w in zip(out.lowering, want, strict=True)]
    return predictions_from(out.frame, reasons, lowering, ids, loaded.label)


class ItemResult(BaseModel):
    """One caller's answer within a merged batch: a prediction, or the error of its input."""


    prediction: Prediction | None = None
    error: dict | None = None


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


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


def _score_histories(loaded: LoadedModel, items: list[HistoryItem], top_k: int,
                     bands: tuple[float, float]) -> list[Prediction]:
    spec = loaded.model.spec
    cust, events, obs = histories_to_frames([i.customer for i in items],
                                            [to_utc_naive(i.as_of) for i in items], spec)
    feats = feature_table(cust, events, spec, obs)
    return _predictions_for(loaded, feats, items, [i.customer.customer_id for i in items], top_k,
                            bands)


def _per_item(func, items: list) -> list[ItemResult]:
    """Run a whole batch at once; if one item is bad, run them one by one so that a caller's
    bad input never fails other callers that share the batch."""
    try:
        return [ItemResult(prediction=p) for p in func(items)]
    except RequestError:
        out = []
        for item in items:
            try:
                out.append(ItemResult(prediction=func([item])[0]))
            except RequestError as exc:
                out.append(ItemResult(error=exc.body()))
        return out


@bentoml.service(name="churn_scorer", workers=1, threads=4, traffic={"timeout": 120})
class Scorer:
    """Holds the model; batchable scoring endpoints used by ChurnService."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.holder = open_holder(self.settings)

    @bentoml.api(batchable=True, max_batch_size=128, max_latency_ms=BATCH_LATENCY_MS)
    def score_histories(self, items: list[HistoryItem]) -> list[ItemResult]:
        loaded = self.holder.current
        s = self.settings
        return _per_item(lambda batch: _score_histories(loaded, batch, s.top_reasons,
                                                        s.risk_bands), items)

    @bentoml.api(batchable=True, max_batch_size=512, max_latency_ms=BATCH_LATENCY_MS)
    def score_feature_rows(self, items: list[RowItem]) -> list[ItemResult]:
        loaded = self.holder.current
        s = self.settings

        def run(batch: list[RowItem]) -> list[Prediction]:
            spec = loaded.model.spec
            rows = [i.row if i.row.as_of else i.row.model_copy(update={"as_of": i.as_of})
                    for i in batch]
            feats = rows_to_features(rows, spec, to_utc_naive(batch[0].as_of))
            return _predictions_for(loaded, feats, batch, [i.row.customer_id for i in batch],
                                    s.top_reasons, s.risk_bands)

        return _per_item(run, items)

    @bentoml.api
    def explain(self, item: HistoryItem) -> ItemResult | ExplainResponse:
        loaded = self.holder.current
        model, spec = loaded.model, loaded.model.spec
        try:
            cust, events, obs = histories_to_frames([item.customer], [to_utc_naive(item.as_of)],
                                                    spec, path="")
        except RequestError as exc:
            return ItemResult(error=exc.body())
        feats = feature_table(cust, events, spec, obs)
        out = predict(loaded, feats, self.settings.top_reasons, self.settings.risk_bands)
        contrib = out.contributions[0]
        values = feats[model.feature_names].to_numpy(dtype=object)[0]
        pred = predictions_from(out.frame, out.reasons, out.lowering, [item.customer.customer_id],
                                loaded.label)[0]
        return ExplainResponse(
            customer_id=item.customer.customer_id, as_of=item.as_of,
            churn_probability=pred.churn_probability, risk_band=pred.risk_band,
            base_value=float(contrib[-1]), raw_score=float(contrib.sum()),
            features=[FeatureContribution(feature=f, value=json_value(v), contribution=float(c))
                      for f, v, c in zip(model.feature_names, values, contrib[:-1], strict=True)],
            reasons=pred.reasons, lowering_reasons=pred.lowering_reasons,
            model_version=loaded.label,
        )

    @bentoml.api
    def info(self) -> ModelInfo:
        loaded = self.holder.current
        return ModelInfo(
            name=loaded.name, version=loaded.version, aliases=loaded.aliases, uri=loaded.uri,
            run_id=loaded.run_id, feature_version=loaded.model.spec.version,
            metrics=loaded.metrics, features=loaded.model.feature_names,
        )


async def model_info(request: Request) -> JSONResponse:
    """GET /model: the served model's name, version, alias, run, metrics and features."""
    service = bentoml.get_current_service()
    info = await call_scorer(lambda _: service.scorer.to_async.info(), None)
    info = info.model_dump(mode="json") if isinstance(info, BaseModel) else info
    return JSONResponse(info)


pages = Starlette(routes=[Route("/model", model_info, methods=["GET"]),
                         Mount("/review", app=review_app)])


@bentoml.asgi_app(pages, path="/")
@bentoml.service(name="churn", workers=1, traffic={"timeout": 600})
class ChurnService:
    """Public endpoints: /predict, /predict_features, /explain, /batch; GET /model."""

    scorer = bentoml.depends(Scorer)

    def __init__(self) -> None:
        self.settings = get_settings()
        self.holder = open_holder(self.settings)  # for validation and batch jobs

    def _spec(self):
        return self.holder.current.model.spec

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> PredictResponse:
        """Churn probability, risk band and top reasons from raw interaction history."""
        s = self.settings
        try:
            check_limits(len(request.customers), sum(len(c.events) for c in request.customers),
                         s.max_customers_per_request, s.max_events_per_request)
            as_of = resolve_as_of(request.as_of)
            histories_to_frames(request.customers, [as_of] * len(request.customers), self._spec())
        except RequestError as exc:
            return _error(exc)
        items = [HistoryItem(customer=c, as_of=as_of.to_pydatetime(), reasons=request.reasons)
                 for c in request.customers]
        scored = await call_scorer(self.scorer.to_async.score_histories, items)
        return self._respond(scored, as_of)

    @bentoml.api(route="/predict_features")
    async def predict_features(self, request: PredictFeaturesRequest, /) -> PredictResponse:
        """The same response, for callers that already hold feature rows."""
        s = self.settings
        as_of = resolve_as_of(None)
        try:
            check_limits(len(request.rows), 0, s.max_customers_per_request, 1)
            rows_to_features(request.rows, self._spec(), as_of)
        except RequestError as exc:
            return _error(exc)
        items = [RowItem(row=r, as_of=as_of.to_pydatetime(), reasons=request.reasons)
                 for r in request.rows]
        scored = await call_scorer(self.scorer.to_async.score_feature_rows, items)
        return self._respond(scored, as_of)

    def _respond(self, scored: list, as_of: pd.Timestamp) -> PredictResponse | JSONResponse:
        results = [ItemResult.model_validate(s) if isinstance(s, dict) else s for s in scored]
        for i, r in enumerate(results):
            if r.error is not None:  # the spec changed between validation and scoring
                return JSONResponse({**r.error, "index": i}, status_code=400)
        preds = [r.prediction for r in results]
        return PredictResponse(as_of=as_of.to_pydatetime(), predictions=preds,
                               model_version=preds[0].model_version if preds else "")

    @bentoml.api(route="/explain")
    async def explain(self, request: ExplainRequest, /) -> ExplainResponse:
        """Every feature's value and contribution for one customer, with the base value."""
        s = self.settings
        customer = CustomerIn(**request.model_dump(exclude={"as_of"}))
        try:
            check_limits(1, len(customer.events), 1, s.max_events_per_request, path="")
            as_of = resolve_as_of(request.as_of)
            histories_to_frames([customer], [as_of], self._spec(), path="")
        except RequestError as exc:
            return _error(exc)
        result = await call_scorer(self.scorer.to_async.explain,
                                   HistoryItem(customer=customer, as_of=as_of.to_pydatetime()))
        if isinstance(result, dict) and "error" in result and result["error"]:
            return JSONResponse(result["error"], status_code=400)
        return result

    @bentoml.task(route="/batch")
    def batch(self, customers: Path, events: Path, as_of: str | None = None) -> bytes:
        """Score uploaded customers and events files (CSV or Parquet) into a Parquet of scores,
        with the same columns as `churn score`. Poll /batch/status, fetch /batch/get."""
        when = resolve_as_of(None if as_of is None else pd.Timestamp(as_of).to_pydatetime())
        loaded = self.holder.current
        s = self.settings
        tables = load_tables(_with_suffix(customers), _with_suffix(events))
        scores = score_batch(loaded, tables.customers, tables.events, when, s.top_reasons,
                             s.risk_bands, offer_if_valued(s.offer, loaded.model.spec))
        if scores.empty:
            raise bentoml.exceptions.InvalidArgument(f"as_of: no customer is active at {when}")
        # bytes, not a file response: BentoML's task store cannot keep a FileResponse
        buffer = io.BytesIO()
        scores.to_parquet(buffer, index=False)
        return buffer.getvalue()


def _with_suffix(path: Path) -> Path:
    """Uploaded files may lose their name; recognise Parquet by its magic bytes."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq", ".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        return path
    with open(path, "rb") as fh:
        head = fh.read(4)
    suffix = ".parquet" if head == b"PAR1" else ".csv.gz" if head[:2] == b"\x1f\x8b" else ".csv"
    target = path.with_name(path.name + suffix)
    path.rename(target)
    return target


__all__ = ["ChurnService", "Scorer"]
