"""Point-in-time feature and label definitions, written once as relational SQL.

The SQL sticks to what DuckDB and Spark SQL both accept (CASE, SUM, COUNT DISTINCT, LEAST,
GREATEST, arithmetic on DOUBLE). Every timestamp is a DOUBLE of epoch seconds, so no
engine-specific date function is needed. The queries read three relations:

- `obs(obs_id, customer_id, as_of)`: the (customer, observation time) pairs;
- `customers(customer_id, signup, churned, attr_*)`;
- `events(customer_id, ts, event_type, v_*)`.

Nothing at or after `as_of` reaches a feature: every event is filtered to `ts < as_of`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from features.contract import AttributeKinds

WINDOWS = (7, 30, 90)  # trailing feature windows in days
# buy-till-you-die summaries computed by the query (whole days: repeat days, first to last, first
# to the observation time) and the model-based ones computed from them with BG/NBD parameters
BTYD_SQL_FEATURES = ("btyd_frequency", "btyd_recency_days", "btyd_age_days")
BTYD_MODEL_FEATURES = ("btyd_p_alive", "btyd_p_inactive", "btyd_expected_events")
# 2: lifetime rate since the first recorded event; no future dates. 3: history_days
FEATURE_VERSION = "3"
DAY = 86400.0


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

    # -- names ---------------------------------------------------------------------------------
    @property
    def type_slugs(self) -> dict[str, str]:
        return _unique_slugs(self.event_types, RESERVED_SLUGS)

    @property
    def value_slugs(self) -> dict[str, str]:
        return _unique_slugs(self.value_columns)

    @property
    def attribute_slugs(self) -> dict[str, str]:
        return {a: f"attr_{s}" for a, s in _unique_slugs(self.attributes.all).items()}

    @property
    def categorical_features(self) -> tuple[str, ...]:
        slugs = self.attribute_slugs
        return tuple(slugs[a] for a in self.attributes.categorical)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature column in output order (without customer_id and as_of)."""
        names = ["tenure_days", "days_to_anniversary", "history_days"]
        for w in self.windows:
            names += [f"n_events_{w}d", f"active_days_{w}d"]
        names += [
            "days_since_last_event", "events_lifetime", "events_per_day_lifetime",
            f"events_per_active_day_{max(self.windows)}d",
            "mean_gap_days", "overdue_ratio", "trend_events",
        ]
        for s in self.type_slugs.values():
            names += [f"n_{s}_{w}d" for w in self.windows]
            names += [f"days_since_{s}", f"trend_{s}"]
        for s in self.value_slugs.values():
            names += [f"{s}_sum_{w}d" for w in self.windows]
            names += [f"{s}_mean_{max(self.windows)}d", f"{s}_mean_lifetime", f"{s}_trend"]
        attr = self.attribute_slugs
        names += list(self.btyd_features)
        names += [attr[a] for a in self.attributes.numeric]
        names += [attr[a] for a in self.attributes.categorical]
        names += [f"{attr[a]}_days" for a in self.attributes.datetime]
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
        for key in ("event_types", "value_columns", "windows"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _windows_all(spec: FeatureSpec) -> list[int]:
    return sorted(set(spec.windows) | {spec.trend_recent, spec.trend_recent + spec.trend_earlier})


def _trend(recent: str, earlier: str, spec: FeatureSpec) -> str:
    """Symmetric change of the daily rate, recent vs. earlier window, in [-1, 1].

    The earlier window's exposure is cut at signup, and the trend is NULL when that window
    lies wholly before signup. Both rates zero gives 0 (no change)."""
    r = f"(CAST({recent} AS DOUBLE) / {float(spec.trend_recent)})"
    p = f"(CAST({earlier} AS DOUBLE) / exp_prev)"
    return (
        f"CASE WHEN exp_prev <= 0 THEN NULL WHEN {r} + {p} = 0 THEN 0.0 "
        f"ELSE ({r} - {p}) / ({r} + {p}) END"
    )


def feature_sql(spec: FeatureSpec) -> str:
    """One SELECT that yields (obs_id, customer_id, as_of, <spec.feature_names>)."""
    wall = _windows_all(spec)
    rec, prev_hi = spec.trend_recent, spec.trend_recent + spec.trend_earlier
    wmax = max(spec.windows)
    vals = spec.value_slugs

    # 1. each observation joined with its customer's past events
    joined = (
        "SELECT o.obs_id, e.event_type, e.ts, o.as_of - e.ts AS age"
        + "".join(f", e.v_{s}" for s in vals.values())
        + " FROM obs o JOIN events e ON e.customer_id = o.customer_id WHERE e.ts < o.as_of"
    )
    # 2. aggregated per observation and event type
    per_type = [f"COUNT(CASE WHEN age <= {w * DAY} THEN 1 END) AS n_{w}" for w in wall]
    per_type += [
        f"COUNT(CASE WHEN age > {rec * DAY} AND age <= {prev_hi * DAY} THEN 1 END) AS n_prev",
        "COUNT(*) AS n_all", "MIN(age) AS min_age", "MAX(age) AS max_age",
    ]
    for s in vals.values():
        per_type += [f"SUM(CASE WHEN age <= {w * DAY} THEN v_{s} END) AS {s}_s{w}" for w in wall]
        per_type += [
            f"SUM(CASE WHEN age > {rec * DAY} AND age <= {prev_hi * DAY} THEN v_{s} END)"
            f" AS {s}_sprev",
            f"COUNT(CASE WHEN age <= {wmax * DAY} THEN v_{s} END) AS {s}_c{wmax}",
            f"SUM(v_{s}) AS {s}_sall", f"COUNT(v_{s}) AS {s}_call",
        ]
    per_type_sql = (
        f"SELECT obs_id, event_type, {', '.join(per_type)} FROM joined GROUP BY obs_id, event_type"
    )
    # 3. pivoted to one row per observation
    wide = [f"SUM(n_{w}) AS t_n_{w}" for w in wall]
    wide += ["SUM(n_prev) AS t_n_prev", "SUM(n_all) AS t_n_all",
             "MIN(min_age) AS t_min_age", "MAX(max_age) AS t_max_age"]
    for etype, s in spec.type_slugs.items():
        lit = _sql_str(etype)
        wide += [
            f"SUM(CASE WHEN event_type = {lit} THEN n_{w} ELSE 0 END) AS k_{s}_{w}" for w in wall
        ]
        wide += [
            f"SUM(CASE WHEN event_type = {lit} THEN n_prev ELSE 0 END) AS k_{s}_prev",
            f"MIN(CASE WHEN event_type = {lit} THEN min_age END) AS k_{s}_min_age",
        ]
    for s in vals.values():
        wide += [f"SUM({s}_s{w}) AS {s}_s{w}" for w in wall]
        wide += [f"SUM({s}_sprev) AS {s}_sprev", f"SUM({s}_c{wmax}) AS {s}_c{wmax}",
                 f"SUM({s}_sall) AS {s}_sall", f"SUM({s}_call) AS {s}_call"]
    wide_sql = f"SELECT obs_id AS w_obs_id, {', '.join(wide)} FROM per_type GROUP BY obs_id"
    # 4. distinct active days per window: one pass over (observation, day), then count days
    days = ", ".join(
        f"COUNT(CASE WHEN day_age <= {w * DAY} THEN 1 END) AS ad_{w}" for w in spec.windows
    )
    active_sql = (
        f"SELECT obs_id AS a_obs_id, {days} FROM (SELECT obs_id, MIN(age) AS day_age "
        f"FROM joined WHERE age <= {wmax * DAY} GROUP BY obs_id, FLOOR(ts / {DAY})) d "
        "GROUP BY obs_id"
    )

    # 5. one row per observation with the raw aggregates and exposures
    attr = spec.attribute_slugs
    base_cols = [
        "o.obs_id", "o.customer_id", "o.as_of",
        f"(o.as_of - c.signup) / {DAY} AS tenure_days",
        "o.as_of - " + (f"GREATEST(c.signup, {float(spec.log_start)})"
                        if spec.log_start is not None else "c.signup") + " AS history_seconds",
        f"LEAST(GREATEST((o.as_of - c.signup) / {DAY} - {float(rec)}, 0.0), "
        f"{float(spec.trend_earlier)}) AS exp_prev",
        "w.*", "a.*",
    ]
    btyd = spec.btyd_horizon_days is not None
    if btyd:  # repeat days, first to last day, first day to the observation time
        base_cols += ["b.b_x AS btyd_frequency", "b.b_tx AS btyd_recency_days",
                      f"(o.as_of - b.b_first * {DAY}) / {DAY} AS btyd_age_days"]
    base_cols += [f"c.{attr[a]} AS {attr[a]}" for a in spec.attributes.numeric]
    base_cols += [f"c.{attr[a]} AS {attr[a]}" for a in spec.attributes.categorical]
    # a date attribute after the observation time cannot be known then: missing, not negative
    base_cols += [
        f"CASE WHEN c.{attr[a]} <= o.as_of THEN (o.as_of - c.{attr[a]}) / {DAY} END "
        f"AS {attr[a]}_days" for a in spec.attributes.datetime
    ]
    btyd_sql = (
        "SELECT obs_id AS b_obs_id, COUNT(*) - 1 AS b_x, MAX(day) - MIN(day) AS b_tx, "
        f"MIN(day) AS b_first FROM (SELECT DISTINCT obs_id, FLOOR(ts / {DAY}) AS day FROM joined) d "
        "GROUP BY obs_id"
    )
    base_sql = (
        f"SELECT {', '.join(base_cols)} FROM obs o "
        + ("LEFT JOIN btyd b ON b.b_obs_id = o.obs_id " if btyd else "")
        + "LEFT JOIN customers c ON c.customer_id = o.customer_id "
        "LEFT JOIN wide w ON w.w_obs_id = o.obs_id "
        "LEFT JOIN active a ON a.a_obs_id = o.obs_id"
    )

    # 6. the features
    def z(col: str) -> str:
        return f"COALESCE({col}, 0)"

    # renewals: annual contracts are mostly left around the signup anniversary
    out = ["obs_id", "customer_id", "as_of", "tenure_days",
           "365.0 - (tenure_days - 365.0 * FLOOR(tenure_days / 365.0)) AS days_to_anniversary",
           # days of this customer's history the log holds, up to the longest window
           f"LEAST(GREATEST(history_seconds / {DAY}, 0.0), {float(wmax)}) AS history_days"]
    for w in spec.windows:
        out += [f"{z(f't_n_{w}')} AS n_events_{w}d", f"{z(f'ad_{w}')} AS active_days_{w}d"]
    out += [
        f"t_min_age / {DAY} AS days_since_last_event",
        f"{z('t_n_all')} AS events_lifetime",
        # per day since the customer's first recorded event, not since signup: a customer who
        # signed up before the log began would otherwise look quieter the earlier the log starts
        f"CAST({z('t_n_all')} AS DOUBLE) / GREATEST({z('t_max_age')} / {DAY}, 1.0)"
        " AS events_per_day_lifetime",
        f"CAST(t_n_{wmax} AS DOUBLE) / NULLIF(ad_{wmax}, 0) AS events_per_active_day_{wmax}d",
        f"CASE WHEN t_n_all >= 2 THEN (t_max_age - t_min_age) / {DAY} / (t_n_all - 1) END"
        " AS mean_gap_days",
        "CASE WHEN t_n_all >= 2 AND t_max_age > t_min_age THEN "
        "t_min_age / ((t_max_age - t_min_age) / (t_n_all - 1)) END AS overdue_ratio",
        f"{_trend(z(f't_n_{rec}'), z('t_n_prev'), spec)} AS trend_events",
    ]
    for s in spec.type_slugs.values():
        out += [f"{z(f'k_{s}_{w}')} AS n_{s}_{w}d" for w in spec.windows]
        out += [
            f"k_{s}_min_age / {DAY} AS days_since_{s}",
            f"{_trend(z(f'k_{s}_{rec}'), z(f'k_{s}_prev'), spec)} AS trend_{s}",
        ]
    for s in vals.values():
        out += [f"{z(f'{s}_s{w}')} AS {s}_sum_{w}d" for w in spec.windows]
        out += [
            f"{s}_s{wmax} / NULLIF({s}_c{wmax}, 0) AS {s}_mean_{wmax}d",
            f"{s}_sall / NULLIF({s}_call, 0) AS {s}_mean_lifetime",
            f"{_trend(z(f'{s}_s{rec}'), z(f'{s}_sprev'), spec)} AS {s}_trend",
        ]
    # the BG/NBD columns are computed from these after the query (features.engine)
    out += [f"CAST({c} AS DOUBLE) AS {c}" for c in BTYD_SQL_FEATURES] if btyd else []
    out += [attr[a] for a in spec.attributes.numeric]
    out += [attr[a] for a in spec.attributes.categorical]
    out += [f"{attr[a]}_days" for a in spec.attributes.datetime]
    return (
        f"WITH joined AS ({joined}), per_type AS ({per_type_sql}), wide AS ({wide_sql}), "
        f"active AS ({active_sql}), " + (f"btyd AS ({btyd_sql}), " if btyd else "")
        + f"base AS ({base_sql}) SELECT {', '.join(out)} FROM base"
    )


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


def label_sql(kind: str, horizon_days: float) -> str:
    """(obs_id, label) for every row of `obs`: every customer active at as_of (signed up at or
    before it, not churned by it) gets a label, the same population `churn score` scores.

    explicit: churned if `churned` falls in (as_of, as_of + horizon].
    inactivity: churned if no event falls in (as_of, as_of + horizon]. A customer who has been
    quiet for a long time is still a customer: a shop wants to win them back, so they are
    labelled (and scored) like everyone else."""
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
        f"AND e.ts > o.as_of AND e.ts <= o.as_of + {h} GROUP BY o.obs_id) "
        "SELECT o.obs_id, CASE WHEN COALESCE(a.n_after, 0) = 0 THEN 1 ELSE 0 END AS label "
        "FROM obs o LEFT JOIN after a ON a.obs_id = o.obs_id"
    )
