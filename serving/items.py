"""What the public service hands its Scorer (or scores in its own process): the items of a
merged batch, the functions that score them with the predictor, and the result of each (a
prediction, or the error of that caller's input)."""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel

from features.contract import to_utc_naive
from features.engine import features_of_relations
from scoring.predictor import predict
from scoring.reasons import feature_values
from scoring.store import LoadedModel
from serving.conversion import (
    category_levels,
    histories_to_relations,
    rows_to_features,
    unseen_warnings,
)
from serving.errors import error_body
from serving.schemas import (
    CustomerIn,
    ExplainResponse,
    FeatureContribution,
    FeatureRow,
    Prediction,
    json_value,
    predictions_from,
)

log = logging.getLogger(__name__)


class HistoryItem(BaseModel):
    customer: CustomerIn
    as_of: datetime
    reasons: bool = True
    path: str = ""  # prefix of this customer's field names in the caller's request
    version: str | None = None  # the model version to score with (the public holder's)


class RowItem(BaseModel):
    row: FeatureRow
    as_of: datetime
    reasons: bool = True
    index: int = 0  # position of the row in the caller's request
    version: str | None = None  # the model version to score with (the public holder's)


def _predictions_for(loaded: LoadedModel, feats: pd.DataFrame, wants: list[bool], ids: list,
                     top_k: int, bands: tuple[float, float]) -> list[Prediction]:
    """Predict a batch; TreeSHAP runs only for the rows that asked for reasons."""
    out = predict(loaded, feats, top_k, bands, with_reasons=np.asarray(wants, dtype=bool))
    return predictions_from(out.frame, out.reasons, out.lowering, ids, loaded.label)


class ItemResult(BaseModel):
    """One caller's answer within a merged batch: a prediction, or the error of its input."""


    prediction: Prediction | None = None
    error: dict | None = None  # serving.errors.error_body, with `status` when not 400


def score_histories(loaded: LoadedModel, items: list[HistoryItem], top_k: int,
                    bands: tuple[float, float]) -> list[ItemResult]:
    """One result per item, in order. Each history is validated and converted once; a bad one
    gets its error and never fails the others; the good ones share one feature build and one
    model call."""
    spec = loaded.model.spec
    histories = histories_to_relations([i.customer for i in items], [i.as_of for i in items],
                                       spec, [i.path for i in items])
    results: list[ItemResult | None] = [None] * len(items)
    for i, exc in histories.errors.items():
        results[i] = ItemResult(error=exc.body())
    if histories.accepted:
        feats = features_of_relations(histories.customers, histories.events, histories.obs, spec)
        chosen = [items[i] for i in histories.accepted]
        preds = _predictions_for(loaded, feats, [i.reasons for i in chosen],
                                 [i.customer.customer_id for i in chosen], top_k, bands)
        levels = category_levels(spec, loaded.model.encoder.levels_)
        for i, p in zip(histories.accepted, preds, strict=True):
            p.warnings = unseen_warnings(items[i].customer, spec, levels, items[i].path)
            results[i] = ItemResult(prediction=p)
    return results  # type: ignore[return-value]


def score_rows(loaded: LoadedModel, items: list[RowItem], top_k: int,
               bands: tuple[float, float]) -> list[ItemResult]:
    """One result per feature row, in order; a bad row gets its error alone."""
    spec = loaded.model.spec
    results: list[ItemResult | None] = [None] * len(items)
    feats, good, errors = rows_to_features([i.row for i in items], spec,
                                           [to_utc_naive(i.as_of) for i in items],
                                           [i.index for i in items])
    for i, exc in errors.items():
        results[i] = ItemResult(error=exc.body())
    if good:
        chosen = [items[i] for i in good]
        preds = _predictions_for(loaded, feats, [i.reasons for i in chosen],
                                 [i.row.customer_id for i in chosen], top_k, bands)
        for i, p in zip(good, preds, strict=True):
            results[i] = ItemResult(prediction=p)
    return results  # type: ignore[return-value]


def explain_history(loaded: LoadedModel, item: HistoryItem, top_k: int,
                    bands: tuple[float, float]) -> ItemResult | ExplainResponse:
    """Every feature's value and contribution for one customer, largest absolute contribution
    first (what a reader looks for), or the error of its input."""
    model, spec = loaded.model, loaded.model.spec
    histories = histories_to_relations([item.customer], [item.as_of], spec, [item.path])
    if histories.errors:
        return ItemResult(error=histories.errors[0].body())
    feats = features_of_relations(histories.customers, histories.events, histories.obs, spec)
    out = predict(loaded, feats, top_k, bands)
    contrib = out.contributions[0]
    values = feature_values(model, feats)[0]
    pred = predictions_from(out.frame, out.reasons, out.lowering, [item.customer.customer_id],
                            loaded.label)[0]
    return ExplainResponse(
        customer_id=item.customer.customer_id, as_of=item.as_of,
        churn_probability=pred.churn_probability, risk_band=pred.risk_band,
        base_value=float(contrib[-1]), raw_score=float(contrib.sum()),
        features=sorted((FeatureContribution(feature=f, value=json_value(v), contribution=float(c))
                         for f, v, c in zip(model.feature_names, values, contrib[:-1],
                                            strict=True)),
                        key=lambda fc: -abs(fc.contribution)),
        reasons=pred.reasons, lowering_reasons=pred.lowering_reasons,
        model_version=loaded.label,
        warnings=unseen_warnings(item.customer, spec, category_levels(
            spec, model.encoder.levels_), item.path),
    )


def isolated(func, items: list) -> list[ItemResult]:
    """Run a whole batch at once; if it fails unexpectedly, run the items one by one, so that
    one caller's input that breaks the engine never fails the callers sharing its batch."""
    try:
        return func(items)
    except Exception:
        if len(items) == 1:
            log.exception("scoring failed")
            return [ItemResult(error=error_body("could not score this input", status=500))]
        return [isolated(func, [item])[0] for item in items]
