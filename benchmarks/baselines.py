"""Classical churn baselines for the quality benchmark, all point-in-time.

Each baseline takes the data as they looked at ``as_of`` (``customers``, ``events``, e.g. from
``benchmarks.devsets.truncate``), the time to score and the label horizon, and returns a ``pd.Series``
of churn scores indexed by ``customer_id`` for the customers who are candidates at ``as_of`` (signed
up at or before it, not churned by it). Nothing at or after ``as_of`` is read, and the baselines that
learn from labels only use observation times ``t`` with ``t + horizon <= as_of``, so every training label
is already known at ``as_of``.

* ``recency_scores``: days since the last event (since signup without one). A score, not a probability.
* ``calibrated_recency_scores``: a logistic regression of the label on ``log1p(recency days)``.
* ``bgnbd_scores``: the BG/NBD model (``features.btyd``), probability of no event in the horizon.
* ``book_logistic_scores``: the "Fighting Churn with Data" recipe (28-day event counts and tenure,
  log1p, z-scores, L1 logistic regression with C chosen by time-series cross-validation).

``labels_at`` gives the labels the product uses (``features.observations.label_sql``), for training
snapshots here and for judging every model at the cutoff in the benchmark.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.btyd import DAY_SECONDS, BGNBDParams, p_alive, rfm_summary  # noqa: E402
from features.btyd_fit import fit_bgnbd  # noqa: E402
from features.observations import (  # noqa: E402
    active_at,
    cadence_times,
    churned_within,
    latest_seen,
)

EPOCH = pd.Timestamp("1970-01-01")
LABELS = ("explicit", "inactivity")
BOOK_C_GRID = (0.64, 0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005, 0.0025)  # the book's listing 9.5 grid


# ---------------------------------------------------------------------------------------------
# Labels and snapshots
# ---------------------------------------------------------------------------------------------


def _seconds(values: pd.Series | pd.Index) -> np.ndarray:
    """Datetimes as float epoch seconds (NaT becomes NaN)."""
    return ((pd.to_datetime(values) - EPOCH) / pd.Timedelta(seconds=1)).to_numpy(dtype="float64")


def candidates_at(customers: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """Customers signed up at or before ``at`` and not churned by it (the product's candidates)."""
    return customers.loc[active_at(customers, at)]


def labels_at(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    at: pd.Timestamp,
    horizon_days: float,
    label: str,
    active_only: bool = False,
    activity_types: Sequence[str] = (),
) -> pd.Series:
    """The product's label at ``at`` for every candidate (int8, indexed by customer_id).

    explicit: 1 if ``churned_at`` falls in (at, at + horizon].
    inactivity: 1 if no event falls in (at, at + horizon]; with ``activity_types``, no event of
    those types (the product's ``--activity``), and ``active_only`` reads them alone too.
    Every candidate (signed up at or before ``at``, not churned by it) is labelled, as the product's
    ``features.observations.label_sql`` does since it labels lapsed customers too. ``active_only=True``
    keeps, for inactivity, only candidates who signed up or had an event within (at - horizon, at)
    (the product's earlier rule; lapsed customers are nearly all "churners" and easy to rank).
    Needs the data up to ``at + horizon``: call it on the full log, or on a truncated log with
    ``at + horizon`` at or before the truncation time.
    """
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    at = pd.Timestamp(at)
    end = at + pd.Timedelta(days=horizon_days)
    cands = candidates_at(customers, at)
    ids = pd.Index(cands["customer_id"].astype(str), name="customer_id")
    if label == "explicit":
        churned = cands["churned_at"] if "churned_at" in cands else pd.Series(pd.NaT, index=cands.index)
        y = churned_within(churned, at, horizon_days).to_numpy()
        return pd.Series(y.astype("int8"), index=ids, name="label")
    start = at - pd.Timedelta(days=horizon_days)
    if activity_types:
        events = events[events["event_type"].astype(str).isin(list(activity_types))]
    ts = events["timestamp"]
    near = events.loc[(ts > start) & (ts <= end), ["customer_id", "timestamp"]]
    after = near.loc[near["timestamp"] > at, "customer_id"].astype(str).unique()
    y = ~ids.isin(after)
    if not active_only:
        return pd.Series(y.astype("int8"), index=ids, name="label")
    before = near.loc[near["timestamp"] < at].groupby(near["customer_id"].astype(str))["timestamp"].max()
    signup = pd.Series(cands["signup_at"].to_numpy(), index=ids)
    recent = np.maximum(signup.to_numpy(), before.reindex(ids).fillna(signup).to_numpy())
    eligible = recent > np.datetime64(start)
    return pd.Series(y[eligible].astype("int8"), index=ids[eligible], name="label")


def snapshot_times(
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float,
    cadence_days: int = 7,
    min_history_days: int = 28,
) -> list[pd.Timestamp]:
    """Midnight observation times every ``cadence_days``, oldest first: the newest is the latest midnight
    whose horizon ends strictly before ``as_of`` (an event at ``as_of`` itself is not yet seen), the oldest
    at least ``min_history_days`` after the first event. Their labels are all known at ``as_of``."""
    # the data seen ends just before as_of
    newest = latest_seen(pd.Timestamp(as_of) - pd.Timedelta(seconds=1), horizon_days).floor("D")
    oldest = pd.Timestamp(events["timestamp"].min()) + pd.Timedelta(days=min_history_days)
    return cadence_times(oldest, newest, cadence_days)


class _Log:
    """The events before ``as_of``, sorted by time, with integer customer and type codes."""

    def __init__(
        self, customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, max_types: int = 30
    ) -> None:
        customers = customers.loc[customers["signup_at"] <= as_of]
        self.ids = pd.Index(customers["customer_id"].astype(str).unique())
        ev = events.loc[(events["timestamp"] < as_of) & events["customer_id"].astype(str).isin(self.ids)]
        order = np.argsort(_seconds(ev["timestamp"]), kind="stable")
        self.ts = _seconds(ev["timestamp"])[order]
        self.cust = self.ids.get_indexer(ev["customer_id"].astype(str))[order]
        counts = ev["event_type"].astype(str).value_counts()
        self.types = pd.Index(counts.index[:max_types])
        self.type_code = self.types.get_indexer(ev["event_type"].astype(str))[order]  # -1 for the rest
        first = customers.drop_duplicates("customer_id")
        signup = pd.Series(_seconds(first["signup_at"]), index=first["customer_id"].astype(str).to_numpy())
        self.signup = signup.reindex(self.ids).to_numpy(dtype="float64")

    def last_before(self, t: float) -> np.ndarray:
        """Per customer, the time of its last event strictly before ``t`` (NaN if none)."""
        k = int(np.searchsorted(self.ts, t, side="left"))
        last = pd.Series(self.ts[:k]).groupby(self.cust[:k]).max()
        out = np.full(len(self.ids), np.nan)
        out[last.index.to_numpy()] = last.to_numpy()
        return out

    def window_counts(self, t: float, days: float) -> np.ndarray:
        """Per customer and event type, the number of events in [t - days, t)."""
        lo = int(np.searchsorted(self.ts, t - days * DAY_SECONDS, side="left"))
        hi = int(np.searchsorted(self.ts, t, side="left"))
        cust, code = self.cust[lo:hi], self.type_code[lo:hi]
        keep = code >= 0
        n_types = len(self.types)
        flat = np.bincount(cust[keep] * n_types + code[keep], minlength=len(self.ids) * n_types)
        return flat.reshape(len(self.ids), n_types).astype("float64")


def _recency_days(log: _Log, t: float) -> np.ndarray:
    """Days from the last event before ``t`` (or from signup, without one) to ``t``."""
    last = log.last_before(t)
    return (t - np.where(np.isnan(last), log.signup, last)) / DAY_SECONDS


# ---------------------------------------------------------------------------------------------
# Recency
# ---------------------------------------------------------------------------------------------


def recency_scores(
    customers: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp, horizon_days: float = 0.0
) -> pd.Series:
    """Days since the last event before ``as_of`` (since signup if none): higher means likelier churn.

    Monotone in the churn risk, which is all the ROC-AUC needs; not a probability (see
    ``calibrated_recency_scores``). ``horizon_days`` is unused and kept for a uniform signature.
    """
    del horizon_days
    as_of = pd.Timestamp(as_of)
    cands = candidates_at(customers, as_of)
    log = _Log(cands, events, as_of)
    days = _recency_days(log, _seconds(pd.Index([as_of]))[0])
    return pd.Series(days, index=pd.Index(log.ids, name="customer_id"), name="recency_days")


def calibrated_recency_scores(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float,
    label: str,
    cadence_days: int = 7,
) -> pd.Series:
    """Churn probability from a logistic regression of the label on ``log1p(recency days)``.

    Fitted on labelled snapshots at ``snapshot_times`` (every ``cadence_days``, labels inside the data
    before ``as_of``), every candidate labelled as by ``labels_at``; scored at ``as_of``.
    """
    as_of = pd.Timestamp(as_of)
    log = _Log(customers, events, as_of)
    xs, ys = [], []
    for t in snapshot_times(events, as_of, horizon_days, cadence_days, min_history_days=0):
        y = labels_at(customers, events, t, horizon_days, label)
        rows = log.ids.get_indexer(y.index)
        xs.append(np.log1p(_recency_days(log, _seconds(pd.Index([t]))[0])[rows]))
        ys.append(y.to_numpy())
    x, y = np.concatenate(xs)[:, None], np.concatenate(ys)
    if len(np.unique(y)) < 2:
        raise ValueError("calibrated_recency_scores: the training snapshots hold a single class")
    model = LogisticRegression(C=1e6).fit(x, y)
    cands = candidates_at(customers, as_of)
    rows = log.ids.get_indexer(cands["customer_id"].astype(str))
    now = np.log1p(_recency_days(log, _seconds(pd.Index([as_of]))[0])[rows])
    index = pd.Index(log.ids[rows], name="customer_id")
    return pd.Series(model.predict_proba(now[:, None])[:, 1], index=index, name="p_churn")


# ---------------------------------------------------------------------------------------------
# BG/NBD
# ---------------------------------------------------------------------------------------------


def bgnbd_no_purchase_probability(
    params: BGNBDParams, frequency: np.ndarray, recency: np.ndarray, age: np.ndarray, horizon_days: float
) -> np.ndarray:
    """P(no purchase in (T, T + t] | x, t_x, T) under BG/NBD, in closed form.

    A customer who is dead makes none; one alive at T cannot drop out before its next purchase (BG/NBD
    dropouts happen only right after a purchase), so it makes none with probability E[exp(-lambda t)]
    under the posterior of lambda given alive, which is Gamma(r + x, alpha + T) (the likelihood of the
    alive branch, lambda^x exp(-lambda T) (1 - p)^x, factorises in lambda and p). Hence
    P = (1 - P_alive) + P_alive * ((alpha + T) / (alpha + T + t))^(r + x).
    """
    x = np.asarray(frequency, dtype="float64")
    T = np.asarray(age, dtype="float64")
    alive = p_alive(params, x, recency, T)
    quiet = np.exp((params.r + x) * (np.log(params.alpha + T) - np.log(params.alpha + T + horizon_days)))
    return 1.0 - alive + alive * quiet


def bgnbd_scores(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float,
    purchase_types: Sequence[str] | None = None,
    include_signup: bool = True,
    penalizer: float = 0.001,
    kind: str = "no_purchase",
) -> pd.Series:
    """BG/NBD fitted at ``as_of`` on every customer's history before it; a churn probability per candidate.

    ``kind="no_purchase"`` (default): P(no purchase in (as_of, as_of + horizon]), see
    ``bgnbd_no_purchase_probability``; this is the churn probability for the inactivity label when
    ``purchase_types`` is None (every event counts as a "purchase", as every event counts against
    inactivity). ``kind="dead"``: 1 - P(alive at as_of), the model's own churn notion, which ignores
    the horizon. With ``include_signup`` the signup is the first "purchase" (so customers without events
    still get a score and the birth is the acquisition); on explicit-churn data the score is only a
    proxy. RFM follows ``features.btyd.rfm_summary`` (UTC days; several events on one day count once).
    The fitted parameters are stored in ``scores.attrs["params"]``.
    """
    as_of = pd.Timestamp(as_of)
    ev = events.loc[events["timestamp"] < as_of]
    if purchase_types is not None:
        ev = ev.loc[ev["event_type"].isin(list(purchase_types))]
    ids = ev["customer_id"].astype(str).to_numpy()
    times = _seconds(ev["timestamp"])
    cust_all = customers.loc[customers["signup_at"] <= as_of]
    if include_signup:
        ids = np.concatenate([ids, cust_all["customer_id"].astype(str).to_numpy()])
        times = np.concatenate([times, _seconds(cust_all["signup_at"])])
    universe = cust_all["customer_id"].astype(str).to_numpy()
    rfm = rfm_summary(ids, times, _seconds(pd.Index([as_of]))[0], customers=universe)
    usable = rfm["T"].notna()
    params = fit_bgnbd(rfm.loc[usable, "frequency"], rfm.loc[usable, "recency"], rfm.loc[usable, "T"],
                       penalizer=penalizer)
    cands = candidates_at(customers, as_of)["customer_id"].astype(str)
    r = rfm.reindex(cands)
    if kind == "no_purchase":
        score = bgnbd_no_purchase_probability(params, r["frequency"].to_numpy(), r["recency"].to_numpy(),
                                              r["T"].to_numpy(), horizon_days)
    elif kind == "dead":
        score = 1.0 - p_alive(params, r["frequency"], r["recency"], r["T"])
    else:
        raise ValueError(f"kind must be 'no_purchase' or 'dead', not {kind!r}")
    # never seen before as_of (only without include_signup): the model says nothing; rank them last
    out = pd.Series(np.nan_to_num(score, nan=0.0), index=pd.Index(cands.to_numpy(), name="customer_id"),
                    name="p_churn")
    out.attrs["params"] = params.to_dict()
    return out


# ---------------------------------------------------------------------------------------------
# Fighting Churn with Data: 28-day counts, log, z-scores, L1 logistic regression
# ---------------------------------------------------------------------------------------------


def _book_features(log: _Log, t: float, window_days: int) -> np.ndarray:
    """Per customer at ``t``: counts of each event type in [t - window, t) and tenure in days."""
    counts = log.window_counts(t, window_days)
    tenure = np.maximum(t - log.signup, 0.0) / DAY_SECONDS
    return np.column_stack([counts, tenure])


def _transform(x: np.ndarray, logged: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """log1p of the chosen columns, then z-scores with the training mean and standard deviation."""
    out = x.copy()
    out[:, logged] = np.log1p(out[:, logged])
    return (out - mean) / std


def _l1_logistic(c: float) -> LogisticRegression:
    """The book's model: L1-penalised logistic regression with liblinear (seeded: it shuffles)."""
    return LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c, random_state=0)


def _choose_c(x: np.ndarray, y: np.ndarray, grid: Sequence[float], n_splits: int = 3) -> float:
    """C with the best mean ROC-AUC over forward time-series folds of the time-ordered rows.

    As the book's listing 9.5 (TimeSeriesSplit, no purging; all rows are before as_of anyway). Folds with a
    single class on either side are skipped; with none usable the middle of the grid is returned.
    """
    n = len(y)
    bounds = [int(n * (k + 1) / (n_splits + 1)) for k in range(n_splits + 1)]
    best, best_auc = float(grid[len(grid) // 2]), -np.inf
    for c in grid:
        aucs = []
        for k in range(n_splits):
            tr, te = slice(0, bounds[k]), slice(bounds[k], bounds[k + 1])
            if len(np.unique(y[tr])) < 2 or len(np.unique(y[te])) < 2:
                continue
            model = _l1_logistic(c).fit(x[tr], y[tr])
            aucs.append(roc_auc_score(y[te], model.predict_proba(x[te])[:, 1]))
        if aucs and np.mean(aucs) > best_auc:
            best, best_auc = float(c), float(np.mean(aucs))
    return best


def book_logistic_scores(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon_days: float,
    label: str,
    cadence_days: int = 7,
    window_days: int = 28,
    max_types: int = 30,
    skew_threshold: float | None = None,
    c_grid: Sequence[float] = BOOK_C_GRID,
) -> pd.Series:
    """The 'Fighting Churn with Data' model: churn probability per candidate at ``as_of``.

    Features per (customer, observation time t): the count of each event type (the ``max_types`` most
    common before ``as_of``) in [t - ``window_days``, t) and tenure in days. Transform: log1p of every
    column (``skew_threshold=None``), or as the book's listing 5.3 only of columns with skew above the
    threshold and no negative value; then z-scores with the training means and deviations. Model:
    L1-regularised logistic regression (liblinear), C from the book's grid by ROC-AUC over three forward
    time-series folds, refitted on every training row. Training rows: eligible customers at
    ``snapshot_times`` every ``cadence_days`` (each at least ``window_days`` after the first event), with
    the labels of ``labels_at``, all known before ``as_of``. The book's grouping of correlated metrics
    (chapter 6) is left out. The chosen C and the weights are in ``scores.attrs``.
    """
    as_of = pd.Timestamp(as_of)
    log = _Log(customers, events, as_of, max_types=max_types)
    xs, ys = [], []
    for t in snapshot_times(events, as_of, horizon_days, cadence_days, min_history_days=window_days):
        y = labels_at(customers, events, t, horizon_days, label)
        rows = log.ids.get_indexer(y.index)
        xs.append(_book_features(log, _seconds(pd.Index([t]))[0], window_days)[rows])
        ys.append(y.to_numpy())
    if not xs:
        raise ValueError("book_logistic_scores: no observation time fits before as_of")
    x, y = np.concatenate(xs), np.concatenate(ys)
    if len(np.unique(y)) < 2:
        raise ValueError("book_logistic_scores: the training snapshots hold a single class")
    if skew_threshold is None:
        logged = np.ones(x.shape[1], dtype=bool)
    else:
        logged = (pd.DataFrame(x).skew().to_numpy() > skew_threshold) & (x.min(axis=0) >= 0)
    plain = x.copy()
    plain[:, logged] = np.log1p(plain[:, logged])
    mean, std = plain.mean(axis=0), plain.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (plain - mean) / std
    c = _choose_c(z, y, c_grid)
    model = _l1_logistic(c).fit(z, y)
    cands = candidates_at(customers, as_of)
    rows = log.ids.get_indexer(cands["customer_id"].astype(str))
    features = _book_features(log, _seconds(pd.Index([as_of]))[0], window_days)[rows]
    now = _transform(features, logged, mean, std)
    out = pd.Series(model.predict_proba(now)[:, 1], index=pd.Index(log.ids[rows], name="customer_id"),
                    name="p_churn")
    names = [*(f"n_{name}_{window_days}d" for name in log.types), "tenure_days"]
    out.attrs["C"] = c
    out.attrs["weights"] = dict(zip(names, model.coef_[0].round(4).tolist(), strict=True))
    out.attrs["training_rows"] = len(y)
    return out


Baseline = Callable[[pd.DataFrame, pd.DataFrame, pd.Timestamp, float, str], pd.Series]

# every baseline with one signature: (customers, events, as_of, horizon_days, label) -> scores
BASELINES: dict[str, Baseline] = {
    "recency": lambda c, e, t, h, lab: recency_scores(c, e, t, h),
    "recency_logit": calibrated_recency_scores,
    "bgnbd": lambda c, e, t, h, lab: bgnbd_scores(c, e, t, h),
    "book_logistic": book_logistic_scores,
}
