"""Reasons explain risk: the top reasons raise it, and the factors that lower it are a separate
list, so a low-risk customer is never told that what keeps them is why they may leave."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scoring.reasons import top_reasons


@dataclass
class Model:
    """The parts of ChurnModel that reasons read: names, texts and the calibration map."""

    feature_names: list[str]
    reason_texts: dict = field(default_factory=dict)

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-raw))


MODEL = Model(["a", "b", "c", "d"])
FEATURES = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, np.nan], "c": [5.0, 6.0], "d": [7.0, 8.0]})
# per feature, then the base value; row 0 has two raising factors, row 1 none
CONTRIB = np.array([[0.8, -0.5, 0.3, -0.1, -2.0],
                    [-0.2, -0.6, -0.1, 0.0, -2.0]])


def test_top_reasons_only_raise_the_risk():
    raising = top_reasons(MODEL, FEATURES, CONTRIB, k=3)
    assert [r["feature"] for r in raising[0]] == ["a", "c"]
    assert raising[1] == []  # nothing raises this customer's risk: no reason is invented
    assert all(r["contribution"] > 0 and r["effect"] > 0 for r in raising[0])


def test_lowering_reasons_are_a_separate_list():
    lowering = top_reasons(MODEL, FEATURES, CONTRIB, k=2, raising=False)
    assert [r["feature"] for r in lowering[0]] == ["b", "d"]
    assert [r["feature"] for r in lowering[1]] == ["b", "a"]
    assert all(r["contribution"] < 0 and r["effect"] < 0 for row in lowering for r in row)
    assert lowering[1][0]["value"] is None  # a missing value is None, not NaN


def test_effect_is_the_probability_with_minus_without_the_factor():
    (first, _), _ = top_reasons(MODEL, FEATURES, CONTRIB, k=2)
    margin = CONTRIB[0].sum()
    expected = MODEL.calibrate(np.array([margin]))[0] - MODEL.calibrate(np.array([margin - 0.8]))[0]
    assert np.isclose(first["effect"], expected)


def test_every_feature_has_words_of_its_own():
    """No feature falls back to "name = value": BG/NBD's, contacts' and attributes' included."""
    from features.contract import AttributeKinds
    from features.definitions import FeatureSpec
    from scoring.reasons import reason_templates, render_reason

    spec = FeatureSpec(("login", "payment"), value_columns=("amount",),
                       attributes=AttributeKinds(numeric=("seats",), categorical=("plan",),
                                                 datetime=("date_of_birth",)),
                       contact_columns=("store",), btyd_horizon_days=30.0,
                       btyd_params={"r": 1.0, "alpha": 2.0, "a": 0.5, "b": 2.0})
    templates = reason_templates(spec)
    missing = [f for f in spec.feature_names if f not in templates]
    assert not missing
    # the words live on each feature's own entry
    assert all(entry.words for entry in spec.entries)
    for name in spec.feature_names:
        text = render_reason(templates[name], 0.25)
        assert name not in text and "=" not in text, (name, text)
    assert "30 days" in render_reason(templates["btyd_p_inactive"], 0.8)
