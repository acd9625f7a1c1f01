"""The one predictor: batch scoring (`churn score`) and the HTTP service both call it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID
from features.engine import AS_OF, Relations, active_at, features_for
from features.settings import risk_band
from serving.model import ChurnModel
from serving.reasons import render_reason

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A churn model with where it came from."""

    model: ChurnModel
    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def load_model(uri: str) -> LoadedModel:
    """Load a churn model from MLflow (e.g. models:/churn@champion) and describe it."""
    import mlflow
    from mlflow import MlflowClient

    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    loaded = LoadedModel(model=model, uri=uri, run_id=pyfunc.metadata.run_id)
    if uri.startswith("models:/"):
        client = MlflowClient()
        ref = uri[len("models:/"):]
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
        loaded.name, loaded.version = mv.name, str(mv.version)
        loaded.aliases = list(mv.aliases or [])
        loaded.run_id = mv.run_id
    if loaded.run_id:
        try:
            run = mlflow.get_run(loaded.run_id)
            loaded.metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
        except Exception as exc:  # metrics are informative only
            log.warning("could not read metrics of run %s: %s", loaded.run_id, exc)
    return loaded


def top_reasons(
    model: ChurnModel, features: pd.DataFrame, contrib: np.ndarray, k: int
) -> list[list[dict]]:
    """For each row, the k features that raise the risk most, as feature/value/effect/text."""
    n_feat = len(model.feature_names)
    phi = contrib[:, :n_feat]
    margin = contrib.sum(axis=1)
    order = np.argsort(-phi, axis=1, kind="stable")[:, :k]
    values = features[model.feature_names].to_numpy(dtype=object)
    out = []
    # effect: the calibrated probability with the feature minus without it, so it agrees with
    # the calibrated probability the customer gets
    p_full = model.calibrate(margin)
    p_without = model.calibrate(margin[:, None] - np.take_along_axis(phi, order, axis=1))
    for i in range(len(phi)):
        row = []
        for rank, j in enumerate(order[i]):
            c = float(phi[i, j])
            name = model.feature_names[j]
            value = values[i, j]
            value = None if value is None or (isinstance(value, float) and np.isnan(value)) \
                else value
            template = model.reason_texts.get(name, {"kind": "plain", "text": name + " = {v}"})
            row.append({
                "feature": name,
                "value": value,
                "contribution": c,
                "effect": float(p_full[i] - p_without[i, rank]),
                "text": render_reason(template, value),
            })
        out.append(row)
    return out


@dataclass
class Scores:
    """Model output for feature rows. `contributions` (TreeSHAP, log-odds, base value last)
    and `reasons` are empty when reasons were not asked for."""

    frame: pd.DataFrame  # customer_id, churn_probability, risk_band
    reasons: list[list[dict]]
    contributions: np.ndarray


def explain_features(
    loaded: LoadedModel,
    features: pd.DataFrame,
    top_k: int = 3,
    bands: tuple[float, float] = (0.1, 0.3),
    with_reasons: bool = True,
) -> Scores:
    """Calibrated probability, risk band, top reasons and contributions for each feature row."""
    model = loaded.model
    x = model.matrix(features)
    if with_reasons:
        contrib = model.contributions(x)
        raw = contrib.sum(axis=1)
        reasons = top_reasons(model, features, contrib, top_k)
    else:
        contrib = np.empty((len(x), 0))
        raw = model.raw_score(x)
        reasons = [[] for _ in range(len(x))]
    proba = model.calibrate(raw)
    frame = pd.DataFrame({
        CUSTOMER_ID: features[CUSTOMER_ID].to_numpy() if CUSTOMER_ID in features else None,
        "churn_probability": proba,
        "risk_band": [risk_band(p, bands) for p in proba],
    })
    return Scores(frame, reasons, contrib)


def predict_features(
    loaded: LoadedModel,
    features: pd.DataFrame,
    top_k: int = 3,
    bands: tuple[float, float] = (0.1, 0.3),
    with_reasons: bool = True,
) -> tuple[pd.DataFrame, list[list[dict]]]:
    """Calibrated probability, risk band and top reasons for each feature row."""
    scores = explain_features(loaded, features, top_k, bands, with_reasons)
    return scores.frame, scores.reasons


def reasons_columns(reasons: list[list[dict]], k: int) -> dict[str, list]:
    """Flatten reasons into reason_{i}_feature / _contribution / _text columns."""
    cols: dict[str, list] = {}
    for i in range(k):
        for key in ("feature", "contribution", "text"):
            cols[f"reason_{i + 1}_{key}"] = [
                r[i][key] if len(r) > i else None for r in reasons
            ]
    return cols


def score_frame(
    loaded: LoadedModel, features: pd.DataFrame, top_k: int = 3,
    bands: tuple[float, float] = (0.1, 0.3),
) -> pd.DataFrame:
    """The batch scoring table: probability, band, top reasons and the model version."""
    frame, reasons = predict_features(loaded, features, top_k, bands)
    frame = frame.assign(as_of=features[AS_OF].to_numpy(), **reasons_columns(reasons, top_k))
    return frame.assign(model_version=loaded.version or loaded.uri)


def features_at(
    loaded: LoadedModel, customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp,
    customer_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Feature rows, with the model's own spec, for customers active at `as_of`."""
    ids = customers.loc[active_at(customers, as_of), CUSTOMER_ID]
    if customer_ids is not None:
        ids = ids[ids.isin(customer_ids)]
    rel = Relations(customers, events, loaded.model.spec)
    return features_for(rel, pd.DataFrame({CUSTOMER_ID: ids.to_numpy(), AS_OF: as_of}))


def add_targeting(
    scores: pd.DataFrame, value: pd.Series | np.ndarray, offer_cost: float, save_rate: float
) -> pd.DataFrame:
    """Expected value at risk (p x value) and whether contacting pays: p x save x value > cost."""
    value = np.nan_to_num(np.asarray(value, dtype="float64"), nan=0.0)
    at_risk = scores["churn_probability"].to_numpy() * value
    return scores.assign(
        customer_value=value,
        expected_value_at_risk=at_risk,
        contact=at_risk * save_rate > offer_cost,
    )
