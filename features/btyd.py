"""Buy-till-you-die: the BG/NBD model (Fader, Hardie & Lee 2005) on numpy and scipy alone.

Why: a probabilistic, label-free baseline for churn. From each customer's repeat-purchase count and
timing it gives the probability that the customer is still active and the number of purchases to expect
over a horizon, with four population parameters fitted by maximum likelihood.

The model, in the paper's notation, for one customer whose first purchase is at time 0:

* while active, purchases follow a Poisson process with rate ``lambda ~ Gamma(r, alpha)`` (shape ``r``,
  rate ``alpha``, so ``alpha`` is in the time unit of the data: days here);
* right after each *repeat* purchase the customer drops out for good with probability ``p ~ Beta(a, b)``.

Per customer the data are ``x`` (frequency: number of repeat purchases), ``t_x`` (recency: time from the
first to the last purchase, 0 when ``x == 0``) and ``T`` (age: time from the first purchase to the end of
observation). Every time here is in days.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import integrate, optimize, special

__all__ = [
    "DAY_SECONDS",
    "BGNBDParams",
    "SimulatedCohort",
    "bgnbd_log_likelihood",
    "expected_purchases",
    "fit_bgnbd",
    "p_alive",
    "p_no_purchase",
    "rfm_summary",
    "simulate_bgnbd",
    "simulate_bgnbd_events",
]

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0

# Bounds on the log-parameters during the fit (on the internal time scale, where the largest age is 1).
# They keep every intermediate value finite; a fit that ends on one signals data that pin nothing down.
_LOG_BOUND = 18.0
# Within this distance of a == 1 the closed form of expected_purchases is 0/0 (removable); it is evaluated
# on both sides and interpolated linearly (the function is smooth in a, so the error is O(_A_NUDGE**2)).
_A_NUDGE = 1e-4
# Relative accuracy only: the expectations can be tiny (short horizons), so no absolute tolerance.
_QUAD_OPTIONS = {"limit": 400, "epsabs": 0.0, "epsrel": 1e-10}

FloatArray = npt.NDArray[np.float64]
Seed = int | np.random.Generator | None


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


def _rfm_arrays(
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


def _distinct(x: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """The distinct frequencies and each row's position among them (NaN rows share one).

    The gamma- and beta-function terms depend on x alone, so they are computed once per distinct x
    (a few hundred values) instead of once per customer.
    """
    values, index = np.unique(x.ravel(), return_inverse=True)
    return values, index.reshape(x.shape)


def _log_likelihood_terms(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    distinct: tuple[FloatArray, npt.NDArray[np.intp]],
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per customer: the log-likelihood, the two weights exp(A3 - lse), exp(A4 - lse) of its log-sum-exp
    lse, ln(alpha + T) and ln(alpha + t_x) (the last four serve the gradient).

    ll = ln B(a, b + x) - ln B(a, b) + ln Gamma(r + x) - ln Gamma(r) + r ln alpha + lse(A3, A4) with
    A3 = -(r + x) ln(alpha + T) and, for x > 0 only, A4 = ln a - ln(b + x - 1) - (r + x) ln(alpha + t_x).
    """
    xu, xi = distinct
    with np.errstate(divide="ignore", invalid="ignore"):
        constant_u = (
            special.gammaln(r + xu) - special.gammaln(r) + special.betaln(a, b + xu) - special.betaln(a, b)
        )
        log_b_x1_u = np.where(xu > 0, np.log(b + xu - 1.0), np.inf)
        rx = r + x
        log_at, log_atx = np.log(alpha + T), np.log(alpha + t_x)
        a3 = -rx * log_at
        a4 = math.log(a) - log_b_x1_u[xi] - rx * log_atx
    lse = np.logaddexp(a3, a4)
    ll = constant_u[xi] + r * math.log(alpha) + lse
    return ll, np.exp(a3 - lse), np.exp(a4 - lse), log_at, log_atx


def bgnbd_log_likelihood(
    params: BGNBDParams, frequency: npt.ArrayLike, recency: npt.ArrayLike, age: npt.ArrayLike
) -> FloatArray:
    """Per-customer BG/NBD log-likelihood ln L(r, alpha, a, b | x, t_x, T) (FHL 2005, eq. 6).

    Written as ln B(a, b + x) - ln B(a, b) + ln Gamma(r + x) - ln Gamma(r) + r ln alpha plus the
    log-sum-exp of -(r + x) ln(alpha + T) and, for x > 0, ln a - ln(b + x - 1) - (r + x) ln(alpha + t_x),
    so that nothing under- or overflows. NaN where an input is NaN. Its sum is what ``fit_bgnbd``
    maximises (and what ``lifetimes``' BetaGeoFitter maximises, up to the time scale).
    """
    x, t_x, T = _rfm_arrays(frequency, recency, age)
    ll, *_ = _log_likelihood_terms(params.r, params.alpha, params.a, params.b, x, t_x, T, _distinct(x))
    return ll


def _objective(
    theta: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    T: FloatArray,
    w: FloatArray,
    distinct: tuple[FloatArray, npt.NDArray[np.intp]],
    w_distinct: FloatArray,
    penalizer: float,
) -> tuple[float, FloatArray]:
    """Weighted mean negative log-likelihood plus penalty, and its gradient in the log-parameters.

    ``w`` sums to 1 and ``w_distinct`` is its sum over each distinct frequency.
    """
    r, alpha, a, b = np.exp(theta)
    ll, w3, w4, log_at, log_atx = _log_likelihood_terms(r, alpha, a, b, x, t_x, T, distinct)
    xu, xi = distinct
    # Plain multiply-and-sum rather than `@`: BLAS dot products on large vectors go multi-threaded,
    # which made each evaluation 10x slower and erratic on a busy machine.
    ww3, ww4 = w * w3, w * w4
    ww4_distinct = np.bincount(xi, weights=ww4, minlength=len(xu))
    rx = r + x
    psi_ab, psi_abx = special.digamma(a + b), special.digamma(a + b + xu)
    inv_b_x1_u = 1.0 / np.where(xu > 0, b + xu - 1.0, np.inf)
    d_r = (
        np.sum(w_distinct * (special.digamma(r + xu) - special.digamma(r)))
        + math.log(alpha)
        - np.sum(ww3 * log_at + ww4 * log_atx)
    )
    d_alpha = r / alpha - np.sum(rx * (ww3 / (alpha + T) + ww4 / (alpha + t_x)))
    d_a = np.sum(w_distinct * (psi_ab - psi_abx)) + np.sum(ww4_distinct) / a
    d_b = np.sum(
        w_distinct * (psi_ab + special.digamma(b + xu) - special.digamma(b) - psi_abx)
        - ww4_distinct * inv_b_x1_u
    )
    params = np.array([r, alpha, a, b])
    value = -float(np.sum(w * ll)) + penalizer * float(np.sum(params**2))
    grad = -np.array([d_r, d_alpha, d_a, d_b]) * params + 2.0 * penalizer * params**2
    if not math.isfinite(value) or not np.all(np.isfinite(grad)):
        # Only reachable at extreme parameter values; steer the optimiser back.
        return 1e300, np.zeros(4)
    return value, grad


def _compress(
    x: FloatArray, t_x: FloatArray, T: FloatArray, w: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Identical (x, t_x, T) rows merged into one with the summed weight."""
    rows, inverse = np.unique(np.column_stack([x, t_x, T]), axis=0, return_inverse=True)
    counts = np.bincount(inverse.ravel(), weights=w, minlength=len(rows))
    return rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy(), counts


def fit_bgnbd(
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    age: npt.ArrayLike,
    penalizer: float = 0.0,
    weights: npt.ArrayLike | None = None,
) -> BGNBDParams:
    """Maximum-likelihood BG/NBD parameters for a cohort.

    ``weights`` are counts of customers sharing one (x, t_x, T) row (any non-negative numbers work).
    Identical rows are merged internally whatever the input, so 100k customers with integer-day
    summaries cost a few thousand likelihood terms. Rows with a NaN (customers never seen, see
    ``rfm_summary``) or zero weight are skipped.

    The optimiser (L-BFGS-B with the analytic gradient) works on log-parameters, bounded to keep every
    value finite, with times divided by the largest age (``alpha`` is rescaled back to days).
    The objective is the weighted mean negative log-likelihood plus
    ``penalizer * (r**2 + alpha_s**2 + a**2 + b**2)``, with ``alpha_s`` the alpha on that internal scale,
    which is exactly ``lifetimes``' ``penalizer_coef``. A small penalizer (e.g. 0.001) tames the
    degenerate fits of tiny or nearly dropout-free cohorts.

    Raises ValueError when no usable customer is left, when every usable age is 0 (nothing to fit), or
    on invalid inputs (negative values, recency above age, fractional frequency, negative weights).
    """
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError(f"penalizer must be a finite non-negative number, got {penalizer!r}")
    x, t_x, T = _rfm_arrays(frequency, recency, age)
    if x.ndim != 1:
        x, t_x, T = x.ravel(), t_x.ravel(), T.ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != x.shape:
        raise ValueError("weights must have one entry per customer row")
    if np.any(np.isnan(w)) or np.any(w < 0) or np.any(np.isinf(w)):
        raise ValueError("weights must be finite and non-negative")
    usable = np.isfinite(x) & np.isfinite(t_x) & np.isfinite(T) & (w > 0)
    if not np.any(usable):
        raise ValueError(
            "fit_bgnbd needs at least one customer with finite frequency, recency and age "
            f"(got {x.size} rows, none usable)"
        )
    x, t_x, T, w = _compress(x[usable], t_x[usable], T[usable], w[usable])
    max_age = float(T.max())
    if max_age <= 0:
        raise ValueError("fit_bgnbd needs at least one customer with a positive age; all ages are 0")
    scale = 1.0 / max_age
    t_x, T = t_x * scale, T * scale
    w = w / w.sum()
    distinct = _distinct(x)
    w_distinct = np.bincount(distinct[1], weights=w, minlength=len(distinct[0]))

    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
    best: optimize.OptimizeResult | None = None
    # lifetimes' start first; the others only when the first run does not report convergence.
    for start in (np.full(4, 0.1), np.zeros(4), np.array([-1.0, 0.0, 0.5, 1.0])):
        result = optimize.minimize(
            _objective,
            start,
            args=(x, t_x, T, w, distinct, w_distinct, penalizer),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-9},
        )
        if np.all(np.isfinite(result.x)) and (best is None or result.fun < best.fun):
            best = result
        if best is not None and best.success:
            break
    if best is None:  # pragma: no cover - the objective is finite on the whole bounded box
        raise ValueError("fit_bgnbd could not evaluate the likelihood on these data")
    if not best.success:
        log.warning("BG/NBD fit did not converge (%s); returning the best point found", best.message)
    if np.any(np.abs(best.x) >= _LOG_BOUND - 1e-6):
        log.info("BG/NBD fit reached a parameter bound; consider a small penalizer")
    r, alpha_s, a, b = np.exp(best.x)
    return BGNBDParams(r=float(r), alpha=float(alpha_s / scale), a=float(a), b=float(b))


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
    x, _, T = _rfm_arrays(frequency, recency, age)
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
    x, t_x, T = _rfm_arrays(frequency, recency, age)
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
    x, t_x, T = _rfm_arrays(frequency, recency, age)
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


# --------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedCohort:
    """A cohort drawn from the BG/NBD model, with its hidden truth for benchmarks.

    ``customer`` and ``time`` are an event log in long form, sorted by customer then time: each
    customer's first row is its first purchase at time 0.0, the rest its repeat purchases in days since
    then, all within its ``age``. ``rate`` (lambda, per day), ``dropout`` (p) and ``alive`` (still active
    at ``age``) are per customer.
    """

    customer: npt.NDArray[np.int64]
    time: FloatArray
    age: FloatArray
    rate: FloatArray
    dropout: FloatArray
    alive: npt.NDArray[np.bool_]

    def summary(
        self, cutoff: float | npt.ArrayLike | None = None
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(frequency, recency, age) from the purchases at times <= ``cutoff`` (default: each age).

        With a cutoff shorter than the simulated ages, the later purchases are a hold-out period.
        """
        n = len(self.age)
        cut = self.age if cutoff is None else np.broadcast_to(np.asarray(cutoff, dtype=np.float64), (n,))
        if np.any(cut > self.age) or np.any(cut < 0):
            raise ValueError("cutoff must lie between 0 and each customer's simulated age")
        keep = self.time <= cut[self.customer]
        customer, time = self.customer[keep], self.time[keep]
        frequency = np.bincount(customer, minlength=n).astype(np.float64) - 1.0
        recency = np.zeros(n)
        np.maximum.at(recency, customer, time)
        return frequency, recency, cut.astype(np.float64, copy=True)

    def purchases_between(self, start: float | npt.ArrayLike, end: float | npt.ArrayLike) -> FloatArray:
        """Per customer, the number of repeat purchases at times in (start, end]."""
        n = len(self.age)
        lo = np.broadcast_to(np.asarray(start, dtype=np.float64), (n,))[self.customer]
        hi = np.broadcast_to(np.asarray(end, dtype=np.float64), (n,))[self.customer]
        inside = (self.time > lo) & (self.time <= hi)
        return np.bincount(self.customer[inside], minlength=n).astype(np.float64)


def simulate_bgnbd_events(
    params: BGNBDParams, n_customers: int, age_days: float | npt.ArrayLike, seed: Seed = None
) -> SimulatedCohort:
    """Draw a cohort's purchases from the BG/NBD process, exactly (no time discretisation).

    Per customer: lambda ~ Gamma(r, rate alpha), p ~ Beta(a, b), the repeat purchase J after which it
    drops out ~ Geometric(p) on {1, 2, ...}, and the Poisson(lambda) purchase times in (0, age]: given
    their count n they are n sorted uniforms, of which the first min(n, J) happen (drawn directly, so
    the cost is the purchases made, not those the customer would have made had it stayed).
    ``age_days`` is one age for all or one per customer. Turn the result into an event log with
    ``first_purchase_epoch[customer] + time * 86400``.
    """
    if n_customers < 0:
        raise ValueError("n_customers must not be negative")
    rng = np.random.default_rng(seed)
    age = np.broadcast_to(np.asarray(age_days, dtype=np.float64), (n_customers,)).copy()
    if not np.all(np.isfinite(age)) or np.any(age < 0):
        raise ValueError("age_days must be finite and non-negative")
    rate = rng.gamma(shape=params.r, scale=1.0 / params.alpha, size=n_customers)
    dropout = np.clip(rng.beta(params.a, params.b, size=n_customers), np.finfo(float).tiny, 1.0)
    lifetime_purchases = rng.geometric(dropout)
    arrivals = rng.poisson(rate * age)
    made = np.minimum(arrivals, lifetime_purchases)
    # The first `made` of `arrivals` sorted uniforms on (0, age], without drawing the others (Renyi):
    # -log(1 - U_(k)) = sum_{i < k} E_i / (n - i) with E_i ~ Exp(1), increasing in k.
    owner = np.repeat(np.arange(n_customers), made)
    starts = np.cumsum(made) - made
    rank = np.arange(owner.size) - starts[owner]
    steps = rng.standard_exponential(owner.size) / (arrivals[owner] - rank)
    totals = np.cumsum(steps)
    before_owner = (totals - steps)[starts[made > 0]]
    cumulative = totals - np.repeat(before_owner, made[made > 0])
    repeat_times = -np.expm1(-cumulative) * age[owner]
    customer = np.concatenate([np.arange(n_customers), owner])
    time = np.concatenate([np.zeros(n_customers), repeat_times])
    order = np.lexsort((time, customer))
    return SimulatedCohort(
        customer=customer[order].astype(np.int64),
        time=time[order],
        age=age,
        rate=rate,
        dropout=dropout,
        alive=arrivals < lifetime_purchases,
    )


def simulate_bgnbd(
    params: BGNBDParams, n_customers: int, age_days: float | npt.ArrayLike, seed: Seed = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(frequency, recency, age) of a cohort drawn from the BG/NBD model; see simulate_bgnbd_events."""
    return simulate_bgnbd_events(params, n_customers, age_days, seed).summary()
