"""churn monitor's statistics on small hand-made and seeded samples: PSI, the drift flags, the
outcome join, realised metrics against scikit-learn, and the store's monitor_runs rows."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score

from monitoring.accuracy import (
    accuracy_by_group,
    calibration_bins,
    join_outcomes,
    latest_per_prediction,
    realised_metrics,
    week_of,
)
from monitoring.drift import (
    MISSING,
    OTHER,
    categorical_bins,
    compare_feature,
    drift_table,
    numeric_bins,
    psi,
)
from scoring.health import HealthRow, latest_health, read_health, write_health
from scoring.records import engine_for
from scoring.settings import Settings
from tests.unit.builders import customers_frame, events_frame, spec_for

RNG_SEED = 7


def test_psi_of_identical_shares_is_zero_and_matches_the_formula():
    assert psi(np.array([10, 20, 30]), np.array([1, 2, 3])) == pytest.approx(0.0)
    ref, cur = np.array([50, 50]), np.array([80, 20])
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(ref, cur) == pytest.approx(expected)
    assert math.isnan(psi(np.array([0, 0]), np.array([1, 2])))


def test_numeric_bins_are_reference_quantiles_with_a_missing_bin():
    ref = np.array([1.0, 2, 3, 4, 5, 6, 7, 8, 9, 10, np.nan, np.nan])
    cur = np.array([1.0, 1, 1, np.nan])
    r, c = numeric_bins(ref, cur, bins=2)
    assert r.tolist() == [5, 5, 2]  # below the median, from it, missing
    assert c.tolist() == [3, 0, 1]


def test_categorical_bins_fold_unseen_levels_into_other():
    ref = pd.Series(["a", "a", "b", None])
    cur = pd.Series(["a", "z", "z", None, None])
    r, c, levels = categorical_bins(ref, cur)
    assert levels == ["a", "b", OTHER, MISSING]
    assert r.tolist() == [2, 1, 0, 1]
    assert c.tolist() == [1, 0, 2, 2]


def _normal(n: int, shift: float = 0.0, seed: int = RNG_SEED) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(shift, 1.0, n))


def test_a_shifted_feature_is_flagged_and_a_steady_one_is_not():
    reference = pd.DataFrame({"steady": _normal(3000), "shifted": _normal(3000, seed=1),
                              "plan": ["basic", "pro"] * 1500})
    current = pd.DataFrame({"steady": _normal(2000, seed=2), "shifted": _normal(2000, 1.0, 3),
                            "plan": ["basic"] * 1500 + ["pro"] * 500})
    table = drift_table(reference, current, ["steady", "shifted", "plan"], {"plan"}, 0.2, 0.01)
    flagged = dict(zip(table["feature"], table["flagged"], strict=True))
    assert flagged == {"shifted": True, "plan": True, "steady": False}
    assert table["feature"].iloc[0] == "shifted"  # most drifted first
    assert table.set_index("feature").loc["plan", "test"] == "chi2"
    assert table.set_index("feature").loc["steady", "psi"] < 0.05


def test_features_that_move_with_the_calendar_are_measured_but_never_flagged():
    """#25.13: tenure grows for everyone as time passes; against an older reference it drifts
    by age alone, which alarms nobody."""
    from features.contract import AttributeKinds
    from features.definitions import FeatureSpec

    reference = pd.DataFrame({"tenure_days": _normal(3000) * 100 + 400,
                              "n_login_30d": _normal(3000, seed=1)})
    current = pd.DataFrame({"tenure_days": _normal(2000, seed=2) * 100 + 600,
                            "n_login_30d": _normal(2000, 1.0, 3)})
    table = drift_table(reference, current, ["tenure_days", "n_login_30d"], set(), 0.2, 0.01,
                        {"tenure_days"}).set_index("feature")
    assert table.loc["tenure_days", "psi"] > 0.2 and table.loc["tenure_days", "calendar"]
    assert not table.loc["tenure_days", "flagged"]
    assert table.loc["n_login_30d", "flagged"] and not table.loc["n_login_30d", "calendar"]
    spec = FeatureSpec(event_types=("login",), attributes=AttributeKinds(datetime=("dob",)))
    assert set(spec.calendar_features) == {"tenure_days", "days_to_anniversary", "history_days",
                                           "events_lifetime", "attr_dob_days"}


def test_a_small_significant_shift_is_not_flagged_without_a_large_psi():
    """Thousands of rows make a tiny shift 'significant'; PSI keeps it from flagging."""
    row = compare_feature("x", _normal(20_000), _normal(20_000, 0.08, 5), False, 0.2, 0.01)
    assert row["p_value"] < 0.01 and row["psi"] < 0.2 and not row["flagged"]


def test_a_change_in_the_missing_share_alone_is_flagged():
    values = _normal(4000)
    reference = values.where(np.arange(4000) % 10 != 0)  # 10% missing
    row = compare_feature("trend", reference, _normal(3000, seed=9), False, 0.2, 0.01)
    assert row["current_missing"] == 0.0 and row["flagged"]
    assert row["test"] == "chi2 (missing)"


def test_too_few_rows_are_not_flagged_however_large_the_psi():
    row = compare_feature("x", _normal(3000), _normal(8, 0.5, 4), False, 0.2, 0.01)
    assert not row["flagged"]


def test_a_feature_absent_from_the_window_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'gone'"):
        drift_table(pd.DataFrame({"gone": [1.0]}), pd.DataFrame({"x": [1.0]}), ["gone"], set(),
                    0.2, 0.01)


# -- realised accuracy -------------------------------------------------------------------------


def _scored(n: int = 600, seed: int = RNG_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(1, 8, n)
    y = (rng.uniform(size=n) < p).astype(int)
    customers = np.array([f"c{i % (n // 2)}" for i in range(n)])  # each customer twice
    return y, p, customers


def test_realised_metrics_equal_scikit_learns():
    y, p, customers = _scored()
    m = realised_metrics(y, p, customers, level=0.9, resamples=200)
    assert m["roc_auc"] == roc_auc_score(y, p)
    assert m["brier"] == brier_score_loss(y, p)
    assert m["roc_auc_low"] < m["roc_auc"] < m["roc_auc_high"]
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    bins = m["calibration"]
    assert [b["observed"] for b in bins] == pytest.approx(observed.tolist(), abs=1e-12)
    assert [b["mean_predicted"] for b in bins] == pytest.approx(predicted.tolist(), abs=1e-12)
    assert sum(b["rows"] for b in bins) == len(y)


def test_one_class_has_brier_but_no_auc_or_interval():
    m = realised_metrics(np.zeros(5, dtype=int), np.full(5, 0.1), np.arange(5), 0.95, 100)
    assert m["roc_auc"] is None and "roc_auc_low" not in m
    assert m["brier"] == pytest.approx(0.01)


def test_calibration_bins_put_one_in_the_top_bin():
    bins = calibration_bins(np.array([1, 0]), np.array([1.0, 0.0]))
    assert [(b["low"], b["high"], b["rows"]) for b in bins] == [(0.0, 0.1, 1), (0.9, 1.0, 1)]


def test_weeks_start_on_monday():
    weeks = week_of(pd.Series(pd.to_datetime(["2026-06-28 00:00", "2026-06-29 00:00", "2026-07-05 23:00"])))
    assert [str(w.date()) for w in weeks] == ["2026-06-22", "2026-06-29", "2026-06-29"]


def test_accuracy_is_grouped_by_version_and_week():
    y, p, customers = _scored(400)
    as_of = np.where(np.arange(400) < 200, pd.Timestamp("2026-05-04"), pd.Timestamp("2026-05-11"))
    joined = pd.DataFrame({"customer_id": customers, "as_of": as_of, "probability": p,
                           "label": y, "model_version": np.where(np.arange(400) % 2, "1", "2")})
    by_version, weeks = accuracy_by_group(joined, 0.9, 0)
    assert set(by_version) == {"1", "2"}
    assert [(w["model_version"], w["week"]) for w in weeks] == [
        ("1", "2026-05-04"), ("1", "2026-05-11"), ("2", "2026-05-04"), ("2", "2026-05-11")]
    part = joined[joined["model_version"] == "2"]
    assert by_version["2"]["roc_auc"] == roc_auc_score(part["label"], part["probability"])


def _log(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "as_of", "probability", "model_version",
                                       "created_at"]).assign(
        as_of=lambda f: pd.to_datetime(f["as_of"], format="mixed"),
        created_at=lambda f: pd.to_datetime(f["created_at"], format="mixed"))


def test_outcomes_join_matured_predictions_of_active_customers():
    customers = customers_frame([
        {"customer_id": "a", "signup_at": "2024-01-01", "churned_at": "2024-03-20"},  # churns in
        {"customer_id": "b", "signup_at": "2024-01-01"},  # stays
        {"customer_id": "c", "signup_at": "2024-01-01", "churned_at": "2024-02-01"},  # gone before
        {"customer_id": "d", "signup_at": "2024-03-05"},  # signs up after the as_of
    ])
    events = events_frame([("b", "2024-01-02", "login"), ("b", "2024-05-01", "login")])
    log = _log([
        ("a", "2024-03-01", 0.6, "1", "2024-03-01 01:00"),
        ("b", "2024-03-01", 0.1, "1", "2024-03-01 01:00"),
        ("b", "2024-03-01", 0.2, "1", "2024-03-01 02:00"),  # the same prediction, logged later
        ("c", "2024-03-01", 0.3, "1", "2024-03-01 01:00"),
        ("d", "2024-03-01", 0.3, "1", "2024-03-01 01:00"),
        ("x", "2024-03-01", 0.3, "1", "2024-03-01 01:00"),  # unknown customer
        ("b", "2024-04-20", 0.1, "1", "2024-04-20 01:00"),  # horizon past the data's end
    ])
    joined, counts = join_outcomes(latest_per_prediction(log), customers, events,
                                   spec_for(("login",)), "explicit", 30)
    assert counts == {"logged": 6, "not_matured": 1, "not_in_population": 3, "matured": 2}
    assert dict(zip(joined["customer_id"], joined["label"], strict=True)) == {"a": 1, "b": 0}
    assert joined.set_index("customer_id").loc["b", "probability"] == 0.2


def test_inactivity_outcome_is_no_event_in_the_horizon():
    customers = customers_frame([{"customer_id": "a", "signup_at": "2024-01-01"},
                                 {"customer_id": "b", "signup_at": "2024-01-01"}])
    events = events_frame([("a", "2024-03-10", "login"), ("b", "2024-02-20", "login"),
                           ("b", "2024-05-01", "login")])
    log = _log([("a", "2024-03-01", 0.1, "1", "2024-03-01"), ("b", "2024-03-01", 0.9, "1",
                                                               "2024-03-01")])
    joined, _ = join_outcomes(log, customers, events, spec_for(("login",)), "inactivity", 30)
    assert dict(zip(joined["customer_id"], joined["label"], strict=True)) == {"a": 0, "b": 1}


# -- the store's rows --------------------------------------------------------------------------


def _row(version: str, flagged: bool, **kw) -> HealthRow:
    base = dict(model_name="churn", model_version=version, as_of=datetime(2026, 6, 29),
                window_days=7, drift_rows=500, drifted=int(flagged), score_psi=float("nan"),
                score_flagged=False, matured_rows=300, realised_auc=0.78, realised_auc_low=0.74,
                realised_auc_high=0.82, test_auc_low=0.75, auc_flagged=False, flagged=flagged,
                drift={"n_login_30d": {"psi": 0.5, "p_value": 0.0, "flagged": flagged},
                       "tenure_days": {"psi": 0.01, "p_value": 0.9, "flagged": False}},
                weeks=[{"week": "2026-05-25", "roc_auc": 0.8, "brier": float("nan")}])
    return HealthRow(**{**base, **kw})


def test_monitor_runs_round_trip_oldest_first(tmp_path):
    engine = engine_for(Settings(home=tmp_path))
    write_health(engine, _row("1", False), now=datetime(2026, 7, 1))
    stored = write_health(engine, _row("2", True), now=datetime(2026, 7, 2))
    assert stored.id is not None and stored.score_psi is None  # NaN is stored as missing
    rows = read_health(engine)
    assert [r.model_version for r in rows] == ["1", "2"]
    last = latest_health(engine)
    assert last == rows[-1] and last.drift_flags == ["n_login_30d"]
    assert last.weeks == [{"week": "2026-05-25", "roc_auc": 0.8, "brier": None}]
    assert read_health(engine, model_name="other") == []


def test_the_training_reference_is_a_bounded_seeded_sample(monkeypatch):
    from training import pipeline

    test = pd.DataFrame({"customer_id": [f"c{i}" for i in range(50)],
                         "as_of": pd.Timestamp("2026-05-30"), "x": np.arange(50.0), "label": 0})
    y, p = np.arange(50) % 2, np.linspace(0, 1, 50)
    whole = pipeline.reference_sample(test, y, p, ["x"], seed=3)
    assert len(whole) == 50 and list(whole.columns) == ["customer_id", "as_of", "x",
                                                        "churn_probability", "label"]
    assert (whole["churn_probability"] == p).all() and (whole["label"] == y).all()
    monkeypatch.setattr(pipeline, "REFERENCE_ROWS", 20)
    first = pipeline.reference_sample(test, y, p, ["x"], seed=3)
    assert len(first) == 20 and first.equals(pipeline.reference_sample(test, y, p, ["x"], seed=3))
    # rows stay whole: each sampled row keeps its own probability and label
    assert np.allclose(first["churn_probability"], first["x"] / 49, rtol=0, atol=1e-15)
    assert (first["label"] == first["x"].astype(int) % 2).all()
