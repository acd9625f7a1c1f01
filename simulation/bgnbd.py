"""Cohorts drawn from the BG/NBD model (`features.btyd`), with their hidden truth, for tests
and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from features.btyd import BGNBDParams, FloatArray

Seed = int | np.random.Generator | None



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

