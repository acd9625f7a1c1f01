"""The NumPy evaluator of the feature entries: small requests without a query engine.

It computes exactly what `features.sql.feature_sql` computes, from the same entries
(`feature_entries`), over the same relations (Arrow tables of customers, events and
observations, times in epoch seconds). The steps mirror the query's:

1. join each observation with its customer's events before `as_of` (index arithmetic on the
   events sorted by customer);
2. partial aggregates per (observation, event type) with `bincount` and `ufunc.at`, reduced over
   the types (or a set of them, the activity types) or picked for one type;
3. distinct active days from one pass over (observation, day);
4. per contact column, its aggregates from the events with a known contact, the text coded in
   the order SQL sorts it (`_contact_codes`);
5. each feature's expression over the per-observation arrays.

A DuckDB query costs tens of milliseconds to parse and plan whatever its input; this costs well
under a millisecond for one customer (benchmarks/bench_serving.py prints both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.definitions import FeatureSpec
from features.expr import (
    CONTACT_KINDS,
    COUNT_KINDS,
    DAY,
    Agg,
    agg_leaves,
    aggregates,
    numpy_function,
    rows,
    shape_key,
    source_key,
)


def _codes(values: pa.ChunkedArray | pa.Array, value_set: pa.Array) -> np.ndarray:
    """Each value's position in `value_set`, -1 when absent (or missing)."""
    idx = pc.index_in(values, value_set=value_set)
    return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64", copy=False)


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy().astype("float64", copy=False) if column.null_count == 0 else \
        np.asarray(column.to_numpy(zero_copy_only=False), dtype="float64")


def _joined(obs_cust: np.ndarray, ev_cust: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observation index, event index) for every event of each observation's customer."""
    order = np.argsort(ev_cust, kind="stable")
    sorted_cust = ev_cust[order]
    starts = np.searchsorted(sorted_cust, obs_cust, side="left")
    ends = np.searchsorted(sorted_cust, obs_cust, side="right")
    lengths = np.where(obs_cust >= 0, ends - starts, 0)
    total = int(lengths.sum())
    obs_idx = np.repeat(np.arange(len(obs_cust)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return obs_idx, order[starts[obs_idx] + offsets]


class _Partials:
    """Aggregates of the joined rows per (observation, event type); type T is 'another type'."""

    def __init__(self, n: int, n_types: int, obs_idx: np.ndarray, type_code: np.ndarray,
                 age: np.ndarray, ts: np.ndarray, values: dict[str, np.ndarray]):
        self.n, self.width = n, n_types + 1
        self.group = obs_idx * self.width + type_code
        self.obs_idx, self.age, self.ts, self.values = obs_idx, age, ts, values
        self._cache: dict[tuple, np.ndarray] = {}

    def _mask(self, lo: float | None, hi: float | None) -> np.ndarray | None:
        mask = None
        if lo is not None:
            mask = self.age > lo * DAY
        if hi is not None:
            upper = self.age <= hi * DAY
            mask = upper if mask is None else mask & upper
        return mask

    def partial(self, agg: Agg) -> np.ndarray:
        """An (n, types + 1) array: the aggregate per observation and type; NaN for a sum,
        minimum or maximum of nothing."""
        key = agg.partial_key
        if key in self._cache:
            return self._cache[key]
        mask = self._mask(agg.lo, agg.hi)
        group = self.group if mask is None else self.group[mask]
        size = self.n * self.width
        kind = agg.kind
        if kind == "count":
            out = np.bincount(group, minlength=size).astype("float64")
        elif kind in ("sum", "count_values"):
            v = self.values[agg.value] if mask is None else self.values[agg.value][mask]
            known = ~np.isnan(v)
            counts = np.bincount(group[known], minlength=size).astype("float64")
            if kind == "count_values":
                out = counts
            else:
                out = np.bincount(group[known], weights=v[known], minlength=size).astype("float64")
                out[counts == 0] = np.nan
        else:
            source = self.age if kind.endswith("_age") else self.ts
            v = source if mask is None else source[mask]
            if kind.startswith("min"):
                out = np.full(size, np.inf)
                np.minimum.at(out, group, v)
            else:
                out = np.full(size, -np.inf)
                np.maximum.at(out, group, v)
            out[np.isinf(out)] = np.nan
        out = out.reshape(self.n, self.width)
        self._cache[key] = out
        return out


def _reduce(agg: Agg, partial: np.ndarray) -> np.ndarray:
    """An all-types aggregate per observation: the partials reduced over the types as the SQL
    does (SUM / MIN / MAX skip NULLs; all NULL gives NULL)."""
    if agg.kind.startswith("min"):
        out = _all_nan_safe(np.fmin.reduce, partial)
    elif agg.kind.startswith("max"):
        out = _all_nan_safe(np.fmax.reduce, partial)
    elif agg.kind in COUNT_KINDS:
        out = partial.sum(axis=1)  # counts are never missing
    else:
        out = _all_nan_safe(np.nansum, partial)
    return out


def _all_nan_safe(func, partial: np.ndarray) -> np.ndarray:
    if partial.shape[1] == 0:
        return np.full(partial.shape[0], np.nan)
    empty = np.isnan(partial).all(axis=1)
    out = np.asarray(func(partial, axis=1), dtype="float64")
    out[empty] = np.nan
    return out


def _active_days(aggs: list[Agg], n: int, obs_idx: np.ndarray, ts: np.ndarray, age: np.ndarray,
                 type_code: np.ndarray, type_index: dict[str, int]) -> dict[tuple, np.ndarray]:
    """Distinct days with an event (of the aggregate's types) per observation, within each
    aggregate's window."""
    out: dict[tuple, np.ndarray] = {}
    for types in dict.fromkeys(a.event_types for a in aggs):
        same = [a for a in aggs if a.event_types == types]
        if types is None:
            out.update(_days_of(same, n, obs_idx, ts, age))
        else:
            keep = np.isin(type_code, [type_index[t] for t in types])
            out.update(_days_of(same, n, obs_idx[keep], ts[keep], age[keep]))
    return out


def _days_of(aggs: list[Agg], n: int, obs_idx: np.ndarray, ts: np.ndarray, age: np.ndarray
             ) -> dict[tuple, np.ndarray]:
    """Distinct days with an event per observation, within each aggregate's window."""
    if all(a.hi is not None for a in aggs):
        keep = age <= max(a.hi for a in aggs) * DAY
        obs_idx, ts, age = obs_idx[keep], ts[keep], age[keep]
    day = np.floor(ts / DAY)
    order = np.lexsort((day, obs_idx))
    o, d, a = obs_idx[order], day[order], age[order]
    new = np.ones(len(o), dtype=bool)
    new[1:] = (o[1:] != o[:-1]) | (d[1:] != d[:-1])
    starts = np.flatnonzero(new)
    day_obs = o[starts]
    day_age = np.minimum.reduceat(a, starts) if len(starts) else a[:0]
    out = {}
    for agg in aggs:
        chosen = day_obs if agg.hi is None else day_obs[day_age <= agg.hi * DAY]
        out[agg.key] = np.bincount(chosen, minlength=n).astype("float64")
    return out


def _contact_codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each contact as an integer that sorts as its text does in SQL (DuckDB, Spark and Arrow
    all compare text by its UTF-8 bytes), so ties are broken alike; -1 when missing."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column.cast(pa.string()))
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    if not len(order):
        return np.full(len(column), -1, dtype="int64")
    rank = np.empty(len(order), dtype="int64")
    rank[order] = np.arange(len(order))
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    return np.where(index >= 0, rank[np.maximum(index, 0)], -1)


def _window(age: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    mask = np.ones(len(age), dtype=bool)
    if lo is not None:
        mask &= age > lo * DAY
    if hi is not None:
        mask &= age <= hi * DAY
    return mask


def _usual(n: int, obs_idx: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Per observation, the most frequent code (ties to the smallest); -1 without any."""
    out = np.full(n, -1, dtype="int64")
    if not len(code):
        return out
    width = int(code.max()) + 1
    pairs, counts = np.unique(obs_idx * width + code, return_counts=True)
    obs, contact = pairs // width, pairs % width
    order = np.lexsort((contact, -counts, obs))
    obs, contact = obs[order], contact[order]
    first = np.ones(len(obs), dtype=bool)
    first[1:] = obs[1:] != obs[:-1]
    out[obs[first]] = contact[first]
    return out


def _contact_aggregates(aggs: list[Agg], n: int, obs_idx: np.ndarray, ts: np.ndarray,
                        age: np.ndarray, code: np.ndarray) -> dict[tuple, np.ndarray]:
    """One contact column's aggregates (`features.expr.CONTACT_KINDS`), as the SQL's
    `_contact_ctes` computes them, from the joined events' contact codes."""
    known = code >= 0
    obs_idx, ts, age, code = obs_idx[known], ts[known], age[known], code[known]
    width = int(code.max()) + 1 if len(code) else 1
    usual: dict[tuple, np.ndarray] = {}
    out = {}
    for agg in aggs:
        mask = _window(age, agg.lo, agg.hi)
        if agg.kind == "contact_events":
            value = np.bincount(obs_idx[mask], minlength=n).astype("float64")
        elif agg.kind == "contact_distinct":
            pairs = np.unique(obs_idx[mask] * width + code[mask])
            value = np.bincount(pairs // width, minlength=n).astype("float64")
        elif agg.kind == "contact_usual":
            if agg.ref not in usual:
                ref = _window(age, *agg.ref)
                usual[agg.ref] = _usual(n, obs_idx[ref], code[ref])
            same = mask & (code == usual[agg.ref][obs_idx])
            value = np.bincount(obs_idx[same], minlength=n).astype("float64")
        else:  # contact_change_age: after the previous event in (time, contact) order
            order = np.lexsort((code, ts, obs_idx))
            o, c, a = obs_idx[order], code[order], age[order]
            change = (o[1:] == o[:-1]) & (c[1:] != c[:-1])
            value = np.full(n, np.inf)
            np.minimum.at(value, o[1:][change], a[1:][change])
            value[np.isinf(value)] = np.nan
        out[agg.key] = value
    return out


@dataclass(frozen=True)
class Group:
    """Entries of one shape, evaluated at once on (observations x entries) arrays: blank i of
    the shape takes aggregate `aggs[j][i]` in column j."""

    names: tuple[str, ...]
    aggs: tuple[tuple[tuple, ...], ...]  # per entry, the keys of its aggregates in order
    func: Callable
    identity: bool = False  # each entry is one aggregate as it is: nothing to compute


@dataclass(frozen=True)
class Program:
    """The entries of one spec, compiled once: aggregates to compute, then the entries in
    groups of the same shape (a count per window and type is one NumPy call, not dozens)."""

    type_index: dict[str, int]
    # the spec's event types, then other types an aggregate names (activity types outside the
    # most frequent), for coding the events'; any other type is coded len(types)
    types: pa.Array
    aggs: tuple[Agg, ...]
    day_aggs: tuple[Agg, ...]
    contact_aggs: dict[str, tuple[Agg, ...]]  # per contact slug
    numeric_rows: tuple[str, ...]
    groups: tuple[Group, ...]
    categorical: tuple[tuple[str, str], ...]  # feature name, customer column


def _group(entries: list) -> Group:
    first = entries[0].expr
    slots = {id(node): ("slot", i) for i, node in enumerate(agg_leaves(first))}

    def key_of(node):
        return slots[id(node)] if isinstance(node, Agg) else source_key(node)

    return Group(names=tuple(f.name for f in entries),
                 aggs=tuple(tuple(a.key for a in agg_leaves(f.expr)) for f in entries),
                 func=numpy_function(first, key_of), identity=isinstance(first, Agg))


def program(spec: FeatureSpec) -> Program:
    """The compiled entries, cached on the spec (a spec never changes)."""
    cached = spec.__dict__.get("_online_program")
    if cached is None:
        entries = spec.entries
        aggs = aggregates(list(entries))
        named = [t for a in aggs for t in (a.event_types or ())]
        types = list(dict.fromkeys([*spec.event_types, *named]))
        categorical = {f.expr.name for f in entries if f.categorical}
        shapes: dict[tuple, list] = {}
        for f in entries:
            if not f.categorical:
                shapes.setdefault(shape_key(f.expr), []).append(f)
        cached = Program(
            type_index={t: i for i, t in enumerate(types)},
            types=pa.array(types, type=pa.string()),
            aggs=tuple(a for a in aggs if a.kind != "days" and a.kind not in CONTACT_KINDS),
            day_aggs=tuple(a for a in aggs if a.kind == "days"),
            contact_aggs={s: tuple(a for a in aggs if a.contact == s)
                          for s in spec.contact_slugs.values()},
            numeric_rows=tuple(r for r in rows(list(entries))
                               if r != "as_of" and r not in categorical),
            groups=tuple(_group(group) for group in shapes.values()),
            categorical=tuple((f.name, f.expr.name) for f in entries if f.categorical),
        )
        spec.__dict__["_online_program"] = cached
    return cached


def _run_group(group: Group, env: dict, rows_2d: dict, n: int) -> dict[str, np.ndarray]:
    """Evaluate a group: aggregates stacked as columns, rows as (n, 1) to broadcast."""
    if group.identity:
        return {name: env[keys[0]] for name, keys in zip(group.names, group.aggs, strict=True)}
    k = len(group.names)
    local = dict(rows_2d)
    for i in range(len(group.aggs[0])):
        stacked = np.empty((n, k))
        for j, keys in enumerate(group.aggs):
            stacked[:, j] = env[keys[i]]
        local[("slot", i)] = stacked
    value = group.func(local)
    if getattr(value, "shape", None) != (n, k) or value.dtype != np.float64:
        value = np.broadcast_to(np.asarray(value, dtype="float64"), (n, k))
    return {name: value[:, j] for j, name in enumerate(group.names)}


def evaluate(spec: FeatureSpec, customers: pa.Table, events: pa.Table, obs: pa.Table
             ) -> dict[str, np.ndarray]:
    """{obs_id, customer_id, as_of, <feature_entries names>} as arrays for the observations,
    what `feature_sql` would return for them (rows in `obs` order)."""
    prog = program(spec)
    n = obs.num_rows
    as_of = _floats(obs.column("as_of"))
    cust_ids = customers.column("customer_id").combine_chunks()
    obs_cust = _codes(obs.column("customer_id"), cust_ids)
    ev_cust = _codes(events.column("customer_id"), cust_ids)
    obs_idx, ev_idx = _joined(obs_cust, ev_cust)
    ts = _floats(events.column("ts"))[ev_idx]
    past = ts < as_of[obs_idx]
    obs_idx, ev_idx, ts = obs_idx[past], ev_idx[past], ts[past]
    age = as_of[obs_idx] - ts

    n_types = len(prog.type_index)
    type_code = _codes(events.column("event_type"), prog.types)[ev_idx]
    type_code[type_code < 0] = n_types
    values = {s: _floats(events.column(f"v_{s}"))[ev_idx] for s in spec.value_slugs.values()}

    partials = _Partials(n, n_types, obs_idx, type_code, age, ts, values)
    env: dict[tuple, np.ndarray] = _active_days(list(prog.day_aggs), n, obs_idx, ts, age,
                                                type_code, prog.type_index)
    for a in prog.aggs:
        if a.event_type is not None:  # one type's column of the partial
            env[a.key] = partials.partial(a)[:, prog.type_index[a.event_type]]
        elif a.event_types is not None:  # the set's columns, reduced as for all types
            cols = [prog.type_index[t] for t in a.event_types]
            env[a.key] = _reduce(a, partials.partial(a)[:, cols])
        else:
            env[a.key] = _reduce(a, partials.partial(a))
    for s, contact_aggs in prog.contact_aggs.items():
        if contact_aggs:
            code = _contact_codes(events.column(f"c_{s}"))[ev_idx]
            env.update(_contact_aggregates(list(contact_aggs), n, obs_idx, ts, age, code))

    known = obs_cust >= 0
    row_index = np.where(known, obs_cust, 0)
    env[("row", "as_of")] = as_of
    for name in prog.numeric_rows:
        vals = _floats(customers.column(name))
        env[("row", name)] = (np.where(known, vals[row_index], np.nan) if len(vals)
                              else np.full(n, np.nan))

    out: dict[str, np.ndarray] = {
        "obs_id": np.arange(n, dtype="int64"),
        "customer_id": obs.column("customer_id").to_numpy(zero_copy_only=False),
        "as_of": as_of,
    }
    with np.errstate(divide="ignore", invalid="ignore"):
        rows_2d = {key: value[:, None] for key, value in env.items() if key[0] == "row"}
        for group in prog.groups:
            out.update(_run_group(group, env, rows_2d, n))
    for name, column in prog.categorical:
        vals = np.asarray(customers.column(column).to_pylist(), dtype=object)
        out[name] = (np.where(known, vals[row_index], None) if len(vals)
                     else np.full(n, None, dtype=object))
    return out


__all__ = ["evaluate", "program"]
