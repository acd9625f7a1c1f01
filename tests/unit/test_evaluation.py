"""Honest evaluation: purged time splits, the calibration switch, and the promotion gate's
rules (comparable models, clean comparison times, decisions beyond noise)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.fit import fit_calibration
from training.intervals import Interval
from training.metrics import classification_metrics, metrics_with_intervals
from training.promotion import comparability_problems, comparison_times, decide
from training.split import split_rows, split_times

# --------------------------------------------------------------------------------------------
# split_times and purging
# --------------------------------------------------------------------------------------------

MONTHLY = [pd.Timestamp("2025-01-01") + pd.Timedelta(days=30 * i) for i in range(10)]


def test_split_is_in_time_order_without_purging():
    split = split_times(MONTHLY, 30, validation=2, test=2, purge=False)
    assert split.test == MONTHLY[-2:] and split.validation == MONTHLY[-4:-2]
    assert split.train == MONTHLY[:-4] and split.purged == []


def test_purging_drops_times_whose_labels_reach_into_the_next_split():
    # a 45-day horizon at a 30-day cadence: each split's last time overlaps the next one
    split = split_times(MONTHLY, 45, validation=2, test=2, purge=True)
    assert split.test == MONTHLY[-2:]
    assert split.validation == [MONTHLY[-5], MONTHLY[-4]]  # MONTHLY[-3] + 45d > first test time
    assert split.purged == [MONTHLY[-6], MONTHLY[-3]]
    assert split.train == MONTHLY[:-6]
    for t in split.train:
        assert t + pd.Timedelta(days=45) <= split.validation[0]
    for t in split.validation:
        assert t + pd.Timedelta(days=45) <= split.test[0]


def test_a_horizon_equal_to_the_cadence_purges_nothing():
    assert split_times(MONTHLY, 30, 2, 2, purge=True).purged == []


def test_without_room_for_a_purged_validation_it_holds_out_customers():
    split = split_times(MONTHLY[:5], 45, 2, 2, purge=True)
    assert (split.test_scheme, split.validation_scheme) == ("time", "customer_groups")
    assert split.test == MONTHLY[3:5] and split.validation == []
    assert split.train == MONTHLY[:2]  # MONTHLY[2] + 45 days reaches the first test time
    assert any("20% of the training customers" in n for n in split.notes)


def test_a_single_test_time_when_two_leave_no_training_time():
    times = MONTHLY[:3]  # 60 days of times with a 45-day horizon
    split = split_times(times, 45, 2, 2, purge=True)
    assert split.test == [MONTHLY[2]] and split.train == [MONTHLY[0]]
    assert split.validation_scheme == "customer_groups"
    assert any("latest time only" in n for n in split.notes)


@pytest.mark.parametrize("n_times", [1, 2])
def test_a_log_shorter_than_two_horizons_tests_on_held_out_customers(n_times):
    split = split_times(MONTHLY[:n_times], 45, 2, 2, purge=True)
    assert (split.test_scheme, split.validation_scheme) == ("customer_groups", "customer_groups")
    assert split.train == MONTHLY[:n_times] and split.test == []
    assert any("not out of time" in n for n in split.notes)


def test_rows_split_by_customer_groups_never_share_a_customer():
    ids = np.repeat([f"c{i}" for i in range(500)], 2)
    snaps = pd.DataFrame({"customer_id": ids, "as_of": np.tile(MONTHLY[:2], 500),
                          "label": np.zeros(1000, dtype=int)})
    split = split_times(MONTHLY[:2], 45, 2, 2)
    frames = split_rows(snaps, split, "as_of", "customer_id")
    sets = {k: set(f["customer_id"]) for k, f in frames.items()}
    assert not (sets["train"] & sets["validation"]) and not (sets["train"] & sets["test"])
    assert not (sets["validation"] & sets["test"])
    assert sum(len(f) for f in frames.values()) == 1000
    assert 0.12 < len(frames["test"]) / 1000 < 0.28 and 0.12 < len(frames["validation"]) / 1000 < 0.28


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def _miscalibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose log-odds are twice too large and shifted up: a booster's overconfidence."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-2.5, 1.0, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    p = 1 / (1 + np.exp(-(1.5 * true_logit + 2.5)))
    return p, y


@pytest.mark.parametrize("kind", ["sigmoid", "isotonic", "auto"])
def test_calibration_brings_probabilities_to_the_observed_rate(kind):
    p_val, y_val = _miscalibrated(20_000, 0)
    p_test, y_test = _miscalibrated(20_000, 1)
    xs, ys = fit_calibration(p_val, y_val, kind)
    raw, calibrated = classification_metrics(y_test, p_test), classification_metrics(
        y_test, np.interp(p_test, xs, ys))
    # the uncalibrated scores fail both checks; the calibrated ones pass them
    assert abs(raw["mean_predicted"] - raw["base_rate"]) > 0.3 * raw["base_rate"]
    assert raw["ece"] > 0.05
    assert abs(calibrated["mean_predicted"] - calibrated["base_rate"]) < 0.1 * calibrated["base_rate"]
    assert calibrated["ece"] < 0.01
    assert calibrated["roc_auc"] == pytest.approx(raw["roc_auc"], abs=0.005)  # order kept


def test_auto_uses_platt_below_a_thousand_churners_and_isotonic_above():
    p, y = _miscalibrated(5_000, 2)
    assert y.sum() < 1000
    np.testing.assert_array_equal(fit_calibration(p, y, "auto")[1], fit_calibration(p, y, "sigmoid")[1])
    p, y = _miscalibrated(60_000, 3)
    assert y.sum() >= 1000
    np.testing.assert_array_equal(fit_calibration(p, y, "auto")[1], fit_calibration(p, y, "isotonic")[1])


def test_metrics_carry_customer_clustered_intervals():
    rng = np.random.default_rng(4)
    customers = np.repeat(np.arange(300), 3)
    y = (rng.uniform(size=900) < 0.2).astype(int)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 900), 0.01, 0.99)
    m = metrics_with_intervals(y, p, customers, level=0.9, resamples=300, seed=0)
    for key in ("roc_auc", "pr_auc", "brier", "lift_top10"):
        assert m[f"{key}_ci_low"] <= m[key] <= m[f"{key}_ci_high"]
    assert m["ci_level"] == 0.9 and m["ci_resamples"] == 300
    assert "roc_auc_ci_low" not in metrics_with_intervals(y, p, customers, 0.9, 0, 0)


# --------------------------------------------------------------------------------------------
# the promotion gate's rules
# --------------------------------------------------------------------------------------------


def record(train, validation, test, label="explicit", horizon=30, version="2") -> dict:
    return {"label": label, "horizon_days": horizon, "feature_version": version,
            "observation_times": {"train": train, "validation": validation, "test": test}}


CANDIDATE = record(["2025-01-01", "2025-01-31"], ["2025-03-02", "2025-04-01"],
                   ["2025-05-01", "2025-05-31"])


@pytest.mark.parametrize(("change", "named"), [
    ({"label": "inactivity"}, "label differs"),
    ({"horizon": 60}, "horizon (days) differs"),
    ({"version": "1"}, "feature version differs"),
])
def test_unlike_models_are_not_comparable(change, named):
    champion = record(["2024-11-01"], ["2024-12-01"], ["2025-01-01"], **change)
    problems = comparability_problems(CANDIDATE, champion)
    assert len(problems) == 1 and named in problems[0]
    assert comparability_problems(CANDIDATE, record(["2024-11-01"], [], [])) == []


def test_a_champion_trained_on_other_files_is_not_comparable():
    from training.promotion import other_data_problem

    files = {"customers_file": "/demo/customers.parquet", "events_file": "/demo/events.parquet"}
    champion = {**record(["2024-11-01"], [], []), **files}
    # the same files (a re-export written over them) are the same data
    assert comparability_problems({**CANDIDATE, **files}, champion) == []
    assert other_data_problem(CANDIDATE, champion) is None  # a record without files: not judged
    mine = {**CANDIDATE, **files, "events_file": "/mine/events.parquet"}
    problems = comparability_problems(mine, champion)
    assert len(problems) == 1
    assert problems[0].startswith("champion was trained on other data (/demo/events.parquet, "
                                  "not /mine/events.parquet)")
    assert "--model-name" in problems[0]


def test_comparison_times_are_clean_of_both_models_labels():
    older = record(["2024-10-01"], ["2024-11-01"], ["2024-12-01"])
    assert comparison_times(CANDIDATE, older) == ["2025-05-01", "2025-05-31"]
    # a champion that validated on 2025-04-15 saw labels up to 2025-05-15: only the last test
    # time is clean
    overlapping = record(["2025-03-01"], ["2025-04-15"], ["2025-05-15"])
    assert comparison_times(CANDIDATE, overlapping) == ["2025-05-31"]
    # a champion trained on a later export trained on the candidate's test times
    later = record(["2025-05-01", "2025-05-31"], ["2025-06-30"], ["2025-07-30"])
    assert comparison_times(CANDIDATE, later) == []


def iv(estimate, low, high) -> Interval:
    return Interval(estimate, low, high, 0.95, 1000)


@pytest.mark.parametrize(("auc", "brier", "promoted", "says"), [
    (iv(0.02, 0.005, 0.035), iv(-0.001, -0.002, 0.0), True, "lies above zero"),
    (iv(0.01, -0.004, 0.024), iv(-0.001, -0.002, 0.0), False, "includes zero"),
    (iv(-0.05, -0.07, -0.03), iv(0.002, 0.001, 0.003), False, "lies below zero"),
    (iv(0.02, 0.005, 0.035), iv(0.004, 0.002, 0.006), False, "worse beyond"),
])
def test_the_gate_promotes_only_beyond_noise(auc, brier, promoted, says):
    decision, reason = decide({"roc_auc": auc, "brier": brier}, 0.95)
    assert decision is promoted and says in reason and "95%" in reason


def test_the_search_may_lower_min_child_samples_below_the_starting_point():
    """Every trial shares one LightGBM Dataset; a trial with a smaller min_child_samples than
    the first used to fail with 'Reducing min_data_in_leaf with feature_pre_filter=true'."""
    from tests.unit.builders import spec_for
    from training.config import TrainConfig
    from training.fit import fit_lightgbm

    spec = spec_for()
    rng = np.random.default_rng(5)
    names = list(spec.feature_names)

    def frame(n):
        x = pd.DataFrame(rng.normal(size=(n, len(names))), columns=names)
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * x[names[0]]))).astype(int).to_numpy()
        return x, y

    (train, y_train), (val, y_val) = frame(2000), frame(800)
    config = TrainConfig.model_validate({
        "num_threads": 1,
        "lightgbm": {"min_child_samples_frac": 0.2, "min_child_samples_floor": 1, "max_rounds": 30},
        "search": {"trials": 4},
    })
    fit = fit_lightgbm(train, y_train, val, y_val, spec, config)
    assert len(fit.trials) == 4
    assert min(t["min_child_samples_frac"] for t in fit.trials[1:]) < 0.2
    assert fit.validation_auc > 0.7


def test_customer_buckets_are_stable_per_customer_and_change_with_the_seed():
    from training.split import customer_buckets

    ids = np.array([f"c{i}" for i in range(2000)])
    a, again, b = customer_buckets(ids, 0), customer_buckets(ids, 0), customer_buckets(ids, 1)
    np.testing.assert_array_equal(a, again)
    assert (a != b).mean() > 0.5  # another seed draws other groups
    assert set(np.unique(a)) == set(range(10))


def test_isotonic_calibration_keeps_the_ranking_between_its_end_blocks():
    p, y = _miscalibrated(60_000, 5)
    xs, ys = fit_calibration(p, y, "isotonic")
    assert (np.diff(xs) > 0).all() and (np.diff(ys) > 0).all()
    inside = (p > xs[0]) & (p < xs[-1])
    calibrated = np.interp(p[inside], xs, ys)
    # distinct scores stay distinct (a step function ties whole blocks)
    assert len(np.unique(calibrated)) == len(np.unique(p[inside]))


def test_scores_beyond_the_calibrations_ends_keep_their_rank():
    """Customers scored past anything the map saw (older, quieter) are not tied at its ends."""
    from scoring.artifact import ChurnModel

    p, y = _miscalibrated(60_000, 6)
    model = ChurnModel.__new__(ChurnModel)
    model.calibration = fit_calibration(p, y, "isotonic")
    xs = model.calibration[0]
    raw = np.linspace(-12, 12, 2001)
    calibrated = model.calibrate(raw)
    assert (np.diff(calibrated) > 0).all()  # strictly increasing everywhere
    inside = (1 / (1 + np.exp(-raw)) > xs[0]) & (1 / (1 + np.exp(-raw)) < xs[-1])
    np.testing.assert_allclose(calibrated[inside], np.interp(1 / (1 + np.exp(-raw[inside])),
                                                             *model.calibration))


def test_isotonic_ends_on_blocks_of_real_size_not_on_a_few_certain_rows():
    """A handful of churners at the very top (or none at the bottom) made isotonic end on a
    level of exactly 1 (or 0), and every customer scored beyond it got 100%. Each end block now
    holds at least 0.5% of the rows (30 at least), and its level is their churn rate."""
    from scoring.artifact import ChurnModel
    from training.fit import END_BLOCK_SHARE

    rng = np.random.default_rng(11)
    p = np.sort(rng.uniform(0.05, 0.8, 20_000))
    y = (rng.uniform(size=p.size) < p).astype(int)
    y[-6:], y[:6] = 1, 0  # the few highest scores all churned, the few lowest none
    xs, ys = fit_calibration(p, y, "isotonic")
    assert 0.0 < ys[0] and ys[-1] < 1.0
    assert (np.diff(xs) > 0).all() and (np.diff(ys) > 0).all()
    top = p >= np.quantile(p, 1 - END_BLOCK_SHARE)
    assert ys[-1] == pytest.approx(y[top].mean(), abs=0.1)
    model = ChurnModel.__new__(ChurnModel)
    model.calibration = (xs, ys)
    beyond = model.calibrate(np.array([np.log(0.85 / 0.15), np.log(0.9 / 0.1)]))
    assert (beyond < 0.99).all() and beyond[0] < beyond[1]  # rank kept, not certain
