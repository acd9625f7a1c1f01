"""The one model artifact: encoders, booster, calibrator, feature spec and reason texts.

`ChurnModel` is what inference needs, in plain numpy. `ChurnPyfunc` wraps it as an MLflow
pyfunc whose `predict` returns the calibrated churn probability, and, with
`params={"output": "contributions"}`, per-feature TreeSHAP contributions in log-odds plus
the base value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from features.definitions import FeatureSpec
from features.engine import FeatureRows

# MLflow models-from-code: the logged model is this file plus the artifacts `ChurnModel.save` writes
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")
ENCODE_CHUNK_ROWS = 65_536  # rows of a feature table copied into the matrix at a time


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

    def encode(self, features: pd.DataFrame, names: list[str], dtype: str = "float64",
               out: np.ndarray | None = None) -> np.ndarray:
        """The float matrix LightGBM sees, columns in `names` order: numbers as they are,
        categories as their level's code, unseen or missing levels as NaN.

        Training and inference both use this one encoding. It works column by column in numpy,
        so a single-row request does not pay pandas' per-column overhead. `dtype="float32"`
        halves a training matrix (the refit's); scoring reads float64. `out`: the array to
        fill (its shape and dtype win), e.g. a block of rows of a larger matrix."""
        missing = [c for c in names if c not in features.columns]
        if missing:
            raise ValueError(f"feature table lacks columns: {', '.join(missing[:5])}")
        cats = set(self.columns)
        numeric = [i for i, c in enumerate(names) if c not in cats]
        x = np.empty((len(features), len(names)), dtype=dtype) if out is None else out
        columns = [names[i] for i in numeric]
        for start in range(0, len(features), ENCODE_CHUNK_ROWS):
            # by blocks of rows: a training table is not copied whole on its way into x
            part = features if len(features) <= ENCODE_CHUNK_ROWS else features.iloc[
                start:start + ENCODE_CHUNK_ROWS]
            x[start:start + len(part), numeric] = part[columns].to_numpy(dtype="float64",
                                                                         na_value=np.nan)
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


def signed_log(block: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """`block` (a float64 array of its own) with missing values imputed by column, then the
    signed log, computed in place: a training matrix holds one copy, not one per step."""
    big = np.finfo("float64").max
    np.copyto(block, np.broadcast_to(medians[None, :], block.shape), where=np.isnan(block))
    np.clip(block, -big, big, out=block)
    negative = block < 0
    np.abs(block, out=block)
    np.log1p(block, out=block)
    np.negative(block, out=block, where=negative)
    return block


LOGIT_CLIP = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(p / (1 - p))


@dataclass
class LinearScorer:
    """A logistic regression over the encoded matrix, with its preprocessing in plain numpy so
    that its contributions are exact: numbers are imputed with the training median, put on a
    signed log scale and standardised; each category level is a 0/1 column.

    A feature's contribution is the sum over its columns of coef x (column - training mean);
    the base value is the intercept plus coef x mean, so they add up to the raw score."""

    numeric: list[int]  # positions in the encoded matrix
    medians: list[float]
    means: list[float]  # of the signed-log column, before scaling
    scales: list[float]
    coef_numeric: list[float]
    categorical: list[int]
    levels: list[int]  # number of coded levels per categorical position
    coef_levels: list[list[float]]  # one coefficient per level
    level_means: list[list[float]]  # training share of each level
    intercept: float
    n_features: int

    @staticmethod
    def transform_numeric(x: np.ndarray, numeric: list[int], medians: np.ndarray) -> np.ndarray:
        """Missing values imputed, then the signed log; an infinite value (a sum of huge
        amounts overflows) counts as the largest float, so every score stays a number."""
        return signed_log(x[:, numeric].astype("float64", copy=False), medians)

    def _contrib(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        out = np.zeros((n, self.n_features + 1))
        if self.numeric:
            z = self.transform_numeric(x, self.numeric, np.asarray(self.medians))
            z = (z - np.asarray(self.means)) / np.asarray(self.scales)
            out[:, self.numeric] = z * np.asarray(self.coef_numeric)
        for pos, n_levels, coef_list, mean_list in zip(self.categorical, self.levels,
                                                       self.coef_levels, self.level_means):
            coef, mean = np.asarray(coef_list), np.asarray(mean_list)
            codes = x[:, pos]
            onehot = np.zeros((n, n_levels))
            known = ~np.isnan(codes) & (codes >= 0) & (codes < n_levels)
            onehot[np.flatnonzero(known), codes[known].astype(int)] = 1.0
            out[:, pos] = (onehot - mean) @ coef
        # standardised numbers have mean 0 in training; levels are centred on their share
        base = self.intercept + sum(float(np.dot(c, m)) for c, m in zip(self.coef_levels, self.level_means))
        out[:, -1] = base
        return out

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self._contrib(x)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        # by blocks of rows: a training matrix's contributions would take several copies of it
        return np.concatenate([self._contrib(x[start:start + ENCODE_CHUNK_ROWS]).sum(axis=1)
                               for start in range(0, len(x), ENCODE_CHUNK_ROWS)] or [np.zeros(0)])


@dataclass
class BgnbdScorer:
    """BG/NBD's P(no event in the horizon) as log-odds, from the row's `btyd_p_inactive`
    feature (a customer without a recorded event gets `fallback`). Its whole contribution
    belongs to that feature; the base value is the training mean of the log-odds."""

    position: int
    fallback: float
    mean: float
    n_features: int

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        p = x[:, self.position].astype("float64", copy=False)
        return logit(np.where(np.isnan(p), self.fallback, p))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.n_features + 1))
        out[:, self.position] = self.raw_score(x) - self.mean
        out[:, -1] = self.mean
        return out


# what each kind of model is made of, in words (the run, the CLI and the reviewer page say it)
KIND_WORDS = {
    "lightgbm": "LightGBM",
    "logistic": "logistic regression",
    "bgnbd": "BG/NBD",
    "lightgbm_bgnbd": "LightGBM boosted from BG/NBD",
    "blend": "blend of LightGBM and logistic regression",
}


class ChurnModel:
    """A calibrated churn model over a fixed feature spec: a weighted sum of up to three parts
    (a LightGBM booster, a logistic regression, BG/NBD log-odds) plus an intercept, then a
    monotone calibration. Every part has exact per-feature contributions in log-odds (TreeSHAP
    for the booster), so the reasons of any kind of model add up to its raw score."""

    def __init__(
        self,
        spec: FeatureSpec,
        booster: lgb.Booster | None,
        encoder: CategoryEncoder,
        calibration: tuple[np.ndarray, np.ndarray] | None,
        reason_texts: dict[str, str],
        num_threads: int = 1,
        *,
        linear: LinearScorer | None = None,
        bgnbd: BgnbdScorer | None = None,
        weights: dict[str, float] | None = None,
        intercept: float = 0.0,
        kind: str = "lightgbm",
    ):
        self.spec = spec
        self.booster = booster
        self.encoder = encoder
        self.calibration = calibration
        self.reason_texts = reason_texts
        self.num_threads = num_threads
        self.feature_names = list(spec.feature_names)
        self.linear = linear
        self.bgnbd = bgnbd
        self.weights = {"tree": 1.0, "linear": 1.0, "bgnbd": 1.0, **(weights or {})}
        self.intercept = float(intercept)
        self.kind = kind

    @property
    def description(self) -> str:
        return KIND_WORDS.get(self.kind, self.kind)

    def _parts(self) -> list[tuple[float, object]]:
        parts: list[tuple[float, object]] = []
        if self.booster is not None:
            parts.append((self.weights["tree"], _Tree(self.booster, self.num_threads)))
        if self.linear is not None:
            parts.append((self.weights["linear"], self.linear))
        if self.bgnbd is not None:
            parts.append((self.weights["bgnbd"], self.bgnbd))
        return parts

    # -- inference ---------------------------------------------------------------------------
    def matrix(self, features: pd.DataFrame | FeatureRows) -> np.ndarray:
        """The numeric matrix the model sees: categories encoded, columns in spec order."""
        if isinstance(features, FeatureRows):
            return self.encoder.encode_rows(features, self.feature_names)
        return self.encoder.encode(features, self.feature_names)

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        raw = np.full(len(x), self.intercept)
        for weight, part in self._parts():
            raw = raw + weight * part.raw_score(x)
        return raw

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The calibrated probability of raw scores (log-odds). Between the calibration's first
        and last knot it is the fitted monotone map; beyond them the score keeps its rank: its
        log-odds move by the end knot's shift. A population older or quieter than any the map
        was fitted on (customers scored after the log ends) is not flattened into ties."""
        raw = np.asarray(raw, dtype="float64")
        p = 1.0 / (1.0 + np.exp(-raw))
        if self.calibration is None:
            return p
        xs, ys = self.calibration
        out = np.interp(p, xs, ys)
        for outside, x_end, y_end in ((p < xs[0], xs[0], ys[0]), (p > xs[-1], xs[-1], ys[-1])):
            if 0.0 < x_end < 1.0 and outside.any():
                shift = logit(np.asarray(y_end)) - logit(np.asarray(x_end))
                out[outside] = 1.0 / (1.0 + np.exp(-(raw[outside] + shift)))
        return out

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return self.calibrate(self.raw_score(self.matrix(features)))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Exact contributions in log-odds (TreeSHAP for the booster); the last column is the
        base value, and a row's sum is its raw score."""
        out = np.zeros((len(x), len(self.feature_names) + 1))
        out[:, -1] = self.intercept
        for weight, part in self._parts():
            out += weight * part.contributions(x)
        return out

    # -- persistence -------------------------------------------------------------------------
    def save(self, folder: Path) -> dict[str, str]:
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {}
        if self.booster is not None:
            booster_path = folder / "booster.txt"
            self.booster.save_model(str(booster_path))
            files["booster"] = str(booster_path)
        state = {
            "spec": json.loads(self.spec.to_json()),
            "encoder": {"columns": list(self.encoder.columns), "levels": self.encoder.levels_,
                        "max_levels": self.encoder.max_levels,
                        "min_count": self.encoder.min_count},
            "calibration": None if self.calibration is None
            else [list(map(float, self.calibration[0])), list(map(float, self.calibration[1]))],
            "reason_texts": self.reason_texts,
            "num_threads": self.num_threads,
            "kind": self.kind,
            "weights": self.weights,
            "intercept": self.intercept,
            "linear": None if self.linear is None else asdict(self.linear),
            "bgnbd": None if self.bgnbd is None else asdict(self.bgnbd),
        }
        state_path = folder / "state.json"
        state_path.write_text(json.dumps(state, indent=1))
        files["state"] = str(state_path)
        return files

    @classmethod
    def load(cls, booster_path: str | None, state_path: str) -> ChurnModel:
        state = json.loads(Path(state_path).read_text())
        spec = FeatureSpec.from_json(json.dumps(state["spec"]))
        enc_state = state["encoder"]
        encoder = CategoryEncoder(tuple(enc_state["columns"]), enc_state["max_levels"],
                                  enc_state["min_count"], enc_state["levels"])
        cal = state["calibration"]
        calibration = None if cal is None else (np.asarray(cal[0]), np.asarray(cal[1]))
        booster = lgb.Booster(model_file=booster_path) if booster_path else None
        linear = LinearScorer(**state["linear"]) if state.get("linear") else None
        bgnbd = BgnbdScorer(**state["bgnbd"]) if state.get("bgnbd") else None
        return cls(spec, booster, encoder, calibration, state["reason_texts"],
                   state.get("num_threads", 1), linear=linear, bgnbd=bgnbd,
                   weights=state.get("weights"), intercept=state.get("intercept", 0.0),
                   kind=state.get("kind", "lightgbm"))

    @classmethod
    def load_folder(cls, folder: Path) -> ChurnModel:
        """A model saved with `save` into `folder`."""
        booster = Path(folder) / "booster.txt"
        return cls.load(str(booster) if booster.exists() else None, str(Path(folder) / "state.json"))


@dataclass
class _Tree:
    booster: lgb.Booster
    num_threads: int

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, raw_score=True, num_threads=self.num_threads)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        return self.booster.predict(x, pred_contrib=True, num_threads=self.num_threads)


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow wrapper. Input: a feature table (spec.feature_names). Output: probabilities."""

    def load_context(self, context) -> None:
        self.model = ChurnModel.load(context.artifacts.get("booster"), context.artifacts["state"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        output = (params or {}).get("output", "probability")
        if output == "contributions":
            contrib = self.model.contributions(self.model.matrix(model_input))
            return pd.DataFrame(contrib, columns=[*self.model.feature_names, "base_value"])
        if output != "probability":
            raise ValueError("params.output must be 'probability' or 'contributions'")
        return pd.DataFrame({"churn_probability": self.model.predict_proba(model_input)})
