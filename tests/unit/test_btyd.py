"""The BG/NBD module: parameter recovery, predictions against simulated truth, the RFM summary, the fit's
edge cases.

Tolerances come from the estimator's spread: over 40 simulated cohorts of 10,000 customers (ages 180-365
days) the relative standard deviations were r 1.8-1.9%, alpha 2.2-3.6%, a 3.5-4.3%, b 4.6-5.5% for the two
parameter sets below; at 20,000 customers they shrink by sqrt(2). The recovery tests allow four to five of
those standard deviations and, sharper, check that the true parameters lie inside the 99.9%
likelihood-ratio region of the fit.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from features.btyd import (
    DAY_SECONDS,
    BGNBDParams,
    _alive_expectation_quad,
    expected_purchases,
    p_alive,
    p_no_purchase,
    rfm_summary,
)
from features.btyd_fit import bgnbd_log_likelihood, fit_bgnbd
from simulation.bgnbd import simulate_bgnbd, simulate_bgnbd_events

# Values of the same size as the ones in Fader, Hardie & Lee (2005), here simply in days.
PAPER_LIKE = BGNBDParams(r=0.24, alpha=4.4, a=0.79, b=2.43)
# Faster, less heterogeneous buyers (mean rate 0.075/day against 0.055) with a > 1, where the (a - 1)
# factors of the closed forms change sign.
FREQUENT = BGNBDParams(r=1.5, alpha=20.0, a=2.0, b=6.0)
N_CUSTOMERS = 20_000


def _cohort(params: BGNBDParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return simulate_bgnbd(params, n, rng.uniform(180.0, 365.0, n), seed=rng)


# --------------------------------------------------------------------------------------------
# Parameter recovery
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("true", "tolerance"),
    [
        (PAPER_LIKE, {"r": 0.06, "alpha": 0.11, "a": 0.13, "b": 0.17}),
        (FREQUENT, {"r": 0.06, "alpha": 0.08, "a": 0.11, "b": 0.14}),
    ],
    ids=["paper-like", "frequent"],
)
def test_fit_recovers_simulated_parameters(true: BGNBDParams, tolerance: dict[str, float]) -> None:
    frequency, recency, age = _cohort(true, N_CUSTOMERS, seed=11)
    fitted = fit_bgnbd(frequency, recency, age)

    for name, value in true.to_dict().items():
        assert fitted.to_dict()[name] == pytest.approx(value, rel=tolerance[name]), name
    # The truth must lie in the 99.9% likelihood-ratio confidence region (4 parameters).
    lr = 2.0 * (
        bgnbd_log_likelihood(fitted, frequency, recency, age).sum()
        - bgnbd_log_likelihood(true, frequency, recency, age).sum()
    )
    assert 0.0 <= lr < stats.chi2.ppf(0.999, df=4)


def test_fit_is_a_maximum_of_the_log_likelihood() -> None:
    frequency, recency, age = _cohort(PAPER_LIKE, 3_000, seed=3)
    fitted = fit_bgnbd(frequency, recency, age)
    best = bgnbd_log_likelihood(fitted, frequency, recency, age).sum()
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.98, 1.02):
            moved = BGNBDParams.from_dict({**fitted.to_dict(), name: fitted.to_dict()[name] * factor})
            assert bgnbd_log_likelihood(moved, frequency, recency, age).sum() < best, (name, factor)


def test_log_likelihood_matches_the_papers_formula_term_by_term() -> None:
    """Equation (6) of FHL 2005 evaluated naively (fine at these moderate values) for a few customers."""
    params = BGNBDParams(r=0.7, alpha=3.0, a=1.3, b=2.2)
    x = np.array([0.0, 1.0, 4.0, 9.0])
    t_x = np.array([0.0, 5.0, 20.0, 30.0])
    T = np.array([10.0, 12.0, 40.0, 31.0])
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    expected = []
    for xi, ti, Ti in zip(x, t_x, T):
        beta = math.gamma(a + b) * math.gamma(b + xi) / (math.gamma(b) * math.gamma(a + b + xi))
        gamma_part = math.gamma(r + xi) * alpha**r / math.gamma(r)
        first = beta * gamma_part / (alpha + Ti) ** (r + xi)
        second = 0.0
        if xi > 0:
            second = (
                math.gamma(a + b)
                * math.gamma(a + 1)
                * math.gamma(b + xi - 1)
                / (math.gamma(a) * math.gamma(b) * math.gamma(a + b + xi))
                * gamma_part
                / (alpha + ti) ** (r + xi)
            )
        expected.append(math.log(first + second))
    np.testing.assert_allclose(bgnbd_log_likelihood(params, x, t_x, T), expected, rtol=1e-12)


# --------------------------------------------------------------------------------------------
# The fit: weights, compression, edge cases
# --------------------------------------------------------------------------------------------


def test_fit_with_weights_equals_fit_on_raw_rows() -> None:
    frequency, recency, age = _cohort(PAPER_LIKE, 4_000, seed=5)
    # Whole days, as rfm_summary produces them, so that many customers share a row.
    recency, age = np.floor(recency), np.floor(age)
    rows, counts = np.unique(np.column_stack([frequency, recency, age]), axis=0, return_counts=True)
    assert len(rows) < 0.8 * len(frequency)

    raw = fit_bgnbd(frequency, recency, age)
    compressed = fit_bgnbd(rows[:, 0], rows[:, 1], rows[:, 2], weights=counts)
    for name, value in raw.to_dict().items():
        assert compressed.to_dict()[name] == pytest.approx(value, rel=1e-5), name

    # A weight is a repetition: doubling every row is a weight of 2, and leaves the estimate alone.
    doubled = fit_bgnbd(
        np.tile(rows[:, 0], 2), np.tile(rows[:, 1], 2), np.tile(rows[:, 2], 2), weights=np.tile(counts, 2)
    )
    for name, value in raw.to_dict().items():
        assert doubled.to_dict()[name] == pytest.approx(value, rel=1e-5), name


def test_weights_change_the_fit() -> None:
    """The weights are not ignored: up-weighting the repeat buyers moves the estimate."""
    frequency, recency, age = _cohort(PAPER_LIKE, 3_000, seed=6)
    plain = fit_bgnbd(frequency, recency, age)
    tilted = fit_bgnbd(frequency, recency, age, weights=np.where(frequency > 0, 3.0, 1.0))
    assert tilted.r > plain.r * 1.2


@pytest.mark.parametrize(
    "rows",
    [
        ([], [], []),
        ([np.nan, np.nan], [np.nan, np.nan], [np.nan, np.nan]),
        ([0, 1], [0, 3], [np.nan, np.nan]),
    ],
    ids=["empty", "all-nan", "no-age"],
)
def test_fit_rejects_data_without_customers(rows: tuple[list[float], list[float], list[float]]) -> None:
    with pytest.raises(ValueError, match="at least one customer"):
        fit_bgnbd(*rows)


def test_fit_rejects_all_zero_weights_and_all_zero_ages() -> None:
    with pytest.raises(ValueError, match="at least one customer"):
        fit_bgnbd([1, 2], [3, 4], [5, 6], weights=[0, 0])
    with pytest.raises(ValueError, match="positive age"):
        fit_bgnbd([0, 0], [0, 0], [0, 0])


@pytest.mark.parametrize(
    ("frequency", "recency", "age", "weights", "message"),
    [
        ([1], [5], [4], None, "recency must not exceed age"),
        ([-1], [0], [4], None, "negative"),
        ([1.5], [1], [4], None, "whole number"),
        ([1], [1], [np.inf], None, "finite"),
        ([1, 2], [1, 2], [4, 4], [1, -1], "weights"),
        ([1, 2], [1, 2], [4, 4], [1], "weights"),
    ],
)
def test_fit_rejects_invalid_input(frequency, recency, age, weights, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_bgnbd(frequency, recency, age, weights=weights)


def test_fit_skips_unknown_customers() -> None:
    frequency, recency, age = _cohort(PAPER_LIKE, 2_000, seed=7)
    with_unknown = fit_bgnbd(
        np.concatenate([frequency, [0, 0]]),
        np.concatenate([recency, [0, 0]]),
        np.concatenate([age, [np.nan] * 2]),
    )
    assert with_unknown == fit_bgnbd(frequency, recency, age)


@pytest.mark.parametrize("penalizer", [0.0, 0.01])
def test_fit_stays_finite_on_degenerate_data(penalizer: float) -> None:
    """Nobody ever came back: the likelihood is maximised at a boundary; the fit must still be usable."""
    fitted = fit_bgnbd(np.zeros(50), np.zeros(50), np.linspace(10, 100, 50), penalizer=penalizer)
    values = np.array(list(fitted.to_dict().values()))
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    assert np.all(np.isfinite(expected_purchases(fitted, 30.0, [0, 0], [0, 0], [10, 100])))


def test_penalizer_shrinks_the_parameters() -> None:
    frequency, recency, age = _cohort(PAPER_LIKE, 3_000, seed=8)
    plain, penalised = fit_bgnbd(frequency, recency, age), fit_bgnbd(frequency, recency, age, penalizer=0.1)
    assert penalised.a + penalised.b < plain.a + plain.b


def test_params_round_trip_and_validation() -> None:
    assert BGNBDParams.from_dict(PAPER_LIKE.to_dict()) == PAPER_LIKE
    assert all(type(v) is float for v in PAPER_LIKE.to_dict().values())
    with pytest.raises(ValueError, match="keys"):
        BGNBDParams.from_dict({"r": 1.0, "alpha": 1.0, "a": 1.0})
    with pytest.raises(ValueError, match="positive"):
        BGNBDParams(r=1.0, alpha=0.0, a=1.0, b=1.0)
    with pytest.raises(ValueError, match="finite"):
        BGNBDParams(r=float("nan"), alpha=1.0, a=1.0, b=1.0)


# --------------------------------------------------------------------------------------------
# p_alive
# --------------------------------------------------------------------------------------------


def test_p_alive_is_one_without_repeat_purchases() -> None:
    ages = np.array([0.0, 1.0, 50.0, 1e4])
    np.testing.assert_array_equal(p_alive(PAPER_LIKE, np.zeros(4), np.zeros(4), ages), np.ones(4))


def test_p_alive_matches_the_closed_form() -> None:
    r, alpha, a, b = PAPER_LIKE.r, PAPER_LIKE.alpha, PAPER_LIKE.a, PAPER_LIKE.b
    x, t_x, T = 3.0, 20.0, 50.0
    direct = 1.0 / (1.0 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    assert float(p_alive(PAPER_LIKE, x, t_x, T)) == pytest.approx(direct, rel=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    params=st.builds(
        BGNBDParams,
        r=st.floats(1e-3, 1e3),
        alpha=st.floats(1e-3, 1e4),
        a=st.floats(1e-3, 1e3),
        b=st.floats(1e-3, 1e3),
    ),
    frequency=st.integers(1, 10_000),
    age=st.floats(1e-3, 1e5),
    fractions=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
)
def test_p_alive_is_a_probability_that_falls_with_recency(
    params: BGNBDParams, frequency: int, age: float, fractions: tuple[float, float]
) -> None:
    low, high = sorted(fractions)
    values = p_alive(params, [frequency, frequency], [low * age, high * age], [age, age])
    assert np.all((values >= 0.0) & (values <= 1.0))
    assert values[0] <= values[1]


def test_p_alive_falls_strictly_as_recency_falls() -> None:
    recency = np.array([100.0, 80.0, 50.0, 20.0, 5.0])
    values = p_alive(PAPER_LIKE, 4, recency, 100.0)
    assert np.all(np.diff(values) < 0)
    assert values[0] > 0.5 > values[-1]


def test_p_alive_agrees_with_the_simulated_truth() -> None:
    """Under the true parameters, each customer's alive flag is Bernoulli(p_alive): compare sums by group."""
    cohort = simulate_bgnbd_events(FREQUENT, N_CUSTOMERS, 200.0, seed=21)
    frequency, recency, age = cohort.summary()
    prob = p_alive(FREQUENT, frequency, recency, age)
    assert np.all(prob[frequency == 0] == 1.0) and np.all(cohort.alive[frequency == 0])
    for group in (frequency >= 1, (frequency >= 1) & (frequency <= 3), frequency >= 10, recency < 0.5 * age):
        observed, predicted = cohort.alive[group].sum(), prob[group].sum()
        sd = math.sqrt(float((prob[group] * (1 - prob[group])).sum()))
        assert abs(observed - predicted) < 4 * sd + 1, (observed, predicted, sd)


def test_p_alive_propagates_unknown_customers() -> None:
    assert np.isnan(p_alive(PAPER_LIKE, [0], [0], [np.nan])).all()


# --------------------------------------------------------------------------------------------
# expected_purchases
# --------------------------------------------------------------------------------------------


def test_expected_purchases_grows_with_the_horizon() -> None:
    horizons = np.array([0.0, 1.0, 7.0, 30.0, 90.0, 365.0, 3650.0])
    for x, t_x, T in [(0, 0, 100), (1, 10, 100), (5, 90, 100), (5, 10, 100), (40, 300, 310)]:
        values = expected_purchases(PAPER_LIKE, horizons, x, t_x, T)
        assert values[0] == 0.0
        assert np.all(np.diff(values) > 0), (x, t_x, T, values)


@pytest.mark.parametrize(
    "params",
    [
        PAPER_LIKE,
        FREQUENT,
        BGNBDParams(r=0.5, alpha=10.0, a=1.0, b=3.0),  # a == 1: the closed form's removable 0/0
        BGNBDParams(r=0.5, alpha=10.0, a=1.00003, b=3.0),
        BGNBDParams(r=5.0, alpha=0.5, a=0.3, b=0.2),  # a + b < 1
        BGNBDParams(r=8.0, alpha=1.0, a=40.0, b=200.0),  # large hypergeometric arguments
    ],
)
def test_expected_purchases_matches_the_integral_form(params: BGNBDParams) -> None:
    """Closed form (hyp2f1) against quadrature of E[(1 - (1 + p t / (alpha + T))^-(r + x)) / p]."""
    x = np.array([0.0, 1.0, 3.0, 12.0, 60.0])
    t_x = np.array([0.0, 40.0, 10.0, 200.0, 290.0])
    T = np.array([30.0, 60.0, 300.0, 300.0, 300.0])
    for horizon in (0.5, 30.0, 365.0, 1e5):
        closed = expected_purchases(params, horizon, x, t_x, T)
        alive = p_alive(params, x, t_x, T)
        integral = [
            alive[i]
            * _alive_expectation_quad(
                params.r + x[i], horizon / (params.alpha + T[i]), params.a, params.b + x[i]
            )
            for i in range(len(x))
        ]
        np.testing.assert_allclose(closed, integral, rtol=1e-5)


def test_expected_purchases_match_a_simulated_hold_out() -> None:
    """Calibration and hold-out simulated together: predicted and realised hold-out purchases agree."""
    holdout = 180.0
    rng = np.random.default_rng(31)
    calibration = rng.uniform(180.0, 365.0, N_CUSTOMERS)
    for params in (PAPER_LIKE, FREQUENT):
        cohort = simulate_bgnbd_events(params, N_CUSTOMERS, calibration + holdout, seed=rng)
        frequency, recency, age = cohort.summary(cutoff=calibration)
        realised = cohort.purchases_between(calibration, calibration + holdout)
        predicted = expected_purchases(params, holdout, frequency, recency, age)
        assert np.all(np.isfinite(predicted)) and np.all(predicted >= 0)
        for group in (np.ones(N_CUSTOMERS, bool), frequency == 0, frequency == 1, frequency >= 5):
            gap = realised[group] - predicted[group]
            se = gap.std(ddof=1) / math.sqrt(group.sum())
            assert abs(gap.mean()) < 4 * se, (params, int(group.sum()), gap.mean(), se)
        # And with the parameters fitted on the calibration period, a few per cent off at most.
        fitted = fit_bgnbd(frequency, recency, age)
        fitted_mean = expected_purchases(fitted, holdout, frequency, recency, age).mean()
        assert fitted_mean == pytest.approx(realised.mean(), rel=0.05)


def test_expected_purchases_broadcasts_and_propagates_nan() -> None:
    values = expected_purchases(
        PAPER_LIKE, np.array([[10.0], [20.0]]), [0, 2, 0], [0, 5, 0], [10, 10, np.nan]
    )
    assert values.shape == (2, 3)
    assert np.isnan(values[:, 2]).all() and np.isfinite(values[:, :2]).all()
    with pytest.raises(ValueError, match="horizon"):
        expected_purchases(PAPER_LIKE, -1.0, 0, 0, 10)


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


def test_simulated_events_are_consistent_with_their_summary() -> None:
    cohort = simulate_bgnbd_events(PAPER_LIKE, 2_000, np.linspace(10, 400, 2_000), seed=1)
    frequency, recency, age = cohort.summary()
    assert np.all(np.diff(cohort.customer) >= 0)
    starts = np.searchsorted(cohort.customer, np.arange(2_000))
    assert np.all(cohort.time[starts] == 0.0)
    assert np.all((cohort.time >= 0) & (cohort.time <= cohort.age[cohort.customer]))
    assert np.all((recency <= age) & ((frequency > 0) | (recency == 0)))
    assert frequency.sum() == len(cohort.time) - 2_000
    # Some customers dropped out during their age, others did not.
    assert not cohort.alive.all() and cohort.alive.any()
    same = simulate_bgnbd(PAPER_LIKE, 2_000, np.linspace(10, 400, 2_000), seed=1)
    for left, right in zip(same, (frequency, recency, age)):
        np.testing.assert_array_equal(left, right)


def test_simulated_purchase_counts_follow_the_model() -> None:
    """P(X(T) = 0) has a closed form (FHL 2005, eq. 8 at x = 0): compare with the simulated share."""
    params, age, n = FREQUENT, 100.0, N_CUSTOMERS
    frequency, _, _ = simulate_bgnbd(params, n, age, seed=2)
    share_zero = (params.alpha / (params.alpha + age)) ** params.r
    assert (frequency == 0).mean() == pytest.approx(
        share_zero, abs=4 * math.sqrt(share_zero * (1 - share_zero) / n)
    )


# --------------------------------------------------------------------------------------------
# rfm_summary
# --------------------------------------------------------------------------------------------

# 2024-01-10 00:00 UTC, a day boundary.
AS_OF = float(pd.Timestamp("2024-01-10", tz="UTC").timestamp())
HOUR = 3600.0


def _at(days_before: float, hour: float = 12.0) -> float:
    """Epoch seconds `days_before` whole days before AS_OF's day, at `hour` o'clock."""
    return AS_OF - days_before * DAY_SECONDS + hour * HOUR


def test_rfm_summary_counts_repeat_days_before_as_of() -> None:
    events = [
        ("a", _at(9, 8)),  # first purchase, day -9
        ("a", _at(9, 20)),  # same day: not a repeat
        ("a", _at(5, 1)),  # repeat day 1
        ("a", _at(5, 23)),  # same day again
        ("a", _at(2, 10)),  # repeat day 2
        ("a", AS_OF),  # at as_of: not before it, ignored
        ("a", _at(-3)),  # after as_of: ignored
        ("b", _at(1, 0)),  # one purchase on the last observed day
        ("c", _at(-1)),  # only after as_of
    ]
    ids, times = zip(*events)
    summary = rfm_summary(np.array(ids), np.array(times), AS_OF, customers=np.array(["c", "a", "b", "d"]))

    assert list(summary.index) == ["c", "a", "b", "d"]
    assert summary.loc["a"].tolist() == [2, 7.0, 8.0]  # day -9 to day -2; observed to day -1
    assert summary.loc["b"].tolist() == [0, 0.0, 0.0]
    for unseen in ("c", "d"):
        assert summary.loc[unseen, "frequency"] == 0 and summary.loc[unseen, "recency"] == 0.0
        assert np.isnan(summary.loc[unseen, "T"])
    assert summary["frequency"].dtype == np.int64


def test_rfm_summary_as_of_inside_a_day_observes_that_day() -> None:
    ids = np.array(["a", "a", "a"])
    times = np.array([_at(3), AS_OF + 2 * HOUR, AS_OF + 6 * HOUR])
    summary = rfm_summary(ids, times, AS_OF + 4 * HOUR)
    assert summary.loc["a"].tolist() == [1, 3.0, 3.0]


def test_rfm_summary_without_customer_list_and_with_shifted_days() -> None:
    ids = np.array([2, 1, 1])
    # 23:00 and 01:00 UTC are two UTC days, but one day in UTC+2 (days starting at 22:00 UTC).
    times = np.array([_at(4), _at(4, 23), _at(3, 1)])
    utc = rfm_summary(ids, times, AS_OF)
    shifted = rfm_summary(ids, times, AS_OF, day_origin=-2 * HOUR)
    assert list(utc.index) == [1, 2]
    assert utc.loc[1, "frequency"] == 1 and shifted.loc[1, "frequency"] == 0


def test_rfm_summary_of_an_empty_log() -> None:
    summary = rfm_summary(np.array([], dtype=object), np.array([]), AS_OF, customers=np.array(["x"]))
    assert summary.loc["x", "frequency"] == 0 and np.isnan(summary.loc["x", "T"])
    with pytest.raises(ValueError, match="at least one customer"):
        fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])


def test_rfm_summary_feeds_the_fit_like_the_simulation() -> None:
    """An event log made from a simulated cohort, summarised, fits close to the continuous-time fit."""
    cohort = simulate_bgnbd_events(PAPER_LIKE, 5_000, 300.0, seed=41)
    first = AS_OF - 300.0 * DAY_SECONDS - np.random.default_rng(0).uniform(0, DAY_SECONDS, 5_000)
    summary = rfm_summary(cohort.customer, first[cohort.customer] + cohort.time * DAY_SECONDS, AS_OF)
    assert len(summary) == 5_000 and summary["T"].between(299, 300).all()
    from_log = fit_bgnbd(summary["frequency"], summary["recency"], summary["T"])
    from_simulation = fit_bgnbd(*cohort.summary())
    assert from_log.r == pytest.approx(from_simulation.r, rel=0.1)
    assert from_log.a / (from_log.a + from_log.b) == pytest.approx(
        from_simulation.a / (from_simulation.a + from_simulation.b), rel=0.15
    )


def test_p_no_purchase_matches_a_simulated_hold_out() -> None:
    """P(no purchase in the horizon), the inactivity label's BG/NBD probability, agrees with how
    often simulated customers make no purchase in a hold-out, overall and by frequency."""
    horizon = 90.0
    rng = np.random.default_rng(41)
    calibration = rng.uniform(180.0, 365.0, N_CUSTOMERS)
    for params in (PAPER_LIKE, FREQUENT):
        cohort = simulate_bgnbd_events(params, N_CUSTOMERS, calibration + horizon, seed=rng)
        frequency, recency, age = cohort.summary(cutoff=calibration)
        quiet = cohort.purchases_between(calibration, calibration + horizon) == 0
        predicted = p_no_purchase(params, horizon, frequency, recency, age)
        assert np.all((predicted >= 0) & (predicted <= 1))
        for group in (np.ones(N_CUSTOMERS, bool), frequency == 0, frequency >= 3):
            gap = quiet[group] - predicted[group]
            se = gap.std(ddof=1) / math.sqrt(group.sum())
            assert abs(gap.mean()) < 4 * se, (params, int(group.sum()), gap.mean(), se)
        # and it ranks: customers it calls quiet are quiet more often
        top = predicted >= np.quantile(predicted, 0.8)
        assert quiet[top].mean() > quiet[~top].mean() + 0.1
