"""A seeded generator of realistic interaction histories.

Each customer carries a latent satisfaction that moves week by week (an AR(1) process with
random shocks). It drives the warning signs a customer-service team watches: activity thins
out, the contact person changes, payments fail or run late, plans are downgraded, complaints
and tickets pile up, and the customer says they intend to leave. It also drives the weekly
churn hazard. A share of churn is pure noise, so no model can be perfect.

The simulation loops over weeks (about 130), never over customers or events: every step is a
vector operation over all customers, and events are expanded from Poisson counts at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract import CHURNED_AT, CUSTOMER_ID, SIGNUP_AT, TIMESTAMP
from features.observations import churned_within

KINDS = ("subscription", "retail")
END = pd.Timestamp("2026-06-30")
WEEKS = 130  # simulated weeks
LOG_START_WEEK = 26  # the event log starts here; older customers have earlier signups
WEEK = pd.Timedelta(days=7)

PLANS = {"basic": 19.0, "pro": 49.0, "business": 149.0}
STORES = ("Berlin Mitte", "Hamburg", "Munich", "Cologne", "Leipzig", "online desk")
COUNTRIES = np.array(["US", "DE", "GB", "FR", "NL", "ES", "SE", "PL", ""])
COUNTRY_P = np.array([0.30, 0.16, 0.14, 0.10, 0.07, 0.07, 0.05, 0.05, 0.06])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class _Events:
    cid: list[np.ndarray]
    ts: list[np.ndarray]
    etype: list[np.ndarray]
    amount: list[np.ndarray]
    quantity: list[np.ndarray]
    # with contacts: each customer's store now, and each added row's store
    where: np.ndarray | None = None
    store: list[np.ndarray] = field(default_factory=list)

    def add(self, rng, idx, counts, week_start, name, amount=None, quantity=None):
        counts = np.asarray(counts)
        rows = np.repeat(idx, counts) if counts.ndim else idx
        if rows.size == 0:
            return
        offsets = rng.uniform(0, 7 * 86400, rows.size)
        self.cid.append(rows)
        self.ts.append(week_start + offsets)
        self.etype.append(np.full(rows.size, name, dtype=object))
        self.amount.append(np.full(rows.size, np.nan) if amount is None else amount)
        self.quantity.append(np.full(rows.size, np.nan) if quantity is None else quantity)
        if self.where is not None:
            self.store.append(self.where[rows])


def generate(
    n_customers: int,
    seed: int = 0,
    kind: str = "subscription",
    progress: Callable[[int, int], None] | None = None,
    history_days: int | None = None,
    contacts: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (customers, events) frames that follow the data contract.

    With `contacts`, the events carry a text `store` column: the store the customer deals
    with, which switches at each change of the point of contact (a `contact_change` event, which
    also lowers satisfaction). Its draws come from a stream of their own, so everything else is
    the same as without it.

    With `history_days`, the log holds only its last `history_days` days, as an export from a
    system that began logging recently: earlier events are gone, and customers who churned
    before the log began are not in it (those who signed up earlier keep their signup date)."""
    if history_days is not None and history_days < 1:
        raise ValueError("history_days must be at least 1")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if n_customers < 1:
        raise ValueError("customers must be at least 1")
    rng = np.random.default_rng(seed)
    n = n_customers
    start = END - WEEKS * WEEK
    start_s = (start - pd.Timestamp("1970-01-01")).total_seconds()

    signup_week = rng.integers(0, WEEKS - 6, n)
    signup_s = start_s + signup_week * 7 * 86400 + rng.uniform(0, 7 * 86400, n)

    # static attributes and value
    plan_names = np.array(list(PLANS))
    if kind == "subscription":
        plan = rng.choice(plan_names, n, p=[0.55, 0.33, 0.12])
        price = np.vectorize(PLANS.get)(plan).astype(float)
        annual = rng.random(n) < 0.3
        seats = np.where(plan == "business", rng.integers(5, 60, n), rng.integers(1, 4, n))
    else:
        plan = np.full(n, "none")
        price = np.zeros(n)
        annual = np.zeros(n, dtype=bool)
        seats = np.zeros(n, dtype=int)
    basket = rng.lognormal(3.4, 0.6, n)  # retail spend per order
    activity = rng.lognormal(0.0, 0.5, n) * (0.7 if kind == "subscription" else 0.8)
    mu = rng.normal(0.6, 0.7, n)  # long-run satisfaction
    sat = mu + rng.normal(0, 0.5, n)
    rho = 0.93

    alive = np.zeros(n, dtype=bool)
    churned = np.zeros(n, dtype=bool)
    churn_s = np.full(n, np.nan)
    intent_boost = np.zeros(n)
    ev = _Events([], [], [], [], [])
    if contacts:
        stores = np.random.default_rng([seed, 1])  # its own stream: the rest stays as it was
        ev.where = stores.integers(0, len(STORES), n)
    all_idx = np.arange(n)

    for w in range(WEEKS):
        week_start = start_s + w * 7 * 86400
        alive = (signup_week <= w) & ~churned
        idx = all_idx[alive]
        if idx.size == 0:
            continue
        m = idx.size
        # satisfaction: AR(1) around the customer's mean, with rare bad experiences
        shock = rng.normal(0, 0.35, m) - 1.6 * (rng.random(m) < 0.012)
        sat[idx] = rho * sat[idx] + (1 - rho) * mu[idx] + shock
        s = sat[idx]
        emit = w >= LOG_START_WEEK

        # the point of contact changes; the new person does not yet see the value
        contact = rng.random(m) < 0.006 * np.exp(-0.5 * s)
        sat[idx[contact]] -= 0.8
        if ev.where is not None:  # another store than before
            moved = idx[contact]
            ev.where[moved] = (ev.where[moved] + stores.integers(1, len(STORES), moved.size)
                               ) % len(STORES)
        if kind == "subscription":
            rate = activity[idx] * np.exp(0.55 * np.clip(s, -3, 3))
            logins = rng.poisson(rate)
            uses = rng.poisson(0.5 * rate)
            tickets = rng.poisson(0.10 * np.exp(-0.7 * s))
            complaints = rng.poisson(0.03 * np.exp(-1.1 * s))
            billing = ((w - signup_week[idx]) % 4) == 0
            # cards expire for anyone; unhappy customers also let payments fail
            failed = billing & (rng.random(m) < 0.01 + _sigmoid(-3.6 - 1.1 * s))
            late = billing & ~failed & (rng.random(m) < _sigmoid(-3.0 - 0.9 * s))
            paid = billing & ~failed
            down = (rng.random(m) < 0.006 * np.exp(-0.9 * s)) & (price[idx] > PLANS["basic"])
            up = (rng.random(m) < 0.003 * np.exp(0.4 * s)) & (price[idx] < PLANS["business"])
            intent = rng.random(m) < _sigmoid(-6.3 - 2.0 * s)
            if emit:
                ev.add(rng, idx, logins, week_start, "login")
                ev.add(rng, idx, uses, week_start, "feature_use")
                ev.add(rng, idx, tickets, week_start, "support_ticket")
                ev.add(rng, idx, complaints, week_start, "complaint")
                ev.add(rng, idx[paid], None, week_start, "payment", price[idx[paid]])
                ev.add(rng, idx[failed], None, week_start, "payment_failed", price[idx[failed]])
                ev.add(rng, idx[late], None, week_start, "late_payment", price[idx[late]])
                ev.add(rng, idx[down], None, week_start, "downgrade")
                ev.add(rng, idx[up], None, week_start, "upgrade")
                ev.add(rng, idx[contact], None, week_start, "contact_change")
                ev.add(rng, idx[intent], None, week_start, "cancel_intent")
            price[idx[down]] = np.where(price[idx[down]] > PLANS["pro"], PLANS["pro"], PLANS["basic"])
            price[idx[up]] = np.where(price[idx[up]] < PLANS["pro"], PLANS["pro"], PLANS["business"])
            intent_boost[idx[intent]] += 0.15
            intent_boost[idx[failed]] += 0.10  # involuntary churn after a failed payment
        else:
            rate = activity[idx] * np.exp(0.6 * np.clip(s, -3, 3))
            visits = rng.poisson(1.2 * rate)
            buys = rng.poisson(0.35 * rate)
            tickets = rng.poisson(0.05 * np.exp(-0.7 * s))
            complaints = rng.poisson(0.02 * np.exp(-1.1 * s))
            intent = np.zeros(m, dtype=bool)
            if emit:
                ev.add(rng, idx, visits, week_start, "visit")
                rows = np.repeat(idx, buys)
                sat_rows = np.repeat(s, buys)
                amount = basket[rows] * np.exp(0.15 * np.clip(sat_rows, -3, 3)) * rng.lognormal(
                    0, 0.3, rows.size
                )
                qty = 1 + rng.poisson(np.maximum(0.5 + 0.4 * sat_rows, 0.1))
                ev.add(rng, rows, None, week_start, "purchase", np.round(amount, 2), qty)
                ret = rng.random(rows.size) < 0.04 * np.exp(-0.6 * sat_rows)
                ev.add(rng, rows[ret], None, week_start, "return", np.round(-amount[ret], 2))
                ev.add(rng, idx, tickets, week_start, "support_ticket")
                ev.add(rng, idx, complaints, week_start, "complaint")
                ev.add(rng, idx[contact], None, week_start, "contact_change")

        # churn: driven by satisfaction and stated intent, damped by annual contracts,
        # plus a share that no signal predicts
        # annual contracts can only be left around their renewal
        renewal = ((w - signup_week[idx]) % 52) >= 48
        hazard = _sigmoid(-5.2 - 1.8 * s) + intent_boost[idx]
        hazard = hazard * np.where(annual[idx], np.where(renewal, 2.5, 0.05), 1.0) + 0.001
        leave = rng.random(m) < np.minimum(hazard, 0.9)
        leave &= signup_week[idx] < w  # nobody leaves in their signup week
        churned[idx[leave]] = True
        churn_s[idx[leave]] = week_start + rng.uniform(0, 7 * 86400, int(leave.sum()))
        intent_boost[idx] *= 0.7
        if progress:
            progress(w + 1, WEEKS)

    customers, events = _frames(rng, kind, n, signup_s, churn_s, plan, annual, seats, ev)
    if history_days is None:
        return customers, events
    log_start = END - pd.Timedelta(days=history_days)
    if CHURNED_AT in customers:
        gone = customers[CHURNED_AT].notna() & (customers[CHURNED_AT] < log_start)
        customers = customers[~gone].reset_index(drop=True)
    events = events[(events[TIMESTAMP] >= log_start)
                    & events[CUSTOMER_ID].isin(customers[CUSTOMER_ID])].reset_index(drop=True)
    return customers, events


def _frames(rng, kind, n, signup_s, churn_s, plan, annual, seats, ev):
    def to_ts(seconds: np.ndarray) -> pd.Series:
        return pd.Series(
            pd.to_datetime(np.round(seconds), unit="s").astype("datetime64[us]")
        )

    birth = pd.Timestamp("2008-01-01") - pd.to_timedelta(rng.integers(0, 55 * 365, n), unit="D")
    birth = pd.Series(birth.astype("datetime64[us]")).mask(rng.random(n) < 0.08)
    country = rng.choice(COUNTRIES, n, p=COUNTRY_P)
    if kind == "subscription":
        ids = pd.Series(np.arange(1, n + 1) + 100000)  # integer ids, as many CRMs have
        customers = pd.DataFrame({
            "customer_id": ids,
            "signup_at": to_ts(signup_s),
            "churned_at": to_ts(churn_s),
            "plan": plan,
            "contract": np.where(annual, "annual", "monthly"),
            "seats": seats,
            "country": country,
            "date_of_birth": birth.dt.date.astype("string"),
        })
    else:
        ids = pd.Series([f"R{i:07d}" for i in range(n)])
        customers = pd.DataFrame({
            "customer_id": ids,
            "signup_at": to_ts(signup_s),
            "channel": rng.choice(["web", "app", "store"], n, p=[0.5, 0.35, 0.15]),
            "loyalty_member": rng.random(n) < 0.3,
            "country": country,
            "date_of_birth": birth.dt.date.astype("string"),
        })
    if ev.cid:
        cid = np.concatenate(ev.cid)
        ts = np.concatenate(ev.ts)
        before_churn = ~(ts > churn_s[cid])  # NaN churn (still active) keeps every event
        order = np.flatnonzero(before_churn)
        order = order[np.lexsort((ts[order], cid[order]))]
        events = pd.DataFrame({
            "customer_id": ids.to_numpy()[cid[order]],
            "timestamp": to_ts(ts[order]),
            "event_type": np.concatenate(ev.etype)[order],
            "amount": np.concatenate(ev.amount)[order],
        })
        if kind == "retail":
            events["quantity"] = np.concatenate(ev.quantity)[order]
        if ev.where is not None:
            events["store"] = np.asarray(STORES, dtype=object)[np.concatenate(ev.store)[order]]
    else:
        events = pd.DataFrame(columns=["customer_id", "timestamp", "event_type", "amount"])
    return customers, events


# -- a treatment effect: what a retention contact does to the generated world ----------------

FAMILY = "family"  # the treated table's column: the playbook family of the action received


def apply_treatment(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    treated: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: int,
    factors: Mapping[str, float],
    seed: int = 0,
    lookback_days: int = 84,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the (customers, events) of the world in which `treated` were contacted at `as_of`.

    `treated` has a `customer_id` and a `family` column: the playbook family of the action each
    customer received. `factors` maps a family to the factor by which the contact multiplies
    the customer's chance of churning within `horizon_days` after `as_of`; a family that is not
    in it gets 1 (the contact does nothing). Each treated customer whose churn date falls in
    (as_of, as_of + horizon] keeps it with probability `factor` (a thinning of the churn event,
    so the treated arm's churn in the horizon is exactly `factor` times what it would have
    been); the others stay: their churn date is removed and their activity continues until the
    log's last event, week by week, as weeks drawn at random from their own `lookback_days`
    before `as_of`. Everything else (untreated customers, churn outside the horizon, every
    event before the churn) is unchanged, and the same seed gives the same world.

    Needs explicit churn dates (the subscription kind): retail churn is only a lapse of
    activity and is left to the inactivity horizon."""
    if CHURNED_AT not in customers:
        raise ValueError(f"customers have no {CHURNED_AT} column: the treatment effect needs "
                         "explicit churn dates (the subscription kind)")
    missing = [c for c in (CUSTOMER_ID, FAMILY) if c not in treated]
    if missing:
        raise ValueError(f"treated: missing column {missing[0]!r}")
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    if lookback_days < 7:
        raise ValueError("lookback_days must be at least 7")
    for family, factor in factors.items():
        if not 0.0 <= float(factor) <= 1.0:
            raise ValueError(f"factors.{family}: must be between 0 and 1, not {factor}")
    dup = treated[CUSTOMER_ID].duplicated()
    if dup.any():
        raise ValueError(f"treated: customer_id {treated[CUSTOMER_ID][dup].tolist()[0]!r} "
                         "appears more than once")
    ids = pd.Index(customers[CUSTOMER_ID])
    pos = ids.get_indexer(treated[CUSTOMER_ID])
    if (pos < 0).any():
        raise ValueError(f"treated: customer_id {treated[CUSTOMER_ID][pos < 0].tolist()[0]!r} "
                         "is not in customers")
    as_of = pd.Timestamp(as_of)

    # draw in the customers' order, so the input's row order does not change the world
    order = np.argsort(pos, kind="stable")
    pos = pos[order]
    factor = (treated[FAMILY].iloc[order].map(lambda f: float(factors.get(f, 1.0)))
              .to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    churn = customers[CHURNED_AT].iloc[pos]
    in_horizon = churned_within(churn, as_of, horizon_days).to_numpy()
    saved = in_horizon & (rng.random(pos.size) >= factor)
    saved_pos = pos[saved]
    if saved_pos.size == 0:
        return customers, events

    is_saved = np.zeros(len(customers), dtype=bool)
    is_saved[saved_pos] = True
    out_customers = customers.assign(**{CHURNED_AT: customers[CHURNED_AT].mask(is_saved)})
    copies = _continued_activity(rng, customers.iloc[saved_pos], events, as_of, lookback_days)
    if copies.empty:
        return out_customers, events
    both = pd.concat([events, copies], ignore_index=True)
    key = ids.get_indexer(both[CUSTOMER_ID])
    is_copy = np.r_[np.zeros(len(events), dtype=bool), np.ones(len(copies), dtype=bool)]
    rows = np.lexsort((is_copy, both[TIMESTAMP].to_numpy(), key))
    return out_customers, both.iloc[rows].reset_index(drop=True)


def _continued_activity(
    rng: np.random.Generator, saved: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp,
    lookback_days: int,
) -> pd.DataFrame:
    """Events for the weeks after each saved customer's old churn date, to the log's end: each
    week is a copy of a week drawn from the customer's own last `lookback_days` before as_of
    (or since signup, if shorter)."""
    week = np.timedelta64(7, "D")
    end = events[TIMESTAMP].max()
    churn = saved[CHURNED_AT].to_numpy(dtype="datetime64[us]")
    signup = saved[SIGNUP_AT].to_numpy(dtype="datetime64[us]")
    as_of64 = np.datetime64(as_of, "us")
    n_src = np.clip((as_of64 - signup) // week, 0, lookback_days // 7).astype(int)
    n_fill = np.maximum(-(-(np.datetime64(end, "us") - churn) // week), 0).astype(int)
    n_fill = np.where(n_src > 0, n_fill, 0)
    who = np.repeat(np.arange(len(saved)), n_fill)
    if who.size == 0:
        return events.iloc[:0]
    j = np.arange(who.size) - np.repeat(np.cumsum(n_fill) - n_fill, n_fill)
    u = rng.integers(0, n_src[who])  # the source week, counted back from as_of
    # source week u is (as_of - 7(u+1), as_of - 7u]; it lands on (churn + 7j, churn + 7(j+1)]
    fills = pd.DataFrame({"_who": who, "_week": u,
                          "_shift": churn[who] + j * week - (as_of64 - (u + 1) * week)})

    saved_ids = pd.Index(saved[CUSTOMER_ID])
    src = events[events[CUSTOMER_ID].isin(saved_ids) & (events[TIMESTAMP] < as_of)]
    src = src.assign(_who=saved_ids.get_indexer(src[CUSTOMER_ID]))
    back = (as_of64 - src[TIMESTAMP].to_numpy(dtype="datetime64[us]")) // week
    src = src.assign(_week=back)[back < n_src[src["_who"].to_numpy()]]
    copies = src.merge(fills, on=["_who", "_week"])
    copies = copies.assign(**{TIMESTAMP: copies[TIMESTAMP] + copies["_shift"]})
    copies = copies[copies[TIMESTAMP] <= end]
    return copies[list(events.columns)]
