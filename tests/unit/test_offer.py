"""The offer rule lives in one place: p x save rate x value > cost, for one customer, a batch
and the profit curve alike."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import AttributeKinds
from scoring.predictor import add_targeting, customer_value, offer_decision, offer_if_valued
from scoring.settings import Offer
from tests.unit.builders import spec_for
from training.metrics import profit_curve

OFFER = Offer()  # cost 10, save rate 0.25, value amount_sum_30d x 12


@pytest.mark.parametrize(("p", "value", "saving", "pays"), [
    (0.5, 1200.0, 150.0, True),  # 0.5 x 0.25 x 1200 > 10
    (0.3, 240.0, 18.0, True),
    (0.01, 1200.0, 3.0, False),
    (0.1, 48.0, 1.2, False),
    (0.9, None, None, False),  # value unknown: no offer
    (0.9, float("nan"), None, False),
])
def test_offer_pays_when_expected_saving_exceeds_cost(p, value, saving, pays):
    decision = offer_decision(OFFER, p, value)
    assert decision.expected_saving == (None if saving is None else pytest.approx(saving))
    assert decision.pays is pays


def test_value_is_a_feature_or_a_numeric_attribute_times_the_multiplier():
    spec = spec_for(attributes=AttributeKinds(numeric=("seats",)))
    seats = spec.attribute_slugs["seats"]
    feats = pd.DataFrame({"amount_sum_30d": [10.0, np.nan], seats: [2.0, 3.0]})
    assert customer_value(feats, OFFER, spec)[0] == 120.0
    assert np.isnan(customer_value(feats, OFFER, spec)[1])
    by_seat = Offer(value_column="seats", value_multiplier=2)
    assert customer_value(feats, by_seat, spec).tolist() == [4.0, 6.0]
    with pytest.raises(ValueError, match="'plan' is neither a feature nor a numeric attribute"):
        customer_value(feats, Offer(value_column="plan"), spec)
    assert offer_if_valued(Offer(value_column="plan"), spec) is None
    assert offer_if_valued(by_seat, spec) is by_seat


def test_batch_targeting_and_profit_curve_agree_with_the_single_decision():
    rng = np.random.default_rng(0)
    p, value = rng.uniform(0, 1, 50), rng.uniform(0, 200, 50)
    scores = add_targeting(pd.DataFrame({"churn_probability": p}), value, OFFER)
    single = [offer_decision(OFFER, pi, vi).pays for pi, vi in zip(p, value, strict=True)]
    assert scores["contact"].tolist() == single
    curve = profit_curve(p, value, OFFER)
    best = int(np.argmax(curve["expected"]))
    assert best == sum(single)  # contacting exactly those who pay maximises expected profit
