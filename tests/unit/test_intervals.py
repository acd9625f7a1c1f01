"""Customer-clustered bootstrap intervals: exact metrics, coverage on clustered data, pairing, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training.intervals import (
    METRICS,
    Interval,
    _weighted_metrics,
    cluster_bootstrap,
    paired_difference,
    resamples_for,
)

SKLEARN = {"roc_auc": roc_auc_score, "pr_auc": average_precision_score, "brier": brier_score_loss}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _clustered(
    rng: np.random.Generator,
    customers: int,
    times: int,
    label_noise: float = 0.3,
    score_noise: float = 0.4,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Customers with a latent risk z seen at `times` observation times.

    Labels and scores at every time are driven mostly by z, so rows of one customer are strongly
    correlated. Returns labels, scores, customer ids and the per-row logit without score noise."""
    z = rng.normal(size=customers)
    groups = np.repeat(np.arange(customers), times)
    base = -1.5 + 2.0 * z[groups]
    y = (rng.random(len(groups)) < _sigmoid(base + label_noise * rng.normal(size=len(groups)))).astype(int)
    p = _sigmoid(base + score_noise * rng.normal(size=len(groups)))
    return y, p, groups, base


def _independent(rng: np.random.Generator, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.25).astype(int)
    p = _sigmoid(-1.2 + 1.5 * y + rng.normal(size=n))
    return y, (np.round(p, 1) if ties else p)


# --------------------------------------------------------------------------------------------
# resamples_for
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0.8, 1000), (0.9, 1000), (0.95, 1000), (0.98, 2500), (0.99, 5000), (0.999, 50000)],
)
def test_resamples_for_leaves_25_points_in_each_tail(level: float, expected: int) -> None:
    count = resamples_for(level)
    assert count == expected
    assert (1 - level) / 2 * count >= 25 - 1e-9


@pytest.mark.parametrize("level", [0.0, 1.0, -0.5, 95.0])
def test_resamples_for_rejects_levels_outside_0_1(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        resamples_for(level)


# --------------------------------------------------------------------------------------------
# the metrics: sklearn on the full data, weights as repeated rows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ties", [False, True])
def test_estimates_are_sklearns_metrics_on_the_full_data(ties: bool) -> None:
    y, p = _independent(np.random.default_rng(1), 800, ties)
    groups = np.arange(len(y)) // 3
    result = cluster_bootstrap(y, p, groups, resamples=50)
    assert set(result) == set(METRICS)
    for name, metric in SKLEARN.items():
        assert result[name].estimate == float(metric(y, p))


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_with_unit_weights_are_the_unweighted_ones(ties: bool) -> None:
    y, p = _independent(np.random.default_rng(2), 600, ties)
    unit = _weighted_metrics(y, p, np.ones(len(y)))
    assert unit == _weighted_metrics(y, p)
    for name, metric in SKLEARN.items():
        assert unit[name] == pytest.approx(metric(y, p), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_integer_weights_equal_the_metrics_on_repeated_rows(ties: bool) -> None:
    rng = np.random.default_rng(3)
    y, p = _independent(rng, 600, ties)
    w = rng.integers(0, 4, len(y))  # zeros included: customers not drawn
    weighted = _weighted_metrics(y, p, w)
    repeated = _weighted_metrics(np.repeat(y, w), np.repeat(p, w))
    for name in METRICS:
        assert weighted[name] == pytest.approx(repeated[name], abs=1e-12)
    for name, metric in SKLEARN.items():
        assert weighted[name] == pytest.approx(metric(np.repeat(y, w), np.repeat(p, w)), abs=1e-12)
        assert weighted[name] == pytest.approx(metric(y, p, sample_weight=w), abs=1e-12)


def test_lift_is_the_churn_rate_in_the_top_tenth_over_the_base_rate() -> None:
    y, p = _independent(np.random.default_rng(4), 1000, ties=False)
    top = np.argsort(-p)[:100]
    assert _weighted_metrics(y, p)["lift_top10"] == pytest.approx(y[top].mean() / y.mean(), abs=1e-12)


def test_lift_takes_a_fraction_of_the_row_straddling_the_cut() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6])
    # top 10% of 4 rows is 0.4 of the first row (a churner): rate 1 over base rate 1/2
    assert _weighted_metrics(y, p)["lift_top10"] == pytest.approx(2.0)
    # the first row has weight 0, so the top weight lies in the second row (not a churner)
    assert _weighted_metrics(y, p, [0, 3, 1, 1])["lift_top10"] == pytest.approx(0.0)
    # a tie across the cut enters at the tied block's churn rate, whatever the row order
    tied = np.array([0.9, 0.9, 0.5, 0.5])
    first = _weighted_metrics(np.array([1, 0, 1, 0]), tied)["lift_top10"]
    second = _weighted_metrics(np.array([0, 1, 0, 1]), tied)["lift_top10"]
    assert first == second == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# the bootstrap resamples customers
# --------------------------------------------------------------------------------------------


def test_intervals_have_the_requested_shape() -> None:
    y, p, groups, _ = _clustered(np.random.default_rng(5), 300, 4)
    result = cluster_bootstrap(y, p, groups, level=0.9)
    for name in METRICS:
        interval = result[name]
        assert isinstance(interval, Interval)
        assert interval.level == 0.9
        assert interval.resamples == resamples_for(0.9)
        assert interval.low < interval.estimate < interval.high
    assert cluster_bootstrap(y, p, groups, level=0.9) == result  # same seed, same intervals
    assert cluster_bootstrap(y, p, groups, level=0.9, seed=1) != result


def test_repeating_every_customers_row_changes_nothing_but_row_resampling_narrows() -> None:
    """Copies of a customer's row carry no new information: the clustered interval is unchanged."""
    y, p = _independent(np.random.default_rng(6), 400, ties=False)
    ids = np.arange(len(y))
    once = cluster_bootstrap(y, p, ids, resamples=400)
    y5, p5, ids5 = np.repeat(y, 5), np.repeat(p, 5), np.repeat(ids, 5)
    five = cluster_bootstrap(y5, p5, ids5, resamples=400)
    rows = cluster_bootstrap(y5, p5, np.arange(len(y5)), resamples=400)
    for name in METRICS:
        assert five[name].low == pytest.approx(once[name].low, abs=1e-12)
        assert five[name].high == pytest.approx(once[name].high, abs=1e-12)
        assert rows[name].high - rows[name].low < 0.6 * (once[name].high - once[name].low)


def test_group_labels_of_any_hashable_kind() -> None:
    y, p, groups, _ = _clustered(np.random.default_rng(7), 100, 3)
    by_int = cluster_bootstrap(y, p, groups, resamples=200)
    by_str = cluster_bootstrap(y, p, np.array([f"cust-{g:04d}" for g in groups], dtype=object), resamples=200)
    assert by_int == by_str


def test_clustered_intervals_cover_the_truth_and_row_intervals_do_not() -> None:
    """90% intervals over 200 small clustered test sets, against the population AUC and Brier."""
    customers, times, replicates, level = 80, 8, 200, 0.9
    y, p, _, _ = _clustered(np.random.default_rng(2024), 100_000, times)
    true_auc, true_brier = roc_auc_score(y, p), brier_score_loss(y, p)

    rng = np.random.default_rng(11)
    covered = {"clustered": np.zeros(2), "rows": np.zeros(2)}
    for replicate in range(replicates):
        y, p, groups, _ = _clustered(rng, customers, times)
        for kind, ids in (("clustered", groups), ("rows", np.arange(len(y)))):
            result = cluster_bootstrap(y, p, ids, level=level, resamples=300, seed=replicate)
            covered[kind] += [
                result["roc_auc"].low <= true_auc <= result["roc_auc"].high,
                result["brier"].low <= true_brier <= result["brier"].high,
            ]
    clustered, rows = covered["clustered"] / replicates, covered["rows"] / replicates
    assert ((0.83 <= clustered) & (clustered <= 0.97)).all(), clustered
    assert (rows <= 0.80).all(), rows
    assert (clustered - rows >= 0.08).all(), (clustered, rows)


# --------------------------------------------------------------------------------------------
# paired differences
# --------------------------------------------------------------------------------------------


def _width(interval: Interval) -> float:
    return interval.high - interval.low


def test_paired_difference_is_much_narrower_than_either_interval() -> None:
    rng = np.random.default_rng(8)
    y, p_a, groups, _ = _clustered(rng, 400, 4)
    p_b = _sigmoid(np.log(p_a / (1 - p_a)) + 0.3 * rng.normal(size=len(y)))
    diff = paired_difference(y, p_a, p_b, groups)
    single_a = cluster_bootstrap(y, p_a, groups)
    single_b = cluster_bootstrap(y, p_b, groups)
    for name in ("roc_auc", "brier"):
        assert _width(diff[name]) < 0.35 * min(_width(single_a[name]), _width(single_b[name]))
        assert diff[name].estimate == pytest.approx(single_a[name].estimate - single_b[name].estimate)


def test_paired_difference_excludes_zero_when_one_model_is_clearly_better() -> None:
    rng = np.random.default_rng(9)
    y, p_a, groups, _ = _clustered(rng, 400, 4)
    p_b = _sigmoid(np.log(p_a / (1 - p_a)) + 1.0 * rng.normal(size=len(y)))
    diff = paired_difference(y, p_a, p_b, groups)
    assert diff["roc_auc"].low > 0  # a ranks better
    assert diff["brier"].high < 0  # and a's Brier is lower
    flipped = paired_difference(y, p_b, p_a, groups)
    assert flipped["roc_auc"].low == pytest.approx(-diff["roc_auc"].high, abs=1e-12)
    assert flipped["roc_auc"].high == pytest.approx(-diff["roc_auc"].low, abs=1e-12)


def test_paired_difference_includes_zero_for_models_equal_in_distribution() -> None:
    """Two models with the same noise on the same signal: the 95% interval should hold 0 about 95%."""
    rng = np.random.default_rng(10)
    holds_zero = np.zeros(2)
    datasets = 20
    for dataset in range(datasets):
        y, _, groups, base = _clustered(rng, 200, 4)
        p_a = _sigmoid(base + 0.8 * rng.normal(size=len(y)))
        p_b = _sigmoid(base + 0.8 * rng.normal(size=len(y)))
        diff = paired_difference(y, p_a, p_b, groups, seed=dataset)
        holds_zero += [diff[m].low <= 0 <= diff[m].high for m in ("roc_auc", "brier")]
    assert (holds_zero >= 16).all(), holds_zero


def test_identical_models_differ_by_exactly_zero() -> None:
    y, p, groups, _ = _clustered(np.random.default_rng(12), 100, 4)
    for name, interval in paired_difference(y, p, p, groups, resamples=200).items():
        assert (interval.estimate, interval.low, interval.high) == (0.0, 0.0, 0.0), name


# --------------------------------------------------------------------------------------------
# few churners, speed, validation
# --------------------------------------------------------------------------------------------


def test_three_churners_among_200_rows_give_finite_intervals() -> None:
    """Resamples drawing no churner are skipped for the ranking metrics, never a crash."""
    rng = np.random.default_rng(13)
    groups = np.repeat(np.arange(50), 4)
    y = np.zeros(200, dtype=int)
    y[[3, 90, 181]] = 1
    p = np.clip(0.05 + 0.3 * y + 0.1 * rng.random(200), 0, 1)
    result = cluster_bootstrap(y, p, groups, resamples=1000)
    for name in METRICS:
        assert np.isfinite([result[name].low, result[name].high]).all(), name
    assert result["brier"].resamples == 1000
    # (47/50)^50 ~ 4.5% of resamples draw none of the three churners
    assert 900 < result["roc_auc"].resamples < 1000
    assert result["roc_auc"].resamples == result["pr_auc"].resamples == result["lift_top10"].resamples


def test_when_no_resample_holds_both_classes_the_interval_is_nan_not_an_error() -> None:
    groups = np.repeat(np.arange(50), 4)
    y = np.zeros(200, dtype=int)
    y[0] = 1
    p = np.linspace(0.01, 0.5, 200)
    outcomes = set()
    for seed in range(20):
        auc = cluster_bootstrap(y, p, groups, resamples=1, seed=seed)["roc_auc"]
        outcomes.add(auc.resamples)
        assert (auc.resamples == 1 and np.isfinite(auc.low)) or (auc.resamples == 0 and np.isnan(auc.low))
    assert outcomes == {0, 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"p": [0.1, 0.2, 0.3]}, "p must have the same length"),
        ({"groups": [1, 2, 3]}, "groups must have the same length"),
        ({"y": [0, 1, 2, 1]}, "only 0 and 1"),
        ({"y": ["a", "b", "a", "b"]}, "only 0 and 1"),
        ({"y": [0, 0, 0, 0]}, "at least one positive and one negative"),
        ({"y": [1, 1, 1, 1]}, "at least one positive and one negative"),
        ({"y": []}, "empty"),
        ({"p": [0.1, np.nan, 0.3, 0.4]}, "finite"),
        ({"p": [0.1, np.inf, 0.3, 0.4]}, "finite"),
        ({"p": [0.1, 1.2, 0.3, 0.4]}, r"in \[0, 1\]"),
        ({"p": [-0.1, 0.2, 0.3, 0.4]}, r"in \[0, 1\]"),
        ({"groups": ["a", None, "b", "b"]}, "missing customer ids"),
        ({"level": 1.0}, "level"),
        ({"level": 0.0}, "level"),
        ({"resamples": 0}, "resamples"),
        ({"resamples": 2.5}, "resamples"),
    ],
)
def test_invalid_inputs_raise_value_errors_naming_the_problem(change: dict, message: str) -> None:
    args = {"y": [0, 1, 0, 1], "p": [0.1, 0.2, 0.3, 0.4], "groups": ["a", "a", "b", "b"]} | change
    with pytest.raises(ValueError, match=message):
        cluster_bootstrap(**args)


def test_paired_difference_validates_both_models() -> None:
    y, groups = [0, 1, 0, 1], [1, 1, 2, 2]
    with pytest.raises(ValueError, match="p_b must lie"):
        paired_difference(y, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 1.4], groups)
    with pytest.raises(ValueError, match="p_a must have the same length"):
        paired_difference(y, [0.1, 0.2], [0.1, 0.2, 0.3, 0.4], groups)
