"""The reviewer page's data: the scores, the customer tables and the playbook, each loaded once
and again only when its file changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.contract import CUSTOMER_ID, DataError, Tables, load_tables
from scoring.settings import Settings
from serving.playbook import DEFAULT_PATH, Playbook, PlaybookError, load_playbook

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("customer_id", "churn_probability", "risk_band", "as_of", "reason_1_feature",
                 "reason_1_text", "model_version")


class PageError(Exception):
    """A problem to show as a friendly HTML page with this status."""

    def __init__(self, status: int, title: str, message: str):
        super().__init__(message)
        self.status, self.title, self.message = status, title, message



class FileCache:
    """The result of `load(*paths)`, recomputed only when a file's modification time changes."""

    def __init__(self, load: Callable[..., Any]):
        self._load = load
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._value: Any = None

    def get(self, *paths: Path) -> Any:
        try:
            key = tuple((str(p), p.stat().st_mtime_ns) for p in paths)
        except OSError as exc:  # the page names the file; the log has its path
            log.warning("reviewer page data not available: %s", exc)
            raise PageError(503, "Data not available",
                            f"Cannot read {Path(str(exc.filename)).name}: {exc.strerror}.") from None
        with self._lock:
            if key != self._key:
                self._value = self._load(*paths)
                self._key = key
            return self._value


def read_scores(path: Path) -> pd.DataFrame:
    """A scores Parquet from `churn score`, checked for the columns the page needs."""
    try:
        scores = pd.read_parquet(path)
    except Exception as exc:
        raise PageError(503, "Scores not readable", f"{path.name}: {exc}") from None
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise PageError(503, "Not a scores file",
                        f"{path.name} lacks the column {missing[0]!r}; write it with `churn score`.")
    return scores.assign(customer_id=scores[CUSTOMER_ID].astype(str))


@dataclass
class Data:
    """Validated tables with each customer's event rows found once."""

    tables: Tables
    event_rows: dict[str, np.ndarray]

    def customer(self, customer_id: str) -> pd.DataFrame:
        c = self.tables.customers
        return c[c[CUSTOMER_ID] == customer_id]

    def events_of(self, customer_id: str) -> pd.DataFrame:
        rows = self.event_rows.get(customer_id)
        events = self.tables.events
        return events.iloc[rows] if rows is not None else events.iloc[:0]


def read_data(customers: Path, events: Path) -> Data:
    try:
        tables = load_tables(customers, events)
    except (DataError, OSError) as exc:
        log.warning("reviewer page data not readable: %s", exc)
        message = str(exc)
        for path in (customers, events):  # name the files, not where they live
            message = message.replace(str(path), path.name)
        raise PageError(503, "Data not readable", message) from None
    return Data(tables, tables.events.groupby(CUSTOMER_ID, sort=False).indices)


_scores_cache = FileCache(read_scores)
_data_cache = FileCache(read_data)
_playbook_cache = FileCache(load_playbook)
def current_playbook(settings: Settings) -> Playbook:
    try:
        return _playbook_cache.get(settings.review_playbook or DEFAULT_PATH)
    except PlaybookError as exc:
        raise PageError(500, "The playbook has a mistake", str(exc)) from None


def current_data(settings: Settings) -> Data | None:
    if settings.review_customers is None or settings.review_events is None:
        return None
    return _data_cache.get(settings.review_customers, settings.review_events)


def current_scores(settings: Settings) -> pd.DataFrame | None:
    return None if settings.review_scores is None else _scores_cache.get(settings.review_scores)
