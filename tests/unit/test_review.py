"""The reviewer page's pure parts: the timeline, and the charts as SVG from numbers."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from campaigns.playbook import load_playbook
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
    assert (data.recent_weeks, data.recent_thinning_weeks) == (4, 3)  # where the thin weeks fall
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


def test_waterfall_starts_at_the_models_starting_point_not_an_average():
    """#25.10: the base value is not the average customer's probability; the chart says what
    it is."""
    svg = str(waterfall_svg(0.01, [Step("Logins fell", "", 0.01, 0.2)], 0.2))
    assert "Average customer" not in svg and "average" not in svg.lower()
    assert "Model&#x27;s starting point" in svg


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


# -- the workbench's pure parts -------------------------------------------------------------


def _weekly(as_of: pd.Timestamp, per_week: dict[int, int]) -> pd.DataFrame:
    """`per_week[k]` login events in the week k weeks before as_of."""
    rows = [(as_of - pd.Timedelta(days=7 * k + 1, hours=i), "login")
            for k, n in per_week.items() for i in range(n)]
    return pd.DataFrame(rows, columns=["timestamp", "event_type"]).assign(customer_id="1")


def test_thinning_follows_one_visible_rule_empty_weeks_included():
    """Usual week: the average of the 8 weeks before the period (6 a week); every week below
    half of it is marked, whatever the weeks around it did."""
    as_of = pd.Timestamp("2026-06-15")
    per_week = {k: 6 for k in range(17, 25)}  # the 8 reference weeks
    per_week.update({16: 6, 15: 2, 14: 0, 13: 6, 12: 3, 11: 0, 10: 0, 9: 0, 8: 5})
    data = customer_timeline(_weekly(as_of, per_week), as_of, load_playbook())
    assert data.usual == 6 and data.threshold == 3
    marked = {16 - i: w.thinning for i, w in enumerate(data.weeks)}
    assert [k for k, thin in marked.items() if thin] == [15, 14, 11, 10, 9, 7, 6, 5, 4, 3, 2, 1, 0]
    assert not marked[12]  # 3 is not below half of 6
    for w in data.weeks:  # the rule, checked on every week
        assert w.thinning == (w.activity < data.threshold)
    assert 'class="threshold"' in str(timeline_svg(data))


def test_thinning_without_earlier_activity_uses_the_weeks_shown_and_skips_weeks_before_the_first():
    as_of = pd.Timestamp("2026-06-15")
    data = customer_timeline(_weekly(as_of, {5: 4, 4: 4, 3: 4, 2: 0, 1: 1, 0: 3}), as_of,
                             load_playbook())
    assert data.usual == 16 / 6 and "weeks shown" in data.usual_from
    assert [w.thinning for w in data.weeks[-6:]] == [False, False, False, True, True, False]
    assert not any(w.thinning for w in data.weeks[:-6])  # before the first activity


def test_no_activity_marks_nothing():
    as_of = pd.Timestamp("2026-06-15")
    empty = pd.DataFrame({"timestamp": pd.to_datetime([]), "event_type": [], "customer_id": []})
    data = customer_timeline(empty, as_of, load_playbook())
    assert data.usual == 0 and data.thinning_weeks == 0


class _Model:
    feature_names = ["a", "b", "c", "d"]
    reason_texts: dict = {}

    @staticmethod
    def calibrate(raw):
        return 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=float)))


class _Loaded:
    model = _Model()


def test_waterfall_takes_the_factor_that_moves_the_probability_most_each_step():
    from serving.review.views import Explanation, waterfall_steps

    # in log-odds c is largest, but from a low base b's step in probability is not the order of
    # the log-odds: the greedy order is checked against every remaining factor at each step
    contrib = np.array([0.9, -1.2, 1.5, 0.0, -3.0])
    features = pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "d": [4.0]})
    explanation = Explanation(features, contrib, 0.0, "low", [], [], [])
    p_base, steps, p_final = waterfall_steps(_Loaded(), explanation, 10)
    assert len(steps) == 3  # d contributes nothing
    assert np.isclose(p_final, _Model.calibrate(contrib.sum()))
    raw, remaining = -3.0, {0: 0.9, 1: -1.2, 2: 1.5}
    for step in steps:
        moves = {j: abs(_Model.calibrate(raw + v) - _Model.calibrate(raw)) for j, v in remaining.items()}
        best = max(moves, key=moves.get)
        assert np.isclose(abs(step.end - step.start), moves[best])
        raw += remaining.pop(best)
    # (the sizes themselves need not shrink: a later step can move more where the curve is
    # steeper, which is why the page does not claim "in order of size")
    assert all("log-odds" not in s.label and s.detail == "" for s in steps)


def test_waterfall_puts_the_rest_in_one_step():
    from serving.review.views import Explanation, waterfall_steps

    contrib = np.array([0.9, -1.2, 1.5, 0.2, -3.0])
    explanation = Explanation(pd.DataFrame({c: [1.0] for c in "abcd"}), contrib, 0.0, "low",
                              [], [], [])
    _, steps, p_final = waterfall_steps(_Loaded(), explanation, 2)
    assert len(steps) == 3 and steps[-1].label == "2 other factors together"
    assert np.isclose(steps[-1].end, p_final)


def _row(band: str, **reasons: str) -> dict:
    return {"risk_band": band, **reasons}


def test_the_action_and_the_reason_beside_it_agree():
    from serving.review.ranking import lead_reason

    playbook = load_playbook()
    rec = {"change_1_feature": "n_login_30d", "change_1_text": "Logins in the last 30 days: 1",
           "change_2_feature": "days_since_late_payment", "change_2_text": "Last late payment 1 day ago",
           "reason_1_feature": "attr_contract", "reason_1_text": "contract is monthly"}
    changed, action, family = lead_reason(rec, "high", playbook)
    assert (changed, family) == ("Logins in the last 30 days: 1", "contact_drop")
    assert action == playbook.families["contact_drop"].step == "Reach out and ask how it is going"
    # a family found further down names the reason that chose it, not the first one
    rec2 = {"change_1_feature": "history_days", "change_1_text": "x",
            "change_2_feature": "days_since_late_payment", "change_2_text": "Last late payment 1 day ago"}
    assert lead_reason(rec2, "medium", playbook)[::2] == ("Last late payment 1 day ago", "payment")


def test_low_band_needs_no_action_and_profile_facts_never_lead():
    from serving.review.ranking import lead_reason

    playbook = load_playbook()
    rec = {"change_1_feature": "active_days_90d", "change_1_text": "Active on 35 of the last 90 days"}
    assert lead_reason(rec, "low", playbook)[1:] == ("No action needed", "none")
    # a file from before change_* columns: profile reasons are skipped
    old = {"reason_1_feature": "attr_contract", "reason_1_text": "contract is monthly",
           "reason_2_feature": "tenure_days", "reason_2_text": "Customer for 30 days"}
    assert lead_reason(old, "high", playbook) == ("", playbook.families["default"].step, "default")


def test_the_suggested_action_says_what_to_do_not_the_situation():
    """#25.7: the list's column is the step to take; the situation is the family's title."""
    from serving.review.ranking import lead_reason

    playbook = load_playbook()
    for name, family in playbook.families.items():
        assert family.step and family.step != family.title, name
    rec = {"customer_id": "1", "change_1_feature": "trend_login", "change_1_text": "Logins fell"}
    assert lead_reason(rec, "high", playbook)[1] == "Reach out and ask how it is going"


def _ticket_row() -> dict:
    return {"customer_id": "7", "change_1_feature": "days_since_support_ticket",
            "change_1_text": "Last 'support ticket' 3 days ago"}


def test_one_ticket_is_not_a_pile_of_complaints():
    """#25.8: escalation needs at least two complaints or tickets in the last 30 days; one gets
    the follow-up, in the list and on the customer page alike."""
    from campaigns.playbook import suggest
    from serving.review.ranking import lead_reason
    from serving.review.timeline import sign_counts

    playbook = load_playbook()
    as_of = pd.Timestamp("2026-06-15")
    one = pd.DataFrame({"customer_id": ["7", "8", "8", "9"],
                        "timestamp": [as_of - pd.Timedelta(days=3), as_of - pd.Timedelta(days=3),
                                      as_of - pd.Timedelta(days=20), as_of - pd.Timedelta(days=3)],
                        "event_type": ["support_ticket", "support_ticket", "complaint", "login"]})
    evidence = sign_counts(one, as_of, playbook)
    assert evidence == {"7": {"complaints": 1}, "8": {"complaints": 2}}
    _, action, family = lead_reason(_ticket_row(), "high", playbook, evidence)
    assert (action, family) == ("Follow up on their ticket", "complaints")
    assert "Escalate" not in action
    piled = {**_ticket_row(), "customer_id": "8"}
    assert lead_reason(piled, "high", playbook, evidence)[1] == \
        "Escalate to your most experienced agent"
    # no evidence known is no evidence: never escalate on a feature name alone
    assert lead_reason(_ticket_row(), "high", playbook)[1] == "Follow up on their ticket"
    match = suggest(playbook, "high", ["days_since_support_ticket"], {"complaints": 1}, weigh=True)
    assert match.family.title == "A recent complaint or support ticket"
    assert "1 event in the last 30 days" in match.evidence
    # one failed payment: check the details, not a budget talk
    assert suggest(playbook, "high", ["n_payment_failed_30d"], {"payment": 1},
                   weigh=True).family.step == "Check their payment details"
    assert suggest(playbook, "high", ["n_payment_failed_30d"], {"payment": 3},
                   weigh=True).family.step == "Talk about their budget"


@pytest.mark.parametrize(("params", "named"), [
    ({"sort": "colour"}, "sort"), ({"order": "up"}, "order"), ({"page": "0"}, "page"),
    ({"page": "x"}, "page"), ({"new": "yes"}, "new"), ({"q": "x" * 201}, "q"),
    ({"q": "a\x00"}, "q"),
])
def test_bad_list_parameters_are_400s_naming_them(params, named):
    from serving.review.data import PageError
    from serving.review.ranking import parse_list_query

    with pytest.raises(PageError) as info:
        parse_list_query(params, {}, 50, 1000, 200)
    assert info.value.status == 400 and named in info.value.message


def test_sort_links_flip_the_direction():
    from serving.review.ranking import ListQuery

    q = ListQuery(band="high", sort="probability", order="desc", page=3)
    assert "order=asc" in q.sort_link("probability") and "page" not in q.sort_link("probability")
    assert "sort=customer&order=asc" in q.sort_link("customer")


def test_csv_cells_cannot_start_a_formula():
    from serving.review.ranking import _cell

    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)" and _cell("@x") == "'@x"
    assert _cell("plain") == "plain" and _cell(None) == ""


@pytest.mark.parametrize(("column", "multiplier", "words"), [
    ("amount_sum_30d", 12.0, ("yearly value", "12 × last 30 days' amount received")),
    ("amount_sum_90d", 1.0, ("value", "last 90 days' amount received")),
    ("attr_mrr", 12.0, ("value", "12 × mrr")),
])
def test_value_is_defined_in_words(column, multiplier, words):
    from serving.review.format import value_definition

    assert value_definition(column, multiplier) == words


def test_crm_link_escapes_the_id_and_only_http_templates_are_accepted():
    from pydantic import ValidationError

    from scoring.settings import Settings
    from serving.review.views import crm_link

    template = "https://crm.example/customers/{customer_id}?tab=1"
    assert crm_link(template, "a/b c&d") == "https://crm.example/customers/a%2Fb%20c%26d?tab=1"
    assert crm_link(None, "1") is None
    assert Settings(review_crm_url=template).review_crm_url == template
    for bad in ("javascript:alert(1)//{customer_id}", "ftp://x/{customer_id}",
                "https://crm.example/customers/", "//crm.example/{customer_id}"):
        with pytest.raises(ValidationError, match="review_crm_url"):
            Settings(review_crm_url=bad)


def test_money_takes_the_configured_currency_and_tiny_steps_have_no_sign():
    from serving.review.format import money

    assert money(1788.0) == "1,788.00" and money(1788.0, "€") == "€1,788.00"
    assert money(None, "€") == "–" and money(float("nan")) == "–"
    svg = str(waterfall_svg(0.2, [Step("tiny", "", 0.2, 0.19999)], 0.19999))
    assert "±0.0 pp" in svg and "-0.0 pp" not in svg
