"""Smoke tests of the synthetic history generator against the data contract and the engine."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import Tables, drop_unknown_customers, validate_customers, validate_events
from features.engine import feature_table, infer_spec
from features.generate import generate


@pytest.mark.parametrize("kind", ["subscription", "retail"])
def test_generated_data_follows_the_contract(kind):
    customers, events = generate(60, seed=3, kind=kind)
    again = generate(60, seed=3, kind=kind)
    pd.testing.assert_frame_equal(customers, again[0])
    pd.testing.assert_frame_equal(events, again[1])

    customers, kinds = validate_customers(customers, "generated customers")
    events, value_cols, _ = validate_events(events, "generated events")
    events, dropped = drop_unknown_customers(events, customers)
    assert dropped == 0
    assert "date_of_birth" in kinds.datetime
    assert "country" in kinds.categorical
    assert value_cols[0] == "amount"

    spec = infer_spec(Tables(customers, events, kinds, value_cols))
    table = feature_table(customers, events, spec, [pd.Timestamp("2026-03-01")])
    assert list(table.columns) == ["customer_id", "as_of", *spec.feature_names]
    assert len(table) > 0
    assert table["tenure_days"].ge(0).all()


@pytest.mark.parametrize(("args", "message"), [((0,), "at least 1"),
                                                ((5, 0, "wholesale"), "kind must be one of")])
def test_generate_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        generate(*args)
