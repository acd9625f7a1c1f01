"""Time to churn after an observation time (features.observations.duration_sql): the event is
the label's moved along the time axis, censored where the data ends, and it agrees with the
label at the horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.observations import (
    DURATION,
    OBSERVED,
    churn_durations,
    data_end,
    label_observations,
)
from features.relations import Relations
from tests.unit.builders import AS_OF, DAY, customers_frame, events_frame, spec_for

T = AS_OF
H = 30
LONG_AGO = T - 100 * DAY


def _durations(customers, events, kind, end, horizon=H) -> dict[str, tuple[float, bool]]:
    rel = Relations(customers, events, spec_for())
    pairs = pd.DataFrame({"customer_id": customers["customer_id"], "as_of": T})
    got = churn_durations(rel, pairs, kind, horizon, end)
    return {c: (round(d, 6), bool(o)) for c, d, o in
            zip(pairs["customer_id"], got[DURATION], got[OBSERVED], strict=True)}


def test_explicit_duration_is_the_days_to_the_churn_date_or_censored_at_the_end():
    customers = customers_frame([
        {"customer_id": "soon", "signup_at": LONG_AGO, "churned_at": T + 3 * DAY},
        {"customer_id": "late", "signup_at": LONG_AGO, "churned_at": T + 200 * DAY},
        {"customer_id": "stays", "signup_at": LONG_AGO},
    ])
    end = T + 250 * DAY
    assert _durations(customers, events_frame([]), "explicit", end) == {
        "soon": (3.0, True), "late": (200.0, True), "stays": (250.0, False)}


def test_inactivity_duration_is_the_start_of_the_first_lapse():
    customers = customers_frame([{"customer_id": c, "signup_at": LONG_AGO} for c in
                                 ("quiet", "then_quiet", "regular", "gap_after_two", "recent")])
    events = events_frame([
        ("quiet", T - DAY, "login"),                       # nothing after T: lapse at T
        ("then_quiet", T + 5 * DAY, "login"),              # last event 5 days after T
        *[("regular", T + k * 10 * DAY, "login") for k in range(1, 20)],  # never 30 days apart
        ("gap_after_two", T + 2 * DAY, "login"), ("gap_after_two", T + 9 * DAY, "login"),
        ("gap_after_two", T + 50 * DAY, "login"),          # 41 quiet days after day 9
        ("recent", T + 2 * DAY, "login"), ("recent", T + 185 * DAY, "login"),
    ])
    end = T + 200 * DAY
    got = _durations(customers, events, "inactivity", end)
    assert got["quiet"] == (0.0, True)
    assert got["then_quiet"] == (5.0, True)
    assert got["gap_after_two"] == (9.0, True)
    assert got["recent"] == (2.0, True)  # the lapse after day 2 ends at day 185
    # the regular customer's last event (day 190) cannot be a lapse yet: censored where a lapse
    # can last be seen, at end - horizon
    assert got["regular"] == (170.0, False)


def test_a_lapse_is_seen_only_once_its_horizon_is_in_the_data():
    customers = customers_frame([{"customer_id": "c", "signup_at": LONG_AGO}])
    events = events_frame([("c", T + 10 * DAY, "login")])
    assert _durations(customers, events, "inactivity", T + 39 * DAY) == {"c": (9.0, False)}
    assert _durations(customers, events, "inactivity", T + 40 * DAY) == {"c": (10.0, True)}


@pytest.mark.parametrize("kind", ["explicit", "inactivity"])
def test_the_duration_agrees_with_the_label(kind):
    """explicit: label = duration <= horizon; inactivity: label = duration == 0 (both observed
    wherever the label is)."""
    rng = np.random.default_rng(3)
    n = 300
    signup = [LONG_AGO] * n
    churn = [T + float(d) * DAY if d < 150 else None for d in rng.uniform(0.5, 300, n)]
    customers = customers_frame([{"customer_id": f"c{i}", "signup_at": signup[i],
                                  **({"churned_at": churn[i]} if churn[i] is not None else {})}
                                 for i in range(n)])
    events = events_frame([(f"c{i}", T + float(d) * DAY, "login") for i in range(n)
                           for d in np.sort(rng.exponential(40, rng.integers(0, 6)))])
    end = data_end(customers, events)
    rel = Relations(customers, events, spec_for())
    labels = label_observations(rel, [T], kind, H)
    got = churn_durations(rel, labels[["customer_id", "as_of"]], kind, H, end)
    d, o = got[DURATION].to_numpy(), got[OBSERVED].to_numpy()
    expected = (d <= H) & o if kind == "explicit" else (d == 0) & o
    assert (labels["label"].to_numpy() == expected).all()
    assert (d >= 0).all()
