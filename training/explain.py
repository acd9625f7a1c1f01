"""SHAP summaries of a model on the test rows: data in, data out (training.tracking logs them).
The contributions are TreeSHAP's (ChurnModel.contributions: log-odds, base value last)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID
from features.engine import AS_OF
from scoring.artifact import ChurnModel
from scoring.predictor import reason_columns
from scoring.reasons import top_reasons

SHAP_SAMPLE_ROWS = 2000  # rows drawn for a beeswarm plot


def shap_sample(rows: int, seed: int, size: int = SHAP_SAMPLE_ROWS) -> np.ndarray:
    """A seeded sample of row positions for a SHAP plot (every row when there are fewer)."""
    return np.random.default_rng(seed).choice(rows, min(rows, size), replace=False)


def shap_importance(phi: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Each feature's mean absolute contribution, largest first (feature, mean_abs_shap)."""
    mean_abs = pd.Series(np.abs(phi).mean(axis=0), index=names).sort_values(ascending=False)
    return mean_abs.rename("mean_abs_shap").rename_axis("feature").reset_index()


def shap_frame(model: ChurnModel, test: pd.DataFrame, contrib: np.ndarray, top_k: int
               ) -> pd.DataFrame:
    """Every test row's contributions (base value last) beside its id, time and top reasons."""
    names = list(model.feature_names)
    reasons = top_reasons(model, test, contrib, top_k)
    return pd.concat([
        test[[CUSTOMER_ID, AS_OF]].reset_index(drop=True),
        pd.DataFrame(contrib, columns=[*names, "base_value"]),
        pd.DataFrame(reason_columns(reasons, top_k)),
    ], axis=1)
