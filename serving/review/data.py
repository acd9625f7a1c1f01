"""The reviewer page's data: the scores, the customer tables and the playbook, each loaded once
and again only when its file changes; the earlier batches kept beside the scores; and the
re-scoring of the list with the live model.

Earlier batches live in a folder beside the scores file, named after it: for
`scores.parquet`, `scores.batches/`. Each file there is one earlier batch, named
`scores-<UTC time it was replaced>.parquet` so that name order is time order; the last in name
order is the previous batch. Re-scoring the list moves the current file there (a hard link, then
an atomic rename of the new file over the old name), and anyone may copy earlier `churn score`
outputs there under such names.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campaigns.playbook import DEFAULT_PATH, Playbook, PlaybookError, load_playbook
from features.contract import CUSTOMER_ID, DataError, Tables
from features.files import write_parquet
from features.tables import load_tables
from scoring.predictor import offer_if_valued, score_batch
from scoring.settings import Settings
from scoring.store import LoadedModel
from serving.review.timeline import sign_counts

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


_evidence_lock = threading.Lock()


@dataclass
class Data:
    """Validated tables with each customer's event rows found once."""

    tables: Tables
    event_rows: dict[str, np.ndarray]
    _evidence: dict = field(default_factory=dict, repr=False)

    def customer(self, customer_id: str) -> pd.DataFrame:
        c = self.tables.customers
        return c[c[CUSTOMER_ID] == customer_id]

    def events_of(self, customer_id: str) -> pd.DataFrame:
        rows = self.event_rows.get(customer_id)
        events = self.tables.events
        return events.iloc[rows] if rows is not None else events.iloc[:0]

    def evidence(self, as_of: pd.Timestamp, playbook: Playbook) -> dict[str, dict[str, int]]:
        """Every customer's recent warning-sign events that weigh an action (`sign_counts`),
        counted once per date and playbook."""
        key = (pd.Timestamp(as_of), id(playbook))
        with _evidence_lock:
            cached = self._evidence.get(key)
        if cached is None:
            cached = sign_counts(self.tables.events, pd.Timestamp(as_of), playbook)
            with _evidence_lock:
                self._evidence.clear()  # one date and playbook at a time
                self._evidence[key] = cached
        return cached


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


# -- earlier batches ----------------------------------------------------------------------------

HISTORY_COLUMNS = ["customer_id", "churn_probability", "risk_band", "as_of", "model_version"]
MAX_BATCHES = 6  # the trend shows at most this many batches, the current one included


def history_folder(scores_path: Path) -> Path:
    return scores_path.with_name(scores_path.stem + ".batches")


@dataclass(frozen=True)
class Batch:
    name: str  # the file name, for the log; the page shows dates and versions
    frame: pd.DataFrame  # HISTORY_COLUMNS

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(pd.to_datetime(self.frame["as_of"]).max())

    @property
    def model_versions(self) -> list[str]:
        return sorted(self.frame["model_version"].astype(str).unique())


_history: dict[Path, tuple[int, Batch]] = {}
_history_lock = threading.Lock()


def _read_batch(path: Path) -> Batch | None:
    try:
        key = path.stat().st_mtime_ns
    except OSError:
        return None
    with _history_lock:
        cached = _history.get(path)
        if cached and cached[0] == key:
            return cached[1]
    try:
        frame = pd.read_parquet(path, columns=HISTORY_COLUMNS)
    except Exception as exc:  # an unreadable earlier batch is left out, not fatal
        log.warning("earlier batch %s not readable: %s", path, exc)
        return None
    batch = Batch(path.name, frame.assign(customer_id=frame[CUSTOMER_ID].astype(str)))
    with _history_lock:
        _history[path] = (key, batch)
    return batch


def earlier_batches(settings: Settings) -> list[Batch]:
    """The earlier batches kept beside the scores file, oldest first (at most MAX_BATCHES - 1)."""
    if settings.review_scores is None:
        return []
    folder = history_folder(settings.review_scores)
    try:
        paths = sorted(p for p in folder.glob("*.parquet") if p.is_file())
    except OSError:
        return []
    batches = [_read_batch(p) for p in paths[-(MAX_BATCHES - 1):]]
    return [b for b in batches if b is not None]


# -- re-scoring with the live model ---------------------------------------------------------

_rescore_lock = threading.Lock()


def rescore(loaded: LoadedModel, settings: Settings, scores: pd.DataFrame) -> pd.DataFrame:
    """Score the configured customers again with `loaded` at the batch's as_of, keep the current
    file as an earlier batch and put the new one in its place atomically. PageError(409) while
    another re-score runs."""
    path = settings.review_scores
    data = current_data(settings)
    if path is None or data is None:
        raise PageError(409, "Cannot re-score",
                        "Re-scoring needs the scores and the customer and event files configured.")
    if not _rescore_lock.acquire(blocking=False):
        raise PageError(409, "Re-scoring already", "The list is being re-scored; reload in a "
                        "minute.")
    try:
        as_of = pd.Timestamp(pd.to_datetime(scores["as_of"]).max())
        offer = (offer_if_valued(settings.offer, loaded.model.spec)
                 if "expected_value_at_risk" in scores.columns else None)
        fresh = score_batch(loaded, data.tables.customers, data.tables.events, as_of,
                            settings.top_reasons, settings.risk_bands, offer)
        if fresh.empty:
            raise PageError(409, "Nobody to score", f"No customer is active at {as_of:%Y-%m-%d}.")
        folder = history_folder(path)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        kept = folder / f"{path.stem}-{stamp}.parquet"
        try:
            folder.mkdir(exist_ok=True)
            try:
                os.link(path, kept)  # the old file stays whole under its new name
            except OSError:
                shutil.copy2(path, kept)
            write_parquet(fresh, path)
        except OSError as exc:  # the list stays as it was: write_parquet replaces it atomically
            raise PageError(503, "Cannot re-score",
                            "The service cannot write beside the scores file "
                            f"({exc.strerror or 'not writable'}); the list is unchanged.") from None
        log.info("re-scored %s with model %s: %d customers; the old file is %s", path.name,
                 loaded.label, len(fresh), kept.name)
        return fresh
    finally:
        _rescore_lock.release()
