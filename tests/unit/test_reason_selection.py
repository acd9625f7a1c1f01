"""Reason selection for the reviewer: behavioural reasons (what the customer did) are chosen apart
from profile facts (who they are), only factors that raise the risk are reasons, and the
sentences read as English ("1 day ago")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.reasons import behaviour_mask, is_profile, render_reason, top_reasons
from tests.unit.test_reasons import Model

NAMES = ["attr_contract", "tenure_days", "n_login_30d", "days_since_late_payment"]
MODEL = Model(NAMES, {"attr_contract": {"kind": "category", "label": "contract"}})
FEATURES = pd.DataFrame({"attr_contract": ["monthly", "yearly"], "tenure_days": [40.0, 900.0],
                         "n_login_30d": [1.0, 20.0], "days_since_late_payment": [3.0, np.nan]})
# row 0: the contract raises the risk most, then logins, then the late payment;
# row 1: only profile facts raise it
CONTRIB = np.array([[0.9, 0.2, 0.5, 0.3, -2.0],
                    [0.4, 0.1, -0.6, -0.2, -2.0]])


@pytest.mark.parametrize(("name", "profile"), [
    ("attr_contract", True), ("attr_plan", True), ("tenure_days", True), ("history_days", True),
    ("n_login_30d", False), ("days_since_late_payment", False), ("trend_events", False),
    ("amount_sum_30d", False),
])
def test_profile_features_are_attributes_and_tenure(name, profile):
    assert is_profile(name) is profile


def test_behavioural_reasons_skip_profile_facts_and_keep_order():
    only = behaviour_mask(NAMES)
    assert only.tolist() == [False, False, True, True]
    changes = top_reasons(MODEL, FEATURES, CONTRIB, k=3, only=only)
    assert [r["feature"] for r in changes[0]] == ["n_login_30d", "days_since_late_payment"]
    assert changes[1] == []  # nothing the customer did raises the risk: no invented reason
    # the effect is still measured against the customer's whole score
    margin = CONTRIB[0].sum()
    expected = MODEL.calibrate(np.array([margin]))[0] - MODEL.calibrate(np.array([margin - 0.5]))[0]
    assert np.isclose(changes[0][0]["effect"], expected)


def test_all_reasons_still_include_profile_facts():
    assert [r["feature"] for r in top_reasons(MODEL, FEATURES, CONTRIB, k=2)[0]] == \
        ["attr_contract", "n_login_30d"]


def test_lowering_reasons_can_be_restricted_too():
    lowering = top_reasons(MODEL, FEATURES, CONTRIB, k=3, raising=False, only=behaviour_mask(NAMES))
    assert [r["feature"] for r in lowering[1]] == ["n_login_30d", "days_since_late_payment"]
    assert lowering[0] == []


@pytest.mark.parametrize(("value", "text"), [
    (0, "Last activity today"), (0.4, "Last activity today"), (1, "Last activity 1 day ago"),
    (1.3, "Last activity 1 day ago"), (2, "Last activity 2 days ago"),
    (1500, "Last activity 1,500 days ago"), (None, "No activity recorded so far"),
])
def test_days_since_reads_as_english(value, text):
    assert render_reason({"kind": "days_since", "label": "activity"}, value) == text


@pytest.mark.parametrize("name", ["events_lifetime", "events_per_day_lifetime",
                                  "amount_mean_lifetime", "mean_gap_days", "btyd_frequency"])
def test_lifetime_facts_are_no_change(name):
    """#25.9: a lifetime count is who the customer is, never "what changed"."""
    assert is_profile(name)
    assert not behaviour_mask([name])[0]


def test_one_ticket_is_never_both_a_risk_and_what_keeps_them():
    """#25.9: features about the same event type go to one side only, the side of their net
    contribution: a recent ticket that raises the risk while the ticket count lowers it more
    is listed as keeping them, not as both."""
    from dataclasses import dataclass

    from tests.unit.builders import spec_for

    spec = spec_for(("login", "support_ticket"), ())
    names = list(spec.feature_names)

    @dataclass
    class WithSpec(Model):
        spec: object = None

    model = WithSpec(names, {}, spec)
    assert spec.subjects["days_since_support_ticket"] == spec.subjects["n_support_ticket_30d"]
    phi = np.zeros((1, len(names) + 1))
    at = {n: i for i, n in enumerate(names)}
    phi[0, at["days_since_support_ticket"]] = 0.4  # the ticket 3 days ago raises it
    phi[0, at["n_support_ticket_30d"]] = -0.7  # having tickets lowers it more
    phi[0, at["trend_login"]] = 0.3
    feats = pd.DataFrame([{n: 1.0 for n in names}])
    raising = top_reasons(model, feats, phi, k=5, only=behaviour_mask(names))[0]
    lowering = top_reasons(model, feats, phi, k=5, raising=False, only=behaviour_mask(names))[0]
    assert [r["feature"] for r in raising] == ["trend_login"]
    assert [r["feature"] for r in lowering] == ["n_support_ticket_30d"]
    # without a spec (an old model) nothing changes
    assert [r["feature"] for r in top_reasons(Model(names), feats, phi, k=5)[0]] == \
        ["days_since_support_ticket", "trend_login"]
