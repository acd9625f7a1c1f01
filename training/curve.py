"""A churn curve per customer: the probability of churn within each of a set of horizons and
the expected days until churn within a cap, from one discrete-time hazard model.

Each feature row (customer, as_of) with its time to churn (`features.observations.
churn_durations`) becomes person-period rows, one per interval of the grid it is at risk in and
observed through: the target says whether churn fell in that interval. A booster learns the
hazard of each interval from the features and the interval's end; the curve is
F(t_j) = 1 - prod_{k <= j} (1 - h_k), monotone in the horizon by construction, and the
restricted mean is the area under 1 - F up to the cap.

The inactivity label's event can fall at as_of itself (no activity in the horizon after it):
the grid then starts with an interval [0, 0], whose hazard is the single-horizon label's
probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

DEFAULT_HORIZONS = (7, 30, 90)
STEP_DAYS = 7  # the grid's spacing between the horizons asked for
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "lambda_l2": 1.0,
    "verbosity": -1,
}


@dataclass(frozen=True)
class Grid:
    """Interval ends in days, ascending: interval j is (ends[j-1], ends[j]] (the first one
    (0, ends[0]]); `at_zero` adds the interval [0, 0] in front."""

    ends: tuple[float, ...]
    at_zero: bool

    @classmethod
    def for_label(cls, kind: str, horizon_days: float,
                  horizons: tuple[float, ...] = DEFAULT_HORIZONS) -> Grid:
        """Every STEP_DAYS up to the cap (the longest horizon asked for, or the training
        horizon), with each horizon asked for an interval end."""
        cap = max(*horizons, horizon_days)
        ends = set(np.arange(STEP_DAYS, cap + STEP_DAYS, STEP_DAYS).clip(max=cap).tolist())
        ends |= {float(h) for h in (*horizons, horizon_days)}
        return cls(tuple(sorted(float(e) for e in ends)), at_zero=kind == "inactivity")

    @property
    def cap(self) -> float:
        return self.ends[-1]

    @property
    def bounds(self) -> list[tuple[float, float]]:
        """(start, end) of each interval, the [0, 0] one first when there is one."""
        starts = (0.0, *self.ends[:-1])
        pairs = list(zip(starts, self.ends, strict=True))
        return [(0.0, 0.0), *pairs] if self.at_zero else pairs

    def index_of(self, days: float) -> int:
        """The position of an interval end (or of 0 with `at_zero`) in the curve."""
        if days == 0 and self.at_zero:
            return 0
        return self.ends.index(float(days)) + self.at_zero


def person_period(x: np.ndarray, duration: np.ndarray, observed: np.ndarray, grid: Grid
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, target): the person-period rows of feature rows `x`, as the index of
    the feature row each comes from, the interval end as a feature, and whether churn fell in
    the interval. A row enters an interval it is still at risk at and observed through: churn
    in it, or known to be later; a row censored inside an interval leaves it out."""
    rows, ends, target = [], [], []
    for start, end in grid.bounds:
        if end == 0:  # the [0, 0] interval: at risk from the start, observed wherever labelled
            at_risk = np.ones(len(duration), dtype=bool)
            event = observed & (duration == 0)
            known = event | (duration > 0)
        else:
            at_risk = duration > start
            event = observed & (duration <= end)
            known = event | (duration >= end)
        keep = np.flatnonzero(at_risk & known)
        rows.append(keep)
        ends.append(np.full(len(keep), end))
        target.append(event[keep])
    return (np.concatenate(rows), np.concatenate(ends),
            np.concatenate(target).astype("float64"))


def _design(x: np.ndarray, rows: np.ndarray, ends: np.ndarray) -> np.ndarray:
    return np.column_stack([x[rows], ends])


@dataclass
class HazardCurve:
    """A fitted discrete-time hazard model over `grid`."""

    booster: lgb.Booster
    grid: Grid

    def hazards(self, x: np.ndarray) -> np.ndarray:
        """(rows, intervals) hazard of each interval of the grid."""
        n, k = len(x), len(self.grid.bounds)
        ends = np.array([end for _, end in self.grid.bounds])
        design = _design(x, np.repeat(np.arange(n), k), np.tile(ends, n))
        return self.booster.predict(design).reshape(n, k)

    def curve(self, x: np.ndarray) -> np.ndarray:
        """(rows, intervals) probability of churn by the end of each interval: 1 - survival."""
        return 1.0 - np.cumprod(1.0 - self.hazards(x), axis=1)

    def at(self, x: np.ndarray, horizons: tuple[float, ...]) -> np.ndarray:
        """(rows, horizons) probability of churn within each horizon (interval ends)."""
        curve = self.curve(x)
        return curve[:, [self.grid.index_of(h) for h in horizons]]

    def expected_days(self, x: np.ndarray) -> np.ndarray:
        """Expected days until churn within the cap (restricted mean): `restricted_mean`."""
        return restricted_mean(self.curve(x), self.grid)


def restricted_mean(curve: np.ndarray, grid: Grid) -> np.ndarray:
    """The area under the survival curve 1 - F up to the cap, linear between interval ends
    (survival starts at 1, or below it after the [0, 0] interval)."""
    survival = 1.0 - curve
    if grid.at_zero:
        start, survival = survival[:, 0], survival[:, 1:]
    else:
        start = np.ones(len(curve))
    points = np.column_stack([start, survival])
    widths = np.diff(np.array((0.0, *grid.ends)))
    return ((points[:, :-1] + points[:, 1:]) / 2 * widths).sum(axis=1)


def fit_hazard(x: np.ndarray, duration: np.ndarray, observed: np.ndarray, grid: Grid,
               x_val: np.ndarray | None = None, duration_val: np.ndarray | None = None,
               observed_val: np.ndarray | None = None, categorical: tuple[int, ...] = (),
               rounds: int = 400, num_threads: int = 0, seed: int = 0) -> HazardCurve:
    """A hazard booster on the person-period rows of `x`; its rounds chosen by early stopping
    on the validation rows' person-period log loss when they are given."""
    rows, ends, y = person_period(x, duration, observed, grid)
    params = {**PARAMS, "num_threads": num_threads, "seed": seed}
    train = lgb.Dataset(_design(x, rows, ends), y, categorical_feature=list(categorical),
                        params={"feature_pre_filter": False})
    valid, callbacks = [], []
    if x_val is not None:
        vrows, vends, vy = person_period(x_val, duration_val, observed_val, grid)
        valid = [lgb.Dataset(_design(x_val, vrows, vends), vy, reference=train,
                             categorical_feature=list(categorical),
                             params={"feature_pre_filter": False})]
        callbacks = [lgb.early_stopping(30, verbose=False)]
    booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=valid,
                        callbacks=callbacks)
    return HazardCurve(booster, grid)
