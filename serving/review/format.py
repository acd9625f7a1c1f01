"""How the reviewer page shows values to people: percentages, money, days, attributes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def number(value: object) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def text(value: object) -> str:
    """A cell as text; missing values (None, NaN, NaT, NA) are empty."""
    missing = pd.isna(value)
    return "" if isinstance(missing, bool | np.bool_) and missing else str(value)


def shown(value: object) -> str:
    """An attribute for people: whole numbers without .0, dates as days."""
    if isinstance(value, pd.Timestamp):
        return day(value)
    if isinstance(value, float) and value.is_integer():
        return f"{value:.0f}"
    return text(value)


def day(ts: object) -> str:
    t = pd.Timestamp(ts)
    return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")

