"""How the reviewer page shows values to people: percentages, money, days, attributes."""

from __future__ import annotations

import math
import re

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



def money(value: object, currency: str = "") -> str:
    v = number(value)
    if v is None:
        return "–"
    return f"{currency}{v:,.2f}" if currency else f"{v:,.2f}"


def value_definition(value_column: str, multiplier: float) -> tuple[str, str]:
    """(short name, definition) of the customer value the offer rule uses, in words: the default
    amount_sum_30d x 12 is ("yearly value", "12 × last 30 days' amount received"): the sums
    leave failed payments out (features.definitions `unpaid_types`)."""
    match = re.fullmatch(r"(.+)_sum_(\d+)d", value_column)
    if match:
        column, days = match.group(1), int(match.group(2))
        source = f"last {days} days' {column.replace('_', ' ')} received"
        span = multiplier * days
        name = "yearly value" if 360 <= span <= 366 else "value"
    else:
        source, name = value_column.removeprefix("attr_").replace("_", " "), "value"
    return name, (source if multiplier == 1 else f"{multiplier:g} × {source}")


def days_ago(days: int) -> str:
    return "today" if days == 0 else "1 day ago" if days == 1 else f"{days:,} days ago"
