"""The BG/NBD fit (`features.btyd`'s model): the log-likelihood and its maximisation over the
four population parameters, on numpy and scipy alone."""

from __future__ import annotations

import logging
import math

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

from features.btyd import BGNBDParams, FloatArray, rfm_arrays

log = logging.getLogger(__name__)

# Bounds on the log-parameters during the fit (on the internal time scale, where the largest age is 1).
# They keep every intermediate value finite; a fit that ends on one signals data that pin nothing down.
_LOG_BOUND = 18.0

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
    x, t_x, T = rfm_arrays(frequency, recency, age)
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
    x, t_x, T = rfm_arrays(frequency, recency, age)
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

