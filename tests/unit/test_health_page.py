"""The Model health page's pure parts: its charts (numbers to SVG), its verdict in words, and
the page rendered by the review app in-process from a store holding monitor runs."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from scoring.health import HealthRow, write_health
from scoring.records import engine_for
from scoring.settings import Settings
from serving.review.health import Series, auc_svg, health_view, psi_svg, verdict
from tests.helpers import review_get


def _row(flagged: bool, **kw) -> HealthRow:
    base = dict(model_name="churn", model_version="3", as_of=datetime(2026, 6, 29),
                window_days=7, drift_rows=900, drifted=int(flagged), score_psi=0.02,
                score_flagged=False, matured_rows=700, realised_auc=0.79, realised_auc_low=0.75,
                realised_auc_high=0.83, test_auc_low=0.76, test_auc_high=0.81, auc_flagged=False,
                flagged=flagged, psi_threshold=0.2,
                drift={"n_login_30d": {"psi": 0.45 if flagged else 0.01, "p_value": 1e-9,
                                       "flagged": flagged},
                       "tenure_days": {"psi": 0.03, "p_value": 0.4, "flagged": False}},
                weeks=[{"model_version": "3", "week": "2026-05-04", "rows": 300, "roc_auc": 0.8,
                        "roc_auc_low": 0.77, "roc_auc_high": 0.83},
                       {"model_version": "3", "week": "2026-05-11", "rows": 280, "roc_auc": 0.7,
                        "roc_auc_low": 0.64, "roc_auc_high": 0.76}],
                run_at=datetime(2026, 7, 1, 6, 0))
    return HealthRow(**{**base, **kw})


def test_psi_chart_draws_one_line_per_series_and_the_threshold():
    svg = str(psi_svg([Series("score", [("2026-06-01", 0.01), ("2026-06-08", 0.02)]),
                       Series("n_login_30d", [("2026-06-01", None), ("2026-06-08", 0.4)])], 0.2))
    assert svg.count("<polyline") == 1  # the second series has one point: a dot, no line
    assert svg.count("<circle") == 3
    assert 'class="threshold"' in svg and "PSI 0.2" in svg
    assert ">06-01<" in svg and "n_login_30d on 2026-06-08: PSI 0.400" in svg


def test_psi_chart_escapes_feature_names():
    svg = str(psi_svg([Series("<b>x</b>", [("2026-06-01", 0.1)])], 0.2))
    assert "<b>" not in svg and "&lt;b&gt;" in svg


def test_auc_chart_marks_weeks_below_the_test_interval():
    weeks = _row(False).weeks
    svg = str(auc_svg(weeks, 0.76, 0.81))
    assert svg.count('class="week-auc"') == 1 and svg.count('class="week-auc below"') == 1
    assert 'class="band"' in svg and "test interval 0.760 to 0.810" in svg


@pytest.mark.parametrize(("row", "words"), [
    (None, "No monitor run yet."),
    (_row(False), "Healthy: nothing flagged"),
    (_row(True), "Needs attention (2026-07-01 06:00 UTC, model version 3): 1 input changed "
                 "(N login 30d)."),
    (_row(True, auc_flagged=True, realised_auc=0.7), "realised ROC-AUC 0.700 fell below the test "
                                                     "interval (0.760)"),
])
def test_verdict_in_words(row, words):
    assert words in verdict(row)


def test_view_draws_the_flagged_features_over_time():
    view = health_view([_row(False), _row(True)], 0.2)
    assert "N login 30d" in str(view.psi_chart) and view.auc_chart is not None
    assert [d["feature"] for d in view.top_drift] == ["n_login_30d", "tenure_days"]
    assert health_view([], 0.2).psi_chart is None


def test_page_renders_the_stored_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    empty = review_get("/health")
    assert empty.status_code == 200 and "No monitor run yet" in empty.text
    assert "churn monitor --customers" in empty.text
    engine = engine_for(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'churn.db'}"))
    write_health(engine, _row(False), now=datetime(2026, 6, 24))
    write_health(engine, _row(True), now=datetime(2026, 7, 1))
    page = review_get("/health")
    assert page.status_code == 200
    assert "Needs attention" in page.text and 'id="nav-health"' in page.text
    assert page.text.count("<svg") == 2 and "What this page tells you" in page.text
    assert review_get("/health?x=1").status_code == 400


def test_gauges_show_the_last_run_and_clear_old_flags():
    from prometheus_client import REGISTRY

    from serving.health_gauges import show

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    show(_row(True))
    assert value("churn_monitor_flagged") == 1.0
    assert value("churn_monitor_drifted_features") == 1.0
    assert value("churn_monitor_feature_drift", feature="n_login_30d") == 1.0
    assert value("churn_monitor_feature_drift", feature="tenure_days") is None  # never flagged
    assert value("churn_monitor_realised_auc") == pytest.approx(0.79)
    show(_row(False))
    assert value("churn_monitor_flagged") == 0.0
    assert value("churn_monitor_feature_drift", feature="n_login_30d") == 0.0
    # a run that judged nothing shows no number, never the previous run's
    show(_row(False, score_psi=None, realised_auc=None))
    assert math.isnan(value("churn_monitor_realised_auc"))
    assert math.isnan(value("churn_monitor_score_psi"))


def test_a_run_that_judged_nothing_draws_no_chart():
    row = _row(False, drift={}, weeks=[], drift_rows=12, score_psi=None, realised_auc=None)
    view = health_view([row], 0.2)
    assert view.psi_chart is None and view.auc_chart is None and view.top_drift == []
    assert verdict(row).startswith("Not judged at the last check")
    assert "12 predictions in its window" in verdict(row)


def _calendar_row() -> HealthRow:
    """The issue's check: tenure and calendar inputs moved (by construction), nothing else; the
    realised ROC-AUC is inside the test interval."""
    drift = {"tenure_days": {"psi": 0.9, "p_value": 3.9e-59, "flagged": False, "calendar": True,
                             "label": "Days as a customer", "beyond_chance": True},
             "days_to_anniversary": {"psi": 0.5, "p_value": 1e-20, "flagged": False,
                                     "calendar": True, "beyond_chance": True,
                                     "label": "Days to the signup anniversary (renewal)"},
             "n_login_30d": {"psi": 0.02, "p_value": 0.3, "flagged": False, "calendar": False,
                             "label": "'login' events in the last 30 days",
                             "beyond_chance": False}}
    return _row(False, drift=drift, drifted=0)


def test_calendar_inputs_never_alarm_and_the_page_speaks_plainly():
    """#25.13 and #25.12: inputs that move with the calendar are shown, not flagged; no column
    names or p-values like 3.9e-59."""
    view = health_view([_calendar_row()], 0.2, 200)
    assert view.verdict.startswith("Healthy") and view.status == "healthy"
    labels = [d["label"] for d in view.top_drift]
    assert labels[0] == "Days as a customer"
    # the drift chart draws inputs that can drift, not those that move by construction
    assert "Days as a customer" not in str(view.psi_chart)


def test_a_check_of_two_predictions_is_not_healthy():
    """#25.13: "not judged" is not "healthy": a realised ROC-AUC over two matured predictions
    and no drift judged says so, in the verdict and in the list of checks."""
    two = _row(False, drift={}, drift_rows=2, matured_rows=2, realised_auc=1.0)
    assert verdict(two, 200).startswith("Not judged")
    view = health_view([two], 0.2, 200)
    assert view.statuses == ["not judged"]
    partly = _row(False, matured_rows=2, realised_auc=1.0)
    assert verdict(partly, 200).startswith("Partly judged")
    assert "fewer than 200" in verdict(partly, 200)
    assert health_view([partly], 0.2, 200).statuses == ["drift healthy, accuracy not judged"]


def test_page_shows_words_not_column_names_or_p_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path))
    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    engine = engine_for(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'churn.db'}"))
    write_health(engine, _row(False, drift={}, drift_rows=2, matured_rows=2, realised_auc=1.0),
                 now=datetime(2026, 7, 1))
    write_health(engine, _calendar_row(), now=datetime(2026, 7, 2))
    page = review_get("/health").text
    assert "tenure_days" not in page and "n_login_30d" not in page
    assert "e-59" not in page and "p-value" not in page
    assert "Days as a customer" in page and "moves with the calendar" in page
    assert "Healthy" in page and ">not judged<" in page and ">healthy<" in page
