"""training.explore on small hand-built frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from tests.unit.builders import customers_frame
from training import explore

END = pd.Timestamp("2024-06-15")


@pytest.fixture
def customers() -> pd.DataFrame:
    return customers_frame([
        {"customer_id": 1, "signup_at": "2024-01-05", "churned_at": "2024-02-10"},  # early churn
        {"customer_id": 2, "signup_at": "2024-01-20", "churned_at": "2024-05-20"},  # late churn
        {"customer_id": 3, "signup_at": "2024-01-25"},
        {"customer_id": 4, "signup_at": "2024-02-03", "churned_at": "2024-03-01"},
        {"customer_id": 5, "signup_at": "2024-05-02", "churned_at": "2024-06-01"},
        {"customer_id": 6, "signup_at": "2024-06-10"},
    ])


@pytest.fixture
def snapshots() -> pd.DataFrame:
    return pd.DataFrame({
        "label": [0, 0, 0, 1, 1],
        "n_login_30d": [10.0, 8.0, 12.0, 2.0, 4.0],
        "n_cancel_intent_90d": [0.0, 0.0, 0.0, 1.0, 2.0],
        "trend_login": [0.0, np.nan, 0.2, -0.5, -1.0],
        "other": [1.0, 2.0, 3.0, 4.0, 5.0],
    })


# -- cohorts and months ---------------------------------------------------------------------


def test_cohort_churn_counts_ever_and_early_churn(customers):
    table = explore.cohort_churn(customers, END, within_days=60)
    assert list(table.columns) == ["customers", "churned", "churn_rate", "churn_rate_60d"]
    jan = table.loc[pd.Period("2024-01", "M")]
    assert (jan["customers"], jan["churned"]) == (3, 2)
    assert jan["churn_rate"] == pytest.approx(2 / 3)
    assert jan["churn_rate_60d"] == pytest.approx(1 / 3)  # customer 2 left after 4 months
    assert table.loc[pd.Period("2024-02", "M"), "churn_rate_60d"] == 1.0


def test_cohort_churn_leaves_the_early_rate_missing_until_observed(customers):
    table = explore.cohort_churn(customers, END, within_days=60)
    # May: last possible signup May 31 + 60 days is after END; June likewise
    assert table.loc[pd.Period("2024-05", "M"), "churn_rate"] == 1.0
    assert np.isnan(table.loc[pd.Period("2024-05", "M"), "churn_rate_60d"])
    assert np.isnan(table.loc[pd.Period("2024-06", "M"), "churn_rate_60d"])


def test_cohort_churn_ignores_churn_and_signups_after_end(customers):
    table = explore.cohort_churn(customers, pd.Timestamp("2024-03-15"))
    assert table.loc[pd.Period("2024-01", "M"), "churned"] == 1  # customer 2 not yet
    assert pd.Period("2024-05", "M") not in table.index


@pytest.mark.parametrize("within", [0, -30])
def test_cohort_churn_needs_a_positive_window(customers, within):
    with pytest.raises(ValueError, match="within_days"):
        explore.cohort_churn(customers, END, within_days=within)


def test_monthly_churn_uses_customers_active_at_the_month_start(customers):
    table = explore.monthly_churn(customers, END)
    # January has nobody active at its start; June is not over at END
    assert [str(m) for m in table.index] == ["2024-02", "2024-03", "2024-04", "2024-05"]
    feb = table.loc[pd.Period("2024-02", "M")]
    assert (feb["active_at_start"], feb["signups"], feb["churned"]) == (3, 1, 1)
    assert feb["churn_rate"] == pytest.approx(1 / 3)
    mar = table.loc[pd.Period("2024-03", "M")]
    # the product's rule (active at t: churned after t): customer 4, who left at the first
    # moment of March 1, is gone by then; joining and leaving in February, no month counts them
    assert (mar["active_at_start"], mar["churned"]) == (2, 0)
    may = table.loc[pd.Period("2024-05", "M")]
    assert (may["active_at_start"], may["signups"], may["churned"]) == (2, 1, 1)


def test_monthly_churn_without_whole_months_is_empty(customers):
    table = explore.monthly_churn(customers, pd.Timestamp("2024-01-20"))
    assert table.empty
    assert list(table.columns) == ["active_at_start", "signups", "churned", "churn_rate"]
    assert explore.monthly_churn(customers.iloc[:0], END).empty


@pytest.mark.parametrize("func", [explore.cohort_churn, explore.monthly_churn])
def test_churn_rates_need_churn_dates(customers, func):
    with pytest.raises(ValueError, match="churned_at"):
        func(customers.drop(columns="churned_at"), END)


def test_churn_rates_figure_has_two_panels(customers):
    fig = explore.churn_rates_figure(explore.cohort_churn(customers, END),
                                     explore.monthly_churn(customers, END))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    with pytest.raises(ValueError, match="churn_rate_30d"):
        explore.churn_rates_figure(explore.cohort_churn(customers, END),
                                   explore.monthly_churn(customers, END), "churn_rate_30d")


# -- churners against stayers ----------------------------------------------------------------


def test_label_comparison_means_medians_and_ratio(snapshots):
    features = ["n_login_30d", "n_cancel_intent_90d", "trend_login"]
    table = explore.label_comparison(snapshots, features)
    assert list(table.index) == features
    login = table.loc["n_login_30d"]
    assert (login["stayed_mean"], login["churned_mean"]) == (10.0, 3.0)
    assert (login["stayed_median"], login["churned_median"]) == (10.0, 3.0)
    assert login["churned_to_stayed"] == pytest.approx(0.3)
    assert table.loc["trend_login", "stayed_mean"] == pytest.approx(0.1)  # NaN skipped
    assert np.isnan(table.loc["n_cancel_intent_90d", "churned_to_stayed"])  # x / 0


def test_label_comparison_skips_absent_features_and_does_not_mutate(snapshots):
    before = snapshots.copy()
    table = explore.label_comparison(snapshots, ["n_login_30d", "n_purchase_90d"])
    assert list(table.index) == ["n_login_30d"]
    pd.testing.assert_frame_equal(snapshots, before)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.drop(columns="label"), "no 'label' column"),
    (lambda s: s[s["label"] == 0], "both churners"),
    (lambda s: s.drop(columns=["n_login_30d", "n_cancel_intent_90d", "trend_login"]),
     "none of the features"),
])
def test_label_comparison_errors(snapshots, change, message):
    with pytest.raises(ValueError, match=message):
        explore.label_comparison(change(snapshots), ["n_login_30d", "n_cancel_intent_90d",
                                                     "trend_login"])


def test_label_means_figure_draws_one_panel_per_present_feature(snapshots):
    fig = explore.label_means_figure(snapshots, ["n_login_30d", "trend_login", "absent"],
                                     columns=2)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["n_login_30d", "trend_login"]
    with pytest.raises(ValueError, match="both churners"):
        explore.label_means_figure(snapshots.assign(label=1))


# -- test-set scores -----------------------------------------------------------------------------


def test_prediction_scores_reads_both_models():
    preds = pd.DataFrame({"label": [0, 1], "churn_probability": [0.1, 0.8],
                          "baseline_probability": [0.2, 0.6]})
    y, scores = explore.prediction_scores(preds)
    assert y.tolist() == [0, 1]
    assert list(scores) == ["LightGBM", "baseline"]
    assert scores["baseline"].tolist() == [0.2, 0.6]
    _, only = explore.prediction_scores(preds.drop(columns="baseline_probability"))
    assert list(only) == ["LightGBM"]
    with pytest.raises(ValueError, match="churn_probability"):
        explore.prediction_scores(preds.drop(columns="churn_probability"))


# -- explanations ---------------------------------------------------------------------------------


@pytest.fixture
def explained() -> tuple[np.ndarray, np.ndarray, pd.DataFrame, list[str]]:
    names = ["n_login_30d", "attr_plan"]
    features = pd.DataFrame({"customer_id": ["a", "b"], "n_login_30d": [3.0, np.nan],
                             "attr_plan": ["pro", None]})
    x = np.array([[3.0, 1.0], [np.nan, np.nan]])
    contrib = np.array([[0.5, -0.2, -3.0], [0.1, 0.3, -3.0]])
    return contrib, x, features, names


def test_shap_explanation_splits_off_the_base_value(explained):
    contrib, x, features, names = explained
    e = explore.shap_explanation(contrib, x, features, names)
    assert e.values.shape == (2, 2)
    assert e.base_values.tolist() == [-3.0, -3.0]
    assert e.feature_names == names
    assert list(e[1].display_data) == ["missing", "missing"]
    assert e[0].display_data[1] == "pro"
    # the contributions and the base value add up to the raw score
    assert e.values.sum(axis=1) + e.base_values == pytest.approx(contrib.sum(axis=1))


@pytest.mark.parametrize("bad", ["contrib", "x"])
def test_shap_explanation_rejects_mismatched_shapes(explained, bad):
    contrib, x, features, names = explained
    if bad == "contrib":
        contrib = contrib[:, :-1]
    else:
        x = x[:1]
    with pytest.raises(ValueError, match="must have"):
        explore.shap_explanation(contrib, x, features, names)


def test_waterfall_figure_for_one_row(explained):
    import matplotlib.pyplot as plt

    e = explore.shap_explanation(*explained)
    was = plt.isinteractive()
    plt.ion()
    try:
        fig = explore.waterfall_figure(e[0], "customer a")
        assert plt.isinteractive()  # shap turned it off; restored
    finally:
        plt.interactive(was)
    assert "customer a" in fig.get_suptitle() and "log-odds" in fig.get_suptitle()
    plt.close(fig)
    with pytest.raises(ValueError, match="one row"):
        explore.waterfall_figure(e, "all rows")


@pytest.mark.parametrize(("p", "top", "expected"), [
    ([0.1, 0.9, 0.5, 0.2, 0.7], 2, [1, 4, 2]),
    ([0.1, 0.9, 0.5], 3, [1, 2, 0]),  # the median is already among the top
    ([0.3], 2, [0]),
])
def test_example_rows(p, top, expected):
    assert explore.example_rows(np.array(p), top) == expected


def test_example_rows_needs_probabilities():
    with pytest.raises(ValueError, match="no probabilities"):
        explore.example_rows(np.array([]))


# -- campaign -----------------------------------------------------------------------------------


def test_campaign_summary_finds_the_best_size():
    curve = {"k": np.arange(5), "expected": np.array([0.0, 5.0, 8.0, 7.0, -2.0]),
             "realised": np.array([0.0, 10.0, 6.0, 6.0, 0.0])}
    summary = explore.campaign_summary(curve)
    assert summary == {"customers": 4.0, "best_k": 2.0, "share_contacted": 0.5,
                       "expected_profit": 8.0, "expected_profit_contacting_all": -2.0,
                       "realised_profit": 6.0}
    empty = explore.campaign_summary({"k": np.arange(1), "expected": np.zeros(1)})
    assert empty["best_k"] == 0.0 and np.isnan(empty["share_contacted"])


# -- sample data ----------------------------------------------------------------------------------


def test_sample_data_generates_once_then_reuses(tmp_path):
    folder = tmp_path / "nested" / "data"
    customers, events = explore.sample_data(folder, 20, seed=1)
    assert customers == folder / "customers.parquet" and events == folder / "events.parquet"
    first = pd.read_parquet(customers)
    assert len(first) == 20 and {"customer_id", "signup_at", "churned_at"} <= set(first.columns)
    assert len(pd.read_parquet(events)) > 0
    again = explore.sample_data(folder, 50, seed=2)  # files present: kept as they are
    assert again == (customers, events)
    assert len(pd.read_parquet(customers)) == 20


def test_a_notebook_takes_both_files_or_generates_its_data(tmp_path):
    from training.explore import notebook_data

    own = (str(tmp_path / "c.parquet"), str(tmp_path / "e.parquet"))
    assert notebook_data(tmp_path / "gen", 10, *own) == (Path(own[0]), Path(own[1]))
    assert not (tmp_path / "gen").exists()  # nothing generated for a log of one's own
    for half in ((own[0], None), (None, own[1])):
        with pytest.raises(ValueError, match="both the customers and the events file"):
            notebook_data(tmp_path / "gen", 10, *half)
