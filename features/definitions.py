"""Point-in-time feature and label definitions.

Every feature is one entry (`feature_entries`: a name and an expression over aggregates of the
customer's past events, `features.expr`). `feature_sql` renders the entries as one query for
batch work; `features.online` evaluates the same entries with NumPy for small requests. Labels
and eligibility are written here as SQL.

The SQL sticks to what DuckDB and Spark SQL both accept (CASE, SUM, COUNT DISTINCT, LEAST,
GREATEST, arithmetic on DOUBLE). Every timestamp is a DOUBLE of epoch seconds, so no
engine-specific date function is needed. The queries read three relations:

- `obs(obs_id, customer_id, as_of)`: the (customer, observation time) pairs;
- `customers(customer_id, signup, churned, attr_*)`;
- `events(customer_id, ts, event_type, v_*, c_*)`: `v_*` numeric values, `c_*` text contacts
  (a store, an agent: `FeatureSpec.contact_columns`).

Nothing at or after `as_of` reaches a feature: every event is filtered to `ts < as_of`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property

from features.contract import AttributeKinds
from features.expr import (
    CONTACT_KINDS,
    COUNT_KINDS,
    DAY,
    Agg,
    Expr,
    Feature,
    Row,
    aggregates,
    case,
    coalesce,
    floor,
    greatest,
    least,
    nullif,
    sql_literal,
    to_sql,
)
from features.expr import rows as expr_rows

WINDOWS = (7, 30, 90)  # trailing feature windows in days
# buy-till-you-die summaries computed by the query (whole days: repeat days, first to last, first
# to the observation time) and the model-based ones computed from them with BG/NBD parameters
BTYD_SQL_FEATURES = ("btyd_frequency", "btyd_recency_days", "btyd_age_days")
BTYD_MODEL_FEATURES = ("btyd_p_alive", "btyd_p_inactive", "btyd_expected_events")
# 2: lifetime rate since the first recorded event; no future dates. 3: history_days.
# 4: text event columns are contacts (contact_<slug>_*) instead of being ignored
FEATURE_VERSION = "4"
# contact features (per text event column): distinct contacts per window, the share of the
# recent window's events with the usual contact, the usual contact taken from (lo, hi] days ago
CONTACT_WINDOWS = (30, 90)
CONTACT_RECENT = 30
CONTACT_USUAL = (30.0, 365.0)


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


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _type_in(column: str, types: tuple[str, ...]) -> str:
    """`column IN ('a', 'b')`: the event type is one of `types` (DuckDB and Spark alike)."""
    return f"{column} IN ({', '.join(_sql_str(t) for t in types)})"


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


def _nonnegative(name: str, expr) -> Feature:
    """A count, a day count or a ratio of them: never below 0."""
    return Feature(name, expr, lower=0.0)


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
    for s in spec.contact_slugs.values():
        def agg(kind, lo=None, hi=None, ref=None, s=s):
            return Agg(kind, lo=lo, hi=hi, contact=s, ref=ref)

        out += [_nonnegative(f"contact_{s}_distinct_{w}d", agg("contact_distinct", hi=w))
                for w in CONTACT_WINDOWS]
        usual = agg("contact_usual", hi=rec, ref=(usual_lo, usual_hi))
        earlier = agg("contact_events", lo=usual_lo, hi=usual_hi)
        out += [
            _nonnegative(f"contact_{s}_usual_share_{rec}d", case(
                (earlier >= 1.0, usual / nullif(agg("contact_events", hi=rec), 0.0)))),
            _nonnegative(f"contact_{s}_days_since_change", agg("contact_change_age") / DAY),
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
        _nonnegative("tenure_days", tenure),
        # renewals: annual contracts are mostly left around the signup anniversary
        _nonnegative("days_to_anniversary", 365.0 - (tenure - 365.0 * floor(tenure / 365.0))),
        # days of this customer's history the log holds, up to the longest window
        _nonnegative("history_days", least(greatest(since / DAY, 0.0), float(wmax))),
    ]
    for w in spec.windows:
        out += [_nonnegative(f"n_events_{w}d", activity("count", hi=w)),
                _nonnegative(f"active_days_{w}d", activity("days", hi=w))]
    out += [
        _nonnegative("days_since_last_event", min_age / DAY),
        _nonnegative("events_lifetime", n_all),
        # per day since the customer's first recorded event, not since signup: a customer who
        # signed up before the log began would otherwise look quieter the earlier the log starts
        _nonnegative("events_per_day_lifetime", n_all / greatest(coalesce(max_age, 0.0) / DAY, 1.0)),
        _nonnegative(f"events_per_active_day_{wmax}d",
                activity("count", hi=wmax) / nullif(activity("days", hi=wmax), 0.0)),
        _nonnegative("mean_gap_days", case((n_all >= 2, (max_age - min_age) / DAY / (n_all - 1.0)))),
        _nonnegative("overdue_ratio", case(((n_all >= 2).and_(max_age > min_age),
                                       min_age / ((max_age - min_age) / (n_all - 1.0))))),
        Feature("trend_events", _trend(activity("count", hi=rec),
                                       activity("count", lo=rec, hi=prev_hi), spec)),
    ]
    for etype, s in spec.type_slugs.items():
        out += [_nonnegative(f"n_{s}_{w}d", Agg("count", etype, hi=w)) for w in spec.windows]
        out += [
            _nonnegative(f"days_since_{s}", Agg("min_age", etype) / DAY),
            Feature(f"trend_{s}", _trend(Agg("count", etype, hi=rec),
                                         Agg("count", etype, lo=rec, hi=prev_hi), spec)),
        ]
    for s in spec.value_slugs.values():
        def total(lo=None, hi=None, s=s):
            return Agg("sum", lo=lo, hi=hi, value=s)

        def known(lo=None, hi=None, s=s):
            return Agg("count_values", lo=lo, hi=hi, value=s)

        out += [Feature(f"{s}_sum_{w}d", coalesce(total(hi=w), 0.0)) for w in spec.windows]
        out += [
            Feature(f"{s}_mean_{wmax}d", total(hi=wmax) / nullif(known(hi=wmax), 0.0)),
            Feature(f"{s}_mean_lifetime", total() / nullif(known(), 0.0)),
            Feature(f"{s}_trend", _trend(coalesce(total(hi=rec), 0.0),
                                         coalesce(total(lo=rec, hi=prev_hi), 0.0), spec)),
        ]
    out += _contact_entries(spec)
    if spec.btyd_horizon_days is not None:
        # repeat days, first to last active day, first active day to the observation time
        first_day, last_day = floor(activity("min_ts") / DAY), floor(activity("max_ts") / DAY)
        out += [
            _nonnegative("btyd_frequency", case((n_all >= 1, activity("days") - 1.0))),
            _nonnegative("btyd_recency_days", last_day - first_day),
            _nonnegative("btyd_age_days", (Row("as_of") - first_day * DAY) / DAY),
        ]
    attr = spec.attribute_slugs
    out += [Feature(attr[a], Row(attr[a])) for a in spec.attributes.numeric]
    out += [Feature(attr[a], Row(attr[a]), categorical=True) for a in spec.attributes.categorical]
    # a date attribute after the observation time cannot be known then: missing, not negative
    out += [Feature(f"{attr[a]}_days", case((Row(attr[a]) <= Row("as_of"),
                                             (Row("as_of") - Row(attr[a])) / DAY)), lower=0.0)
            for a in spec.attributes.datetime]
    return out


def _window_condition(agg: Agg) -> str:
    conds = []
    if agg.lo is not None:
        conds.append(f"age > {sql_literal(agg.lo * DAY)}")
    if agg.hi is not None:
        conds.append(f"age <= {sql_literal(agg.hi * DAY)}")
    return " AND ".join(conds)


def _partial_sql(agg: Agg) -> str:
    """The aggregate over one (observation, event type) group of joined rows."""
    cond = _window_condition(agg)
    source = {"count": "1", "sum": f"v_{agg.value}", "count_values": f"v_{agg.value}",
              "min_age": "age", "max_age": "age", "min_ts": "ts", "max_ts": "ts"}[agg.kind]
    func = {"count": "COUNT", "sum": "SUM", "count_values": "COUNT", "min_age": "MIN",
            "max_age": "MAX", "min_ts": "MIN", "max_ts": "MAX"}[agg.kind]
    if not cond:
        return "COUNT(*)" if agg.kind == "count" else f"{func}({source})"
    return f"{func}(CASE WHEN {cond} THEN {source} END)"


def _contact_ctes(s: str, k: str, aggs: list[Agg], names: dict[tuple, str]) -> list[str]:
    """The CTEs of one contact column's aggregates (`features.expr.CONTACT_KINDS`): the usual
    contact per reference window (the most frequent, ties to the smallest text), then one
    grouped pass over the events with a known contact, with the previous event's contact
    (LAG, ordered by time and contact) where a change is asked for. Window functions and
    COUNT(DISTINCT) are read alike by DuckDB and Spark SQL."""
    col = f"c_{s}"
    ctes, usual_cols, usual_joins = [], [], []
    refs = list(dict.fromkeys(a.ref for a in aggs if a.kind == "contact_usual"))
    for j, ref in enumerate(refs):
        u = f"{k}u{j}"
        window = _window_condition(Agg("count", lo=ref[0], hi=ref[1]))
        where = f"{col} IS NOT NULL" + (f" AND {window}" if window else "")
        ctes.append(
            f"{u} AS (SELECT obs_id AS {u}_obs_id, contact AS {u}_contact FROM ("
            "SELECT obs_id, contact, ROW_NUMBER() OVER (PARTITION BY obs_id "
            "ORDER BY n DESC, contact) AS rk FROM ("
            f"SELECT obs_id, {col} AS contact, COUNT(*) AS n FROM joined WHERE {where} "
            f"GROUP BY obs_id, {col}) g) r WHERE rk = 1)")
        usual_cols.append(f", {u}.{u}_contact AS usual{j}")
        usual_joins.append(f" LEFT JOIN {u} ON {u}.{u}_obs_id = j.obs_id")
    lag = any(a.kind == "contact_change_age" for a in aggs)
    inner = (f"SELECT j.obs_id, j.age, j.{col} AS contact"
             + (f", LAG(j.{col}) OVER (PARTITION BY j.obs_id ORDER BY j.ts, j.{col}) AS prev"
                if lag else "")
             + "".join(usual_cols) + f" FROM joined j{''.join(usual_joins)} "
             f"WHERE j.{col} IS NOT NULL")
    selects = []
    for a in aggs:
        window = _window_condition(a)
        if a.kind == "contact_events":
            sql = f"COUNT(CASE WHEN {window} THEN 1 END)" if window else "COUNT(*)"
        elif a.kind == "contact_distinct":
            sql = (f"COUNT(DISTINCT CASE WHEN {window} THEN contact END)" if window
                   else "COUNT(DISTINCT contact)")
        elif a.kind == "contact_usual":
            cond = f"contact = usual{refs.index(a.ref)}" + (f" AND {window}" if window else "")
            sql = f"COUNT(CASE WHEN {cond} THEN 1 END)"
        else:  # contact_change_age
            sql = "MIN(CASE WHEN prev IS NOT NULL AND prev <> contact THEN age END)"
        selects.append(f"{sql} AS {names[a.key]}")
    ctes.append(f"{k} AS (SELECT obs_id AS {k}_obs_id, {', '.join(selects)} FROM ({inner}) x "
                "GROUP BY obs_id)")
    return ctes


def feature_sql(spec: FeatureSpec) -> str:
    """One SELECT that yields (obs_id, customer_id, as_of, <feature_entries names>), generated
    from the entries: per (observation, event type) partial aggregates, pivoted to one row per
    observation, distinct active days from one pass over (observation, day), then the features'
    expressions."""
    entries = spec.entries
    aggs = aggregates(entries)
    names: dict[tuple, str] = {a.key: f"g{i}" for i, a in enumerate(aggs)}
    by_type = [a for a in aggs if a.kind != "days" and a.kind not in CONTACT_KINDS]
    by_day = [a for a in aggs if a.kind == "days"]
    partials: dict[tuple, str] = {}
    for a in by_type:
        partials.setdefault(a.partial_key, f"p{len(partials)}")

    # 1. each observation joined with its customer's past events
    joined = (
        "SELECT o.obs_id, e.event_type, e.ts, o.as_of - e.ts AS age"
        + "".join(f", e.v_{s}" for s in spec.value_slugs.values())
        + "".join(f", e.c_{s}" for s in spec.contact_slugs.values())
        + " FROM obs o JOIN events e ON e.customer_id = o.customer_id WHERE e.ts < o.as_of"
    )
    # 2. partial aggregates per observation and event type
    first = {p: a for a in reversed(by_type) for p in [a.partial_key]}
    per_type = ", ".join(f"{_partial_sql(first[k])} AS {p}" for k, p in partials.items())
    per_type_sql = f"SELECT obs_id, event_type, {per_type} FROM joined GROUP BY obs_id, event_type"
    # 3. pivoted to one row per observation
    wide = []
    for a in by_type:
        p = partials[a.partial_key]
        func = "MIN" if a.kind.startswith("min") else "MAX" if a.kind.startswith("max") else "SUM"
        if a.event_types is not None:
            inner = f"CASE WHEN {_type_in('event_type', a.event_types)} THEN {p} END"
        elif a.event_type is not None:
            inner = f"CASE WHEN event_type = {_sql_str(a.event_type)} THEN {p} END"
        else:
            inner = p
        wide.append(f"{func}({inner}) AS {names[a.key]}")
    wide_sql = f"SELECT obs_id AS w_obs_id, {', '.join(wide)} FROM per_type GROUP BY obs_id"
    ctes = [f"joined AS ({joined})", f"per_type AS ({per_type_sql})", f"wide AS ({wide_sql})"]
    # 4. distinct active days: one pass over (observation, day), then count days per window;
    # a day's age per set of event types (day_age: any type; day_age_<i>: one of a set)
    if by_day:
        bounded = all(a.hi is not None for a in by_day)
        where = f"WHERE age <= {sql_literal(max(a.hi for a in by_day) * DAY)} " if bounded else ""
        day_cols: dict[tuple[str, ...] | None, str] = {}
        for a in by_day:
            day_cols.setdefault(a.event_types,
                                "day_age" if a.event_types is None else f"day_age_{len(day_cols)}")
        ages = ", ".join(
            ("MIN(age)" if types is None
             else f"MIN(CASE WHEN {_type_in('event_type', types)} THEN age END)") + f" AS {col}"
            for types, col in day_cols.items())

        def count_days(a: Agg) -> str:
            col = day_cols[a.event_types]
            if a.hi is not None:
                return f"COUNT(CASE WHEN {col} <= {sql_literal(a.hi * DAY)} THEN 1 END)"
            return "COUNT(*)" if a.event_types is None else f"COUNT({col})"

        days = ", ".join(f"{count_days(a)} AS {names[a.key]}" for a in by_day)
        ctes.append(
            f"active AS (SELECT obs_id AS a_obs_id, {days} FROM (SELECT obs_id, {ages} "
            f"FROM joined {where}GROUP BY obs_id, FLOOR(ts / {sql_literal(DAY)})) d "
            "GROUP BY obs_id)")

    # 5. contacts: one pass per contact column over its observations' events
    contact_of: dict[str, str] = {}
    for i, s in enumerate(spec.contact_slugs.values()):
        of_s = [a for a in aggs if a.contact == s]
        if of_s:
            ctes += _contact_ctes(s, f"k{i}", of_s, names)
            contact_of[s] = f"k{i}"

    # 6. one row per observation: its row columns and aggregates (counts of nothing are 0)
    base_cols = ["o.obs_id", "o.customer_id", "o.as_of"]
    base_cols += [f"c.{r} AS {r}" for r in expr_rows(entries) if r != "as_of"]
    for a in aggs:
        table = ("a" if a.kind == "days" else contact_of[a.contact] if a.contact is not None
                 else "w")
        col = f"{table}.{names[a.key]}"
        col = f"COALESCE({col}, 0)" if a.kind in COUNT_KINDS else col
        base_cols.append(f"CAST({col} AS DOUBLE) AS {names[a.key]}")
    base_sql = (
        f"SELECT {', '.join(base_cols)} FROM obs o "
        "LEFT JOIN customers c ON c.customer_id = o.customer_id "
        "LEFT JOIN wide w ON w.w_obs_id = o.obs_id"
        + (" LEFT JOIN active a ON a.a_obs_id = o.obs_id" if by_day else "")
        + "".join(f" LEFT JOIN {k} ON {k}.{k}_obs_id = o.obs_id" for k in contact_of.values())
    )
    ctes.append(f"base AS ({base_sql})")

    # 7. the features
    def name_of(node: Expr) -> str:
        return names[node.key] if isinstance(node, Agg) else node.name

    out = ["obs_id", "customer_id", "as_of"]
    out += [f"{to_sql(f.expr, name_of)} AS {f.name}" for f in entries]
    return f"WITH {', '.join(ctes)} SELECT {', '.join(out)} FROM base"


# ---------------------------------------------------------------------------------------------
# Eligibility and labels
# ---------------------------------------------------------------------------------------------

LABEL_KINDS = ("explicit", "inactivity")


def candidates_sql() -> str:
    """Customers signed up at or before each time in `times(as_of)` and not churned by it."""
    return (
        "SELECT c.customer_id, t.as_of FROM customers c CROSS JOIN times t "
        "WHERE c.signup <= t.as_of AND (c.churned IS NULL OR c.churned > t.as_of)"
    )


def label_sql(kind: str, horizon_days: float, activity_types: tuple[str, ...] = ()) -> str:
    """(obs_id, label) for every row of `obs`: every customer active at as_of (signed up at or
    before it, not churned by it) gets a label, the same population `churn score` scores.

    explicit: churned if `churned` falls in (as_of, as_of + horizon].
    inactivity: churned if no activity event (one of `activity_types`; empty: any event) falls
    in (as_of, as_of + horizon]. A customer who has been quiet for a long time is still a
    customer: a shop wants to win them back, so they are labelled (and scored) like everyone
    else."""
    if kind not in LABEL_KINDS:
        raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, not {kind!r}")
    h = horizon_days * DAY
    if kind == "explicit":
        return (
            "SELECT o.obs_id, CASE WHEN c.churned > o.as_of AND "
            f"c.churned <= o.as_of + {h} THEN 1 ELSE 0 END AS label "
            "FROM obs o JOIN customers c ON c.customer_id = o.customer_id"
        )
    return (
        "WITH after AS (SELECT o.obs_id, COUNT(*) AS n_after "
        "FROM obs o JOIN events e ON e.customer_id = o.customer_id "
        f"AND e.ts > o.as_of AND e.ts <= o.as_of + {h}"
        + (f" AND {_type_in('e.event_type', tuple(activity_types))}" if activity_types else "")
        + " GROUP BY o.obs_id) "
        "SELECT o.obs_id, CASE WHEN COALESCE(a.n_after, 0) = 0 THEN 1 ELSE 0 END AS label "
        "FROM obs o LEFT JOIN after a ON a.obs_id = o.obs_id"
    )
