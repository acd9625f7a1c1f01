"""The feature entries (`features.definitions`) rendered as one SQL query, for batch work on
DuckDB or Spark; `features.online` evaluates the same entries with NumPy for small requests.

The SQL sticks to what DuckDB and Spark SQL both accept (CASE, SUM, COUNT DISTINCT, LEAST,
GREATEST, arithmetic on DOUBLE). Every timestamp is a DOUBLE of epoch seconds, so no
engine-specific date function is needed. The queries read three relations
(`features.relations`):

- `obs(obs_id, customer_id, as_of)`: the (customer, observation time) pairs;
- `customers(customer_id, signup, churned, attr_*)`;
- `events(customer_id, ts, event_type, v_*, c_*)`: `v_*` numeric values, `c_*` text contacts
  (a store, an agent: `FeatureSpec.contact_columns`).

Nothing at or after `as_of` reaches a feature: every event is filtered to `ts < as_of`.
"""

from __future__ import annotations

from features.definitions import FeatureSpec
from features.expr import (
    CONTACT_KINDS,
    COUNT_KINDS,
    DAY,
    Agg,
    Expr,
    aggregates,
    sql_literal,
    to_sql,
)
from features.expr import rows as expr_rows


def sql_text(text: str) -> str:
    """A string literal of SQL (DuckDB and Spark alike)."""
    return "'" + text.replace("'", "''") + "'"


def type_in(column: str, types: tuple[str, ...]) -> str:
    """`column IN ('a', 'b')`: the event type is one of `types` (DuckDB and Spark alike)."""
    return f"{column} IN ({', '.join(sql_text(t) for t in types)})"


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
            inner = f"CASE WHEN {type_in('event_type', a.event_types)} THEN {p} END"
        elif a.event_type is not None:
            inner = f"CASE WHEN event_type = {sql_text(a.event_type)} THEN {p} END"
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
             else f"MIN(CASE WHEN {type_in('event_type', types)} THEN age END)") + f" AS {col}"
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

