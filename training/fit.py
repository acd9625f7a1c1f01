"""Model fitting: the tuned, calibrated LightGBM model and the calibration map every candidate
uses (training.candidates weighs the others)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from features.definitions import FeatureSpec
from scoring.artifact import CategoryEncoder, ChurnModel
from scoring.reasons import reason_templates
from training.config import TrainConfig

Progress = Callable[[int, int], None]


@dataclass
class FitResult:
    model: ChurnModel
    params: dict[str, object]
    best_iteration: int
    validation_auc: float
    trials: list[dict[str, object]]


def _lgb_params(config: TrainConfig, n_rows: int, overrides: dict | None = None) -> dict:
    p = config.lightgbm
    params = {
        "objective": "binary",
        "metric": "binary_logloss",
        "verbosity": -1,
        "num_threads": config.num_threads,
        "seed": config.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "min_child_samples_frac": p.min_child_samples_frac,
        "feature_fraction": p.feature_fraction,
        "bagging_fraction": p.bagging_fraction,
        "bagging_freq": 1,
        "lambda_l2": p.lambda_l2,
        "max_cat_to_onehot": 8,
        "cat_smooth": 20.0,
    }
    params.update(overrides or {})
    frac = params.pop("min_child_samples_frac")
    params["min_child_samples"] = max(p.min_child_samples_floor, int(frac * n_rows))
    return params


def _train_booster(params, train_set, val_set, config) -> lgb.Booster:
    return lgb.train(
        params, train_set, num_boost_round=config.lightgbm.max_rounds, valid_sets=[val_set],
        callbacks=[lgb.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)],
    )


MIN_END_BLOCK = 30  # rows in the isotonic map's first and last blocks, at least ...
END_BLOCK_SHARE = 0.005  # ... or this share of the calibration rows


def _merge_end_blocks(block: np.ndarray, min_rows: int) -> np.ndarray:
    """Block numbers (0..k, increasing with the score) with the first and last blocks merged
    into their neighbours until each holds `min_rows` rows. Isotonic regression ends on a few
    rows that are all churners (or none): a level of exactly 1 (or 0), which every customer
    scored beyond them inherits. A merged end block's level is the mean of its rows, so the map
    stays increasing."""
    sizes = np.bincount(block)
    if len(sizes) <= 2 or sizes.sum() < 2 * min_rows:
        return block
    lo = int(np.searchsorted(np.cumsum(sizes), min_rows))  # blocks 0..lo become block 0
    hi = len(sizes) - 1 - int(np.searchsorted(np.cumsum(sizes[::-1]), min_rows))
    if lo >= hi:  # the two ends would meet: one block, a constant map
        return np.zeros_like(block)
    merged = np.clip(block, lo, hi) - lo
    return merged


def fit_calibration(p_val: np.ndarray, y_val: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """A monotone map from the booster's probability to a calibrated one, as (xs, ys) knots.

    Isotonic regression needs many positives; with few it overfits the extremes (a top bin of
    probability 1.0), so `auto` uses Platt scaling below 1000 validation churners. The isotonic
    map is centred: each flat block of the fit becomes one knot at its scores' mean, and the
    map is linear between knots, so it is strictly increasing between the first and last
    block's centres and keeps the ranking (a step function would tie whole blocks of customers,
    which costs ROC-AUC and leaves the reasons' order arbitrary)."""
    if kind == "auto":
        kind = "isotonic" if y_val.sum() >= 1000 else "sigmoid"
    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p_val, y_val)
        fitted = iso.predict(p_val)
        levels, block = np.unique(fitted, return_inverse=True)
        block = _merge_end_blocks(block, max(MIN_END_BLOCK, int(np.ceil(END_BLOCK_SHARE * len(p_val)))))
        sizes = np.bincount(block)
        centres = np.bincount(block, weights=p_val) / sizes
        levels = np.bincount(block, weights=np.asarray(y_val, dtype="float64")) / sizes
        return np.asarray(centres, dtype="float64"), np.asarray(levels, dtype="float64")
    # Platt scaling on the log-odds, tabulated on a fine grid of probabilities
    logit = np.log(np.clip(p_val, 1e-9, 1 - 1e-9) / np.clip(1 - p_val, 1e-9, 1))
    lr = LogisticRegression(C=1e6).fit(logit.reshape(-1, 1), y_val)
    xs = np.concatenate([[0.0], np.logspace(-6, 0, 2000)[:-1], [1.0]])
    lx = np.log(np.clip(xs, 1e-12, 1 - 1e-12) / np.clip(1 - xs, 1e-12, 1))
    return xs, lr.predict_proba(lx.reshape(-1, 1))[:, 1]


def fit_lightgbm(
    train: pd.DataFrame, y_train: np.ndarray, val: pd.DataFrame, y_val: np.ndarray,
    spec: FeatureSpec, config: TrainConfig, progress: Progress | None = None,
) -> FitResult:
    """Tune on validation (bounded Optuna search), keep the best booster, calibrate on validation."""
    import optuna

    encoder = CategoryEncoder(spec.categorical_features).fit(train)
    names = list(spec.feature_names)
    cats = [names.index(c) for c in spec.categorical_features]
    x_train = encoder.encode(train, names)
    x_val = encoder.encode(val, names)
    # one Dataset serves every trial; without feature_pre_filter=False, a trial with a smaller
    # min_child_samples than the first fails ("Reducing min_data_in_leaf ...")
    train_set = lgb.Dataset(x_train, y_train, feature_name=names, categorical_feature=cats,
                            free_raw_data=False, params={"feature_pre_filter": False})
    val_set = lgb.Dataset(x_val, y_val, reference=train_set, params={"feature_pre_filter": False})

    best: dict[str, object] = {"auc": -1.0}
    trials: list[dict[str, object]] = []
    n_trials = max(1, config.search.trials)

    def run(overrides: dict) -> float:
        params = _lgb_params(config, len(train), overrides)
        booster = _train_booster(params, train_set, val_set, config)
        p = booster.predict(x_val, num_iteration=booster.best_iteration,
                            num_threads=config.num_threads)
        auc = float(roc_auc_score(y_val, p)) if len(np.unique(y_val)) == 2 else 0.0
        trials.append({**overrides, "best_iteration": booster.best_iteration,
                       "validation_auc": auc})
        if auc > best["auc"]:
            best.update(auc=auc, booster=booster, params=params)
        if progress:
            progress(len(trials), n_trials)
        return auc

    started = time.monotonic()
    run({})  # the configured starting point always counts
    if config.search.trials > 1:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
        )

        def objective(trial: optuna.Trial) -> float:
            return run({
                "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
                "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
                "min_child_samples_frac": trial.suggest_float(
                    "min_child_samples_frac", 0.0005, 0.02, log=True),
                "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
                "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
            })

        remaining = config.search.timeout_s - (time.monotonic() - started)
        study.optimize(objective, n_trials=config.search.trials - 1, timeout=max(remaining, 1))

    booster: lgb.Booster = best["booster"]  # type: ignore[assignment]
    # keep only the chosen iterations, so every consumer sees the same trees
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    p_val = booster.predict(x_val, num_threads=config.num_threads)
    calibration = fit_calibration(p_val, np.asarray(y_val), config.calibration)
    model = ChurnModel(spec, booster, encoder, calibration, reason_templates(spec),
                       num_threads=1)
    return FitResult(model, dict(best["params"]), booster.current_iteration(),  # type: ignore[arg-type]
                     float(best["auc"]), trials)
