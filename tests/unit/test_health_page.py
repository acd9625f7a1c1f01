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
    (_row(True), "Needs attention (2026-07-01 06:00 UTC, model version 3): 1 feature drifted "
                 "(n_login_30d)."),
    (_row(True, auc_flagged=True, realised_auc=0.7), "realised ROC-AUC 0.700 fell below the test "
                                                     "interval (0.760)"),
])
def test_verdict_in_words(row, words):
    assert words in verdict(row)


def test_view_draws_the_flagged_features_over_time():
    view = health_view([_row(False), _row(True)], 0.2)
    assert "n_login_30d" in str(view.psi_chart) and view.auc_chart is not None
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
