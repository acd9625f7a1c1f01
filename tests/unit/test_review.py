"""The reviewer page's pure parts: the timeline, and the charts as SVG from numbers."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from serving.playbook import load_playbook
from serving.review.charts import Step, timeline_svg, waterfall_svg
from serving.review.timeline import customer_timeline


def test_timeline_marks_thinning_weeks_and_warning_signs():
    """Pure: a steady weekly habit that collapses, a complaint, an unknown event type."""
    as_of = pd.Timestamp("2026-06-15")
    rows = [(as_of - pd.Timedelta(days=7 * k + 1), "login") for k in range(3, 20) for _ in range(5)]
    rows += [(as_of - pd.Timedelta(days=3), "login"), (as_of - pd.Timedelta(days=9), "webinar"),
             (as_of - pd.Timedelta(days=4), "complaint"), (as_of - pd.Timedelta(days=200), "complaint"),
             (as_of, "cancel_intent")]  # at as_of: not history
    events = pd.DataFrame(rows, columns=["timestamp", "event_type"]).assign(customer_id="1")
    data = customer_timeline(events, as_of, load_playbook())
    assert len(data.weeks) == 17
    assert [w.thinning for w in data.weeks[-3:]] == [True, True, True]
    assert data.weeks[-4].thinning is False and data.weeks[-4].activity == 5
    assert [(s.event_type, s.sign) for s in data.signs] == [("complaint", "complaints")]
    complaints = next(s for s in data.summaries if s.sign == "complaints")
    assert (complaints.recent, complaints.earlier, complaints.rising) == (1, 0, True)
    assert data.activity_types == ["login", "webinar"]  # unknown types are plain activity
    svg = str(timeline_svg(data))
    assert svg.startswith("<svg") and svg.count('class="sign"') == 1


def test_waterfall_has_a_bar_per_step_and_ends_at_the_probability():
    steps = [Step("Logins fell 80%", "trend_login = -0.8", 0.05, 0.15),
             Step("Customer for 400 days", "tenure_days = 400", 0.15, 0.12)]
    svg = str(waterfall_svg(0.05, steps, 0.12))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('<g class="step') == 4  # base, two steps, the customer
    assert svg.count('class="step up"') == 1 and svg.count('class="step down"') == 1
    assert '+10.0 pp' in svg and '-3.0 pp' in svg
    assert re.search(r'class="value">12\.0%</text></g></svg>$', svg)


def test_waterfall_escapes_labels_and_keeps_the_axis_round():
    steps = [Step("<script>x</script>", "detail & more", 0.2, 0.6)]
    svg = str(waterfall_svg(0.2, steps, 0.6))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp; more" in svg
    ticks = [float(t) for t in re.findall(r'class="tick" text-anchor="middle">([\d.]+)%', svg)]
    assert ticks[0] == 0 and ticks[-1] >= 60 and len(ticks) <= 6


@pytest.mark.parametrize("p_final", [0.0, 1.0])
def test_waterfall_handles_the_ends_of_the_scale(p_final):
    svg = str(waterfall_svg(0.5, [Step("a", "b", 0.5, p_final)], p_final))
    assert "nan" not in svg.lower() and svg.count("<rect") == 3


def test_data_errors_name_the_file_not_where_it_lives(tmp_path):
    """The reviewer page shows its 503 to anyone who can open it: no server paths."""
    from serving.review.data import FileCache, PageError, read_data

    missing = tmp_path / "secret-folder" / "customers.csv"
    with pytest.raises(PageError) as info:
        FileCache(read_data).get(missing, missing)
    assert "customers.csv" in info.value.message and str(tmp_path) not in info.value.message

    customers, events = tmp_path / "customers.csv", tmp_path / "events.csv"
    customers.write_text("customer_id,plan\n1,basic\n")
    events.write_text("customer_id,timestamp,event_type\n1,2025-01-01,login\n")
    with pytest.raises(PageError) as info:
        read_data(customers, events)
    assert "customers.csv" in info.value.message and str(tmp_path) not in info.value.message


@pytest.mark.parametrize("limit", ["9" * 5000, "0", "-1", "1e3", "1001", "²", "①"])
def test_a_bad_limit_is_a_friendly_400(limit):
    from serving.review.data import PageError
    from serving.review.ranking import parse_list_query

    with pytest.raises(PageError) as info:
        parse_list_query({"limit": limit}, {}, 50, 1000)
    assert info.value.status == 400 and len(info.value.message) < 300
