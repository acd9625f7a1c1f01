"""One population: at any time, the customers that snapshots (and so training) label are exactly
the customers that scoring scores, for both labels."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import AttributeKinds, Tables
from features.engine import build_snapshots, feature_table
from tests.unit.builders import AS_OF, DAY, customers_frame, events_frame, spec_for

customer = st.tuples(
    st.integers(-400, 30),  # signup, days from AS_OF
    st.one_of(st.none(), st.integers(-300, 200)),  # churn, days from AS_OF
    st.lists(st.integers(-400, 100), max_size=6),  # event days from AS_OF
)


@pytest.mark.parametrize("label", ["explicit", "inactivity"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.lists(customer, min_size=1, max_size=12))
def test_snapshots_label_exactly_whom_scoring_scores(label, people):
    rows, events = [], []
    for i, (signup, churn, days) in enumerate(people):
        churned = None if churn is None or churn < signup else AS_OF + churn * DAY
        rows.append({"customer_id": f"c{i}", "signup_at": AS_OF + signup * DAY,
                     "churned_at": churned})
        events += [(f"c{i}", AS_OF + d * DAY + pd.Timedelta(hours=1), "login") for d in days
                   if d >= signup]
    customers = customers_frame(rows)
    tables = Tables(customers, events_frame(events), AttributeKinds(), ())
    spec = spec_for(value_columns=())
    snapshots = build_snapshots(tables, spec, label, 30, 30, times=[AS_OF])
    scored = feature_table(customers, tables.events, spec, [AS_OF])  # what score_batch scores
    assert sorted(snapshots["customer_id"]) == sorted(scored["customer_id"])
