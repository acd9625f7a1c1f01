"""The campaign store: a campaign and its members in one transaction, outcomes replaced per
customer and source, and the customer's history."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from campaigns.store import (
    Campaign,
    campaign_members,
    campaign_outcomes,
    create_campaign,
    customer_campaigns,
    get_campaign,
    list_campaigns,
    record_outcomes,
)
from scoring.records import RecordError, engine_for
from scoring.settings import Settings


@pytest.fixture()
def engine(tmp_path):
    return engine_for(Settings(home=tmp_path))


def _members(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "arm": ["treatment", "control"] * (n // 2),
        "risk_band": "high", "value_segment": "top", "probability": 0.5,
        "customer_value": [100.0, None, 50.0, 20.0][:n],
        "action_family": "payment", "action": "Talk about their budget."})


def _campaign(cid: str = "c-1") -> Campaign:
    return Campaign(cid, "spring", "churn v1", datetime(2026, 6, 30), 30, 0.2, 7, "budget 4",
                    {"budget": 4})


def test_campaign_round_trip(engine):
    stored = create_campaign(engine, _campaign(), _members())
    assert stored.created_at is not None
    got = get_campaign(engine, "c-1")
    assert got.params == {"budget": 4} and got.as_of == datetime(2026, 6, 30)
    assert [c.campaign_id for c in list_campaigns(engine)] == ["c-1"]
    members = campaign_members(engine, "c-1")
    assert list(members["customer_id"]) == ["c0", "c1", "c2", "c3"]
    assert members["customer_value"].isna().tolist() == [False, True, False, False]
    assert get_campaign(engine, "nope") is None


def test_a_second_campaign_with_the_same_id_changes_nothing(engine):
    create_campaign(engine, _campaign(), _members())
    with pytest.raises(RecordError, match="campaign_id"):
        create_campaign(engine, _campaign(), _members(2))
    assert len(campaign_members(engine, "c-1")) == 4


@pytest.mark.parametrize("change, field", [
    (lambda m: m.assign(arm="both"), "arm"),
    (lambda m: pd.concat([m, m.iloc[:1]]), "customer_id"),
    (lambda m: m.drop(columns="action"), "members"),
    (lambda m: m.iloc[:0], "members"),
])
def test_bad_members_store_nothing(engine, change, field):
    with pytest.raises(RecordError, match=field):
        create_campaign(engine, _campaign(), change(_members()))
    assert get_campaign(engine, "c-1") is None


def test_outcomes_replace_the_same_source_only(engine):
    create_campaign(engine, _campaign(), _members())
    record_outcomes(engine, "c-1", [
        {"customer_id": "c0", "reached": True, "result": "stayed", "reason": "price",
         "reason_text": "", "source": "import"},
        {"customer_id": "c0", "reached": None, "result": "left", "source": "data",
         "recorded_at": datetime(2026, 7, 20)}])
    record_outcomes(engine, "c-1", [
        {"customer_id": "c0", "reached": True, "result": "left", "reason": "competitor",
         "reason_text": "cheaper elsewhere", "source": "import"}])
    out = campaign_outcomes(engine, "c-1").set_index("source")
    assert len(out) == 2
    assert out.loc["import", "reason"] == "competitor" and out.loc["data", "result"] == "left"
    history = customer_campaigns(engine, "c0")
    assert history[0]["arm"] == "treatment" and history[0]["action_family"] == "payment"
    assert [o["source"] for o in history[0]["outcomes"]] == ["import", "data"]
    assert history[0]["outcomes"][0]["reason_text"] == "cheaper elsewhere"
    assert customer_campaigns(engine, "nobody") == []


def test_outcomes_of_strangers_store_nothing(engine):
    create_campaign(engine, _campaign(), _members())
    with pytest.raises(RecordError, match="'zz' is not in campaign"):
        record_outcomes(engine, "c-1", [
            {"customer_id": "c0", "reached": True, "result": "stayed", "source": "import"},
            {"customer_id": "zz", "reached": True, "result": "stayed", "source": "import"}])
    assert campaign_outcomes(engine, "c-1").empty
    with pytest.raises(RecordError, match="result"):
        record_outcomes(engine, "c-1", [{"customer_id": "c0", "result": "gone",
                                         "source": "import"}])
    with pytest.raises(RecordError, match="campaign"):
        record_outcomes(engine, "c-9", [{"customer_id": "c0", "result": "left",
                                         "source": "data"}])


def test_written_settings_file_under_the_environment(tmp_path, monkeypatch):
    from scoring.settings import written_settings_path

    monkeypatch.delenv("CHURN_OFFER__SAVE_RATE", raising=False)
    assert Settings(home=tmp_path).offer.save_rate == 0.25  # no file: the default
    path = written_settings_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("[offer]\nsave_rate = 0.4\n")
    monkeypatch.setenv("CHURN_OFFER__COST", "3")
    offer = Settings(home=tmp_path).offer
    assert (offer.save_rate, offer.cost) == (0.4, 3.0)  # merged with the environment
    monkeypatch.setenv("CHURN_OFFER__SAVE_RATE", "0.1")
    assert Settings(home=tmp_path).offer.save_rate == 0.1  # the environment wins
    path.write_text("[offer\n")
    with pytest.raises(ValueError, match="settings.toml: not valid TOML"):
        Settings(home=tmp_path)
