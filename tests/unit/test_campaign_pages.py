"""The /review campaign pages without a server: the verdict, the chart, and the pages on a real
SQLite store through the review app in this process."""

from __future__ import annotations

import html
import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from campaigns.playbook import load_playbook
from campaigns.report import campaign_report
from campaigns.store import Campaign, create_campaign, record_outcomes
from scoring.records import engine_for
from scoring.settings import get_settings
from serving.review.campaigns import (
    MIN_KNOWN_PER_ARM,
    churn_by_arm_svg,
    customer_history,
    standouts,
    verdict,
)
from tests.helpers import review_get

CAMPAIGN = Campaign("spring", "Spring <b>save</b>", "7", datetime(2026, 3, 1), 60, 0.2, 3,
                    "top 400 by expected profit")


def _members(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "customer_id": [f"C{i}" for i in range(n)],
        "arm": np.where(np.arange(n) % 5 == 0, "control", "treatment"),
        "risk_band": "high", "value_segment": rng.choice(["top", "bottom"], n),
        "probability": rng.random(n), "customer_value": rng.gamma(2.0, 100.0, n),
        "action_family": rng.choice(["complaints", "payment"], n), "action": "call them"})


def _data_outcomes(members: pd.DataFrame, churn: dict[str, float], seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    left = rng.random(len(members)) < members["arm"].map(churn).to_numpy()
    return pd.DataFrame({"customer_id": members["customer_id"], "reached": pd.NA,
                         "result": np.where(left, "left", "stayed"), "reason": None,
                         "reason_text": "", "recorded_at": datetime(2026, 5, 1), "source": "data"})


@pytest.mark.parametrize(("n", "churn", "judged", "words"), [
    (60, {"treatment": 0.2, "control": 0.5}, False, "Too few outcomes to judge yet"),
    (2000, {"treatment": 0.2, "control": 0.4}, True, "The contacts lowered churn by"),
    (2000, {"treatment": 0.3, "control": 0.3}, True, "No effect shown"),
    (2000, {"treatment": 0.5, "control": 0.3}, True, "Churn was higher among those contacted"),
])
def test_verdict_says_what_the_interval_shows_or_that_it_is_too_early(n, churn, judged, words):
    members = _members(n)
    report = campaign_report(members, _data_outcomes(members, churn))
    ok, sentence = verdict(report, CAMPAIGN, now=datetime(2026, 5, 2))
    assert ok is judged and words in sentence
    if not judged:
        assert report.overall.control.known < MIN_KNOWN_PER_ARM
        assert "the horizon ended on 2026-04-30" in sentence
    else:
        u = report.overall.uplift
        assert f"{u.value * 100:+.1f} pp" in sentence


def test_before_any_outcome_the_verdict_says_when_the_horizon_ends():
    members = _members(500)
    report = campaign_report(members, _data_outcomes(members, {}).iloc[:0])
    ok, sentence = verdict(report, CAMPAIGN, now=datetime(2026, 3, 10))
    assert not ok and "0 contacted and 0 control customers" in sentence
    assert "the horizon ends on 2026-04-30" in sentence


def test_standouts_name_the_rows_whose_interval_excludes_zero():
    members = _members(6000)
    churn = np.where((members["arm"] == "treatment") & (members["action_family"] == "complaints"),
                     0.15, 0.4)
    rng = np.random.default_rng(2)
    left = rng.random(len(members)) < churn
    outcomes = _data_outcomes(members, {}).assign(result=np.where(left, "left", "stayed"))
    sentence = standouts(campaign_report(members, outcomes))
    assert "action complaints (+" in sentence and "action payment" not in sentence
    assert sentence.startswith("Of the 4 breakdown rows") and "by chance" in sentence
    none = _data_outcomes(members, {"treatment": 0.4, "control": 0.4}, seed=5)
    assert standouts(campaign_report(members, none)) == ""


def test_chart_draws_each_arm_at_its_rate_and_escapes_labels():
    members = _members(2000).assign(action_family=lambda m: np.where(
        m.index < 1000, "<script>x</script>", "payment"))
    report = campaign_report(members, _data_outcomes(members, {"treatment": 0.1, "control": 0.4}))
    svg = str(churn_by_arm_svg([("All", [report.overall]), ("By action", report.by_action_family)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('class="dot"') == 2 * 3  # two arms, three groups
    dots = [float(v) for v in re.findall(r'<circle cx="([\d.]+)"', svg)]
    assert dots[0] < dots[1]  # the contacted arm (10%) left of the control arm (40%)
    empty = campaign_report(members, _data_outcomes(members, {}).iloc[:0])
    assert str(churn_by_arm_svg([("All", [empty.overall])])).count(">no outcome yet<") == 2


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    get_settings.cache_clear()
    engine = engine_for(get_settings())
    members = _members(400)
    create_campaign(engine, CAMPAIGN, members)
    outcomes = _data_outcomes(members, {"treatment": 0.2, "control": 0.45})
    record_outcomes(engine, "spring", outcomes.assign(reached=None).to_dict("records"))
    record_outcomes(engine, "spring", [
        {"customer_id": "C1", "reached": True, "result": "left", "reason": "price",
         "reason_text": "Too <i>dear</i> for us", "source": "import"},
        {"customer_id": "C2", "reached": False, "result": "no_answer", "source": "import"}])
    yield engine
    get_settings.cache_clear()


def test_campaign_list_and_page_from_the_store(store):
    listing = review_get("/campaigns")
    assert listing.status_code == 200
    assert 'href="/campaigns/spring"' in listing.text
    assert "Spring &lt;b&gt;save&lt;/b&gt;" in listing.text and "<b>save" not in listing.text
    assert ">320<" in listing.text and ">80<" in listing.text  # the arms' sizes

    page = review_get("/campaigns/spring")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "The contacts lowered churn by" in text
    assert 'id="uplift"' in page.text and "svg" in page.text
    assert "Price" in text and "Too <i>dear</i> for us" in text  # stated, escaped on the page
    assert "&lt;i&gt;dear" in page.text
    assert 'href="/customer/C1"' in page.text

    assert review_get("/campaigns/nope").status_code == 404
    assert review_get("/campaigns/" + "x" * 65).status_code == 404
    bad = review_get("/campaigns/spring?level=0.9")
    assert bad.status_code == 400 and "level" in bad.text


def test_the_page_prices_offers_as_planned_not_at_todays_settings(tmp_path, monkeypatch):
    """The cost a campaign was planned with (its params) is what the page and `churn campaign
    report` both use; a later change of CHURN_OFFER__COST does not reprice it."""
    from dataclasses import replace

    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    monkeypatch.setenv("CHURN_OFFER__COST", "99")
    get_settings.cache_clear()
    try:
        engine = engine_for(get_settings())
        members = _members(400)  # 80 held out: enough outcomes per arm to judge
        create_campaign(engine, replace(CAMPAIGN, params={"offer_cost": 7.0}), members)
        outcomes = _data_outcomes(members, {"treatment": 0.2, "control": 0.45})
        record_outcomes(engine, "spring", outcomes.assign(reached=None).to_dict("records"))
        text = html.unescape(review_get("/campaigns/spring").text)
        offers = text.split("Offers:")[1][:40]
        assert offers.startswith(" 320 × 7.00 = 2,240.00") and "99" not in offers
    finally:
        get_settings.cache_clear()


def test_customer_history_lists_arm_action_outcomes_and_words(store):
    playbook = load_playbook()
    history = customer_history(store, "C1", playbook)
    assert len(history) == 1
    h = history[0]
    assert (h["campaign_id"], h["arm"], h["treated"]) == ("spring", "contacted", True)
    assert h["action"] == playbook.families[_members(400).loc[1, "action_family"]].title
    sources = {o["source"]: o for o in h["outcomes"]}
    assert sources["call centre"]["reason"] == "Price"
    assert sources["call centre"]["text"] == "Too <i>dear</i> for us"
    assert sources["call centre"]["reached"] is True
    assert sources["the data"]["result"] in ("left", "stayed")
    control = customer_history(store, "C0", playbook)[0]
    assert (control["arm"], control["treated"]) == ("control (not contacted)", False)
    assert customer_history(store, "nobody", playbook) == []


def test_campaigns_are_listed_per_model_never_mixed(tmp_path, monkeypatch):
    """#25.14: the demo's campaign (another model's, on other data) is listed apart from the
    served model's, and its members neither block this model's plans nor show on a customer of
    this model with the same id."""
    from dataclasses import replace

    from campaigns.store import overlapping_members

    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    monkeypatch.setenv("CHURN_MODEL_NAME", "shop")
    get_settings.cache_clear()
    try:
        engine = engine_for(get_settings())
        members = _members(50)
        create_campaign(engine, replace(CAMPAIGN, campaign_id="demo", name="Demo May save",
                                        params={"model_name": "churn"}), members)
        create_campaign(engine, replace(CAMPAIGN, campaign_id="mine", name="Our spring save",
                                        params={"model_name": "shop"}), members)
        page = review_get("/campaigns").text
        mine, others = page.split('id="others"')
        assert "Our spring save" in mine and "Demo May save" not in mine
        assert "Demo May save" in others and ">churn<" in others
        assert "Campaigns of model shop" in mine
        window = (datetime(2026, 3, 1), datetime(2026, 4, 1))
        assert set(overlapping_members(engine, *window, "shop").values()) == {"mine"}
        assert set(overlapping_members(engine, *window).values()) <= {"mine", "demo"}
        shown = customer_history(engine, "C1", load_playbook(), "shop")
        assert [h["campaign_id"] for h in shown] == ["mine"]
    finally:
        get_settings.cache_clear()


def test_a_negative_save_rate_is_never_a_percentage(tmp_path, monkeypatch):
    """#25.12: a save rate below zero (more of those contacted left) reads "none", and an
    interval reaching below zero says so, instead of "-831.1%"."""
    monkeypatch.setenv("CHURN_DATABASE_URL", f"sqlite:///{tmp_path / 'churn.db'}")
    get_settings.cache_clear()
    try:
        engine = engine_for(get_settings())
        members = _members(2000)
        create_campaign(engine, CAMPAIGN, members)
        outcomes = _data_outcomes(members, {"treatment": 0.5, "control": 0.05})
        record_outcomes(engine, "spring", outcomes.assign(reached=None).to_dict("records"))
        text = html.unescape(review_get("/campaigns/spring").text)
        rate = text.split('id="save-rate">')[1].split("</strong>")[0]
        assert "none: more of those contacted left" in rate
        assert not re.search(r"-\d+(\.\d+)?%", text)
    finally:
        get_settings.cache_clear()
