"""The retention playbook: validation names the bad key; reasons map to families and signs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from campaigns.playbook import (
    DEFAULT_PATH,
    PlaybookError,
    family_for,
    load_playbook,
    parse_playbook,
    sign_for,
)

FAMILIES = {"contact_drop", "contact_change", "point_of_contact", "payment", "complaints",
            "cancel_intent", "default"}


def shipped() -> dict:
    return tomllib.loads(DEFAULT_PATH.read_text())


def without(data: dict, *path: str) -> dict:
    node = data
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return data


def test_shipped_playbook_loads_with_every_family():
    playbook = load_playbook()
    assert set(playbook.families) == FAMILIES
    assert set(playbook.timeline.signs) == {"contact_change", "payment", "complaints", "cancel_intent"}


@pytest.mark.parametrize(("path", "key"), [
    (("families", "payment", "action"), "families.payment.action"),
    (("families", "complaints", "title"), "families.complaints.title"),
    (("timeline", "signs", "payment", "patterns"), "timeline.signs.payment.patterns"),
    (("families",), "families"),
])
def test_missing_key_is_named(path, key):
    with pytest.raises(PlaybookError, match=rf"playbook\.toml: {key}: Field required"):
        parse_playbook(without(shipped(), *path), "playbook.toml")


@pytest.mark.parametrize(("path", "value", "key"), [
    (("families", "payment", "patterns"), "*payment*", "families.payment.patterns"),
    (("families", "payment", "action"), 3, "families.payment.action"),
    (("timeline", "days"), "many", "timeline.days"),
    (("timeline", "thinning_ratio"), 2.0, "timeline.thinning_ratio"),
])
def test_wrong_type_is_named(path, value, key):
    data = shipped()
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(PlaybookError, match=rf"playbook\.toml: {key}: "):
        parse_playbook(data, "playbook.toml")


def test_misspelt_key_is_named():
    data = shipped()
    data["families"]["payment"]["acton"] = data["families"]["payment"].pop("action")
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data, "playbook.toml")
    assert "families.payment.acton: Extra inputs are not permitted" in str(err.value)
    assert "families.payment.action: Field required" in str(err.value)


def test_default_family_is_required():
    with pytest.raises(PlaybookError, match="families.default is missing"):
        parse_playbook(without(shipped(), "families", "default"))


def test_family_needs_patterns():
    data = shipped()
    data["families"]["payment"]["patterns"] = []
    with pytest.raises(PlaybookError, match=r"families\.payment\.patterns: give at least one"):
        parse_playbook(data)


def test_file_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "playbook.toml"
    bad.write_text("[timeline\ndays = 1")
    with pytest.raises(PlaybookError, match=r"playbook\.toml: not valid TOML"):
        load_playbook(bad)
    with pytest.raises(PlaybookError, match="file not found"):
        load_playbook(tmp_path / "missing.toml")


@pytest.mark.parametrize(("feature", "family"), [
    ("trend_login", "contact_drop"),
    ("n_login_30d", "contact_drop"),
    ("days_since_last_event", "contact_drop"),
    ("active_days_7d", "contact_drop"),
    ("n_contact_change_90d", "contact_change"),
    ("days_since_contact_change", "contact_change"),
    ("contact_store_distinct_30d", "point_of_contact"),
    ("contact_account_manager_usual_share_30d", "point_of_contact"),
    ("contact_agent_days_since_change", "point_of_contact"),
    ("days_since_payment_failed", "payment"),
    ("n_late_payment_30d", "payment"),
    ("trend_downgrade", "payment"),
    ("n_complaint_30d", "complaints"),
    ("days_since_support_ticket", "complaints"),
    ("n_cancel_intent_90d", "cancel_intent"),
    ("DAYS_SINCE_CANCEL_INTENT", "cancel_intent"),
    ("attr_plan", "default"),
    ("tenure_days", "default"),
])
def test_reason_family_of_a_feature(feature, family):
    match = family_for(load_playbook(), [feature])
    assert match.name == family
    assert match.feature == (None if family == "default" else feature)


def test_first_matching_top_reason_decides():
    playbook = load_playbook()
    match = family_for(playbook, ["attr_contract", "n_login_30d", "n_cancel_intent_30d"])
    assert (match.name, match.feature) == ("contact_drop", "n_login_30d")
    assert family_for(playbook, [None, "", "attr_plan"]).name == "default"
    assert family_for(playbook, []).family.title == playbook.families["default"].title


def test_patterns_come_from_the_file():
    data = shipped()
    data["families"]["payment"]["patterns"] = ["attr_plan"]
    playbook = parse_playbook(data)
    assert family_for(playbook, ["attr_plan"]).name == "payment"
    assert family_for(playbook, ["n_payment_failed_30d"]).name == "default"


@pytest.mark.parametrize(("event_type", "sign"), [
    ("login", None), ("payment", None), ("feature_use", None), ("upgrade", None),
    ("payment_failed", "payment"), ("late_payment", "payment"), ("downgrade", "payment"),
    ("Complaint", "complaints"), ("support_ticket", "complaints"),
    ("contact_change", "contact_change"), ("cancel_intent", "cancel_intent"),
])
def test_warning_sign_of_an_event_type(event_type, sign):
    assert sign_for(load_playbook(), event_type) == sign


def test_shipped_reasons_and_winback():
    playbook = load_playbook()
    assert set(playbook.reasons) == {"price", "service_quality", "competitor", "no_longer_needed",
                                     "payment_problems", "moved", "other"}
    assert [k for k, r in playbook.reasons.items() if r.free_text] == ["other"]
    assert playbook.winback.title and "back" in playbook.winback.action


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["reasons"].pop("other"), "reasons: give an 'other' reason with free_text"),
    (lambda d: d["reasons"]["other"].pop("free_text"), "reasons: give an 'other' reason"),
    (lambda d: d["reasons"].update({"Bad Key": {"label": "x"}}), "reasons: 'Bad Key': a reason"),
    (lambda d: d["reasons"]["price"].pop("label"), "reasons.price.label: Field required"),
    (lambda d: d["winback"].pop("action"), "winback.action: Field required"),
])
def test_bad_reasons_and_winback_are_named(change, message):
    data = shipped()
    change(data)
    with pytest.raises(PlaybookError, match=rf"playbook\.toml: {message}"):
        parse_playbook(data, "playbook.toml")
