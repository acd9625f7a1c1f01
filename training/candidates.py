"""The candidates `churn train` weighs, the choice between them, and the refit of the winner.

Every candidate is a `ChurnModel` (scoring.artifact) over the same features:
- `lightgbm`: the tuned booster;
- `logistic`: a logistic regression on signed-log, standardised numbers and one-hot levels;
- `bgnbd` (inactivity labels): BG/NBD's P(no event in the horizon), recalibrated;
- `lightgbm_bgnbd` (inactivity labels): a booster that starts from the BG/NBD log-odds;
- `blend`: the raw scores of the others, stacked by a logistic regression.

The choice uses validation alone (the blend's weights are cross-fitted inside it, so its score
is out of sample too); the test only reports. The refit fits the chosen recipe again on every
labelled snapshot, and calibrates it on out-of-fold predictions over customer groups: a row is
calibrated by a model that saw neither its customer nor, so, any of that customer's overlapping
label windows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from features.contract import CUSTOMER_ID
from features.definitions import BTYD_MODEL_FEATURES, BTYD_SQL_FEATURES, FeatureSpec
from features.engine import btyd_columns
from features.relations import AS_OF
from scoring.artifact import ENCODE_CHUNK_ROWS as CHUNK_ROWS  # one block size for every matrix step
from scoring.artifact import KIND_WORDS, BgnbdScorer, CategoryEncoder, ChurnModel, LinearScorer, signed_log
from scoring.reasons import reason_templates
from training.config import TrainConfig
from training.fit import FitResult, fit_calibration, fit_lightgbm
from training.intervals import paired_difference
from training.split import customer_buckets

Progress = Callable[[int, int], None]
log = logging.getLogger(__name__)
PARTS = ("tree", "linear", "bgnbd")
LINEAR_MAX_ROWS = 400_000  # the logistic part fits on at most this many rows (a random subset)


@dataclass
class Recipe:
    """How to fit a candidate again on other rows: its parts and their settings."""

    kind: str
    tree_params: dict | None = None  # LightGBM parameters (min_child_samples as a share)
    rounds: int = 0
    tree_from_bgnbd: bool = False  # the booster starts from the BG/NBD log-odds
    linear_c: float | None = None
    bgnbd: bool = False
    stacked: bool = False  # weights and intercept by logistic regression on the parts' scores

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(p for p, on in (("tree", self.tree_params is not None),
                                     ("linear", self.linear_c is not None),
                                     ("bgnbd", self.bgnbd)) if on)


@dataclass
class Candidate:
    name: str
    recipe: Recipe
    model: ChurnModel  # fitted on the training rows, calibrated on validation
    validation_auc: float
    chosen_params: dict[str, object] = field(default_factory=dict)

    @property
    def words(self) -> str:
        if self.recipe is not None and self.recipe.stacked and self.recipe.bgnbd:
            return "blend of LightGBM, logistic regression and BG/NBD"
        return KIND_WORDS.get(self.name, self.name)


@dataclass
class CandidateSet:
    candidates: dict[str, Candidate]
    chosen: str
    search: FitResult  # the LightGBM search (trials, chosen parameters)
    preferred: str | None = None  # why the blend was chosen over a higher validation ROC-AUC

    @property
    def winner(self) -> Candidate:
        return self.candidates[self.chosen]

    def reason(self) -> str:
        """Why the winner won, in one line."""
        best = self.winner
        if self.preferred:
            return self.preferred
        ranked = sorted(self.candidates.values(), key=lambda c: -c.validation_auc)
        runner = next((c for c in ranked if c.name != best.name), None)
        if ranked[0].name != best.name:  # the config allowed fewer than were weighed
            return (f"{best.words} had the best validation ROC-AUC ({best.validation_auc:.4f}) "
                    f"of the candidates the config allows; {ranked[0].words} had "
                    f"{ranked[0].validation_auc:.4f}")
        text = f"{best.words} had the best validation ROC-AUC ({best.validation_auc:.4f}"
        if runner is not None:
            text += f"; next {runner.words}, {runner.validation_auc:.4f}"
        return text + ")"


# -- the parts ------------------------------------------------------------------------------------


def _names_and_cats(spec: FeatureSpec) -> tuple[list[str], list[int]]:
    names = list(spec.feature_names)
    return names, [names.index(c) for c in spec.categorical_features]


def fit_linear(x: np.ndarray, y: np.ndarray, spec: FeatureSpec, encoder: CategoryEncoder,
               c: float, seed: int = 0, rows: np.ndarray | None = None) -> LinearScorer:
    """A logistic regression on the encoded matrix (see `LinearScorer` for the transform),
    on the `rows` of (x, y) given (default: all). The design matrix is built in place, block
    by block: on a training table it holds one copy of the numbers, not one per step, and
    `rows` spares the caller a copy of the rows it fits on. Above `LINEAR_MAX_ROWS` rows it
    fits on a random subset of that many (seeded: the same rows on every run)."""
    if len(y if rows is None else rows) > LINEAR_MAX_ROWS:
        # a fixed random subset: ~100 coefficients are pinned down long before this many
        # rows, and the design's memory stays bounded whatever the log's size
        pool = np.arange(len(y)) if rows is None else rows
        rows = np.sort(np.random.default_rng(seed).choice(pool, LINEAR_MAX_ROWS, replace=False))
    if rows is not None:
        y = y[rows]
    n = len(y)
    pick = (lambda a, b: x[a:b]) if rows is None else (lambda a, b: x[rows[a:b]])
    names, cats = _names_and_cats(spec)
    numeric = [i for i in range(len(names)) if i not in cats]
    medians = np.zeros(len(numeric))
    for j, i in enumerate(numeric):  # column by column: nanmedian copies what it is given
        col = x[:, i] if rows is None else x[rows, i]
        finite = col[np.isfinite(col)]
        medians[j] = float(np.median(finite)) if len(finite) else 0.0
    levels = [len(encoder.levels_[names[pos]]) for pos in cats]
    design = np.empty((n, len(numeric) + sum(levels)))
    z = design[:, :len(numeric)]
    chunks = range(0, n, CHUNK_ROWS)
    for start in chunks:  # temporaries the size of a block of rows, not of the matrix
        z[start:start + CHUNK_ROWS] = pick(start, start + CHUNK_ROWS)[:, numeric]
    signed_log(z, medians)
    means = z.mean(axis=0) if n else np.zeros(len(numeric))
    z -= means
    squares = sum((np.square(z[start:start + CHUNK_ROWS]).sum(axis=0) for start in chunks),
                  np.zeros(len(numeric)))
    scales = np.sqrt(squares / max(n, 1))
    scales = np.where(scales > 1e-12, scales, 1.0)
    z /= scales
    level_means, start = [], len(numeric)
    for pos, n_levels in zip(cats, levels):
        codes = x[:, pos] if rows is None else x[rows, pos]
        onehot = design[:, start:start + n_levels]
        onehot[:] = 0.0
        known = ~np.isnan(codes)
        onehot[np.flatnonzero(known), codes[known].astype(int)] = 1.0
        level_means.append(onehot.mean(axis=0))
        start += n_levels
    lr = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(design, y)
    coef = lr.coef_[0]
    coef_levels, start = [], len(numeric)
    for n_levels in levels:
        coef_levels.append([float(v) for v in coef[start:start + n_levels]])
        start += n_levels
    return LinearScorer(
        numeric=numeric, medians=[float(v) for v in medians], means=[float(v) for v in means],
        scales=[float(v) for v in scales], coef_numeric=[float(v) for v in coef[:len(numeric)]],
        categorical=cats, levels=levels, coef_levels=coef_levels,
        level_means=[[float(v) for v in m] for m in level_means],
        intercept=float(lr.intercept_[0]), n_features=len(names))


def fit_bgnbd(x: np.ndarray, y: np.ndarray, spec: FeatureSpec,
              rows: np.ndarray | None = None) -> BgnbdScorer:
    """BG/NBD's log-odds of no event in the horizon; customers without a recorded event get
    the churn rate of such customers in these rows (the `rows` of (x, y) given; default all)."""
    names = list(spec.feature_names)
    pos = names.index("btyd_p_inactive")
    column = (x[:, pos] if rows is None else x[rows, pos]).reshape(-1, 1)
    y = y if rows is None else y[rows]
    unseen = np.isnan(column[:, 0])
    fallback = float(y[unseen].mean()) if unseen.any() else float(y.mean())
    fallback = float(np.clip(fallback, 1e-4, 1 - 1e-4))
    scorer = BgnbdScorer(pos, fallback, 0.0, len(names))
    raw = replace(scorer, position=0).raw_score(column)
    return replace(scorer, mean=float(raw.mean()))


def _dataset(x: np.ndarray, y: np.ndarray, spec: FeatureSpec, init: np.ndarray | None = None,
             reference: lgb.Dataset | None = None) -> lgb.Dataset:
    names, cats = _names_and_cats(spec)
    return lgb.Dataset(x, y, feature_name=names, categorical_feature=cats, init_score=init,
                       reference=reference, free_raw_data=False,
                       params={"feature_pre_filter": False})


def _params_for(params: dict, n_rows: int, config: TrainConfig) -> dict:
    out = dict(params)
    frac = out.pop("min_child_samples_frac", None)
    if frac is not None:
        out["min_child_samples"] = max(config.lightgbm.min_child_samples_floor, int(frac * n_rows))
    return out


def fit_parts(recipe: Recipe, x: np.ndarray, y: np.ndarray, spec: FeatureSpec,
              encoder: CategoryEncoder, config: TrainConfig,
              rows: np.ndarray | None = None) -> dict[str, object]:
    """Fit a recipe's parts on the `rows` of (x, y) (default: all) with its fixed settings (no
    search, no early stopping). The booster alone gets a copy of those rows, after the
    logistic part's design is freed."""
    parts: dict[str, object] = {}
    if recipe.bgnbd:
        parts["bgnbd"] = fit_bgnbd(x, y, spec, rows)
    if recipe.linear_c is not None:
        parts["linear"] = fit_linear(x, y, spec, encoder, recipe.linear_c, config.seed, rows)
    if recipe.tree_params is not None:
        if rows is not None:
            x, y = x[rows], y[rows]
        init = parts["bgnbd"].raw_score(x) if recipe.tree_from_bgnbd else None  # type: ignore[union-attr]
        parts["tree"] = lgb.train(_params_for(recipe.tree_params, len(x), config),
                                  _dataset(x, y, spec, init), num_boost_round=max(recipe.rounds, 1))
    return parts


def part_scores(parts: dict[str, object], x: np.ndarray, num_threads: int) -> dict[str, np.ndarray]:
    """Each part's raw score (log-odds)."""
    out = {}
    for name, part in parts.items():
        if name == "tree":
            out[name] = part.predict(x, raw_score=True, num_threads=num_threads)  # type: ignore[union-attr]
        else:
            out[name] = part.raw_score(x)  # type: ignore[union-attr]
    return out


def combine(recipe: Recipe, scores: dict[str, np.ndarray], y: np.ndarray | None,
            stack: tuple[dict[str, float], float] | None = None
            ) -> tuple[np.ndarray, dict[str, float], float]:
    """The candidate's raw score from its parts' scores, with its weights and intercept: a
    stacked recipe fits them on (scores, y) unless `stack` gives them; the others add their
    parts with weight 1 (a booster from BG/NBD adds to the BG/NBD log-odds)."""
    names = recipe.parts
    if not recipe.stacked:
        weights = {p: 1.0 for p in names}
        return sum(scores[p] for p in names), weights, 0.0
    if stack is None:
        stack = stack_weights({p: scores[p] for p in names}, y)
    weights, intercept = stack
    return intercept + sum(weights[p] * scores[p] for p in names), weights, intercept


def stack_weights(scores: dict[str, np.ndarray], y: np.ndarray) -> tuple[dict[str, float], float]:
    """Non-negative weights for the parts' log-odds and an intercept, by logistic regression;
    a part that gets a negative weight is dropped and the rest fitted again."""
    names = list(scores)
    while True:
        design = np.column_stack([scores[n] for n in names])
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(design, y)
        coef = lr.coef_[0]
        if (coef >= 0).all() or len(names) == 1:
            weights = {n: float(max(c, 0.0)) for n, c in zip(names, coef)}
            return {n: weights.get(n, 0.0) for n in scores}, float(lr.intercept_[0])
        names = [n for n, c in zip(names, coef) if c >= 0] or [names[int(np.argmax(coef))]]


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else 0.5


def build_model(recipe: Recipe, parts: dict[str, object], spec: FeatureSpec,
                encoder: CategoryEncoder, calibration, weights: dict[str, float],
                intercept: float) -> ChurnModel:
    return ChurnModel(spec, parts.get("tree"), encoder, calibration, reason_templates(spec),  # type: ignore[arg-type]
                      num_threads=1, linear=parts.get("linear"), bgnbd=parts.get("bgnbd"),  # type: ignore[arg-type]
                      weights={p: weights.get(p, 0.0) for p in PARTS}, intercept=intercept,
                      kind=recipe.kind)


def _cross_fitted_raw(recipe: Recipe, scores: dict[str, np.ndarray], y: np.ndarray,
                      customers: np.ndarray, seed: int) -> np.ndarray | None:
    """A stacked candidate's validation scores with its weights fitted on the other half of
    the validation customers (two folds), so they are out of sample like the others'; None
    when a half holds one class."""
    half = customer_buckets(customers, seed + 1) % 2
    raw = np.empty(len(y))
    for k in (0, 1):
        fit_rows, score_rows = half != k, half == k
        if len(np.unique(y[fit_rows])) < 2:
            return None
        stack = stack_weights({p: scores[p][fit_rows] for p in recipe.parts}, y[fit_rows])
        raw[score_rows], _, _ = combine(recipe, {p: s[score_rows] for p, s in scores.items()},
                                        None, stack)
    return raw


BLEND_RESAMPLES = 400  # customer resamples of the paired validation bootstrap


def stands(standing: str, candidates: dict[str, Candidate], best: str,
           raw: dict[str, np.ndarray], y: np.ndarray, customers: np.ndarray, seed: int,
           why: str) -> str | None:
    """Why `standing` is registered instead of `best`, or None when `best` beats it beyond
    noise: the paired 95% customer-bootstrap interval of `best` minus `standing` in validation
    ROC-AUC lies above zero. `why` says why the standing candidate deserves the benefit of the
    doubt."""
    if best == standing or standing not in raw or best not in raw:
        return None
    diff = paired_difference(y, _sigmoid(raw[best]), _sigmoid(raw[standing]), customers,
                             resamples=BLEND_RESAMPLES, seed=seed)["roc_auc"]
    if diff.low > 0:
        return None
    lead, held = candidates[best], candidates[standing]
    return (f"{lead.words} led {held.words} on validation by {diff.estimate:+.4f} ROC-AUC "
            f"[{diff.low:+.4f}, {diff.high:+.4f}], within noise ({held.words}: "
            f"{held.validation_auc:.4f}); {why}")


def prefer_blend(candidates: dict[str, Candidate], best: str, raw: dict[str, np.ndarray],
                 y: np.ndarray, customers: np.ndarray, seed: int) -> str | None:
    """Why the blend is registered instead of `best`, or None when `best` beats it beyond
    noise. A blend weighs the other candidates on validation and may put all its weight on
    one; its validation score is cross-fitted, while the booster's is the one its own search
    and early stopping maximised, so a small lead of a single candidate is no evidence."""
    return stands("blend", candidates, best, raw, y, customers, seed,
                  "the blend stands unless a single candidate beats it beyond noise")


def prefer_bgnbd(candidates: dict[str, Candidate], best: str, raw: dict[str, np.ndarray],
                 y: np.ndarray, customers: np.ndarray, seed: int) -> str | None:
    """Why BG/NBD is registered instead of `best`, or None when `best` beats it beyond noise.
    BG/NBD learns nothing from validation (its ranking is fixed by four parameters fitted
    without labels), while a booster's validation score is the one its early stopping
    maximised; and BG/NBD's parameters are refitted on the whole log for scoring, which a
    correction learned at earlier times does not know. A lead within noise is no evidence
    that the richer model ranks the customers it will score better."""
    return stands("bgnbd", candidates, best, raw, y, customers, seed,
                  "BG/NBD stands unless a candidate beats it beyond noise")


def _sigmoid(raw: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-raw))


def fit_candidates(train: pd.DataFrame, y_train: np.ndarray, val: pd.DataFrame,
                   y_val: np.ndarray, spec: FeatureSpec, config: TrainConfig,
                   progress: Progress | None = None) -> CandidateSet:
    """Fit every candidate on the training rows, calibrate each on validation and choose the
    one with the best validation ROC-AUC."""
    search = fit_lightgbm(train, y_train, val, y_val, spec, config, progress=progress)
    encoder = search.model.encoder
    x_train, x_val = encoder.encode(train, list(spec.feature_names)), encoder.encode(
        val, list(spec.feature_names))
    threads = config.num_threads
    tree_params = {k: v for k, v in search.params.items() if k != "min_child_samples"}
    tree_params["min_child_samples_frac"] = search.params["min_child_samples"] / max(len(train), 1)
    recipes = {"lightgbm": Recipe("lightgbm", tree_params, search.best_iteration),
               "logistic": Recipe("logistic", linear_c=config.candidates.logistic_c)}
    parts: dict[str, dict[str, object]] = {"lightgbm": {"tree": search.model.booster}}
    parts["logistic"] = fit_parts(recipes["logistic"], x_train, y_train, spec, encoder, config)
    with_bgnbd = bool(spec.btyd_features)
    if with_bgnbd:
        recipes["bgnbd"] = Recipe("bgnbd", bgnbd=True)
        parts["bgnbd"] = fit_parts(recipes["bgnbd"], x_train, y_train, spec, encoder, config)
        # a booster that starts from BG/NBD: the tuned settings, rounds by early stopping
        bg = parts["bgnbd"]["bgnbd"]
        train_set = _dataset(x_train, y_train, spec, bg.raw_score(x_train))  # type: ignore[union-attr]
        val_set = _dataset(x_val, y_val, spec, bg.raw_score(x_val), reference=train_set)  # type: ignore[union-attr]
        booster = lgb.train(
            _params_for(tree_params, len(train), config), train_set,
            num_boost_round=config.lightgbm.max_rounds, valid_sets=[val_set],
            callbacks=[lgb.early_stopping(config.lightgbm.early_stopping_rounds, verbose=False)])
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
        recipes["lightgbm_bgnbd"] = Recipe("lightgbm_bgnbd", tree_params,
                                          booster.current_iteration(), tree_from_bgnbd=True,
                                          bgnbd=True)
        parts["lightgbm_bgnbd"] = {"tree": booster, "bgnbd": bg}
    recipes["blend"] = Recipe("blend", tree_params, search.best_iteration,
                              linear_c=config.candidates.logistic_c, bgnbd=with_bgnbd, stacked=True)
    parts["blend"] = {"tree": search.model.booster, "linear": parts["logistic"]["linear"],
                      **({"bgnbd": parts["bgnbd"]["bgnbd"]} if with_bgnbd else {})}

    customers = val[CUSTOMER_ID].to_numpy()
    candidates: dict[str, Candidate] = {}
    val_raw: dict[str, np.ndarray] = {}  # each candidate's out-of-sample validation scores
    for name, recipe in recipes.items():  # every one is weighed and reported
        scores = part_scores(parts[name], x_val, threads)
        raw, weights, intercept = combine(recipe, scores, y_val)
        if recipe.stacked:
            crossed = _cross_fitted_raw(recipe, scores, y_val, customers, config.seed)
            auc = _auc(y_val, crossed) if crossed is not None else 0.0
            if crossed is not None:
                val_raw[name] = crossed
        else:
            auc = _auc(y_val, raw)
            val_raw[name] = raw
        p = 1.0 / (1.0 + np.exp(-raw))
        calibration = fit_calibration(p, y_val, config.calibration)
        model = build_model(recipe, parts[name], spec, encoder, calibration, weights, intercept)
        chosen_params = (search.params if recipe.tree_params is not None else {}) | (
            {"C": recipe.linear_c} if recipe.linear_c is not None else {})
        candidates[name] = Candidate(name, recipe, model, auc, chosen_params)
    allowed = [candidates[n] for n in config.candidates.include if n in candidates]
    if not allowed:
        raise ValueError("config: candidates.include names no candidate this label can train "
                         f"(choose from {', '.join(recipes)})")
    chosen = max(allowed, key=lambda c: c.validation_auc).name
    preferred = None
    names = {c.name for c in allowed}
    if config.candidates.prefer_blend and "blend" in names:
        preferred = prefer_blend(candidates, chosen, val_raw, y_val, customers, config.seed)
        chosen = "blend" if preferred else chosen
    if config.candidates.prefer_bgnbd and "bgnbd" in names:
        held = prefer_bgnbd(candidates, chosen, val_raw, y_val, customers, config.seed)
        chosen, preferred = ("bgnbd", held) if held else (chosen, preferred)
    return CandidateSet(candidates, chosen, search, preferred)


def newest_times(times: np.ndarray, share: float) -> np.ndarray:
    """The rows at the newest `share` of the distinct times (at least one time): the customers
    a model scores at the log's end are most like those at its newest labelled times."""
    distinct = np.unique(times)
    keep = distinct[-max(1, int(np.ceil(share * len(distinct)))):]
    return np.isin(times, keep)


def whole_log_btyd(x: np.ndarray, names: list[str], spec: FeatureSpec) -> None:
    """Read the BG/NBD model columns of the matrix `x` again, in place, with `spec.btyd_params`.

    A snapshot's BG/NBD columns use parameters fitted on the log before its time, so the
    evaluation model is point in time. The refit treats BG/NBD's four parameters as part of the
    model it fits on the whole log, as its trees and calibration are fitted on every label:
    its rows read them with the parameters fitted on the whole log, the ones scoring uses.
    BG/NBD's dropout parameters are poorly identified on a short log, so parameters fitted at
    early times differ from the final ones, and a calibration (or a booster's correction)
    learned on the former would be applied to the latter."""
    position = {c: i for i, c in enumerate(names)}
    if not set(BTYD_SQL_FEATURES) <= set(position):
        return
    summaries = {c: x[:, position[c]].astype("float64") for c in BTYD_SQL_FEATURES}
    for c, values in btyd_columns(summaries, spec, spec.btyd_params).items():
        if c in position and c in BTYD_MODEL_FEATURES:
            x[:, position[c]] = values


def refit(candidate: Candidate, frames: list[pd.DataFrame], spec: FeatureSpec,
          config: TrainConfig, progress: Progress | None = None,
          positions: list[np.ndarray] | None = None) -> ChurnModel:
    """The candidate's recipe fitted on every row of `frames`, calibrated (and, for a blend,
    weighted) on out-of-fold predictions over customer groups. `frames` is emptied once the
    rows are encoded, so a caller that passes its only reference frees them before the fits.
    The frames are encoded one by one into a single float32 matrix, never concatenated: a
    table's copy would be the peak of training's memory. `positions` gives each frame's rows'
    places in the table they came from, so the matrix has that table's row order (the
    booster's bagging draws rows by position: the same rows give the same model)."""
    names = list(spec.feature_names)
    cats = list(spec.categorical_features)
    encoder = CategoryEncoder(spec.categorical_features).fit(
        pd.concat([f[cats] for f in frames], ignore_index=True))
    # float32: LightGBM bins it as it would the float64 values (a split between two float32
    # values sends a float64 value the way its float32 rounding goes), at half the memory
    n = sum(len(f) for f in frames)
    if positions is None:
        starts = np.cumsum([0] + [len(f) for f in frames])
        positions = [np.arange(a, b) for a, b in zip(starts[:-1], starts[1:])]
    x = np.empty((n, len(names)), dtype="float32")
    for f, pos in zip(frames, positions, strict=True):
        for a in range(0, len(f), CHUNK_ROWS):  # a block of rows at a time, scattered in place
            x[pos[a:a + CHUNK_ROWS]] = encoder.encode(f.iloc[a:a + CHUNK_ROWS], names,
                                                      dtype="float32")
    y = np.empty(n, dtype=frames[0]["label"].dtype)
    customers, times = np.empty(n, dtype=object), np.empty(n, dtype=frames[0][AS_OF].dtype)
    for f, pos in zip(frames, positions, strict=True):
        y[pos] = f["label"].to_numpy()
        customers[pos] = f[CUSTOMER_ID].to_numpy(dtype=object)
        times[pos] = f[AS_OF].to_numpy()
    frames.clear()
    if config.refit.btyd_whole_log and spec.btyd_params is not None:
        whole_log_btyd(x, names, spec)
    recipe = candidate.recipe
    if recipe.tree_params is not None:  # more rows than the evaluation model saw: a few more rounds
        recipe = replace(recipe, rounds=max(20, int(round(recipe.rounds * config.refit.round_factor))))
    folds = max(2, config.refit.folds)
    group = customer_buckets(customers, config.seed + 2) % folds
    oof = {p: np.empty(len(y)) for p in recipe.parts}
    steps = folds + 1
    for k in range(folds):
        held = group == k
        fitted = fit_parts(recipe, x, y, spec, encoder, config, rows=np.flatnonzero(~held))
        for p, s in part_scores(fitted, x[held], config.num_threads).items():
            oof[p][held] = s
        if progress:
            progress(k + 1, steps)
    raw_oof, weights, intercept = combine(recipe, oof, y)
    newest = newest_times(times, config.refit.calibration_share)
    calibration = fit_calibration(1.0 / (1.0 + np.exp(-raw_oof[newest])), y[newest],
                                  config.calibration)
    parts = fit_parts(recipe, x, y, spec, encoder, config)
    if progress:
        progress(steps, steps)
    return build_model(recipe, parts, spec, encoder, calibration, weights, intercept)
