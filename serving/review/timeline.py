"""A customer's recent interactions: weekly activity, weeks where it thins out, and the
warning-sign events the playbook names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from campaigns.playbook import Playbook, sign_for
from features.contract import EVENT_TYPE, TIMESTAMP


@dataclass
class Week:
    start: pd.Timestamp
    activity: int
    thinning: bool


@dataclass
class SignEvent:
    at: pd.Timestamp
    event_type: str
    sign: str
    label: str


@dataclass
class SignSummary:
    sign: str
    label: str
    recent: int  # in the last 30 days
    earlier: int  # in the 30 days before
    total: int  # in the whole timeline

    @property
    def rising(self) -> bool:
        return self.recent > self.earlier


@dataclass
class TimelineData:
    start: pd.Timestamp
    as_of: pd.Timestamp
    weeks: list[Week]
    signs: list[SignEvent]
    summaries: list[SignSummary]
    activity_types: list[str]
    usual: float  # the customer's usual activity per week (see `customer_timeline`)
    threshold: float  # a week below this is marked as thinning out
    usual_from: str  # where `usual` comes from, in words

    @property
    def thinning_weeks(self) -> int:
        return sum(w.thinning for w in self.weeks)

    @property
    def recent_weeks(self) -> int:
        """How many of the newest weeks make up the "last 30 days" the reasons speak of."""
        return min(RECENT_WEEKS, len(self.weeks))

    @property
    def recent_thinning_weeks(self) -> int:
        """Thinning weeks among the newest `recent_weeks`: the page says where they fall, so
        "thinned out in 9 of 17 weeks" does not read against "rose 80% in the last 30 days"
        when the thin weeks are the older ones."""
        return sum(w.thinning for w in self.weeks[len(self.weeks) - self.recent_weeks:])


REFERENCE_WEEKS = 8
RECENT_WEEKS = 4  # about the last 30 days


def customer_timeline(events: pd.DataFrame, as_of: pd.Timestamp, playbook: Playbook) -> TimelineData:
    """The last `timeline.days` before as_of: weekly activity (event types that are no warning
    sign), weeks where it thins out, and the warning-sign events (event types mapped by the
    playbook's patterns).

    One visible rule marks thinning: the customer's usual week is their average activity per
    week over the 8 weeks before the period shown (or, without activity then, over the period
    shown), and every week below `thinning_ratio` of it is marked, empty weeks included. Weeks
    before the customer's first recorded activity are neither counted nor marked."""
    cfg = playbook.timeline
    start = as_of - timedelta(days=cfg.days)
    n_weeks = cfg.days // 7
    lookback = REFERENCE_WEEKS
    first = as_of - timedelta(days=7 * (n_weeks + lookback))
    history = events[events[TIMESTAMP] < as_of]
    all_types = history[EVENT_TYPE].astype(str)
    sign_of = {t: sign_for(playbook, t) for t in all_types.unique()}
    plain = history[all_types.map(sign_of).isna().to_numpy(dtype=bool)]
    first_seen = plain[TIMESTAMP].min() if len(plain) else None
    ev = history[history[TIMESTAMP] >= min(first, start)]
    types = ev[EVENT_TYPE].astype(str)
    is_sign = types.map(sign_of).notna().to_numpy(dtype=bool)
    activity = ev[~is_sign]
    ages = ((as_of - activity[TIMESTAMP]) / timedelta(days=7)).to_numpy()  # weeks before as_of
    counts = np.bincount(np.floor(ages).astype(int), minlength=n_weeks + lookback)[: n_weeks + lookback]

    def known(k: int) -> bool:  # the week k weeks back ends after the first recorded event
        return first_seen is not None and as_of - timedelta(days=7 * k) > first_seen

    reference = [counts[k] for k in range(n_weeks, n_weeks + lookback) if known(k)]
    usual, usual_from = 0.0, "no activity recorded"
    if reference and np.mean(reference) > 0:
        usual = float(np.mean(reference))
        usual_from = f"the {len(reference)} weeks before this period"
    else:
        shown_weeks = [counts[k] for k in range(n_weeks) if known(k)]
        if shown_weeks and np.mean(shown_weeks) > 0:
            usual = float(np.mean(shown_weeks))
            usual_from = "the weeks shown (no activity before them)"
    threshold = cfg.thinning_ratio * usual
    weeks = []
    for k in range(n_weeks - 1, -1, -1):  # oldest first
        thin = bool(usual > 0 and known(k) and counts[k] < threshold)
        weeks.append(Week(as_of - timedelta(days=7 * (k + 1)), int(counts[k]), thin))
    shown = ev[is_sign & (ev[TIMESTAMP] >= start).to_numpy()]
    signs = [SignEvent(t, str(e), sign_of[str(e)], cfg.signs[sign_of[str(e)]].label)
             for t, e in zip(shown[TIMESTAMP], shown[EVENT_TYPE])]
    month = timedelta(days=30)
    summaries = []
    for name, sign in cfg.signs.items():
        times = [s.at for s in signs if s.sign == name]
        summaries.append(SignSummary(
            name, sign.label, sum(t >= as_of - month for t in times),
            sum(as_of - 2 * month <= t < as_of - month for t in times), len(times)))
    recent_activity = activity[activity[TIMESTAMP] >= start][EVENT_TYPE].astype(str)
    return TimelineData(start, as_of, weeks, signs, summaries,
                        sorted(recent_activity.unique()), usual, threshold, usual_from)



def sign_counts(events: pd.DataFrame, as_of: pd.Timestamp, playbook: Playbook
                ) -> dict[str, dict[str, int]]:
    """For each family that weighs its evidence, per customer: the events of its sign in the
    `evidence.days` before as_of, as {customer_id: {sign: count}} (customers with none are
    absent). One pass over the events, for the whole list at once."""
    wanted = {f.evidence.sign: f.evidence.days for f in playbook.families.values() if f.evidence}
    if not wanted or events.empty:
        return {}
    types = events[EVENT_TYPE].astype(str)
    sign_of = {t: sign_for(playbook, t) for t in types.unique()}
    signs = types.map(sign_of)
    out: dict[str, dict[str, int]] = {}
    for sign, days in wanted.items():
        keep = ((signs == sign) & (events[TIMESTAMP] < as_of)
                & (events[TIMESTAMP] >= as_of - timedelta(days=days))).to_numpy(dtype=bool)
        per = events.loc[keep, "customer_id"].astype(str).value_counts()
        for customer, n in per.items():
            out.setdefault(customer, {})[sign] = int(n)
    return out
