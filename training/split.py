"""Time-ordered train / validation / test split of observation times, with purging."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]
    test: list[pd.Timestamp]
    purged: list[pd.Timestamp]


def split_times(
    times: list[pd.Timestamp], horizon_days: int, validation: int, test: int, purge: bool = True
) -> TimeSplit:
    """Latest `test` times for test, the `validation` before them, the rest for training.

    With purging, a time is dropped from an earlier split when its label window (t, t+horizon]
    reaches past the first observation time of the next split, so no label is shared."""
    times = sorted(pd.Timestamp(t) for t in times)
    horizon = pd.Timedelta(days=horizon_days)
    test_t = times[-test:]
    rest = times[:-test]
    purged: list[pd.Timestamp] = []

    def clear(before: list[pd.Timestamp], boundary: pd.Timestamp) -> list[pd.Timestamp]:
        if not purge:
            return before
        keep = [t for t in before if t + horizon <= boundary]
        purged.extend(t for t in before if t + horizon > boundary)
        return keep

    rest = clear(rest, test_t[0])
    val_t = rest[-validation:]
    train_t = clear(rest[:-validation], val_t[0]) if val_t else []
    if not train_t or not val_t:
        raise ValueError(
            f"not enough observation times ({len(times)}) for {validation} validation and "
            f"{test} test times plus training; use more history, a shorter --cadence or "
            "fewer split times in the config"
        )
    return TimeSplit(train_t, val_t, test_t, sorted(purged))
