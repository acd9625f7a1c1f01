"""A small expression language for point-in-time features, with two evaluators.

Each feature is one `Feature(name, expr)` entry (`features.definitions.feature_entries`). An
expression combines

- `Agg`: one aggregate over a customer's events strictly before the observation time, optionally
  of one event type (or of a set of them) and within an age window (lo, hi] in days: a count,
  a sum or non-missing count of a value column, the smallest or largest age or timestamp, or the
  number of distinct active days; or, of a text contact column (a store, an agent: `contact`),
  the events with a known contact, the distinct contacts, the events whose contact is the
  customer's usual one, or the age of the latest change of contact (`CONTACT_KINDS`);
- `Row`: a column of the observation row (`as_of`, `signup`, an attribute);
- `Const`, arithmetic, comparisons, `Case` and a few functions (`coalesce`, `nullif`,
  `greatest`, `least`, `floor`).

`features.sql.feature_sql` renders the entries as one SQL query (DuckDB now, Spark
next), and `features.online` evaluates the same entries with NumPy, without a query engine.

Semantics, the same in both: every value is a DOUBLE, NULL is NaN; arithmetic with NULL is NULL;
a comparison with NULL is false (it only appears in CASE conditions); `greatest` and `least`
skip NULLs, as SQL engines do; counts of nothing are 0, a sum, minimum or maximum of nothing is
NULL. Every denominator must be guarded (`nullif`, `greatest`), because engines differ on
division by zero (DuckDB gives inf, Spark's ANSI mode raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DAY = 86400.0

# aggregates of a text contact column (`Agg.contact`), over the events whose contact is known:
# contact_events    how many there are;
# contact_distinct  how many different contacts they have (COUNT DISTINCT of the raw text);
# contact_usual     how many have the customer's usual contact: the most frequent contact among
#                   the events whose age lies in `ref` (lo, hi] days, ties to the smallest text
#                   (both engines and Arrow compare text by its UTF-8 bytes); none without such
#                   events;
# contact_change_age  the age of the latest event whose contact differs from the previous
#                   event's, in the order (ts, contact) over all the customer's past events;
#                   NULL when the contact never changed.
CONTACT_KINDS = ("contact_events", "contact_distinct", "contact_usual", "contact_change_age")
AGG_KINDS = ("count", "sum", "count_values", "min_age", "max_age", "min_ts", "max_ts", "days",
             *CONTACT_KINDS)
# kinds whose empty result is 0 rather than NULL
COUNT_KINDS = frozenset({"count", "count_values", "days", "contact_events", "contact_distinct",
                         "contact_usual"})
FUNCTIONS = ("coalesce", "nullif", "greatest", "least", "floor")


def lift(value: Expr | float | int) -> Expr:
    return value if isinstance(value, Expr) else Const(value)


class Expr:
    """Base of all expression nodes; arithmetic and comparison operators build new nodes."""

    def __add__(self, other): return Op("+", self, lift(other))
    def __radd__(self, other): return Op("+", lift(other), self)
    def __sub__(self, other): return Op("-", self, lift(other))
    def __rsub__(self, other): return Op("-", lift(other), self)
    def __mul__(self, other): return Op("*", self, lift(other))
    def __rmul__(self, other): return Op("*", lift(other), self)
    def __truediv__(self, other): return Op("/", self, lift(other))
    def __rtruediv__(self, other): return Op("/", lift(other), self)
    def __le__(self, other): return Op("<=", self, lift(other))
    def __lt__(self, other): return Op("<", self, lift(other))
    def __ge__(self, other): return Op(">=", self, lift(other))
    def __gt__(self, other): return Op(">", self, lift(other))

    def eq(self, other) -> Op:
        return Op("=", self, lift(other))

    def and_(self, other) -> Op:
        return Op("AND", self, lift(other))

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True, eq=False)
class Const(Expr):
    value: float | int


@dataclass(frozen=True, eq=False)
class Row(Expr):
    """A column of the observation row: as_of, signup or an attribute column (epoch seconds
    for times)."""

    name: str


@dataclass(frozen=True, eq=False)
class Agg(Expr):
    """An aggregate over the customer's events with ts < as_of, of `event_type` (None: every
    type) or of any type in `event_types` (the activity types), whose age (as_of - ts) lies in
    (lo, hi] days (None: unbounded). `value` names the value column of sum and count_values;
    `contact` the contact column (its slug) of the contact kinds, and `ref` the (lo, hi] window
    of contact_usual's usual contact."""

    kind: str
    event_type: str | None = None
    lo: float | None = None
    hi: float | None = None
    value: str | None = None
    event_types: tuple[str, ...] | None = None
    contact: str | None = None
    ref: tuple[float | None, float | None] | None = None

    def __post_init__(self):
        if self.kind not in AGG_KINDS:
            raise ValueError(f"aggregate kind must be one of {AGG_KINDS}, not {self.kind!r}")
        if (self.value is None) == (self.kind in ("sum", "count_values")):
            raise ValueError(f"{self.kind}: a value column is needed exactly for sum and "
                             "count_values")
        if self.event_types is not None and (self.event_type is not None
                                             or not self.event_types):
            raise ValueError("event_types: a non-empty set of types, without event_type")
        if self.kind == "days" and (self.event_type is not None or self.lo is not None):
            raise ValueError("days: only all event types (or a set) and windows that end at as_of")
        contact_kind = self.kind in CONTACT_KINDS
        if (self.contact is None) == contact_kind:
            raise ValueError(f"{self.kind}: a contact column is needed exactly for "
                             f"{', '.join(CONTACT_KINDS)}")
        if contact_kind and self.event_type is not None:
            raise ValueError(f"{self.kind}: only all event types")
        if (self.ref is None) == (self.kind == "contact_usual"):
            raise ValueError(f"{self.kind}: a reference window is needed exactly for "
                             "contact_usual")
        if self.kind == "contact_change_age" and (self.lo is not None or self.hi is not None):
            raise ValueError("contact_change_age: only the whole past")

    @property
    def key(self) -> tuple:
        return (self.kind, self.event_type, self.lo, self.hi, self.value, self.event_types,
                self.contact, self.ref)

    @property
    def partial_key(self) -> tuple:
        """The key without the event type: one partial per (observation, event type)."""
        return (self.kind, self.lo, self.hi, self.value, self.contact, self.ref)


@dataclass(frozen=True, eq=False)
class Op(Expr):
    op: str
    a: Expr
    b: Expr

    def children(self):
        return (self.a, self.b)


@dataclass(frozen=True, eq=False)
class Fn(Expr):
    name: str
    args: tuple[Expr, ...]

    def __post_init__(self):
        if self.name not in FUNCTIONS:
            raise ValueError(f"function must be one of {FUNCTIONS}, not {self.name!r}")

    def children(self):
        return self.args


@dataclass(frozen=True, eq=False)
class Case(Expr):
    """CASE WHEN c1 THEN v1 WHEN c2 THEN v2 ... ELSE otherwise END (otherwise None: NULL)."""

    whens: tuple[tuple[Expr, Expr], ...]
    otherwise: Expr | None = None

    def children(self):
        out = [x for pair in self.whens for x in pair]
        return (*out, self.otherwise) if self.otherwise is not None else tuple(out)


def coalesce(*args) -> Fn: return Fn("coalesce", tuple(map(lift, args)))
def nullif(a, b) -> Fn: return Fn("nullif", (lift(a), lift(b)))
def greatest(*args) -> Fn: return Fn("greatest", tuple(map(lift, args)))
def least(*args) -> Fn: return Fn("least", tuple(map(lift, args)))
def floor(a) -> Fn: return Fn("floor", (lift(a),))


def case(*whens: tuple[Expr, Expr | float], otherwise: Expr | float | None = None) -> Case:
    return Case(tuple((c, lift(v)) for c, v in whens),
                None if otherwise is None else lift(otherwise))


@dataclass(frozen=True, eq=False)
class Feature:
    """One feature: its output column and how it is computed. `categorical` features pass a
    string attribute through unchanged (their expr is a Row). `lower` is the smallest value the
    feature can take (0 for counts and day counts), so a feature row sent below it is refused.
    `words` is how a reason names it: a template for `scoring.reasons.render_reason` (its
    `kind` and the words to fill in)."""

    name: str
    expr: Expr
    categorical: bool = False
    lower: float | None = None
    words: dict | None = None


def walk(expr: Expr):
    yield expr
    for child in expr.children():
        yield from walk(child)


def aggregates(features: list[Feature]) -> list[Agg]:
    """The distinct aggregates the features use, in first-use order."""
    seen: dict[tuple, Agg] = {}
    for f in features:
        for node in walk(f.expr):
            if isinstance(node, Agg):
                seen.setdefault(node.key, node)
    return list(seen.values())


def rows(features: list[Feature]) -> list[str]:
    seen: dict[str, None] = {}
    for f in features:
        for node in walk(f.expr):
            if isinstance(node, Row):
                seen.setdefault(node.name)
    return list(seen)


# ---------------------------------------------------------------------------------------------
# SQL
# ---------------------------------------------------------------------------------------------


def sql_literal(value: float | int) -> str:
    """A number as SQL: integers as they are, floats with an exponent, which both DuckDB and
    Spark read as DOUBLE (a plain `86400.0` is a DECIMAL in both)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if not np.isfinite(value):
        raise ValueError("constants must be finite")
    text = repr(float(value))
    return text if "e" in text else text + "E0"


_SQL_FUNCTIONS = {"coalesce": "COALESCE", "nullif": "NULLIF", "greatest": "GREATEST",
                  "least": "LEAST", "floor": "FLOOR"}


def to_sql(expr: Expr, name_of: Callable[[Expr], str]) -> str:
    """The SQL text of an expression; `name_of` gives the column of an Agg or a Row."""
    if isinstance(expr, Const):
        return sql_literal(expr.value)
    if isinstance(expr, (Agg, Row)):
        return name_of(expr)
    if isinstance(expr, Op):
        return f"({to_sql(expr.a, name_of)} {expr.op} {to_sql(expr.b, name_of)})"
    if isinstance(expr, Fn):
        args = ", ".join(to_sql(a, name_of) for a in expr.args)
        return f"{_SQL_FUNCTIONS[expr.name]}({args})"
    if isinstance(expr, Case):
        whens = " ".join(f"WHEN {to_sql(c, name_of)} THEN {to_sql(v, name_of)}"
                         for c, v in expr.whens)
        tail = f" ELSE {to_sql(expr.otherwise, name_of)}" if expr.otherwise is not None else ""
        return f"CASE {whens}{tail} END"
    raise TypeError(f"not an expression: {expr!r}")


# ---------------------------------------------------------------------------------------------
# NumPy
# ---------------------------------------------------------------------------------------------

_NP_OPS: dict[str, Callable] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
    "<=": np.less_equal, "<": np.less, ">=": np.greater_equal, ">": np.greater, "=": np.equal,
    "AND": np.logical_and,
}


def source_key(node: Agg | Row) -> tuple:
    """The key under which an evaluator holds an aggregate's or a row column's values."""
    return node.key if isinstance(node, Agg) else ("row", node.name)


def _coalesce(*args):
    out = args[0]
    for a in args[1:]:
        out = np.where(np.isnan(out), a, out)
    return out


def _nullif(a, b):
    return np.where(a == b, np.nan, a)


def _reduce_with(func):
    def run(*args):
        out = args[0]
        for a in args[1:]:
            out = func(out, a)
        return out
    return run


_NP_FUNCTIONS: dict[str, Callable] = {
    "coalesce": _coalesce, "nullif": _nullif, "greatest": _reduce_with(np.fmax),
    "least": _reduce_with(np.fmin), "floor": np.floor,
}


def shape_key(expr: Expr) -> tuple:
    """The expression's structure with every aggregate as a blank: entries with the same shape
    (a count per window and type, a trend per type) can be evaluated together."""
    if isinstance(expr, Agg):
        return ("agg",)
    if isinstance(expr, Row):
        return ("row", expr.name)
    if isinstance(expr, Const):
        return ("const", float(expr.value))
    if isinstance(expr, Op):
        return ("op", expr.op, shape_key(expr.a), shape_key(expr.b))
    if isinstance(expr, Fn):
        return ("fn", expr.name, *map(shape_key, expr.args))
    if isinstance(expr, Case):
        return ("case", tuple((shape_key(c), shape_key(v)) for c, v in expr.whens),
                None if expr.otherwise is None else shape_key(expr.otherwise))
    raise TypeError(f"not an expression: {expr!r}")


def agg_leaves(expr: Expr) -> list[Agg]:
    """The expression's aggregates in traversal order (one per blank of its shape)."""
    return [node for node in walk(expr) if isinstance(node, Agg)]


def numpy_function(expr: Expr, key_of: Callable[[Expr], object] | None = None
                   ) -> Callable[[dict], np.ndarray | float]:
    """The expression compiled to a function of {key: array} that returns a float64 array
    (NaN for NULL) or a scalar, or for a comparison a boolean array (false where SQL would give
    NULL). `key_of` names the env entry of an aggregate or row (default: `source_key`)."""
    key_of = key_of or source_key
    if isinstance(expr, Const):
        value = float(expr.value)
        return lambda env: value
    if isinstance(expr, (Agg, Row)):
        key = key_of(expr)
        return lambda env: env[key]
    if isinstance(expr, Op):
        func, a, b = (_NP_OPS[expr.op], numpy_function(expr.a, key_of),
                      numpy_function(expr.b, key_of))
        return lambda env: func(a(env), b(env))
    if isinstance(expr, Fn):
        func, args = _NP_FUNCTIONS[expr.name], [numpy_function(a, key_of) for a in expr.args]
        return lambda env: func(*(a(env) for a in args))
    if isinstance(expr, Case):
        whens = [(numpy_function(c, key_of), numpy_function(v, key_of))
                 for c, v in reversed(expr.whens)]
        otherwise = None if expr.otherwise is None else numpy_function(expr.otherwise, key_of)

        def run(env):
            out = np.nan if otherwise is None else otherwise(env)
            for cond, value in whens:
                out = np.where(cond(env), value(env), out)
            return out
        return run
    raise TypeError(f"not an expression: {expr!r}")
