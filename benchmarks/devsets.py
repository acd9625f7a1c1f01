"""Development datasets for the quality benchmark, written in the project's data contract.

Each ``make_<name>(folder, seed)`` writes ``customers.parquet`` and ``events.parquet`` into ``folder`` and
returns a ``DevSet`` that says how the benchmark should use it: the label kind, the horizon and the
``cutoff`` at which the product (trained on ``truncate(customers, events, cutoff)``) scores, with outcomes
judged in ``(cutoff, cutoff + horizon]`` on the full files. Every file ends at the end of its log, so
``cutoff + horizon`` never reaches past what was observed.

Dev sets:

* ``subscription``: ``simulation.generate`` (kind "subscription"), cut to its last ~120 days of log;
  explicit churn dates, horizon 31 days.
* ``shop_btyd``: a shop whose purchases follow a BG/NBD process with known parameters (``BTYD_PARAMS``),
  customers acquired over the first ~3 months of a ~9-month log; inactivity label, horizon 91 days.
* ``shop_generator``: ``simulation.generate`` (kind "retail"); inactivity label, horizon 91 days.
* ``shop_baskets``: a high-frequency shop whose events are basket line items (several events at one
  timestamp) with ``quantity``, ``discount`` and a ``store`` text column, demographics for a third of
  ~2,500 customers, Pareto/NBD-like trips with seasonality over two years; inactivity label, horizon
  60 days.
* ``fightchurn_crm6``: the ChurnSim simulator of the ``fightchurn`` package (PyPI, 1.2.0), product
  ``crm6`` (a multi-user B2B CRM with monthly, 6-monthly and annual plans), run without its PostgreSQL
  database in a separate interpreter that has ``fightchurn`` installed; explicit churn dates, horizon 31.

Run ``python benchmarks/devsets.py`` to build them all into /tmp/devsets and print their sizes, churn
rates at the cutoff and the ROC-AUC of each classical baseline (``benchmarks/baselines.py``).

Only numpy and pandas are imported at module level: the fightchurn worker (``--fightchurn-worker``)
runs this file in an interpreter that has fightchurn (and numpy, pandas >= 2.2, omegaconf, filelock,
joblib, python-dateutil) but not the project's dependencies.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DAY = pd.Timedelta(days=1)
CUSTOMERS_FILE = "customers.parquet"
EVENTS_FILE = "events.parquet"

# BG/NBD parameters of the `shop_btyd` dev set (days). r / alpha = 0.0125 purchases per day while
# active (about 4.6 a year) with a strongly skewed spread across customers (Gamma shape 0.5); after each
# repeat purchase a customer leaves for good with probability p ~ Beta(0.7, 2.8) (mean 0.2, so about
# five repeat purchases on average before dropping out). Chosen to look like an online shop where most
# customers buy a few times a year and many never come back; they are not fitted to any real data set.
BTYD_PARAMS = {"r": 0.5, "alpha": 40.0, "a": 0.7, "b": 2.8}
BTYD_LOG_START = pd.Timestamp("2025-01-01")

FIGHTCHURN_VERSION = "1.2.0"
# Our settings for ChurnSim's crm6 (see make_fightchurn_crm6). Its own churn settings (monthly acausal
# churn 0.02, churn transition scale 0.001 and offset -4) put a month's churn chance at 2-5% even for
# customers with negative utility, so ~95% of churn is the acausal draw and no model can rank it. Here a
# customer with zero utility has a ~20% monthly churn intent, one at the median utility (~7,000) ~1%,
# and the acausal rate is 0.5% a month. Churn intent is a fixed trait per customer, so the unhappy leave
# early; a fast-growing customer base (20% more new customers each month, from 400 in the first month
# instead of crm6's 4% from 2,000) keeps enough young customers, and churners, at the cutoff within
# ~1M event rows.
CRM6_CHURN = {
    "growth_rate": 0.2,
    "acausal_churn": 0.005,
    "transition": {"churn": {"scale": 0.0005, "offset": -1.4}},
}
FIGHTCHURN_VENV = Path("/tmp/fc-venv")
# What the worker needs in its interpreter. fightchurn itself pins pandas~=2.0 and python-dateutil~=2.8
# (and, through its metadata, PostgreSQL drivers, xgboost, shap, ...), so it cannot join the project's
# environment; installed --no-deps, the simulator runs with these alone (PostgreSQL and hydra imports are
# stubbed out by the worker, which never touches a database).
FIGHTCHURN_REQUIREMENTS = (
    "numpy>=2", "pandas>=2.2", "omegaconf>=2.3", "filelock", "joblib", "python-dateutil"
)


@dataclass(frozen=True)
class DevSet:
    """One dev set on disk and how the benchmark should score it."""

    name: str
    folder: Path
    label: str  # "explicit" | "inactivity"
    horizon_days: int
    cutoff: pd.Timestamp  # score here; outcomes in (cutoff, cutoff + horizon] come from the full files
    description: str
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the true BG/NBD parameters

    @property
    def customers_path(self) -> Path:
        return self.folder / CUSTOMERS_FILE

    @property
    def events_path(self) -> Path:
        return self.folder / EVENTS_FILE

    def load(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The full (customers, events) frames as written."""
        return pd.read_parquet(self.customers_path), pd.read_parquet(self.events_path)


# ---------------------------------------------------------------------------------------------
# Helpers shared by the dev sets
# ---------------------------------------------------------------------------------------------


def truncate(
    customers: pd.DataFrame, events: pd.DataFrame, at: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The data as they looked at ``at``: no event at or after ``at``, no churn date after it.

    Customers who signed up after ``at`` are removed, churn dates after ``at`` become empty (NaT) and only
    events strictly before ``at`` (of customers still listed) are kept. A churn date exactly at ``at``
    stays: the product counts it as churned by ``at`` (candidates need ``churned_at > as_of``), and
    blanking it would make that customer a candidate here but not in the full data.
    """
    at = pd.Timestamp(at)
    cust = customers.loc[customers["signup_at"] <= at].copy()
    if "churned_at" in cust:
        cust["churned_at"] = cust["churned_at"].where(cust["churned_at"] <= at)
    ev = events.loc[(events["timestamp"] < at) & events["customer_id"].isin(cust["customer_id"])]
    return cust.reset_index(drop=True), ev.reset_index(drop=True)


def _write(folder: Path, customers: pd.DataFrame, events: pd.DataFrame) -> None:
    """Sort, type and write the two Parquet files of the contract."""
    folder.mkdir(parents=True, exist_ok=True)
    customers = customers.copy()
    events = events.copy()
    customers["customer_id"] = customers["customer_id"].astype(str)
    events["customer_id"] = events["customer_id"].astype(str)
    for column in ("signup_at", "churned_at"):
        if column in customers:
            customers[column] = pd.to_datetime(customers[column]).astype("datetime64[us]")
    events["timestamp"] = pd.to_datetime(events["timestamp"]).astype("datetime64[us]")
    events["event_type"] = events["event_type"].astype(str)
    events = events.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)
    customers = customers.sort_values("customer_id").reset_index(drop=True)
    customers.to_parquet(folder / CUSTOMERS_FILE, index=False)
    events.to_parquet(folder / EVENTS_FILE, index=False)


def _log_end(customers: pd.DataFrame, events: pd.DataFrame) -> pd.Timestamp:
    """The last moment observed: the latest event or churn date (as the product's `data_end`)."""
    ends = [events["timestamp"].max()]
    if "churned_at" in customers and customers["churned_at"].notna().any():
        ends.append(customers["churned_at"].max())
    return pd.Timestamp(max(ends))


def _cutoff(end: pd.Timestamp, horizon_days: int) -> pd.Timestamp:
    """The latest midnight whose horizon lies inside the log."""
    return (end - pd.Timedelta(days=horizon_days)).floor("D")


# ---------------------------------------------------------------------------------------------
# a. subscription: the project's generator, short history, explicit churn
# ---------------------------------------------------------------------------------------------


def make_subscription(
    folder: Path, seed: int = 0, n_generated: int = 8000, log_days: int = 120, horizon_days: int = 31
) -> DevSet:
    """The generator's subscription history, keeping only its last ``log_days`` of events.

    Customers who churned before the log starts are dropped (a recent export would not list them);
    the others keep their real signup dates, so tenure is known beyond the log. About 60% of the
    ``n_generated`` customers survive into the last 120 days (~5,000 of 8,000, ~190k events).
    """
    from simulation.generate import generate

    customers, events = generate(n_generated, seed=seed, kind="subscription")
    end = _log_end(customers, events)
    start = end - pd.Timedelta(days=log_days)
    keep = customers["churned_at"].isna() | (customers["churned_at"] >= start)
    customers = customers.loc[keep].reset_index(drop=True)
    events = events.loc[(events["timestamp"] >= start) & events["customer_id"].isin(customers["customer_id"])]
    _write(folder, customers, events)
    return DevSet(
        name="subscription",
        folder=folder,
        label="explicit",
        horizon_days=horizon_days,
        cutoff=_cutoff(end, horizon_days),
        description=(
            f"simulation.generate subscription (seed {seed}, {n_generated} generated), only the last "
            f"{log_days} days of events; explicit churn dates"
        ),
        extra={"log_start": start, "log_end": end},
    )


# ---------------------------------------------------------------------------------------------
# b. shop_btyd: purchases from a BG/NBD process with known parameters
# ---------------------------------------------------------------------------------------------


def make_shop_btyd(
    folder: Path,
    seed: int = 0,
    n_customers: int = 10000,
    log_days: int = 273,
    acquisition_days: int = 91,
    horizon_days: int = 91,
) -> DevSet:
    """A shop simulated from BG/NBD (``BTYD_PARAMS``): first purchases (signups) spread uniformly over
    the first ``acquisition_days`` of a ``log_days`` log, then the model's repeat purchases.

    Each purchase is a ``purchase`` event with an ``amount`` (per-customer mean spend ~ lognormal around
    45, each order lognormal around it with sigma 0.35, independent of frequency as in Gamma-Gamma)
    and a ``quantity`` (1 + Poisson, growing with the order value). Continuous purchase days become
    timestamps rounded to the second. No churn dates: the label is inactivity.
    """
    from features.btyd import BGNBDParams
    from simulation.bgnbd import simulate_bgnbd_events

    rng = np.random.default_rng([seed, 1])
    params = BGNBDParams(**BTYD_PARAMS)
    first_day = rng.uniform(0.0, acquisition_days, n_customers)
    age = log_days - first_day
    cohort = simulate_bgnbd_events(params, n_customers, age, seed=np.random.default_rng([seed, 2]))
    ids = np.array([f"B{i:06d}" for i in range(n_customers)])
    owner = cohort.customer
    seconds = np.round((first_day[owner] + cohort.time) * 86400.0)
    mean_spend = rng.lognormal(np.log(45.0), 0.5, n_customers)
    amount = np.round(mean_spend[owner] * rng.lognormal(0.0, 0.35, owner.size), 2)
    quantity = 1 + rng.poisson(np.clip(amount / 40.0, 0.2, None))
    events = pd.DataFrame({
        "customer_id": ids[owner],
        "timestamp": BTYD_LOG_START + pd.to_timedelta(seconds, unit="s"),
        "event_type": "purchase",
        "amount": amount,
        "quantity": quantity.astype("float64"),
    })
    customers = pd.DataFrame({
        "customer_id": ids,
        "signup_at": BTYD_LOG_START + pd.to_timedelta(np.round(first_day * 86400.0), unit="s"),
        "channel": rng.choice(["web", "app", "store"], n_customers, p=[0.55, 0.3, 0.15]),
    })
    _write(folder, customers, events)
    end = BTYD_LOG_START + pd.Timedelta(days=log_days)
    return DevSet(
        name="shop_btyd",
        folder=folder,
        label="inactivity",
        horizon_days=horizon_days,
        cutoff=_cutoff(end, horizon_days),
        description=(
            f"BG/NBD shop r={params.r}, alpha={params.alpha} d, a={params.a}, b={params.b}; "
            f"{n_customers} customers acquired over {acquisition_days} d of a {log_days}-day log"
        ),
        extra={"params": params.to_dict(), "log_start": BTYD_LOG_START, "log_end": end},
    )


# ---------------------------------------------------------------------------------------------
# c. shop_generator: the project's retail generator
# ---------------------------------------------------------------------------------------------


def make_shop_generator(
    folder: Path, seed: int = 0, n_customers: int = 4000, horizon_days: int = 91
) -> DevSet:
    """The generator's retail history (two years of visits, purchases, returns, tickets); no churn dates."""
    from simulation.generate import generate

    customers, events = generate(n_customers, seed=seed, kind="retail")
    _write(folder, customers, events)
    end = _log_end(customers, events)
    return DevSet(
        name="shop_generator",
        folder=folder,
        label="inactivity",
        horizon_days=horizon_days,
        cutoff=_cutoff(end, horizon_days),
        description=f"simulation.generate retail (seed {seed}, {n_customers} customers), inactivity label",
        extra={"log_end": end},
    )


# ---------------------------------------------------------------------------------------------
# e. shop_baskets: a high-frequency shop whose events are basket line items
# ---------------------------------------------------------------------------------------------

BASKETS_LOG_START = pd.Timestamp("2024-01-01")
# Latent process of `shop_baskets` (days). Shopping trips: Poisson with rate lambda ~ Gamma(shape 1.3,
# rate 14) per day (mean 0.09, about one trip in 11 days, strongly spread) times the season; lifetime
# ~ Exponential(mu) with mu ~ Gamma(shape 1.1, rate 420) (Pareto/NBD: median lifetime about 370 days,
# a long tail of loyal customers). Not fitted to any data set.
BASKETS_PARAMS = {"r": 1.3, "alpha": 14.0, "s": 1.1, "beta": 420.0}
STORES = ("north", "south", "east", "west", "centre", "harbour", "airport", "mall")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
INCOME_BANDS = ("low", "middle", "high")


def _season(day: np.ndarray) -> np.ndarray:
    """Trip-rate multiplier by day of the log: a yearly wave (busier in winter), a December peak and
    a weekly pattern (Saturday busiest, Sunday short hours). The log starts on a Monday."""
    doy = (BASKETS_LOG_START.day_of_year + np.floor(day)) % 365.25
    yearly = 1.0 + 0.15 * np.cos(2 * np.pi * (doy - 15.0) / 365.25)
    december = 1.0 + 0.5 * np.exp(-0.5 * ((doy - 352.0) / 8.0) ** 2)
    weekday = np.array([0.9, 0.85, 0.9, 1.0, 1.2, 1.45, 0.7])[np.floor(day).astype(np.int64) % 7]
    return yearly * december * weekday


def make_shop_baskets(
    folder: Path,
    seed: int = 0,
    n_customers: int = 2500,
    log_days: int = 730,
    horizon_days: int = 60,
    early_share: float = 0.35,
) -> DevSet:
    """A high-frequency shop (groceries, drugstore) whose events are basket line items.

    Each customer has a latent trip rate and lifetime (``BASKETS_PARAMS``, Pareto/NBD-like: trips are
    Poisson while alive, dropout in continuous time), slightly shifted by household size and age. A
    share ``early_share`` of customers joins in the first 60 days of a ``log_days`` log, the rest
    uniformly until 60 days before its end, so the scored population is older than most training
    snapshots. Trips follow ``_season`` (yearly wave, December peak, weekdays); the first trip is the
    signup. Every trip is one basket: ``1 + Poisson(size)`` ``purchase`` events at the same timestamp,
    one per line item, with ``quantity`` (1 + Poisson(0.3)), ``amount`` (unit price times quantity, less
    the discount) and ``discount`` (currency; customers differ in how often they buy on promotion).
    Basket size drifts by a random per-customer trend, and in a customer's last 45-150 days before
    lapsing (for 60% of those who lapse) the size shrinks to about 60% and trips slow by a quarter.

    Each event has a ``store`` (text): customers shop at a home store (85% of trips; the rest at
    others by popularity). 15% of those who lapse move to another home store 20-120 days before
    lapsing, but so do 12% of the others at a random time (house moves), so switching is a weak
    warning sign, not a label. Demographics (``age_band``, ``household_size``, ``income_band``) are
    filled for a random third of the customers and blank for the rest. No churn dates: inactivity
    label, horizon ``horizon_days``.
    """
    rng = np.random.default_rng([seed, 23])
    n = n_customers
    p = BASKETS_PARAMS
    # who they are: demographics (known for a third) and latent traits
    age = rng.choice(len(AGE_BANDS), n, p=[0.1, 0.2, 0.2, 0.2, 0.15, 0.15])
    household = np.minimum(1 + rng.poisson(1.4, n), 6)
    income = rng.choice(len(INCOME_BANDS), n, p=[0.3, 0.5, 0.2])
    rate = rng.gamma(p["r"], 1.0 / p["alpha"], n) * (0.85 + 0.06 * household)
    dropout = rng.gamma(p["s"], 1.0 / p["beta"], n) * (1.15 - 0.06 * age)
    lifetime = rng.exponential(1.0 / dropout)
    early = rng.random(n) < early_share
    signup = np.where(early, rng.uniform(0, 60, n), rng.uniform(60, log_days - 60, n))
    death = signup + lifetime
    lapses = death < log_days
    declines = lapses & (rng.random(n) < 0.6)
    decline_days = rng.uniform(45, 150, n)
    size = rng.lognormal(np.log(3.0), 0.45, n) * (0.7 + 0.15 * household) * (0.8 + 0.1 * income)
    size_trend = rng.normal(0.0, 0.25, n)  # per year of tenure: baskets grow or shrink for everyone
    promo = rng.beta(1.5, 8.0, n)  # share of line items bought on promotion
    # stores: a home store, and a move for some (before lapsing for some who lapse)
    popularity = rng.dirichlet(np.full(len(STORES), 3.0))
    home = rng.choice(len(STORES), n, p=popularity)
    moved = np.where(lapses & (rng.random(n) < 0.15), death - rng.uniform(20, 120, n), np.inf)
    mover = np.isinf(moved) & (rng.random(n) < 0.12)
    moved = np.where(mover, signup + rng.uniform(0, log_days, n), moved)
    moved = np.maximum(moved, signup)
    new_home = (home + rng.integers(1, len(STORES), n)) % len(STORES)

    # trips: Poisson candidates at the peak rate, thinned by season and the decline before lapsing
    end = np.minimum(death, log_days)
    peak = 1.5 * 1.45 * 1.15
    span = np.maximum(end - signup, 0.0)
    k = rng.poisson(rate * peak * span)
    owner = np.repeat(np.arange(n), k)
    day = signup[owner] + rng.random(owner.size) * span[owner]
    in_decline = declines[owner] & (day > death[owner] - decline_days[owner])
    keep = rng.random(owner.size) < _season(day) / peak * np.where(in_decline, 0.75, 1.0)
    owner = np.concatenate([np.arange(n), owner[keep]])
    day = np.concatenate([signup, day[keep]])
    order = np.lexsort((day, owner))
    owner, day = owner[order], day[order]
    # a trip is on its day, in opening hours (8:00 to 21:00); the customer's first is the signup
    stamp = np.round((np.floor(day) + (8.0 + 13.0 * rng.random(day.size)) / 24.0) * 86400.0)
    first_trip = np.minimum.reduceat(stamp, np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]))

    # baskets: size, trend with tenure and the shrink before lapsing
    tenure_years = (day - signup[owner]) / 365.25
    until_death = np.clip((death[owner] - day) / decline_days[owner], 0.0, 1.0)
    shrink = np.where(declines[owner], 0.6 + 0.4 * until_death, 1.0)
    december = 1.0 + 0.3 * np.exp(-0.5 * ((((BASKETS_LOG_START.day_of_year + np.floor(day)) % 365.25)
                                           - 352.0) / 8.0) ** 2)
    mean_items = size[owner] * np.exp(size_trend[owner] * tenure_years) * shrink * december
    items = 1 + rng.poisson(mean_items)
    at_home = rng.random(day.size) < 0.85
    home_now = np.where(day >= moved[owner], new_home[owner], home[owner])
    store = np.where(at_home, home_now, rng.choice(len(STORES), day.size, p=popularity))

    line = np.repeat(np.arange(day.size), items)
    who = owner[line]
    quantity = 1 + rng.poisson(0.3, line.size)
    price = np.round(rng.lognormal(np.log(2.8), 0.75, line.size), 2)
    on_promo = rng.random(line.size) < promo[who]
    gross = price * quantity
    discount = np.round(np.where(on_promo, gross * rng.uniform(0.1, 0.4, line.size), 0.0), 2)
    ids = np.array([f"K{i:05d}" for i in range(n)])
    events = pd.DataFrame({
        "customer_id": ids[who],
        "timestamp": BASKETS_LOG_START + pd.to_timedelta(stamp[line], unit="s"),
        "event_type": "purchase",
        "amount": np.round(gross - discount, 2),
        "quantity": quantity.astype("float64"),
        "discount": discount,
        "store": np.asarray(STORES, dtype=object)[store[line]],
    })
    known = rng.random(n) < 1.0 / 3.0
    customers = pd.DataFrame({
        "customer_id": ids,
        "signup_at": BASKETS_LOG_START + pd.to_timedelta(first_trip, unit="s"),
        "age_band": pd.Series(np.asarray(AGE_BANDS, dtype=object)[age]).where(known),
        "household_size": pd.Series(household.astype("float64")).where(known),
        "income_band": pd.Series(np.asarray(INCOME_BANDS, dtype=object)[income]).where(known),
    })
    _write(folder, customers, events)
    log_end = BASKETS_LOG_START + pd.Timedelta(days=log_days)
    return DevSet(
        name="shop_baskets",
        folder=folder,
        label="inactivity",
        horizon_days=horizon_days,
        cutoff=_cutoff(log_end, horizon_days),
        description=(
            f"basket line items, Pareto/NBD-like trips ({BASKETS_PARAMS}), {n_customers} customers over "
            f"{log_days} d, store column, demographics for a third; seed {seed}"
        ),
        extra={"latent": dict(BASKETS_PARAMS), "log_start": BASKETS_LOG_START, "log_end": log_end,
               "lapsed_in_log": int(lapses.sum())},
    )


# ---------------------------------------------------------------------------------------------
# d. fightchurn: ChurnSim (Fighting Churn with Data) without its database
# ---------------------------------------------------------------------------------------------


def fightchurn_python(python: str | Path | None = None, create: bool = False) -> str:
    """An interpreter that can import ``fightchurn``.

    Order: ``python``; ``$FIGHTCHURN_PYTHON``; this interpreter if it has fightchurn; the scratch venv
    ``/tmp/fc-venv``. With ``create=True`` a missing scratch venv is made and fightchurn installed into
    it from PyPI (``--no-deps`` plus ``FIGHTCHURN_REQUIREMENTS``; about 30 s). Raises RuntimeError with
    the command to run otherwise.
    """
    if python is not None:
        return str(python)
    if os.environ.get("FIGHTCHURN_PYTHON"):
        return os.environ["FIGHTCHURN_PYTHON"]
    if importlib.util.find_spec("fightchurn") is not None:
        return sys.executable
    venv_python = FIGHTCHURN_VENV / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    install = [
        [sys.executable, "-m", "venv", str(FIGHTCHURN_VENV)],
        [str(venv_python), "-m", "pip", "install", "-q", "--no-deps", f"fightchurn=={FIGHTCHURN_VERSION}"],
        [str(venv_python), "-m", "pip", "install", "-q", *FIGHTCHURN_REQUIREMENTS],
    ]
    if not create:
        shown = " && ".join(" ".join(cmd) for cmd in install)
        raise RuntimeError(f"no interpreter with fightchurn; create one with: {shown}")
    for cmd in install:
        subprocess.run(cmd, check=True)
    return str(venv_python)


def make_fightchurn_crm6(
    folder: Path,
    seed: int = 0,
    product: str = "crm6",
    overrides: dict[str, Any] | None = None,
    init_customers: int = 400,
    monthly_counts: bool = True,
    start: str = "2023-01-01",
    end: str = "2024-01-01",
    horizon_days: int = 31,
    python: str | Path | None = None,
    processes: int = 2,
) -> DevSet:
    """A ChurnSim product (default ``crm6``), simulated for ``start``..``end`` and written in our contract.

    ChurnSim (fightchurn 1.2.0) creates ``init_customers`` in the first month, ``growth_rate`` times as
    many in the second, and ``1 + growth_rate`` times the previous month's intake after that (crm6: 4%,
    ours: 20%); each customer draws monthly behaviour rates (25 CRM actions, two deal
    values and a user count; ~17 users per account) from a correlated log-normal per channel (web,
    appstore1, appstore2), picks a plan (monthly, 6-monthly or annual; add-ons), and at each month end
    its utility (diminishing returns on its action counts relative to the population means, minus
    price, times a satisfaction propensity and a company-age effect) sets the chance of a churn intent
    through a logistic "transition"; monthly plans churn at the renewal after one intent, 6-monthly and
    annual plans mid-term after 2 or 3; up- and downgrades follow the same utility.

    What is ours, not ChurnSim's (see ``_fightchurn_worker``):

    * no PostgreSQL: customers are simulated in memory with ``ChurnSimulation.simulate_customer``;
    * its per-day per-action Python loop over ``DataFrame.iterrows`` (~60 ms a customer-month) is
      replaced by a vectorised draw of the same distributions (``_fast_generate_events``);
    * ``monthly_counts`` (default True): utility from each month's action counts, as ChurnSim's live
      mode does; its batch loop never resets the counts, so utility saturates after a few months;
    * ``overrides`` (default ``CRM6_CHURN``) are merged into the product config: crm6's own churn
      settings leave ~95% of churn to the acausal 2% a month; pass ``{}`` (and ``monthly_counts=False``)
      for ChurnSim's crm6 exactly (about 1.7% of customers churn in a 31-day horizon);
    * events are one row per (customer, day, action) with ``quantity`` = number of actions that day
      (``amount`` = summed deal value for the two valued actions), stamped at that day's last action,
      because the raw log has ~1,400 events per customer-month.

    Subscriptions become ``signup_at``, ``churned_at`` (end of the last subscription when it ended
    before ``end``), ``renewal`` events with the MRR paid as ``amount``, ``upgrade``/``downgrade`` events
    when the plan's tier (user limit) moves and ``billing_change`` events when the billing period does;
    static attributes are the channel, country, company "date of birth",
    and the plan and billing period chosen at signup.
    """
    python = fightchurn_python(python)
    settings = CRM6_CHURN if overrides is None else overrides
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fc-raw-") as raw:
        procs = []
        for chunk in range(processes):
            args = {
                "product": product,
                "overrides": settings,
                "monthly_counts": monthly_counts,
                "seed": seed,
                "init_customers": init_customers,
                "start": start,
                "end": end,
                "chunk": chunk,
                "chunks": processes,
                "out": str(Path(raw) / f"part{chunk}"),
            }
            cmd = [python, str(Path(__file__).resolve()), "--fightchurn-worker", json.dumps(args)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"fightchurn worker failed ({proc.returncode}):\n{err[-3000:]}")
        customers, events = _fightchurn_frames(Path(raw), processes, pd.Timestamp(end))
    _write(folder, customers, events)
    log_end = pd.Timestamp(end)
    return DevSet(
        name=f"fightchurn_{product}",
        folder=folder,
        label="explicit",
        horizon_days=horizon_days,
        cutoff=_cutoff(log_end, horizon_days),
        description=(
            f"fightchurn {FIGHTCHURN_VERSION} ChurnSim product {product} (seed {seed}, {init_customers} "
            f"initial customers, {start}..{end}, overrides "
            f"{json.dumps(settings)}, monthly counts {monthly_counts}), "
            "daily per-action rows with quantity; explicit churn dates"
        ),
        extra={"log_start": pd.Timestamp(start), "log_end": log_end},
    )


def _fightchurn_frames(raw: Path, chunks: int, end: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Merge the workers' raw output into contract frames."""
    cust_parts, event_parts, sub_parts = [], [], []
    for chunk in range(chunks):
        part = raw / f"part{chunk}"
        meta = json.loads((part / "meta.json").read_text())
        cust = pd.DataFrame(meta["customers"])
        cust["key"] = chunk * 10_000_000 + cust["local_id"]
        cust_parts.append(cust)
        subs = pd.DataFrame(meta["subscriptions"])
        subs["key"] = chunk * 10_000_000 + subs["local_id"]
        sub_parts.append(subs)
        arrays = np.load(part / "events.npz")
        event_parts.append(pd.DataFrame({
            "key": chunk * 10_000_000 + arrays["local_id"],
            "ordinal": arrays["ordinal"],
            "second": arrays["second"],
            "event_type": np.asarray(meta["behaviors"], dtype=object)[arrays["behavior"]],
            "quantity": arrays["count"].astype("float64"),
            "amount": arrays["value"],
        }))
    cust = pd.concat(cust_parts, ignore_index=True)
    cust = cust.sort_values(["start", "key"], kind="stable").reset_index(drop=True)
    cust["customer_id"] = [f"FC{i:06d}" for i in range(len(cust))]
    id_of = pd.Series(cust["customer_id"].to_numpy(), index=cust["key"].to_numpy())

    subs = pd.concat(sub_parts, ignore_index=True)
    subs = subs.sort_values(["key", "start"], kind="stable").reset_index(drop=True)
    last_end = pd.to_datetime(subs.groupby("key")["end"].max())
    churned = last_end.where(last_end <= end)

    epoch_ordinal = date(1970, 1, 1).toordinal()

    def stamp(ordinal: pd.Series, second: pd.Series | int = 0) -> pd.Series:
        return pd.to_datetime((ordinal - epoch_ordinal) * 86400 + second, unit="s")

    ev = pd.concat(event_parts, ignore_index=True)
    ev["timestamp"] = stamp(ev["ordinal"], ev["second"])
    ev["amount"] = ev["amount"].where(ev["amount"].notna() & (ev["amount"] != 0))
    ev["customer_id"] = id_of.reindex(ev["key"]).to_numpy()

    # subscription events: a renewal at each later period start (amount: the MRR paid), and plan
    # changes: up or down a tier (the plan's user limit), or a change of billing period
    subs["start_ts"] = pd.to_datetime(subs["start"])
    previous = subs.groupby("key")[["tier", "bill_period"]].shift()
    later = previous["tier"].notna()
    sub_events = [
        pd.DataFrame({"key": subs.loc[later, "key"], "timestamp": subs.loc[later, "start_ts"],
                      "event_type": "renewal", "amount": subs.loc[later, "mrr"].astype(float)}),
    ]
    changes = (
        ("upgrade", subs["tier"] > previous["tier"]),
        ("downgrade", subs["tier"] < previous["tier"]),
        ("billing_change", subs["bill_period"] != previous["bill_period"]),
    )
    for name, moved in changes:
        sel = later & moved
        sub_events.append(pd.DataFrame({"key": subs.loc[sel, "key"], "timestamp": subs.loc[sel, "start_ts"],
                                        "event_type": name, "amount": np.nan}))
    sub_ev = pd.concat(sub_events, ignore_index=True)
    sub_ev["customer_id"] = id_of.reindex(sub_ev["key"]).to_numpy()
    sub_ev["quantity"] = np.nan

    columns = ["customer_id", "timestamp", "event_type", "amount", "quantity"]
    events = pd.concat([ev[columns], sub_ev[columns]], ignore_index=True)
    events = events.loc[events["timestamp"] < end]
    signup = pd.to_datetime(cust["start"])
    customers = pd.DataFrame({
        "customer_id": cust["customer_id"],
        "signup_at": signup,
        "churned_at": churned.reindex(cust["key"]).to_numpy(),
        "channel": cust["channel"],
        "country": cust["country"].fillna(""),
        "date_of_birth": cust["date_of_birth"],
        "initial_plan": cust["plan"],
        "initial_bill_months": cust["bill_period"].astype("int64"),
    })
    customers = customers.loc[customers["signup_at"] < end]
    return customers, events


def _fast_generate_events(self: Any, start_date: date, end_date: date) -> list[float]:
    """Drop-in for ChurnSim's ``Customer.generate_events``: the same draws, vectorised over days and actions.

    As in ChurnSim, per day: one shared day-of-week multiplier ``m``; users ``round(m * Poisson(users))``
    capped by the plan; per action ``round(m * Poisson(daily_rate) * users)`` capped so the month's
    total stays within the plan limit; each valued action worth ``round(exp(Normal(log(mean), 1)), 2)``;
    cumulative ``event_counts`` updated the same way (users as the ceiling of their daily average).
    Instead of one tuple per action it keeps one row per (day, action) with the count, the value sum
    and the last action's second of the day.
    """
    from fightchurn.churnsim.customer import Customer

    days = (end_date - start_date).days
    if self.event_counts is None:
        self.reset_event_counts()
    rates = self.behavior_rates
    positions = rates.index.to_numpy()
    names = rates["behavior"].to_numpy()
    daily = rates["daily_rate"].to_numpy(dtype="float64")
    means = [v if v is not None and not (isinstance(v, float) and math.isnan(v)) else None
             for v in rates["mean_value"].to_numpy(dtype=object)]
    if days <= 0:
        return self.event_counts
    dates = [start_date + timedelta(days=i) for i in range(days)]
    mult = np.array([Customer.get_day_multiplier(d, self.args) for d in dates])
    if self.users is None:
        users = np.ones(days, dtype=np.int64)
    else:
        users = np.round(mult * np.random.poisson(self.users, days)).astype(np.int64)
        if "users" in self.limits:
            users = np.minimum(users, int(self.limits["users"]))
    draws = np.random.poisson(daily[None, :], (days, len(daily)))
    counts = np.round(mult[:, None] * draws * users[:, None]).astype(np.int64)
    for j, name in enumerate(names):
        if name in self.limits:
            capped = np.minimum(np.cumsum(counts[:, j]), int(self.limits[name]))
            counts[:, j] = np.diff(capped, prepend=0)
    day_idx, col = np.nonzero(counts)
    n = counts[day_idx, col]
    value = np.zeros(n.size)
    for j, mean in enumerate(means):
        if mean is None:
            self.event_counts[positions[j]] += int(counts[:, j].sum())
            continue
        rows = np.flatnonzero(col == j)
        total = int(n[rows].sum())
        if total == 0:
            continue
        each = np.round(np.exp(np.random.normal(np.log(mean), 1.0, total)), 2)
        sums = np.add.reduceat(each, np.concatenate([[0], np.cumsum(n[rows])[:-1]]))
        value[rows] = sums
        self.event_counts[positions[j]] += float(each.sum())
    if self.users is not None:
        self.event_counts[-1] += int(users.sum())
        self.event_counts[-1] = int(math.ceil(self.event_counts[-1] / days))
    # the last of n uniform seconds of the day
    second = np.floor(86400.0 * np.random.random(n.size) ** (1.0 / np.maximum(n, 1))).astype(np.int64)
    ordinal = np.array([d.toordinal() for d in dates], dtype=np.int64)[day_idx]
    self.events.append((ordinal, positions[col].astype(np.int64), n, value, np.minimum(second, 86399)))
    return self.event_counts


def _with_fresh_counts(generate: Any) -> Any:
    """``generate_events`` that starts each call (one month in batch mode) from zero counts."""

    def wrapped(self: Any, start_date: date, end_date: date) -> list[float]:
        self.event_counts = None
        return generate(self, start_date, end_date)

    return wrapped


def _stub_module(name: str, **attrs: Any) -> None:
    """Put a placeholder module in sys.modules when the real one is not installed."""
    if importlib.util.find_spec(name) is None:
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        sys.modules[name] = module


def _fightchurn_worker(args: dict[str, Any]) -> None:
    """Run ChurnSim for this worker's share of customers and save raw arrays (runs in fightchurn's venv).

    Mirrors ``ChurnSimulation.run_simulation`` month by month (``init_customers`` in the first month,
    then ``ceil(previous * (1 + growth))`` new customers a month) with ``simulate_customer``, leaving
    out the database writes. Worker ``chunk`` of ``chunks`` simulates every ``chunks``-th customer. The
    day-of-week multipliers ChurnSim shares across customers are drawn up front from the seed, so all
    workers use the same ones.
    """
    _stub_module("psycopg2", connect=None)
    _stub_module("postgres", Postgres=None)
    _stub_module("hydra", main=lambda **_: lambda fn: fn)
    tmp = tempfile.mkdtemp(prefix="fc-sim-")
    os.environ["CHURN_OUT_DIR"] = tmp
    from importlib.resources import files

    from dateutil.relativedelta import relativedelta
    from omegaconf import OmegaConf

    with contextlib.redirect_stdout(io.StringIO()):
        from fightchurn.churnsim import churnsim
        from fightchurn.churnsim.customer import Customer

        Customer.ID_FILE = os.path.join(tmp, "id.txt")
        Customer.ID_LOCK_FILE = os.path.join(tmp, "id.lock")
        Customer.generate_events = (
            _with_fresh_counts(_fast_generate_events) if args.get("monthly_counts") else _fast_generate_events
        )
        conf = files("fightchurn.churnsim") / "conf"
        cfg = OmegaConf.merge(OmegaConf.load(str(conf / "default.yaml")),
                              OmegaConf.load(str(conf / f"{args['product']}.yaml")))
        for key in ("defaults", "hydra"):
            cfg.pop(key, None)
        cfg = OmegaConf.merge(cfg, OmegaConf.create(args.get("overrides") or {}))
        cfg.init_customers = int(args["init_customers"])
        cfg.start_date, cfg.end_date = args["start"], args["end"]
        cfg.random_seed = int(args["seed"])
        sim = churnsim.ChurnSimulation(cfg)

        # shared day multipliers, identical in every worker
        dow_rng = np.random.RandomState(int(args["seed"]))
        day = sim.start_date
        while day <= sim.end_date + relativedelta(months=13):
            scale = cfg.weekend_scale if day.weekday() >= 4 else cfg.weekday_scale
            low, high = Customer.get_min_max_dow_scale(scale)
            Customer.date_multipliers[day] = dow_rng.uniform(low, high)
            day += timedelta(days=1)

        chunk, chunks = int(args["chunk"]), int(args["chunks"])
        random.seed(int(args["seed"]) * 1000 + chunk)
        np.random.seed(int(args["seed"]) * 1000 + chunk)
        simulated = []
        month, n_new, position = sim.start_date, sim.init_customers, 0
        while month < sim.end_date:
            for _ in range(n_new):
                if position % chunks == chunk:
                    simulated.append(sim.simulate_customer(month))
                position += 1
            n_new = int(math.ceil(n_new * (1.0 + sim.monthly_growth_rate))) if month > sim.start_date else \
                int(math.ceil(sim.init_customers * sim.monthly_growth_rate))
            month = month + relativedelta(months=1)

    plans = set(sim.plans.index)
    # a plan's tier: its user limit when the product has one, else its list price
    tier_column = "users" if "users" in sim.plans.columns else "mrr"
    tiers = sim.plans[tier_column].to_dict()
    customers, subscriptions, parts = [], [], []
    for local_id, cust in enumerate(simulated):
        main = [s for s in cust.subscriptions if s[0] in plans]
        first = main[0]
        customers.append({
            "local_id": local_id, "start": cust.start_date.isoformat(), "channel": cust.channel,
            "country": None if cust.country == "None" else cust.country,
            "date_of_birth": cust.date_of_birth.isoformat(), "plan": first[0], "bill_period": int(first[6]),
        })
        subscriptions.extend(
            {"local_id": local_id, "start": s[1].isoformat(), "end": s[2].isoformat(), "mrr": float(s[3]),
             "tier": float(tiers[s[0]]), "bill_period": int(s[6])}
            for s in main
        )
        for chunk_rows in cust.events:
            parts.append((np.full(chunk_rows[0].size, local_id, dtype=np.int64), *chunk_rows))
    behaviors = list(next(iter(sim.behavior_models.values())).behave_names)
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*parts, strict=True)) if parts else [[np.zeros(0)]] * 6
    np.savez(
        out / "events.npz",
        local_id=np.concatenate(columns[0]).astype(np.int64),
        ordinal=np.concatenate(columns[1]).astype(np.int64),
        behavior=np.concatenate(columns[2]).astype(np.int64),
        count=np.concatenate(columns[3]).astype(np.int64),
        value=np.concatenate(columns[4]).astype(np.float64),
        second=np.concatenate(columns[5]).astype(np.int64),
    )
    (out / "meta.json").write_text(json.dumps(
        {"customers": customers, "subscriptions": subscriptions, "behaviors": behaviors}
    ))


# ---------------------------------------------------------------------------------------------
# All of them, and the self-check
# ---------------------------------------------------------------------------------------------

MAKERS = {
    "subscription": make_subscription,
    "shop_btyd": make_shop_btyd,
    "shop_generator": make_shop_generator,
    "shop_baskets": make_shop_baskets,
    "fightchurn_crm6": make_fightchurn_crm6,
}


def build_all(root: Path, seed: int = 0, names: list[str] | None = None) -> list[DevSet]:
    """Build the named dev sets (default: all) into ``root/<name>``."""
    return [MAKERS[name](root / name, seed=seed) for name in (names or list(MAKERS))]


def _product_plan(dev: DevSet, customers: pd.DataFrame, events: pd.DataFrame) -> str:
    """The observation times and split the product's own planning picks on the training data."""
    try:
        from features.observations import plan_observations
        from training.split import split_times

        plan = plan_observations(customers, events, dev.horizon_days)
        split = split_times(plan.times, dev.horizon_days, 2, 2, True)
    except Exception as exc:  # noqa: BLE001 - the product may refuse; say why
        return f"refused: {exc}"
    return (f"{len(plan.times)} times every {plan.cadence_days} d; train/validation/test "
            f"{len(split.train)}/{len(split.validation) or split.validation_scheme}/"
            f"{len(split.test) or split.test_scheme}")


def _self_check(root: Path, seed: int, names: list[str] | None) -> None:
    """Build the dev sets and print sizes, churn rates and each baseline's ROC-AUC at the cutoff."""
    from sklearn.metrics import roc_auc_score

    from benchmarks.baselines import BASELINES, labels_at

    for name in names or list(MAKERS):
        began = time.perf_counter()
        dev = MAKERS[name](root / name, seed=seed)
        built = time.perf_counter() - began
        customers, events = dev.load()
        train_c, train_e = truncate(customers, events, dev.cutoff)
        labels = labels_at(customers, events, dev.cutoff, dev.horizon_days, dev.label)
        print(f"\n== {dev.name}: {dev.description}")
        print(f"   built in {built:.0f} s; {len(customers):,} customers, {len(events):,} events "
              f"({events['timestamp'].min():%Y-%m-%d} .. {events['timestamp'].max():%Y-%m-%d}), "
              f"{events['event_type'].nunique()} event types")
        print(f"   label {dev.label}, horizon {dev.horizon_days} d, cutoff {dev.cutoff:%Y-%m-%d}; "
              f"training data {len(train_c):,} customers, {len(train_e):,} events")
        print(f"   labelled at cutoff (the product's candidates) {len(labels):,}, "
              f"churn rate {labels.mean():.3f} "
              f"({int(labels.sum())} churners)")
        print(f"   product plan on the training data: {_product_plan(dev, train_c, train_e)}")
        active = labels.index
        if dev.label == "inactivity":
            active = labels_at(
                customers, events, dev.cutoff, dev.horizon_days, dev.label, active_only=True
            ).index
            print(f"   of them active within the last horizon: {len(active):,}, churn rate "
                  f"{labels.loc[active].mean():.3f}")
        for base, run in BASELINES.items():
            began = time.perf_counter()
            try:
                scores = run(train_c, train_e, dev.cutoff, dev.horizon_days, dev.label)
            except Exception as exc:  # noqa: BLE001 - report and go on with the next baseline
                print(f"   {base:<14} failed: {type(exc).__name__}: {exc}")
                continue
            took = time.perf_counter() - began
            common = labels.index.intersection(scores.index)
            y, s = labels.loc[common], scores.loc[common]
            auc = roc_auc_score(y, s) if y.nunique() == 2 else float("nan")
            mean = f", mean score {s.mean():.3f}" if base != "recency" else ""
            line = f"   {base:<14} AUC {auc:.4f} on {len(common):,} of {len(labels):,}{mean}"
            if dev.label == "inactivity":
                sub = common.intersection(active)
                line += f"; active only AUC {roc_auc_score(y.loc[sub], s.loc[sub]):.4f}"
            print(f"{line} ({took:.1f} s)")
            if base == "bgnbd" and "params" in dev.extra:
                fitted = ", ".join(f"{k}={v:.3g}" for k, v in scores.attrs["params"].items())
                print(f"   {'':<14} fitted {fitted} (true {dev.extra['params']})")


def main(argv: list[str] | None = None) -> None:
    """Command line: the self-check, or (internal) the fightchurn worker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/devsets"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", choices=list(MAKERS), help="dev sets to build (default: all)")
    parser.add_argument("--fightchurn-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fightchurn_worker:
        _fightchurn_worker(json.loads(args.fightchurn_worker))
        return
    _self_check(args.root, args.seed, args.only)


if __name__ == "__main__":
    main()
