"""Buy-till-you-die: the BG/NBD model (Fader, Hardie & Lee 2005) on numpy and scipy alone.

Why: a probabilistic, label-free baseline for churn. From each customer's repeat-purchase count and
timing it gives the probability that the customer is still active and the number of purchases to expect
over a horizon, with four population parameters fitted by maximum likelihood.

The fit is `features.btyd_fit`; cohorts drawn from the model, `simulation.bgnbd`.

The model, in the paper's notation, for one customer whose first purchase is at time 0:

* while active, purchases follow a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` (shape ``r``,
  rate ``alpha``, so ``alpha`` is in the time unit of the data: days here);
* right after each *repeat* purchase the customer drops out for good with probability ``p ~ Beta(a, b)``.

Per customer the data are ``x`` (frequency: number of repeat purchases), ``t_x`` (recency: time from the
first to the last purchase, 0 when ``x == 0``) and ``T`` (age: time from the first purchase to the end of
observation). Every time here is in days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import integrate, special

__all__ = [
    "DAY_SECONDS",
    "BGNBDParams",
    "FloatArray",
    "expected_purchases",
    "p_alive",
    "p_no_purchase",
    "rfm_arrays",
    "rfm_summary",
]

DAY_SECONDS = 86400.0

# Within this distance of a == 1 the closed form of expected_purchases is 0/0 (removable); it is evaluated
# on both sides and interpolated linearly (the function is smooth in a, so the error is O(_A_NUDGE**2)).
_A_NUDGE = 1e-4
# Relative accuracy only: the expectations can be tiny (short horizons), so no absolute tolerance.
_QUAD_OPTIONS = {"limit": 400, "epsabs": 0.0, "epsrel": 1e-10}

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class BGNBDParams:
    """The four BG/NBD population parameters; ``alpha`` is in days (the time unit of the data)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not (isinstance(value, int | float | np.floating | np.integer) and math.isfinite(value)):
                raise ValueError(f"BGNBDParams.{name} must be a finite number, got {value!r}")
            if value <= 0:
                raise ValueError(f"BGNBDParams.{name} must be positive, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        """The parameters as plain floats, for JSON or an MLflow param log."""
        return {name: float(value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> BGNBDParams:
        """The inverse of ``to_dict``; extra keys are an error, so a wrong dict fails loudly."""
        expected = {"r", "alpha", "a", "b"}
        if set(data) != expected:
            raise ValueError(
                f"BGNBDParams.from_dict needs exactly the keys {sorted(expected)}, got {sorted(data)}"
            )
        return cls(**{key: float(data[key]) for key in expected})


# --------------------------------------------------------------------------------------------
# From an event log to (frequency, recency, age)
# --------------------------------------------------------------------------------------------


def rfm_summary(
    customer_ids: npt.ArrayLike,
    event_times: npt.ArrayLike,
    as_of: float,
    *,
    customers: npt.ArrayLike | None = None,
    day: float = DAY_SECONDS,
    day_origin: float = 0.0,
) -> pd.DataFrame:
    """Per customer, the BG/NBD inputs at ``as_of`` from purchase events in epoch seconds.

    Convention (the one of ``lifetimes.utils.summary_data_from_transaction_data`` with ``freq="D"``):
    time is cut into days ``[day_origin + k * day, day_origin + (k + 1) * day)`` (UTC days by default);
    only events strictly before ``as_of`` count, and several purchases on one day count as one.

    * ``frequency`` (x): number of distinct days with a purchase after the first purchase day;
    * ``recency`` (t_x): whole days from the first purchase day to the last purchase day;
    * ``T`` (age): whole days from the first purchase day to the last day the observation reaches into,
      that is the day of ``as_of`` itself when it falls inside a day, the day before when ``as_of`` is a
      day boundary.

    A customer with no event before ``as_of`` (listed in ``customers``, or in the log with later events
    only) gets ``frequency = 0``, ``recency = 0`` and ``T = NaN``: the model says nothing about them, the
    fit skips them and the predictions are NaN, so the caller decides what to do.

    Returns a frame indexed by ``customer_id`` with the columns ``frequency`` (int64), ``recency`` and
    ``T`` (float64), in the order of ``customers`` when given, else sorted by id.
    """
    ids = np.asarray(customer_ids)
    times = np.asarray(event_times, dtype=np.float64)
    if ids.ndim != 1 or times.ndim != 1 or len(ids) != len(times):
        raise ValueError("customer_ids and event_times must be 1-d arrays of the same length")
    if not np.all(np.isfinite(times)):
        raise ValueError("event_times must all be finite epoch seconds")
    if not (math.isfinite(as_of) and math.isfinite(day) and day > 0 and math.isfinite(day_origin)):
        raise ValueError("as_of and day_origin must be finite and day positive")

    before = times < as_of
    days = np.floor((times[before] - day_origin) / day)
    last_observed_day = math.ceil((as_of - day_origin) / day) - 1
    frame = pd.DataFrame({"customer_id": ids[before], "day": days})
    grouped = frame.groupby("customer_id", sort=True)["day"]
    first, last, distinct = grouped.min(), grouped.max(), grouped.nunique()
    summary = pd.DataFrame(
        {
            "frequency": (distinct - 1).astype("int64"),
            "recency": (last - first).astype("float64"),
            "T": (last_observed_day - first).astype("float64"),
        }
    )
    universe = pd.Index(np.unique(ids) if customers is None else np.asarray(customers), name="customer_id")
    if universe.has_duplicates:
        raise ValueError("customers must not repeat an id")
    summary = summary.reindex(universe)
    summary["frequency"] = summary["frequency"].fillna(0).astype("int64")
    summary["recency"] = summary["recency"].fillna(0.0)
    return summary


# --------------------------------------------------------------------------------------------
# Likelihood and fit
# --------------------------------------------------------------------------------------------


def rfm_arrays(
    frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Float arrays broadcast together, checked: whole x >= 0 and 0 <= t_x <= T, no inf. NaN passes."""
    x, t_x, T = np.broadcast_arrays(
        np.asarray(frequency, dtype=np.float64),
        np.asarray(recency, dtype=np.float64),
        np.asarray(age, dtype=np.float64),
    )
    with np.errstate(invalid="ignore"):
        if np.any(x < 0) or np.any(t_x < 0) or np.any(T < 0):
            raise ValueError("frequency, recency and age must not be negative")
        if np.any(t_x > T):
            raise ValueError("recency must not exceed age")
        if np.any(np.isinf(x)) or np.any(np.isinf(t_x)) or np.any(np.isinf(T)):
            raise ValueError("frequency, recency and age must be finite (or NaN for unknown)")
        if np.any(np.isfinite(x) & (x != np.floor(x))):
            raise ValueError("frequency must be a whole number of repeat purchases")
    return x, t_x, T



# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------


def p_no_purchase(
    params: BGNBDParams, horizon_days: float, frequency: npt.ArrayLike, recency: npt.ArrayLike,
    age: npt.ArrayLike,
) -> FloatArray:
    """P(no purchase in (T, T + horizon] | x, t_x, T): the BG/NBD probability that an inactivity
    label ("no event in the horizon") is 1.

    Either the customer has already dropped out (1 - P(alive)), or they are alive and their
    Poisson process makes no purchase in the horizon; a customer can only drop out right after
    a purchase, so that is E[exp(-lambda h)] under the posterior lambda ~ Gamma(r + x, alpha + T):
    ((alpha + T) / (alpha + T + h))**(r + x)."""
    x, _, T = rfm_arrays(frequency, recency, age)
    alive = p_alive(params, frequency, recency, age)
    quiet = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + horizon_days)))
    return (1.0 - alive) + alive * quiet


def p_alive(
    params: BGNBDParams, frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> FloatArray:
    """P(still active at T | x, t_x, T) (FHL 2005, eq. 13); exactly 1 when x == 0, NaN for NaN input.

    1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x))**(r + x)), evaluated as the logistic of
    the log-odds so that it neither overflows nor loses precision.
    """
    x, t_x, T = rfm_arrays(frequency, recency, age)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)
    log_odds_dead = math.log(a) - np.log(b_x1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    prob = np.where(repeat, special.expit(-log_odds_dead), 1.0)
    return np.where(np.isnan(x) | np.isnan(t_x) | np.isnan(T), np.nan, prob)


def _alive_expectation_quad(s: float, u: float, a: float, bx: float) -> float:
    """E[(1 - (1 + p u)^-s) / p] for p ~ Beta(a, bx): purchases to expect over the horizon if alive.

    Gamma-Poisson in lambda, then the shifted-geometric dropout, leave this one-dimensional integral.
    It is split at p = 1/2; on each half an end-point singularity of the Beta density (a < 1 or
    bx < 1) goes to quad's algebraic weight and the rest, in log space, to the integrand, with the
    density's mode and the integrand's bend at p = 1/u as break points where there is no weight.
    """
    log_norm = special.betaln(a, bx)
    mode = (a - 1.0) / (a + bx - 2.0) if a > 1 and bx > 1 else 0.5

    def piece(lo: float, hi: float, weight_a: float, weight_b: float) -> float:
        rest_a, rest_b = a - 1.0 - weight_a, bx - 1.0 - weight_b

        def integrand(p: float) -> float:
            if (p <= 0.0 and rest_a > 0) or (p >= 1.0 and rest_b > 0):
                return 0.0
            grow = s * u if p <= 0.0 else -math.expm1(-s * math.log1p(p * u)) / p
            log_density = -log_norm
            if 0.0 < p < 1.0:
                log_density += rest_a * math.log(p) + rest_b * math.log1p(-p)
            return float(grow * math.exp(log_density))

        if weight_a == 0 and weight_b == 0:
            points = [q for q in (mode, 1.0 / u) if lo < q < hi]
            value, _ = integrate.quad(integrand, lo, hi, points=points or None, **_QUAD_OPTIONS)
        else:
            value, _ = integrate.quad(
                integrand, lo, hi, weight="alg", wvar=(weight_a, weight_b), **_QUAD_OPTIONS
            )
        return float(value)

    return piece(0.0, 0.5, min(a - 1.0, 0.0), 0.0) + piece(0.5, 1.0, 0.0, min(bx - 1.0, 0.0))


def _alive_expectation(s: FloatArray, u: FloatArray, a: float, bx: FloatArray) -> FloatArray:
    """(a + b + x - 1) / (a - 1) * (1 - G), G = ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z).

    With s = r + x, c = a + b + x - 1, u = t / (alpha + T) and z = u / (1 + u), G is computed twice with
    scipy's hyp2f1, through two exact identities that scipy evaluates along different paths:
    Pfaff's, G = 2F1(s, a - 1; c; -u), and Euler's, G = (1 - z)^(a - 1) 2F1(c - s, a - 1; c; z).
    hyp2f1 can lose digits or fail (inf/NaN) for large s, c or u; where the two disagree beyond 1e-9
    relative, or the result breaks the bounds 0 <= E <= s * u that the expectation must satisfy, the
    element is recomputed by adaptive quadrature of the integral form (accurate, but ~1 ms per element,
    so it is kept to the few elements that need it).
    """
    shape = np.shape(s)
    s, u, bx = np.ravel(s), np.ravel(u), np.ravel(bx)
    c = a + bx - 1.0
    scale = c / (a - 1.0)
    with np.errstate(all="ignore"):
        pfaff = scale * (1.0 - special.hyp2f1(s, a - 1.0, c, -u))
        euler = scale * (
            1.0 - np.exp(-(a - 1.0) * np.log1p(u)) * special.hyp2f1(c - s, a - 1.0, c, u / (1.0 + u))
        )
        value = np.asarray(0.5 * (pfaff + euler), dtype=np.float64)
        bad = ~(np.abs(pfaff - euler) <= 1e-9 * np.abs(value))
        bad |= (value < 0) | (value > s * u * (1.0 + 1e-9))
    bad &= np.isfinite(s) & np.isfinite(u) & np.isfinite(bx) & (u > 0)
    for i in np.flatnonzero(bad):
        value[i] = _alive_expectation_quad(float(s[i]), float(u[i]), a, float(bx[i]))
    return np.where(u == 0, 0.0, value).reshape(shape)


def expected_purchases(
    params: BGNBDParams,
    horizon_days: float | npt.ArrayLike,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
) -> FloatArray:
    """Expected number of purchases in (T, T + horizon] given (x, t_x, T) (FHL 2005, eq. 10).

    P(alive) times the expectation for a still-active customer, whose closed form needs the Gaussian
    hypergeometric 2F1 (scipy.special.hyp2f1; see ``_alive_expectation`` for the guards). The closed
    form has a removable 0/0 at a == 1: within 1e-4 of it, the values at 1 -/+ 1e-4 are interpolated.
    ``horizon_days`` broadcasts against the customer arrays; NaN inputs give NaN.
    """
    x, t_x, T = rfm_arrays(frequency, recency, age)
    t = np.asarray(horizon_days, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        if np.any(t < 0):
            raise ValueError("horizon_days must not be negative")
    t, x, t_x, T = np.broadcast_arrays(t, x, t_x, T)
    s = params.r + x
    u = t / (params.alpha + T)
    bx = params.b + x
    if abs(params.a - 1.0) < _A_NUDGE:
        below = _alive_expectation(s, u, 1.0 - _A_NUDGE, bx)
        above = _alive_expectation(s, u, 1.0 + _A_NUDGE, bx)
        alive = below + (params.a - 1.0 + _A_NUDGE) / (2.0 * _A_NUDGE) * (above - below)
    else:
        alive = _alive_expectation(s, u, params.a, bx)
    result = p_alive(params, x, t_x, T) * alive
    return np.where(np.isnan(t), np.nan, result)

