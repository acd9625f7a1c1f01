"""Splitting labelled snapshots into train, validation and test, in time where the log allows.

The test is the latest observation time(s), with every earlier time whose label window reaches
into the test period purged. Validation (early stopping, the search, calibration) is the times
before that, purged the same way. A short log may leave no room for one or both: validation
then holds out a group of customers inside the training times, and, when no time lies a full
horizon before the latest, so does the test. No customer is ever on both sides, and the split
records which scheme it used and why."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TIME, CUSTOMER_GROUPS = "time", "customer_groups"
# customers hashed into ten buckets: two hold the grouped test, two the grouped validation
TEST_BUCKETS, VALIDATION_BUCKETS = (0, 1), (2, 3)


@dataclass(frozen=True)
class TimeSplit:
    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]  # empty when validation is by customer groups
    test: list[pd.Timestamp]  # empty when the test is by customer groups
    purged: list[pd.Timestamp]
    validation_scheme: str = TIME
    test_scheme: str = TIME
    notes: tuple[str, ...] = ()

    @property
    def used(self) -> list[pd.Timestamp]:
        return sorted(self.train + self.validation + self.test)


def split_times(
    times: list[pd.Timestamp], horizon_days: int, validation: int, test: int, purge: bool = True
) -> TimeSplit:
    """Latest `test` times for test, the `validation` before them, the rest for training.

    With purging, a time is dropped from an earlier split when its label window (t, t+horizon]
    reaches past the first observation time of the next split, so no label is shared. When
    that leaves no training time, validation falls back to customer groups; when no time lies a
    horizon before the latest one (even with a single test time), so does the test."""
    times = sorted(pd.Timestamp(t) for t in times)
    if not times:
        raise ValueError("no observation time: the log is too short for the horizon")
    horizon = pd.Timedelta(days=horizon_days)
    purged: list[pd.Timestamp] = []
    notes: list[str] = []

    def clear(before: list[pd.Timestamp], boundary: pd.Timestamp) -> list[pd.Timestamp]:
        if not purge:
            return before
        keep = [t for t in before if t + horizon <= boundary]
        purged.extend(t for t in before if t + horizon > boundary)
        return keep

    test_scheme, test_t, rest = CUSTOMER_GROUPS, [], list(times)
    for n_test in dict.fromkeys((test, 1)):
        if len(times) <= n_test:
            continue
        earlier = [t for t in times[:-n_test] if not purge or t + horizon <= times[-n_test]]
        if earlier:
            test_scheme, test_t = TIME, times[-n_test:]
            rest = clear(times[:-n_test], test_t[0])
            if n_test < test:
                notes.append(f"test: the latest time only; {test} test times leave no training "
                             "time a horizon before them")
            break
    else:
        notes.append(
            f"test: 20% of customers held out at every time, not a later period: no observation "
            f"time lies {horizon_days} days (the horizon) before the latest one. These test "
            "metrics are not out of time; a longer log gives an out-of-time test")
    val_t = rest[-validation:]
    train_t = clear(rest[:-validation], val_t[0]) if len(rest) > validation else []
    validation_scheme = TIME
    if not train_t:
        validation_scheme, train_t, val_t = CUSTOMER_GROUPS, rest, []
        notes.append("validation (early stopping, search, calibration): 20% of the training "
                     f"customers, inside the training times: {len(rest)} training time(s) leave no "
                     "room for a purged validation period")
    return TimeSplit(train_t, val_t, test_t, sorted(set(purged)), validation_scheme, test_scheme,
                     tuple(notes))


def customer_buckets(customer_ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """A bucket 0-9 per row, the same for every row of a customer."""
    ids = pd.Series(np.asarray(customer_ids, dtype=object)).astype(str)
    # the hash key must be exactly 16 characters, and every digit of the seed must be in it
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=f"churn{seed % 10**11:011d}")
    return (hashed.to_numpy() % 10).astype(int)


def split_rows(snapshots: pd.DataFrame, split: TimeSplit, time_column: str, id_column: str,
               seed: int = 0) -> dict[str, pd.DataFrame]:
    """The train, validation and test rows of labelled snapshots under a split."""
    return {name: snapshots[mask].reset_index(drop=True)
            for name, mask in split_masks(snapshots, split, time_column, id_column, seed).items()}


def split_masks(snapshots: pd.DataFrame, split: TimeSplit, time_column: str, id_column: str,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Which rows of labelled snapshots are train, validation and test under a split (none of
    them: purged, or a test customer's row at a training time)."""
    at = snapshots[time_column]
    bucket = customer_buckets(snapshots[id_column].to_numpy(), seed)
    in_test_group = np.isin(bucket, TEST_BUCKETS)
    in_val_group = np.isin(bucket, VALIDATION_BUCKETS)
    if split.test_scheme == TIME:
        test = at.isin(split.test).to_numpy()
        pool = ~test
    else:
        test = in_test_group & at.isin(split.used).to_numpy()
        pool = ~in_test_group
    if split.validation_scheme == TIME:
        validation = at.isin(split.validation).to_numpy() & pool
        train = at.isin(split.train).to_numpy() & pool
    else:
        validation = at.isin(split.train).to_numpy() & pool & in_val_group
        train = at.isin(split.train).to_numpy() & pool & ~in_val_group
    return {"train": train, "validation": validation, "test": test}
