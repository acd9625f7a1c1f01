"""The candidates' parts fitted with bounded memory, and the refit's BG/NBD columns: the same
numbers as the plain computation, whatever the size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import AttributeKinds
from features.definitions import BTYD_MODEL_FEATURES, BTYD_SQL_FEATURES, FeatureSpec
from features.engine import btyd_columns
from scoring.artifact import CategoryEncoder, LinearScorer
from training import candidates
from training.candidates import fit_linear, whole_log_btyd
from training.config import TrainConfig

SPEC = FeatureSpec(event_types=("purchase",), attributes=AttributeKinds(categorical=("plan",)),
                   btyd_horizon_days=30.0,
                   btyd_params={"r": 0.6, "alpha": 12.0, "a": 0.8, "b": 3.0})


def _plain_design(x: np.ndarray, numeric: list[int], cats: list[int], levels: list[int]):
    """The logistic design as it was first written: whole-matrix steps, one copy each."""
    block = x[:, numeric]
    medians = np.nan_to_num(np.nanmedian(np.where(np.isfinite(block), block, np.nan), axis=0), nan=0.0)
    z = LinearScorer.transform_numeric(x, numeric, medians)
    means, scales = z.mean(axis=0), z.std(axis=0)
    scales = np.where(scales > 1e-12, scales, 1.0)
    columns = [(z - means) / scales]
    for pos, n_levels in zip(cats, levels):
        onehot = np.zeros((len(x), n_levels))
        known = ~np.isnan(x[:, pos])
        onehot[np.flatnonzero(known), x[known, pos].astype(int)] = 1.0
        columns.append(onehot)
    return np.hstack(columns), medians, means, scales


def _matrix(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, CategoryEncoder]:
    """Encoded rows of SPEC: skewed counts with gaps, a huge and an infinite value, a column
    that never varies, a category with missing levels, and BG/NBD summaries."""
    rng = np.random.default_rng(seed)
    names = list(SPEC.feature_names)
    frame = pd.DataFrame({c: rng.gamma(0.5, 20.0, n) for c in names})
    frame.loc[rng.uniform(size=n) < 0.2, names[0]] = np.nan
    frame.loc[3, names[1]] = 1e300
    frame.loc[4, names[1]] = np.inf
    frame[names[2]] = 7.0
    frame["attr_plan"] = rng.choice(["basic", "pro", "team", None], n)
    frame["btyd_frequency"] = rng.poisson(3.0, n).astype(float)
    frame["btyd_age_days"] = rng.uniform(30.0, 300.0, n)
    frame["btyd_recency_days"] = frame["btyd_age_days"] * rng.uniform(0.0, 1.0, n)
    encoder = CategoryEncoder(SPEC.categorical_features).fit(frame)
    x = encoder.encode(frame, names)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-np.log1p(np.nan_to_num(x[:, 0])) + 2))).astype(int)
    return x, y, encoder


@pytest.mark.parametrize("chunk", [7, 65_536])
def test_the_logistic_design_built_in_place_is_the_plain_one(monkeypatch, chunk):
    """Built block by block of rows, the design and its fitted transform equal the plain
    whole-matrix computation, and so does the model fitted on it."""
    monkeypatch.setattr(candidates, "CHUNK_ROWS", chunk)
    x, y, encoder = _matrix(500)
    fitted = fit_linear(x, y, SPEC, encoder, c=0.5)
    names = list(SPEC.feature_names)
    cats = [names.index(c) for c in SPEC.categorical_features]
    numeric = [i for i in range(len(names)) if i not in cats]
    levels = [len(encoder.levels_[names[p]]) for p in cats]
    design, medians, means, scales = _plain_design(x, numeric, cats, levels)
    assert np.allclose(fitted.medians, medians)
    assert np.allclose(fitted.means, means)
    assert np.allclose(fitted.scales, scales)
    assert fitted.scales[numeric.index(2)] == 1.0  # the column that never varies
    plain = candidates.LogisticRegression(C=0.5, max_iter=2000, random_state=0).fit(design, y)
    assert np.allclose(fitted.coef_numeric, plain.coef_[0][:len(numeric)], atol=1e-6)
    assert fitted.intercept == pytest.approx(plain.intercept_[0], abs=1e-6)
    # and it scores what the plain design says
    assert np.allclose(fitted.raw_score(x), plain.decision_function(design), atol=1e-6)
    # on a subset of rows given by index, it is the model fitted on a copy of those rows
    rows = np.flatnonzero(np.arange(len(x)) % 3 != 0)
    on_rows = fit_linear(x, y, SPEC, encoder, c=0.5, rows=rows)
    on_copy = fit_linear(x[rows], y[rows], SPEC, encoder, c=0.5)
    assert on_rows == on_copy


def test_the_encoded_matrix_is_the_same_in_blocks_of_rows(monkeypatch):
    from scoring import artifact

    x, _, encoder = _matrix(300, seed=1)
    frame = pd.DataFrame(x, columns=list(SPEC.feature_names)).assign(
        attr_plan=pd.Series(np.where(np.isnan(x[:, list(SPEC.feature_names).index("attr_plan")]),
                                     None, "basic"), dtype=object))
    whole = encoder.encode(frame, list(SPEC.feature_names))
    monkeypatch.setattr(artifact, "ENCODE_CHUNK_ROWS", 64)
    assert np.array_equal(encoder.encode(frame, list(SPEC.feature_names)), whole, equal_nan=True)
    # the refit's half-size matrix: the same values, rounded to float32
    small = encoder.encode(frame, list(SPEC.feature_names), dtype="float32")
    assert small.dtype == np.float32
    assert np.array_equal(small, whole.astype("float32"), equal_nan=True)


def test_the_refit_reads_bgnbd_with_the_whole_logs_parameters():
    """The refit's rows carry BG/NBD columns computed from their own summaries with the spec's
    (whole-log) parameters; the summaries and every other column are left as they were."""
    x, y, encoder = _matrix(200, seed=2)
    names = list(SPEC.feature_names)
    pos = {c: names.index(c) for c in names}
    before = x.copy()
    whole_log_btyd(x, names, SPEC)
    expected = btyd_columns({c: before[:, pos[c]] for c in BTYD_SQL_FEATURES}, SPEC, SPEC.btyd_params)
    for c in BTYD_MODEL_FEATURES:
        assert np.allclose(x[:, pos[c]], expected[c], equal_nan=True)
        assert not np.allclose(x[:, pos[c]], before[:, pos[c]], equal_nan=True)  # it did change
    others = [i for c, i in pos.items() if c not in BTYD_MODEL_FEATURES]
    assert np.array_equal(x[:, others], before[:, others], equal_nan=True)
    assert 0.0 < np.nanmean(x[:, pos["btyd_p_inactive"]]) < 1.0


def test_the_whole_log_bgnbd_columns_can_be_turned_off():
    assert TrainConfig().refit.btyd_whole_log is True
    assert TrainConfig.model_validate({"refit": {"btyd_whole_log": False}}).refit.btyd_whole_log is False


def test_bgnbd_fitted_on_rows_by_index_is_bgnbd_fitted_on_their_copy():
    x, y, _ = _matrix(300, seed=3)
    pos = list(SPEC.feature_names).index("btyd_p_inactive")
    x[::7, pos] = np.nan  # customers without a recorded event get the fallback
    x[:, pos] = np.clip(np.nan_to_num(x[:, pos], nan=np.nan) / 100.0, 0.01, 0.99)
    x[::7, pos] = np.nan
    rows = np.flatnonzero(np.arange(len(x)) % 4 != 1)
    assert candidates.fit_bgnbd(x, y, SPEC, rows) == candidates.fit_bgnbd(x[rows], y[rows], SPEC)


def test_the_logistic_score_in_blocks_of_rows_is_the_sum_of_its_contributions(monkeypatch):
    from scoring import artifact

    x, y, encoder = _matrix(300, seed=4)
    fitted = fit_linear(x, y, SPEC, encoder, c=0.5)
    whole = fitted.contributions(x).sum(axis=1)
    monkeypatch.setattr(artifact, "ENCODE_CHUNK_ROWS", 64)
    assert np.array_equal(fitted.raw_score(x), whole)
    assert fitted.raw_score(x[:0]).shape == (0,)


def test_the_logistic_part_fits_on_a_bounded_seeded_subset_of_many_rows(monkeypatch):
    """Above the bound it fits on that many rows, the same ones on every run, and close to the
    fit on every row."""
    x, y, encoder = _matrix(20_000, seed=5)
    every = fit_linear(x, y, SPEC, encoder, c=0.5)
    monkeypatch.setattr(candidates, "LINEAR_MAX_ROWS", 14_000)
    bounded = fit_linear(x, y, SPEC, encoder, c=0.5)
    assert bounded == fit_linear(x, y, SPEC, encoder, c=0.5)  # the same subset every run
    assert bounded != every
    assert np.corrcoef(bounded.raw_score(x), every.raw_score(x))[0, 1] > 0.98
