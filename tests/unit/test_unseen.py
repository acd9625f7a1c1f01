"""What /predict and /explain warn about: the parts of a customer's input the model has never
seen (serving.conversion.unseen_warnings), each naming its field."""

from __future__ import annotations

import pytest

from features.contract import AttributeKinds
from features.definitions import FeatureSpec
from serving.conversion import MAX_WARNINGS, unseen_warnings
from serving.schemas import CustomerIn

SPEC = FeatureSpec(event_types=("login", "payment"), value_columns=("amount", "quantity"),
                   contact_columns=("store",),
                   attributes=AttributeKinds(("seats",), ("plan",), ("date_of_birth",)))
LEVELS = {"plan": ["basic", "pro"]}


def customer(attributes: dict | None = None, events: list[dict] | None = None) -> CustomerIn:
    return CustomerIn(customer_id=1, signup_at="2025-01-01T00:00:00Z",
                      attributes=attributes or {}, events=[
                          {"timestamp": "2026-01-01T00:00:00Z", **e} for e in events or []])


def test_a_customer_the_model_knows_wholly_gets_no_warning():
    c = customer({"plan": "pro", "seats": 2, "date_of_birth": None},
                 [{"event_type": "login"}, {"event_type": "payment", "amount": 9.0,
                                            "values": {"quantity": 2},
                                            "contacts": {"store": "Munich"}}])
    assert unseen_warnings(c, SPEC, LEVELS) == []


@pytest.mark.parametrize("attributes,events,warning", [
    ({"Plan": "pro"}, [], "customers[0].attributes.Plan: is not an attribute of the model and "
     "is ignored (did you mean 'plan'?)"),
    ({"colour": "red"}, [], "customers[0].attributes.colour: is not an attribute of the model "
     "and is ignored"),
    ({"plan": "Pro"}, [], "customers[0].attributes.plan: 'Pro' is a value the model has no "
     "level for and is read as unseen (did you mean 'pro'?)"),
    ({"plan": "enterprise"}, [], "customers[0].attributes.plan: 'enterprise' is a value the "
     "model has no level for and is read as unseen (its values: basic, pro)"),
    ({}, [{"event_type": "Login"}, {"event_type": "login"}, {"event_type": "Login"}],
     "customers[0].events[0].event_type (and 1 more): 'Login' is not an event type the model "
     "has features for: it counts only in the totals (did you mean 'login'?)"),
    ({}, [{"event_type": "login", "values": {"quantiy": 2}}],
     "customers[0].events[0].values.quantiy: is not a value column of the model and is "
     "ignored (did you mean 'quantity'?)"),
    ({}, [{"event_type": "login", "contacts": {"agent": "Ann"}}],
     "customers[0].events[0].contacts.agent: is not a contact column of the model and is "
     "ignored"),
    ({}, [{"event_type": "login", "values": {"amount": 3}}],
     "customers[0].events[0].values.amount: is ignored: send the amount as the event's amount "
     "field"),
])
def test_what_the_model_has_never_seen_is_named(attributes, events, warning):
    got = unseen_warnings(customer(attributes, events), SPEC, LEVELS, "customers[0].")
    assert got == [warning]


def test_warnings_are_bounded():
    c = customer({f"a{i}": 1 for i in range(50)})
    got = unseen_warnings(c, SPEC, LEVELS)
    assert len(got) == MAX_WARNINGS and got[-1] == f"{50 - MAX_WARNINGS + 1} more warnings"
