"""A sample of customers to train on when the snapshot table would not fit the memory budget.

The sample is decided before any snapshot is built, from the customers table and the labels
alone, so the memory it saves is never spent. It keeps customers, not rows: a kept customer has
a row at every observation time they are active at, a dropped one at none. Customers are
stratified by label (a churner in some labelled snapshot, or never) and by cohort (the first
observation time they are active at, which also sets how many rows they bring), and every
stratum keeps the same share of its customers, so the sample needs no weights: rates, metrics
and calibration fitted on it estimate the whole log's. Within a stratum the customers kept are
those whose hash of (seed, customer id) ranks lowest: the same seed keeps the same customers on
every run, whatever the order of the customers table."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID, Tables
from features.definitions import FeatureSpec
from features.observations import LABEL, active_at, label_observations
from features.relations import relations

log = logging.getLogger(__name__)

# Peak training memory per byte of the snapshot table: the train/validation/test parts, the
# candidates' matrices and the refit's float32 matrix and folds. Measured with
# `benchmarks/bench_scale.py --commands train` (no search; 753 bytes a row) on 2026-12-07:
# peak RSS 1.16 GB for 176k rows (1M events), 3.86 GB for 1.14M rows (10M events, sampled):
# 3.7 bytes per table byte over a base of about 0.66 GB (it was 6.7 before the refit stopped
# copying the table and the logistic design was built in place).
PEAK_PER_TABLE_BYTE = 4.0
ID_BYTES = 60  # a customer id as a Python string, plus its pointer
CATEGORY_BYTES = 60  # a level as a Python string of its own per row, plus its pointer
FIXED_ROW_BYTES = 8 + 1 + 8  # as_of, label, index


def row_bytes(spec: FeatureSpec, float_bytes: int = 8) -> int:
    """The bytes one snapshot row takes in the table `build_snapshots` returns."""
    cats = len(spec.categorical_features)
    numeric = len(spec.feature_names) - cats
    return FIXED_ROW_BYTES + ID_BYTES + cats * CATEGORY_BYTES + numeric * float_bytes


def budget_rows(memory_mb: float, spec: FeatureSpec, float_bytes: int = 8) -> int | None:
    """The snapshot rows training can hold within `memory_mb` at its peak (0: None, no limit)."""
    if memory_mb <= 0:
        return None
    return int(memory_mb * 1e6 / (PEAK_PER_TABLE_BYTE * row_bytes(spec, float_bytes)))


@dataclass(frozen=True)
class CustomerSample:
    """Whom training keeps, and the facts a run records about it."""

    sampled: bool
    rows_estimated: int  # snapshot rows of every customer
    rows_budget: int | None  # None: no budget
    customers: int  # customers with at least one snapshot row
    kept: int
    fraction: float  # the share each stratum keeps (target; each stratum rounds to whole customers)
    strata: dict[str, dict[str, float]] = field(default_factory=dict)
    ids: np.ndarray | None = None  # the customers kept; None: all

    def describe(self) -> dict[str, object]:
        """What dataset.json records."""
        return {"sampled": self.sampled, "rows_estimated": self.rows_estimated,
                "rows_budget": self.rows_budget, "customers": self.customers,
                "customers_kept": self.kept, "fraction": self.fraction,
                "stratified_by": ["label (churns in some labelled snapshot or never)",
                                  "cohort (first observation time active)"],
                "strata": self.strata}

    def params(self) -> dict[str, object]:
        """What the run's params record: whether it sampled, whom, and each label's share."""
        out: dict[str, object] = {"sampled": self.sampled, "sample_customers": self.customers,
                                  "sample_customers_kept": self.kept,
                                  "sample_fraction": round(self.fraction, 6)}
        for name in ("churners", "non_churners"):
            parts = [s for k, s in self.strata.items() if k.startswith(f"{name} ")]
            n = sum(s["customers"] for s in parts)
            if n:
                out[f"sample_fraction.{name}"] = round(sum(s["kept"] for s in parts) / n, 6)
        return out


def active_counts(customers: pd.DataFrame, times: Sequence[pd.Timestamp]) -> np.ndarray:
    """Per customer, the observation times they are active at: their rows in the snapshots
    `build_snapshots` returns at `times`."""
    counts = np.zeros(len(customers), dtype=np.int64)
    for t in times:
        counts += active_at(customers, pd.Timestamp(t)).to_numpy(dtype=bool)
    return counts


def customer_strata(tables: Tables, spec: FeatureSpec, label: str, horizon_days: float,
                    times: Sequence[pd.Timestamp]) -> pd.Series:
    """Each customer's stratum, `churners k` or `non_churners k` with k the index of the first
    observation time they are active at; customers active at none are left out. One time's
    labels at a time, so this holds no more than the customers table."""
    customers = tables.customers
    first = np.full(len(customers), -1)
    churner = np.zeros(len(customers), dtype=bool)
    rel = relations(customers, tables.events, spec)
    for i, t in enumerate(sorted(pd.Timestamp(t) for t in times)):
        now = active_at(customers, t).to_numpy()
        first[(first < 0) & now] = i
        labelled = label_observations(rel, [t], label, horizon_days)
        churner |= customers[CUSTOMER_ID].isin(
            labelled.loc[labelled[LABEL] == 1, CUSTOMER_ID]).to_numpy()
    seen = first >= 0
    names = np.where(churner, "churners", "non_churners").astype(object)
    strata = names + " " + first.astype(str)
    return pd.Series(strata[seen], index=customers[CUSTOMER_ID].to_numpy()[seen], name="stratum")


def sample_rank(ids: np.ndarray, seed: int) -> np.ndarray:
    """A stable pseudo-random rank per customer id: the first 8 bytes of BLAKE2b(seed, id)."""
    key = str(seed).encode()
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(c).encode(), digest_size=8, key=key).digest(), "big")
         for c in ids), dtype=np.uint64, count=len(ids))


def choose_customers(strata: pd.Series, fraction: float, seed: int
                     ) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """The customers kept from each stratum (index: customer id): `fraction` of it, rounded,
    those of lowest `sample_rank`; and per stratum its customers, those kept and their share.
    Strata are named `<label> <cohort>` (`customer_strata`)."""
    frame = pd.DataFrame({"stratum": strata.to_numpy(),
                          "rank": sample_rank(strata.index.to_numpy(), seed)},
                         index=strata.index)
    kept, info = [], {}
    groups = dict(list(frame.groupby("stratum", sort=False)))
    order = sorted(groups, key=lambda s: (s.split()[0], int(s.split()[1])))
    # rounded cumulatively, so every stratum and every label keeps its share to one customer
    seen, taken = 0, 0
    for name in order:
        group = groups[name]
        seen += len(group)
        k = int(round(fraction * seen)) - taken
        taken += k
        kept.append(group.nsmallest(k, "rank").index.to_numpy())
        info[str(name)] = {"customers": len(group), "kept": k, "fraction": k / len(group)}
    ids = np.concatenate(kept) if kept else np.array([], dtype=object)
    return ids, info


def sample_customers(tables: Tables, spec: FeatureSpec, label: str, horizon_days: float,
                     times: Sequence[pd.Timestamp], memory_mb: float, seed: int,
                     float_bytes: int = 8) -> CustomerSample:
    """Whom to train on: everyone when the snapshot rows at `times` fit `memory_mb`, else a
    stratified sample of customers whose rows fit it."""
    counts = active_counts(tables.customers, times)
    rows, limit = int(counts.sum()), budget_rows(memory_mb, spec, float_bytes)
    if limit is None or rows <= limit:
        customers = int((counts > 0).sum())
        return CustomerSample(False, rows, limit, customers, customers, 1.0)
    fraction = limit / rows
    strata = customer_strata(tables, spec, label, horizon_days, times)
    ids, info = choose_customers(strata, fraction, seed)
    log.info("sampling %d of %d customers (%.1f%%): %d snapshot rows exceed the budget of %d",
             len(ids), len(strata), 100 * fraction, rows, limit)
    return CustomerSample(True, rows, limit, len(strata), len(ids), fraction, info, ids)


def restrict(tables: Tables, ids: np.ndarray | None) -> Tables:
    """The tables of the customers in `ids` alone (None: unchanged). Events in memory are
    filtered here; events scanned in an engine are filtered by its events relation, which reads
    only the customers in the customers table."""
    if ids is None:
        return tables
    customers = tables.customers[tables.customers[CUSTOMER_ID].isin(ids)].reset_index(drop=True)
    events = tables.events
    if isinstance(events, pd.DataFrame):
        events = events[events[CUSTOMER_ID].isin(ids)].reset_index(drop=True)
    return replace(tables, customers=customers, events=events)
