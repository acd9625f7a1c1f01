"""The one model artifact: encoders, booster, calibrator, feature spec and reason texts.

`ChurnModel` is what inference needs, in plain numpy. `ChurnPyfunc` wraps it as an MLflow
pyfunc whose `predict` returns the calibrated churn probability, and, with
`params={"output": "contributions"}`, per-feature TreeSHAP contributions in log-odds plus
the base value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.definitions import FeatureSpec
from features.engine import FeatureRows

# MLflow models-from-code: the logged model is this file plus the artifacts `ChurnModel.save` writes
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")


@dataclass
class CategoryEncoder:
    """Maps each categorical column to fixed integer codes learned at fit time.

    Levels seen fewer than `min_count` times, beyond `max_levels`, or never seen become
    missing, so LightGBM treats them as unseen."""

    columns: tuple[str, ...]
    max_levels: int = 50
    min_count: int = 5
    levels_: dict[str, list[str]] = field(default_factory=dict)

    def fit(self, frame: pd.DataFrame) -> CategoryEncoder:
        self.levels_ = {}
        for col in self.columns:
            counts = frame[col].dropna().astype(str).value_counts()
            counts = counts[counts >= self.min_count]
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_levels]
            self.levels_[col] = sorted(level for level, _ in ranked)
        return self

    def encode(self, features: pd.DataFrame, names: list[str]) -> np.ndarray:
        """The float matrix LightGBM sees, columns in `names` order: numbers as they are,
        categories as their level's code, unseen or missing levels as NaN.

        Training and inference both use this one encoding. It works column by column in numpy,
        so a single-row request does not pay pandas' per-column overhead."""
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise ValueError(f"feature table lacks columns: {', '.join(missing[:5])}")
        cats = set(self.columns)
        numeric = [i for i, c in enumerate(names) if c not in cats]
        x = np.empty((len(features), len(names)), dtype="float64")
        x[:, numeric] = features[[names[i] for i in numeric]].to_numpy(
            dtype="float64", na_value=np.nan)
        for col in self.columns:
            codes = {level: float(i) for i, level in enumerate(self.levels_[col])}
            x[:, names.index(col)] = [codes.get(v, np.nan) if isinstance(v, str) else np.nan
                                      for v in features[col].to_numpy(dtype=object)]
        return x

    def encode_rows(self, rows: FeatureRows, names: list[str]) -> np.ndarray:
        """`encode` for FeatureRows: the float block placed at once, categories coded."""
        position = {c: i for i, c in enumerate(names)}
        numeric = rows.numeric_names
        missing = [c for c in names if c not in rows.categorical and c not in set(numeric)]
        if missing:
            raise ValueError(f"feature rows lack columns: {', '.join(missing[:5])}")
        x = np.empty((len(rows), len(names)), dtype="float64")
        x[:, [position[c] for c in numeric]] = rows.numeric
        for col in self.columns:
            codes = {level: float(i) for i, level in enumerate(self.levels_[col])}
            x[:, position[col]] = [codes.get(v, np.nan) if isinstance(v, str) else np.nan
                                   for v in rows.categorical[col]]
        return x


class ChurnModel:
    """Calibrated LightGBM churn model over a fixed feature spec."""

    def __init__(
        self,
        spec: FeatureSpec,
        booster: lgb.Booster,
        encoder: CategoryEncoder,
        calibration: tuple[np.ndarray, np.ndarray] | None,
        reason_texts: dict[str, str],
        num_threads: int = 1,
    ):
        self.spec = spec
        self.booster = booster
        self.encoder = encoder
        self.calibration = calibration
        self.reason_texts = reason_texts
        self.num_threads = num_threads
        self.feature_names = list(spec.feature_names)

    # -- inference ---------------------------------------------------------------------------
    def matrix(self, features: pd.DataFrame | FeatureRows) -> np.ndarray:
        """The numeric matrix LightGBM sees: categories encoded, columns in spec order."""
        if isinstance(features, FeatureRows):
            return self.encoder.encode_rows(features, self.feature_names)
        return self.encoder.encode(features, self.feature_names)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=self.num_threads)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-raw))
        if self.calibration is None:
            return p
        xs, ys = self.calibration
        return np.interp(p, xs, ys)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.calibrate(self.raw_score(self.matrix(features)))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions in log-odds; the last column is the base value."""
        return self.booster.predict(x, pred_contrib=True, num_threads=self.num_threads)

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        booster_path = folder / "booster.txt"
        self.booster.save_model(str(booster_path))
        state = {
            "spec": json.loads(self.spec.to_json()),
            "encoder": {"columns": list(self.encoder.columns), "levels": self.encoder.levels_,
                        "max_levels": self.encoder.max_levels,
                        "min_count": self.encoder.min_count},
            "calibration": None if self.calibration is None
            else [list(map(float, self.calibration[0])), list(map(float, self.calibration[1]))],
            "reason_texts": self.reason_texts,
            "num_threads": self.num_threads,
        }
        state_path = folder / "state.json"
        state_path.write_text(json.dumps(state, indent=1))
        return {"booster": str(booster_path), "state": str(state_path)}

    @classmethod
    def load(cls, booster_path: str, state_path: str) -> ChurnModel:
        state = json.loads(Path(state_path).read_text())
        spec = FeatureSpec.from_json(json.dumps(state["spec"]))
        enc_state = state["encoder"]
        encoder = CategoryEncoder(tuple(enc_state["columns"]), enc_state["max_levels"],
                                  enc_state["min_count"], enc_state["levels"])
        cal = state["calibration"]
        calibration = None if cal is None else (np.asarray(cal[0]), np.asarray(cal[1]))
        booster = lgb.Booster(model_file=booster_path)
        return cls(spec, booster, encoder, calibration, state["reason_texts"],
                   state.get("num_threads", 1))


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper. Input: a feature table (spec.feature_names). Output: probabilities."""

    def load_context(self, context) -> None:
        self.model = ChurnModel.load(context.artifacts["booster"], context.artifacts["state"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        output = (params or {}).get("output", "probability")
        if output == "contributions":
            contrib = self.model.contributions(self.model.matrix(model_input))
            return pd.DataFrame(contrib, columns=[*self.model.feature_names, "base_value"])
        if output != "probability":
            raise ValueError("params.output must be 'probability' or 'contributions'")
        return pd.DataFrame({"churn_probability": self.model.predict_proba(model_input)})
