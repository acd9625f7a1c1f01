"""The churn curve (training.curve): person-period rows, a hazard model that recovers a known
curve, monotone curves, the restricted mean, and the survival metrics and Kaplan-Meier baseline
(training.curve_metrics) it is judged with."""

from __future__ import annotations

import numpy as np
import pytest

from training.curve import Grid, fit_hazard, person_period, restricted_mean
from training.curve_metrics import (
    curve_metrics,
    kaplan_meier_curve,
    outcomes,
    stratified_kaplan_meier,
    tenure_strata,
)


def test_the_grid_holds_every_horizon_asked_for_up_to_the_cap():
    grid = Grid.for_label("explicit", 45, horizons=(7, 30, 90))
    assert grid.ends[:3] == (7.0, 14.0, 21.0) and grid.cap == 90.0
    assert {7.0, 30.0, 45.0, 90.0} <= set(grid.ends) and list(grid.ends) == sorted(grid.ends)
    assert not grid.at_zero and grid.bounds[0] == (0.0, 7.0)
    inactive = Grid.for_label("inactivity", 30)
    assert inactive.bounds[0] == (0.0, 0.0) and inactive.index_of(0) == 0
    assert inactive.index_of(7) == 1


def test_person_period_rows_are_at_risk_and_observed_through_their_interval():
    grid = Grid((7.0, 14.0, 30.0), at_zero=False)
    x = np.zeros((3, 1))
    duration = np.array([10.0, 10.0, 40.0])
    observed = np.array([True, False, False])
    rows, ends, y = person_period(x, duration, observed, grid)
    got = sorted(zip(rows.tolist(), ends.tolist(), y.tolist(), strict=True))
    assert got == [
        (0, 7.0, 0.0), (0, 14.0, 1.0),          # churned on day 10
        (1, 7.0, 0.0),                           # censored on day 10: left out of (7, 14]
        (2, 7.0, 0.0), (2, 14.0, 0.0), (2, 30.0, 0.0)]  # seen past the cap


def test_the_interval_at_zero_holds_the_inactivity_label():
    grid = Grid((7.0, 30.0), at_zero=True)
    duration = np.array([0.0, 5.0, 3.0])
    observed = np.array([True, True, False])
    rows, ends, y = person_period(np.zeros((3, 1)), duration, observed, grid)
    got = sorted(zip(rows.tolist(), ends.tolist(), y.tolist(), strict=True))
    assert got == [(0, 0.0, 1.0),
                   (1, 0.0, 0.0), (1, 7.0, 1.0),
                   (2, 0.0, 0.0)]


def _exponential(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose time to churn is exponential with a rate set by their one feature, censored
    uniformly: (x, duration, observed, rate)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, (n, 1))
    rate = np.exp(-4.0 + 1.2 * x[:, 0])  # mean stays from about 11 to 330 days
    t = rng.exponential(1 / rate)
    c = rng.uniform(20, 200, n)
    return x, np.minimum(t, c), t <= c, rate


def test_the_hazard_model_recovers_a_known_curve_and_beats_kaplan_meier():
    grid = Grid.for_label("explicit", 30, horizons=(7, 30, 90))
    x, d, o, _ = _exponential(6000, seed=1)
    xv, dv, ov, _ = _exponential(2000, seed=2)
    xt, dt, ot, rate = _exponential(3000, seed=3)
    model = fit_hazard(x, d, o, grid, xv, dv, ov, num_threads=1)
    curve = model.curve(xt)
    assert (np.diff(curve, axis=1) >= 0).all() and ((curve >= 0) & (curve <= 1)).all()
    truth = 1 - np.exp(-rate[:, None] * np.array([7.0, 30.0, 90.0]))
    assert np.abs(model.at(xt, (7, 30, 90)) - truth).mean(axis=0).max() < 0.03
    true_mean = (1 - np.exp(-rate * grid.cap)) / rate
    assert np.abs(model.expected_days(xt) - true_mean).mean() < 3.0

    train, test = outcomes(d, o), outcomes(dt, ot)
    ours = curve_metrics(train, test, curve, grid, (7, 30, 90))
    km = np.tile(kaplan_meier_curve(d, o, grid), (len(xt), 1))
    base = curve_metrics(train, test, km, grid, (7, 30, 90))
    assert ours["concordance"] > base["concordance"] + 0.1
    assert ours["ibs"] < base["ibs"] and ours["auc_30d"] > 0.7
    assert base["auc_30d"] == pytest.approx(0.5)  # one curve for everyone ranks no one


def test_restricted_mean_is_the_area_under_survival():
    grid = Grid((10.0, 20.0), at_zero=False)
    never = np.array([[0.0, 0.0]])
    assert restricted_mean(never, grid)[0] == pytest.approx(20.0)
    half = np.array([[0.5, 0.5]])  # half leave in the first 10 days
    assert restricted_mean(half, grid)[0] == pytest.approx(7.5 + 5.0)
    at_once = Grid((10.0,), at_zero=True)
    assert restricted_mean(np.array([[1.0, 1.0]]), at_once)[0] == pytest.approx(0.0)


def test_kaplan_meier_by_hand():
    grid = Grid((5.0, 10.0), at_zero=False)
    # 4 at risk; an event at 3 (S = 3/4), a censoring at 4, an event at 8 (S = 3/4 * 1/2)
    duration = np.array([3.0, 4.0, 8.0, 12.0])
    observed = np.array([True, False, True, False])
    assert kaplan_meier_curve(duration, observed, grid) == pytest.approx([0.25, 1 - 0.375])
    strata = tenure_strata(np.arange(100.0), np.array([5.0, 95.0]), bins=2)
    assert strata.tolist() == [0, 1]
    same = stratified_kaplan_meier(np.zeros(4), duration, observed, np.array([0, 7]), grid)
    assert same == pytest.approx(np.tile([0.25, 0.625], (2, 1)))
