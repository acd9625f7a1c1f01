"""Point-in-time feature definitions: the `FeatureSpec` and its feature entries.

Every feature is one entry (`feature_entries`: a name and an expression over aggregates of the
customer's past events before the observation time, `features.expr`). `features.sql` renders
the entries as one query for batch work; `features.online` evaluates the same entries with NumPy
for small requests. Eligibility and labels are `features.observations`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property

from features.contract import AttributeKinds
from features.expr import (
    DAY,
    Agg,
    Expr,
    Feature,
    Row,
    case,
    coalesce,
    floor,
    greatest,
    least,
    nullif,
)

WINDOWS = (7, 30, 90)  # trailing feature windows in days
# buy-till-you-die summaries computed by the query (whole days: repeat days, first to last, first
# to the observation time) and the model-based ones computed from them with BG/NBD parameters
BTYD_SQL_FEATURES = ("btyd_frequency", "btyd_recency_days", "btyd_age_days")
BTYD_MODEL_FEATURES = ("btyd_p_alive", "btyd_p_inactive", "btyd_expected_events")
# 2: lifetime rate since the first recorded event; no future dates. 3: history_days.
# 4: text event columns are contacts (contact_<slug>_*) instead of being ignored
# 5: value sums and trends leave out the values of failed payments (`unpaid_types`)
FEATURE_VERSION = "5"
# contact features (per text event column): distinct contacts per window, the share of the
# recent window's events with the usual contact, the usual contact taken from (lo, hi] days ago
CONTACT_WINDOWS = (30, 90)
CONTACT_RECENT = 30
CONTACT_USUAL = (30.0, 365.0)


# an event type whose name says the money did not arrive (payment_failed, card_declined,
# direct_debit_bounced, chargeback): its amount is what was asked, not what was received
UNPAID = re.compile(r"(^|_)(fail|failed|failure|declined|bounced|rejected|unpaid|chargeback)(_|$)")


def is_unpaid(event_type: str) -> bool:
    """True for an event type whose value is money that was not received."""
    return UNPAID.search(slug(event_type)) is not None


def slug(name: str) -> str:
    """A lower-case identifier made of letters, digits and underscores."""
    text = re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_")
    return text or "x"


# per-type names must not collide with the totals (n_events_7d, days_since_last_event, ...)
RESERVED_SLUGS = frozenset({"events", "last_event", "all"})


def _unique_slugs(names: tuple[str, ...], reserved: frozenset[str] = frozenset()) -> dict[str, str]:
    out: dict[str, str] = {}
    used: set[str] = set(reserved)
    for name in names:
        base = slug(name)
        candidate, i = base, 2
        while candidate in used:
            candidate, i = f"{base}_{i}", i + 1
        used.add(candidate)
        out[name] = candidate
    return out



@dataclass(frozen=True)
class FeatureSpec:
    """What the feature table contains; learned from training data and stored with the model."""

    event_types: tuple[str, ...]
    value_columns: tuple[str, ...] = ()
    attributes: AttributeKinds = field(default_factory=AttributeKinds)
    windows: tuple[int, ...] = WINDOWS
    trend_recent: int = 30
    trend_earlier: int = 60
    # when the log began (epoch seconds): rows can tell "no events in 90 days" from "the log
    # began 20 days ago"
    log_start: float | None = None
    # buy-till-you-die features: frequency, recency and age per row, and from BG/NBD parameters
    # fitted on the past (`btyd_params`: r, alpha, a, b) P(alive), P(no event in the horizon)
    # and the expected number of events in it
    btyd_horizon_days: float | None = None
    btyd_params: dict[str, float] | None = None
    version: str = FEATURE_VERSION
    # the event types that count as activity (a purchase, a login; not an email the company
    # sent): the inactivity label, recency, the activity totals and BG/NBD read only these.
    # Empty: every event. The per-type features stay for every type.
    activity_types: tuple[str, ...] = ()
    # text event columns read as the customer's point of contact (a store, an agent, a channel)
    contact_columns: tuple[str, ...] = ()

    # -- names ---------------------------------------------------------------------------------
    @cached_property
    def type_slugs(self) -> dict[str, str]:
        return _unique_slugs(self.event_types, RESERVED_SLUGS)

    @cached_property
    def unpaid_types(self) -> tuple[str, ...]:
        """The event types whose values the value sums leave out (`is_unpaid`): a failed
        payment is not money received."""
        return tuple(t for t in self.event_types if is_unpaid(t))

    @cached_property
    def value_slugs(self) -> dict[str, str]:
        return _unique_slugs(self.value_columns)

    @cached_property
    def contact_slugs(self) -> dict[str, str]:
        return _unique_slugs(self.contact_columns)

    @cached_property
    def attribute_slugs(self) -> dict[str, str]:
        return {a: f"attr_{s}" for a, s in _unique_slugs(self.attributes.all).items()}

    @cached_property
    def categorical_features(self) -> tuple[str, ...]:
        slugs = self.attribute_slugs
        return tuple(slugs[a] for a in self.attributes.categorical)

    @cached_property
    def entries(self) -> tuple[Feature, ...]:
        """The feature entries (`feature_entries`), built once per spec."""
        return tuple(feature_entries(self))

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature column in output order (without customer_id and as_of): the entries,
        with the BG/NBD model columns after the btyd_* summaries."""
        names = []
        for f in self.entries:
            names.append(f.name)
            if f.name == BTYD_SQL_FEATURES[-1]:
                names += BTYD_MODEL_FEATURES
        return tuple(names)

    @cached_property
    def calendar_features(self) -> tuple[str, ...]:
        """Features that move with the calendar by construction: they grow (or cycle) as time
        passes for every customer whatever they do (tenure, the anniversary, the history the
        log holds, lifetime totals, days since a date attribute). Against a reference from an
        earlier period they drift by age alone, so drift in them never alarms by itself."""
        moving = {"tenure_days", "days_to_anniversary", "history_days", "events_lifetime",
                  *BTYD_SQL_FEATURES}
        moving |= {f"{self.attribute_slugs[a]}_days" for a in self.attributes.datetime}
        return tuple(f for f in self.feature_names if f in moving)

    @cached_property
    def subjects(self) -> dict[str, str]:
        """What each feature is about, where several describe the same thing: the features of
        one event type (`type:<slug>`: its counts, recency and trend), of one value column
        (`value:<slug>`) and of one contact column (`contact:<slug>`). Other features are about
        themselves. A page never says the same thing both raises and lowers the risk."""
        out = {}
        for s in self.type_slugs.values():
            for name in (*(f"n_{s}_{w}d" for w in self.windows), f"days_since_{s}", f"trend_{s}"):
                out[name] = f"type:{s}"
        wmax = max(self.windows)
        for s in self.value_slugs.values():
            for name in (*(f"{s}_sum_{w}d" for w in self.windows), f"{s}_mean_{wmax}d",
                         f"{s}_mean_lifetime", f"{s}_trend"):
                out[name] = f"value:{s}"
        for name in self.feature_names:
            for s in self.contact_slugs.values():
                if name.startswith(f"contact_{s}_"):
                    out[name] = f"contact:{s}"
        return {name: out.get(name, name) for name in self.feature_names}

    @property
    def btyd_features(self) -> tuple[str, ...]:
        if self.btyd_horizon_days is None:
            return ()
        return (*BTYD_SQL_FEATURES, *BTYD_MODEL_FEATURES)

    # -- serialisation ---------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        raw = json.loads(text)
        raw["attributes"] = AttributeKinds(**{k: tuple(v) for k, v in raw["attributes"].items()})
        for key in ("event_types", "value_columns", "windows", "activity_types",
                    "contact_columns"):
            if key in raw:  # absent from specs saved before they existed
                raw[key] = tuple(raw[key])
        return cls(**raw)


# ---------------------------------------------------------------------------------------------
# Features: one entry each, rendered as SQL here and evaluated with NumPy in features.online
# ---------------------------------------------------------------------------------------------


def _windows_all(spec: FeatureSpec) -> list[int]:
    return sorted(set(spec.windows) | {spec.trend_recent, spec.trend_recent + spec.trend_earlier})


def _trend(recent: Expr, earlier: Expr, spec: FeatureSpec) -> Expr:
    """Symmetric change of the daily rate, recent vs. earlier window, in [-1, 1].

    The earlier window's exposure is cut at signup, and the trend is NULL when that window
    lies wholly before signup. Both rates zero gives 0 (no change)."""
    exposure = least(greatest(_tenure() - float(spec.trend_recent), 0.0), float(spec.trend_earlier))
    r = recent / float(spec.trend_recent)
    p = earlier / nullif(exposure, 0.0)
    known = exposure > 0.0
    return case((known.and_((r + p).eq(0.0)), 0.0), (known, (r - p) / nullif(r + p, 0.0)))


def _tenure() -> Expr:
    return (Row("as_of") - Row("signup")) / DAY


def _nonnegative(name: str, expr, words: dict) -> Feature:
    """A count, a day count or a ratio of them: never below 0."""
    return Feature(name, expr, lower=0.0, words=words)


def _plain(text: str) -> dict:
    return {"kind": "plain", "text": text}


def _plural(event_type: str) -> str:
    """An event type as words: `payment_failed` as "'payment failed' events"."""
    return f"'{event_type.replace('_', ' ')}' events"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _noun(column: str, plural: bool = False) -> str:
    """A contact column as words: `account_manager` as 'account manager(s)'."""
    words = column.replace("_", " ").strip().lower()
    if not plural:
        return words
    return words + ("es" if words.endswith(("s", "x", "ch", "sh")) else "s")


def model_column_words(spec: FeatureSpec) -> dict[str, dict]:
    """How reasons name BG/NBD's model columns, which are computed after the query and so have
    no entry of their own."""
    if spec.btyd_horizon_days is None:
        return {}
    h = f"{spec.btyd_horizon_days:g}"
    return {
        "btyd_p_alive": _plain("Their rhythm so far gives a {v:.0%} chance that they are still "
                               "a customer (BG/NBD)"),
        "btyd_p_inactive": _plain("Their rhythm so far gives a {v:.0%} chance of no activity "
                                  f"in the next {h} days (BG/NBD)"),
        "btyd_expected_events": _plain("Their rhythm so far predicts {v:.1f} active days in the "
                                       f"next {h} days (BG/NBD)"),
    }


def feature_words(spec: FeatureSpec) -> dict[str, dict]:
    """Every feature's words (its entry's, and the BG/NBD model columns'), with the trend
    windows every template may use."""
    words = {f.name: dict(f.words or {"kind": "plain", "text": f.name + " = {v}"})
             for f in spec.entries}
    words.update(model_column_words(spec))
    for template in words.values():
        template.setdefault("recent", spec.trend_recent)
        template.setdefault("earlier", spec.trend_earlier)
    return words


def _contact_entries(spec: FeatureSpec) -> list[Feature]:
    """The point of contact, per text event column C (slug s); events whose C is missing are
    left out of all four:

    - contact_s_distinct_30d, _90d: how many different values of C the events of the last 30
      (90) days have;
    - contact_s_usual_share_30d: the share of the last 30 days' events whose C is the usual
      one, the most frequent C among the events 30 to 365 days old (ties to the smallest text);
      missing without events in either window;
    - contact_s_days_since_change: days since the latest event whose C differs from the C of
      the event before it (events ordered by time, then C); missing while C never changed.

    A switch of store shows as more distinct contacts, a falling usual share and few days since
    the change. The raw text is compared, never one-hot encoded: any number of contacts."""
    rec, (usual_lo, usual_hi) = CONTACT_RECENT, CONTACT_USUAL
    out = []
    for col, s in spec.contact_slugs.items():
        def agg(kind, lo=None, hi=None, ref=None, s=s):
            return Agg(kind, lo=lo, hi=hi, contact=s, ref=ref)

        noun, nouns = _noun(col), _noun(col, plural=True)
        out += [_nonnegative(f"contact_{s}_distinct_{w}d", agg("contact_distinct", hi=w),
                             {"kind": "contact_distinct", "w": w, "noun": noun, "nouns": nouns})
                for w in CONTACT_WINDOWS]
        usual = agg("contact_usual", hi=rec, ref=(usual_lo, usual_hi))
        earlier = agg("contact_events", lo=usual_lo, hi=usual_hi)
        out += [
            _nonnegative(f"contact_{s}_usual_share_{rec}d", case(
                (earlier >= 1.0, usual / nullif(agg("contact_events", hi=rec), 0.0))),
                {"kind": "contact_usual", "w": rec, "noun": noun}),
            _nonnegative(f"contact_{s}_days_since_change", agg("contact_change_age") / DAY,
                         {"kind": "contact_change", "noun": noun}),
        ]
    return out


def feature_entries(spec: FeatureSpec) -> list[Feature]:
    """Every feature the query computes, one entry each, in output order (the BG/NBD model
    columns are added after the query, from the btyd_* summaries: features.engine)."""
    rec, prev_hi = spec.trend_recent, spec.trend_recent + spec.trend_earlier
    wmax = max(spec.windows)
    active_types = spec.activity_types or None  # None: every event is activity

    def activity(kind: str, lo: float | None = None, hi: float | None = None) -> Agg:
        """An aggregate of the activity events (every event without activity types)."""
        return Agg(kind, lo=lo, hi=hi, event_types=active_types)

    n_all, min_age, max_age = activity("count"), activity("min_age"), activity("max_age")
    since = Row("as_of") - (greatest(Row("signup"), float(spec.log_start))
                            if spec.log_start is not None else Row("signup"))
    tenure = _tenure()
    out = [
        _nonnegative("tenure_days", tenure, {"kind": "tenure"}),
        # renewals: annual contracts are mostly left around the signup anniversary
        _nonnegative("days_to_anniversary", 365.0 - (tenure - 365.0 * floor(tenure / 365.0)),
                     _plain("{v:,.0f} days to the signup anniversary (renewal)")),
        # days of this customer's history the log holds, up to the longest window
        _nonnegative("history_days", least(greatest(since / DAY, 0.0), float(wmax)),
                     _plain("{v:.0f} days of history in the log")),
    ]
    for w in spec.windows:
        out += [_nonnegative(f"n_events_{w}d", activity("count", hi=w),
                             {"kind": "count", "label": "Events", "w": w}),
                _nonnegative(f"active_days_{w}d", activity("days", hi=w),
                             {"kind": "active_days", "w": w})]
    out += [
        _nonnegative("days_since_last_event", min_age / DAY,
                     {"kind": "days_since", "label": "activity"}),
        _nonnegative("events_lifetime", n_all, _plain("{v:.0f} events since the log began")),
        # per day since the customer's first recorded event, not since signup: a customer who
        # signed up before the log began would otherwise look quieter the earlier the log starts
        _nonnegative("events_per_day_lifetime", n_all / greatest(coalesce(max_age, 0.0) / DAY, 1.0),
                     _plain("{v:.2f} events per day since the first recorded one")),
        _nonnegative(f"events_per_active_day_{wmax}d",
                     activity("count", hi=wmax) / nullif(activity("days", hi=wmax), 0.0),
                     _plain(f"{{v:.1f}} events per active day in the last {wmax} days")),
        _nonnegative("mean_gap_days", case((n_all >= 2, (max_age - min_age) / DAY / (n_all - 1.0))),
                     _plain("Usually {v:.1f} days between events")),
        _nonnegative("overdue_ratio", case(((n_all >= 2).and_(max_age > min_age),
                                            min_age / ((max_age - min_age) / (n_all - 1.0)))),
                     _plain("Time since the last event is {v:.1f}x the usual gap")),
        Feature("trend_events", _trend(activity("count", hi=rec),
                                       activity("count", lo=rec, hi=prev_hi), spec),
                words={"kind": "trend", "label": "Activity"}),
    ]
    for etype, s in spec.type_slugs.items():
        label = _capital(_plural(etype))
        out += [_nonnegative(f"n_{s}_{w}d", Agg("count", etype, hi=w),
                             {"kind": "count", "label": label, "w": w}) for w in spec.windows]
        out += [
            _nonnegative(f"days_since_{s}", Agg("min_age", etype) / DAY,
                         {"kind": "days_since", "label": f"'{etype.replace('_', ' ')}'"}),
            Feature(f"trend_{s}", _trend(Agg("count", etype, hi=rec),
                                         Agg("count", etype, lo=rec, hi=prev_hi), spec),
                    words={"kind": "trend", "label": label}),
        ]
    unpaid = spec.unpaid_types
    left_out = " (failed payments left out)" if unpaid else ""
    for col, s in spec.value_slugs.items():
        def total(lo=None, hi=None, s=s):
            return Agg("sum", lo=lo, hi=hi, value=s)

        def known(lo=None, hi=None, s=s):
            return Agg("count_values", lo=lo, hi=hi, value=s)

        def received(lo=None, hi=None, s=s):
            """The values of every event but the unpaid ones (a type the spec does not know
            still counts, as in every total)."""
            out = coalesce(total(lo=lo, hi=hi), 0.0)
            for t in unpaid:
                out = out - coalesce(Agg("sum", t, lo=lo, hi=hi, value=s), 0.0)
            return out

        out += [Feature(f"{s}_sum_{w}d", received(hi=w),
                        words=_plain(f"Total {col} in the last {w} days{left_out}: {{v:,.2f}}"))
                for w in spec.windows]
        out += [
            Feature(f"{s}_mean_{wmax}d", total(hi=wmax) / nullif(known(hi=wmax), 0.0),
                    words=_plain(f"Average {col} per event in the last {wmax} days: {{v:,.2f}}")),
            Feature(f"{s}_mean_lifetime", total() / nullif(known(), 0.0),
                    words=_plain(f"Average {col} per event overall: {{v:,.2f}}")),
            Feature(f"{s}_trend", _trend(received(hi=rec), received(lo=rec, hi=prev_hi), spec),
                    words={"kind": "trend", "label": f"Total {col}"}),
        ]
    out += _contact_entries(spec)
    if spec.btyd_horizon_days is not None:
        # repeat days, first to last active day, first active day to the observation time
        first_day, last_day = floor(activity("min_ts") / DAY), floor(activity("max_ts") / DAY)
        out += [
            _nonnegative("btyd_frequency", case((n_all >= 1, activity("days") - 1.0)),
                         _plain("Active on {v:,.0f} more days after the first active day")),
            _nonnegative("btyd_recency_days", last_day - first_day,
                         _plain("{v:,.0f} days from the first to the last active day")),
            _nonnegative("btyd_age_days", (Row("as_of") - first_day * DAY) / DAY,
                         _plain("First active {v:,.0f} days ago")),
        ]
    attr = spec.attribute_slugs
    out += [Feature(attr[a], Row(attr[a]), words=_plain(f"{a} is {{v:g}}"))
            for a in spec.attributes.numeric]
    out += [Feature(attr[a], Row(attr[a]), categorical=True,
                    words={"kind": "category", "label": a}) for a in spec.attributes.categorical]
    # a date attribute after the observation time cannot be known then: missing, not negative
    out += [Feature(f"{attr[a]}_days", case((Row(attr[a]) <= Row("as_of"),
                                             (Row("as_of") - Row(attr[a])) / DAY)), lower=0.0,
                    words=_plain(f"{a} was {{v:,.0f}} days before"))
            for a in spec.attributes.datetime]
    return out

