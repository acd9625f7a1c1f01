"""The point of contact: a text event column (a store, an agent) becomes contact features that
rise when the customer's contact switches, in both evaluators, in requests as in tables, with a
reason in plain words and a playbook action."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from campaigns.playbook import family_for, load_playbook
from features.definitions import FeatureSpec
from features.engine import feature_table, features_of_relations
from features.expr import Agg
from features.sql import feature_sql
from scoring.reasons import reason_templates, render_reason, top_reasons
from serving.conversion import histories_to_relations
from serving.schemas import CustomerIn
from tests.unit.builders import AS_OF, customers_frame

SPEC = FeatureSpec(event_types=("visit",), value_columns=("amount",),
                   contact_columns=("store",))
NAMES = ("contact_store_distinct_30d", "contact_store_distinct_90d",
         "contact_store_usual_share_30d", "contact_store_days_since_change")


def _events(rows: list[tuple]) -> pd.DataFrame:
    """Events from (customer, days before AS_OF, store) tuples."""
    return pd.DataFrame({
        "customer_id": [c for c, _, _ in rows],
        "timestamp": pd.Series([AS_OF - pd.Timedelta(days=d) for _, d, _ in rows],
                               dtype="datetime64[us]"),
        "event_type": "visit", "amount": np.nan,
        "store": pd.Series([s for *_, s in rows], dtype=object),
    })


CUSTOMERS = customers_frame({"customer_id": c, "signup_at": AS_OF - pd.Timedelta(days=500)}
                            for c in ("steady", "switched", "quiet"))
# both visited Berlin for a year; `switched` goes to Munich for the last 20 days
HISTORY = ([(c, d, "Berlin") for c in ("steady", "switched") for d in (300, 200, 120, 60, 40)]
           + [("steady", d, "Berlin") for d in (20, 10, 3)]
           + [("switched", d, "Munich") for d in (20, 10, 3)]
           + [("switched", 5, None), ("switched", 4, "  ")])  # unknown stores count nowhere


@pytest.mark.parametrize("evaluator", ["sql", "numpy"])
def test_a_store_switch_shows_in_every_contact_feature(evaluator):
    table = feature_table(CUSTOMERS, _events(HISTORY), SPEC, [AS_OF], evaluator=evaluator)
    rows = table.set_index("customer_id")[list(NAMES)]
    steady, switched, quiet = rows.loc["steady"], rows.loc["switched"], rows.loc["quiet"]
    assert steady.tolist()[:3] == [1.0, 1.0, 1.0] and np.isnan(steady.iloc[3])
    assert switched["contact_store_distinct_30d"] == 1.0  # only Munich in the last 30 days
    assert switched["contact_store_distinct_90d"] == 2.0 > steady["contact_store_distinct_90d"]
    assert switched["contact_store_usual_share_30d"] == 0.0  # Berlin is the usual store
    assert switched["contact_store_days_since_change"] == pytest.approx(20.0)
    assert quiet.tolist()[:2] == [0.0, 0.0] and quiet.iloc[2:].isna().all()


def test_the_top_reason_names_the_change_and_the_playbook_has_an_action():
    table = feature_table(CUSTOMERS, _events(HISTORY), SPEC, [AS_OF])
    texts = reason_templates(SPEC)

    @dataclass
    class Model:
        feature_names: list[str] = field(default_factory=lambda: list(NAMES))
        reason_texts: dict = field(default_factory=lambda: texts)

        def calibrate(self, raw):
            return 1.0 / (1.0 + np.exp(-raw))

    switched = table[table["customer_id"] == "switched"]
    contrib = np.array([[0.1, 0.2, 0.9, 0.4, -2.0]])  # the usual share raises the risk most
    (first, second, third, _), = top_reasons(Model(), switched, contrib, k=4)
    assert first["text"] == "Now deals with a different store than usual"
    assert second["text"] == "The store changed 20 days ago"
    assert third["text"] == "Dealt with 2 different stores in the last 90 days"
    assert family_for(load_playbook(), [first["feature"]]).name == "point_of_contact"


@pytest.mark.parametrize(("name", "value", "text"), [
    ("contact_store_distinct_30d", 3.0, "Dealt with 3 different stores in the last 30 days"),
    ("contact_store_distinct_30d", 1.0, "Dealt with one store in the last 30 days"),
    ("contact_store_distinct_30d", 0.0, "No store recorded in the last 30 days"),
    ("contact_store_usual_share_30d", 0.25,
     "Only 25% of the last 30 days' events were with the usual store"),
    ("contact_store_usual_share_30d", 1.0, "Still deals with the usual store"),
    ("contact_store_usual_share_30d", np.nan,
     "No usual store to compare the last 30 days with"),
    ("contact_store_days_since_change", 1.2, "The store changed 1 day ago"),
    ("contact_store_days_since_change", None, "The store has not changed so far"),
])
def test_contact_reasons_read_plainly(name, value, text):
    assert render_reason(reason_templates(SPEC)[name], value) == text
    account = FeatureSpec(event_types=(), contact_columns=("account_manager",))
    assert render_reason(reason_templates(account)["contact_account_manager_distinct_90d"],
                         2.0) == "Dealt with 2 different account managers in the last 90 days"


@pytest.mark.parametrize("evaluator", ["sql", "numpy"])
def test_ties_are_broken_by_the_text_and_then_by_time(evaluator):
    """The usual store of a tie is the smaller text; events at one instant are ordered by their
    store, so a change is found whichever order the rows came in."""
    rows = [("steady", 100, "b"), ("steady", 90, "a"), ("steady", 10, "a"),
            ("switched", 100, "x"), ("switched", 50, "y"), ("switched", 50, "x"),
            ("switched", 10, "y")]
    table = feature_table(CUSTOMERS, _events(rows), SPEC, [AS_OF], evaluator=evaluator)
    got = table.set_index("customer_id")
    assert got.loc["steady", "contact_store_usual_share_30d"] == 1.0  # 'a' beats 'b'
    assert got.loc["steady", "contact_store_days_since_change"] == pytest.approx(90.0)
    # x (100), then at 50 days x before y, then y (10): the last change is at 50 days
    assert got.loc["switched", "contact_store_days_since_change"] == pytest.approx(50.0)
    assert got.loc["switched", "contact_store_usual_share_30d"] == 0.0  # usual 'x', recent 'y'


def test_events_at_or_after_as_of_change_no_contact_feature():
    later = [("steady", d, "Hamburg") for d in (0, -1, -30)] + [("quiet", 0, "Munich")]
    past = feature_table(CUSTOMERS, _events(HISTORY), SPEC, [AS_OF])
    everything = feature_table(CUSTOMERS, _events(HISTORY + later), SPEC, [AS_OF])
    pd.testing.assert_frame_equal(everything, past)


def test_a_request_gets_the_features_of_the_table():
    """/predict's path (request histories to relations, then the NumPy evaluator) gives the
    contact features `churn score` computes from the files."""
    events = _events(HISTORY)
    requests, as_ofs = [], []
    for cid in ("steady", "switched", "quiet"):
        mine = events[events["customer_id"] == cid]
        requests.append(CustomerIn(
            customer_id=cid, signup_at=AS_OF - pd.Timedelta(days=500),
            events=[{"timestamp": t, "event_type": "visit",
                     "contacts": {} if s is None else {"store": s, "ignored": "x"}}
                    for t, s in zip(mine["timestamp"], mine["store"], strict=True)]))
        as_ofs.append(AS_OF.to_pydatetime())
    hist = histories_to_relations(requests, as_ofs, SPEC, [""] * 3)
    got = features_of_relations(hist.customers, hist.events, hist.obs, SPEC).to_frame()
    want = feature_table(CUSTOMERS, events, SPEC, [AS_OF])
    pd.testing.assert_frame_equal(got[list(NAMES)], want[list(NAMES)])


def test_old_specs_load_without_contacts_and_new_ones_round_trip():
    raw = FeatureSpec(event_types=("visit",)).to_json().replace(', "contact_columns": []', "")
    assert "contact_columns" not in raw
    assert FeatureSpec.from_json(raw).contact_columns == ()
    assert FeatureSpec.from_json(SPEC.to_json()) == SPEC


def test_contact_aggregates_are_checked_and_the_sql_stays_portable():
    with pytest.raises(ValueError, match="contact column"):
        Agg("contact_distinct", hi=30)
    with pytest.raises(ValueError, match="reference window"):
        Agg("contact_usual", hi=30, contact="store")
    with pytest.raises(ValueError, match="whole past"):
        Agg("contact_change_age", hi=30, contact="store")
    with pytest.raises(ValueError, match="all event types"):
        Agg("contact_events", "visit", contact="store")
    sql = feature_sql(SPEC)
    # window functions, COUNT(DISTINCT) and CASE: read alike by DuckDB and Spark SQL
    assert "LAG(j.c_store) OVER (PARTITION BY j.obs_id ORDER BY j.ts, j.c_store)" in sql
    assert "ROW_NUMBER() OVER (PARTITION BY obs_id ORDER BY n DESC, contact)" in sql
    assert "COUNT(DISTINCT CASE WHEN" in sql
    for unportable in ("QUALIFY", "FILTER (", "MODE(", "arg_max", "::"):
        assert unportable not in sql
