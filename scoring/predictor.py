"""The one predictor. `churn score`, the `/batch` task, real-time requests and the reviewer page
all call `predict`; the two batch paths call `score_batch`, so their tables are the same."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID
from features.definitions import FeatureSpec
from features.engine import FeatureRows, feature_table
from features.relations import AS_OF
from scoring.reasons import behaviour_mask, feature_values, top_reasons
from scoring.settings import Offer, risk_band
from scoring.store import LoadedModel


@dataclass
class Predictions:
    """Model output for feature rows. `reasons` raise the risk, `lowering` lower it; they and
    `contributions` (TreeSHAP, log-odds, base value last) are empty when reasons were not asked
    for."""

    frame: pd.DataFrame  # customer_id, churn_probability, risk_band
    reasons: list[list[dict]]
    contributions: np.ndarray
    lowering: list[list[dict]]


def predict(
    loaded: LoadedModel,
    features: pd.DataFrame | FeatureRows,
    top_k: int,
    bands: tuple[float, float],
    with_reasons: bool | np.ndarray = True,
) -> Predictions:
    """Calibrated probability and risk band for each feature row; with reasons, also the top
    reasons that raise the risk, those that lower it, and every feature's TreeSHAP
    contribution.

    `with_reasons` may be a boolean per row: TreeSHAP then runs only for the rows that asked,
    and the others get empty reasons and NaN contributions."""
    model = loaded.model
    x = model.matrix(features)
    n = len(x)
    wanted = np.broadcast_to(np.asarray(with_reasons, dtype=bool), (n,))
    reasons: list[list[dict]] = [[] for _ in range(n)]
    lowering: list[list[dict]] = [[] for _ in range(n)]
    if wanted.all() and n:
        contrib = model.contributions(x)
        raw = contrib.sum(axis=1)
        values = feature_values(model, features)
        reasons = top_reasons(model, values, contrib, top_k)
        lowering = top_reasons(model, values, contrib, top_k, raising=False)
    elif wanted.any():
        rows = np.flatnonzero(wanted)
        contrib = np.full((n, x.shape[1] + 1), np.nan)
        contrib[rows] = model.contributions(x[rows])
        raw = model.raw_score(x)
        raw[rows] = contrib[rows].sum(axis=1)
        part = feature_values(model, features)[rows]
        for i, up, down in zip(rows, top_reasons(model, part, contrib[rows], top_k),
                               top_reasons(model, part, contrib[rows], top_k, raising=False),
                               strict=True):
            reasons[i], lowering[i] = up, down
    else:
        contrib = np.empty((n, 0))
        raw = model.raw_score(x) if n else np.empty(0)
    proba = model.calibrate(raw)
    if isinstance(features, FeatureRows):
        ids = features.customer_id
    else:
        ids = features[CUSTOMER_ID].to_numpy() if CUSTOMER_ID in features else None
    frame = pd.DataFrame({
        CUSTOMER_ID: ids,
        "churn_probability": proba,
        "risk_band": [risk_band(p, bands) for p in proba],
    })
    return Predictions(frame, reasons, contrib, lowering)


def reason_columns(reasons: list[list[dict]], k: int, prefix: str = "reason") -> dict[str, list]:
    """Flatten reasons into reason_{i}_feature / _contribution / _text columns."""
    cols: dict[str, list] = {}
    for i in range(k):
        for key in ("feature", "contribution", "text"):
            cols[f"{prefix}_{i + 1}_{key}"] = [
                r[i][key] if len(r) > i else None for r in reasons
            ]
    return cols


# -- the offer rule ---------------------------------------------------------------------------


def customer_value(features: pd.DataFrame, offer: Offer, spec: FeatureSpec) -> np.ndarray:
    """What saving each row's customer is worth: the offer's value column (a feature, or a
    numeric attribute by its original name) times its multiplier."""
    column = offer.value_column
    if column in features.columns:
        base = features[column].to_numpy(dtype="float64")
    elif column in spec.attributes.numeric and spec.attribute_slugs[column] in features.columns:
        base = features[spec.attribute_slugs[column]].to_numpy(dtype="float64")
    else:
        raise ValueError(
            f"value column: {column!r} is neither a feature nor a numeric attribute of the model")
    return base * offer.value_multiplier


def expected_saving(probability: np.ndarray, value: np.ndarray, offer: Offer) -> np.ndarray:
    """What an offer is expected to save: probability x save rate x value (missing value: 0).
    The offer pays when this exceeds its cost."""
    value = np.nan_to_num(np.asarray(value, dtype="float64"), nan=0.0)
    return np.asarray(probability, dtype="float64") * offer.save_rate * value


def offer_if_valued(offer: Offer, spec: FeatureSpec) -> Offer | None:
    """The offer when the model has its value column, else None (no targeting columns)."""
    column = offer.value_column
    if column in spec.feature_names or column in spec.attributes.numeric:
        return offer
    return None


@dataclass(frozen=True)
class OfferDecision:
    value: float | None  # None when the customer's value is unknown
    expected_saving: float | None
    pays: bool


def offer_decision(offer: Offer, probability: float, value: float | None) -> OfferDecision:
    """The offer rule for one customer whose value (`customer_value`) is known or None."""
    if value is None or not np.isfinite(value):
        return OfferDecision(None, None, False)
    saving = float(expected_saving(np.array([probability]), np.array([value]), offer)[0])
    return OfferDecision(value, saving, saving > offer.cost)


def add_targeting(scores: pd.DataFrame, value: np.ndarray, offer: Offer) -> pd.DataFrame:
    """customer_value, expected_value_at_risk (p x value) and whether contacting pays."""
    value = np.nan_to_num(np.asarray(value, dtype="float64"), nan=0.0)
    p = scores["churn_probability"].to_numpy()
    return scores.assign(
        customer_value=value,
        expected_value_at_risk=p * value,
        contact=expected_saving(p, value, offer) > offer.cost,
    )


# -- batch scoring ----------------------------------------------------------------------------


def score_batch(
    loaded: LoadedModel,
    customers: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    top_k: int,
    bands: tuple[float, float],
    offer: Offer | None,
) -> pd.DataFrame:
    """The scores table for every customer active at `as_of`: probability, band, top reasons,
    the top behavioural reasons (change_{i}_*: what the customer did, not who they are; the
    reviewer page leads with them), model version and, with an offer, the targeting columns.
    Empty when nobody is active."""
    feats = feature_table(customers, events, loaded.model.spec, [as_of])
    if feats.empty:
        return feats
    # in slices: the reasons are Python objects, and a million customers' at once cost gigabytes
    parts = [score_features(loaded, feats.iloc[i:i + SCORE_SLICE], top_k, bands, offer)
             for i in range(0, len(feats), SCORE_SLICE)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


SCORE_SLICE = 100_000  # feature rows scored at once by score_batch


def score_features(loaded: LoadedModel, feats: pd.DataFrame, top_k: int,
                   bands: tuple[float, float], offer: Offer | None) -> pd.DataFrame:
    """`score_batch`'s table for a feature table (`feature_table`'s shape): what every batch
    path, DuckDB's or a Spark partition's, computes from the same feature rows."""
    spec = loaded.model.spec
    out = predict(loaded, feats, top_k, bands)
    model = loaded.model
    changes = top_reasons(model, feature_values(model, feats), out.contributions, top_k,
                          only=behaviour_mask(model.feature_names))
    scores = out.frame.assign(as_of=feats[AS_OF].to_numpy(), **reason_columns(out.reasons, top_k),
                              **reason_columns(changes, top_k, "change"),
                              model_version=loaded.label)
    if offer is not None:
        scores = add_targeting(scores, customer_value(feats, offer, spec), offer)
    return scores
