"""The prediction log: what was predicted, for whom, by which model, and when.

Every prediction the service answers (/predict, /predict_features) and every row `churn score`
writes (also the /batch jobs, which run it) becomes one row of the store's `predictions` table
(scoring/records.py): customer id, `as_of`, probability, band, the top reasons' feature names,
model version, source and the time it was made. `churn monitor` reads it back.

Two ways in:
- The service never waits for the database. `PredictionLog.record` puts rows in a bounded queue
  and returns at once; one background thread drains the queue in batches into the store. On a
  full queue the new rows are dropped and counted (`on_drop`, Prometheus in the service) and kept
  in a dead-letter file under mlruns/, as is any record the store cannot hold. A
  write that fails is retried with the same record ids, so a write that did succeed before its
  answer was lost is never stored twice. `close` drains the queue on a clean shutdown, for a
  bounded time.
- `churn score` (and a /batch job) writes synchronously once its scores file is written
  (`write_run`): all its records in one transaction, so a killed run leaves none of them, each
  with an id derived from the scoring run's id (`run_id`, `record_id_in`), so a re-run stores
  nobody twice.

Each row carries a `record_id` made here, unique, which the store writes at most once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError

from features.contract import parse_timestamps, to_utc_datetime
from scoring.records import engine_for, insert_predictions, predictions, write_predictions
from scoring.settings import Settings

log = logging.getLogger(__name__)

SOURCES = ("predict", "predict_features", "batch", "score")
BATCH_ROWS = 2_000  # rows the writer stores in one transaction at most
CHUNK_ROWS = 5_000  # rows `churn score` turns into records and stores at once
RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between the writer's attempts; the last repeats
CLI_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0)  # seconds between `churn score`'s attempts at one chunk
MAX_FAILED_ATTEMPTS = 3  # a batch failing other than by its connection is dropped after these
DEAD_LETTER = "prediction-log.dead-letter.jsonl"
# the widths of the table's text columns: a longer value is cut, never refused by the database
_WIDTHS = {c: predictions.c[c].type.length for c in ("customer_id", "band", "model_version",
                                                       "model_name", "source")}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _naive_utc(value) -> datetime:
    if type(value) is datetime and value.tzinfo is None:  # the common case, kept cheap
        return value
    return to_utc_datetime(value)


def _as_of(value: object) -> object:
    """A record's observation time as naive UTC; a value outside the one rule for times is
    kept as given, so that the writer counts the record and keeps it aside (`unstorable`)
    instead of the caller losing it to an exception."""
    try:
        return _naive_utc(value)
    except (ValueError, TypeError, OverflowError):
        return value


def unstorable(row: dict) -> str | None:
    """Why the store cannot hold this record, or None: an observation time that is not a naive
    UTC datetime (see `_as_of`), or a probability that is not a number from 0 to 1."""
    when = row.get("as_of")
    if not (isinstance(when, datetime) and when.tzinfo is None):
        return f"as_of {when!r} is not a time within the years 1 to 9999 in UTC"
    p = row.get("probability")
    if not (isinstance(p, int | float) and 0.0 <= p <= 1.0):  # NaN fails both comparisons
        return f"probability {p!r} is not a number from 0 to 1"
    return None


def _text(value: object) -> str:
    """Text the database stores: PostgreSQL refuses NUL in text, and one such row would
    fail its whole batch."""
    return str(value).replace("\x00", "\ufffd")


def make_row(customer_id: object, as_of: datetime, probability: float, band: str,
             reasons: Sequence[str], model_version: str, source: str,
             created_at: datetime | None = None, model_name: str | None = None,
             record_id: str | None = None, test: bool = False) -> dict:
    """One record of the log with a fresh record id (or `record_id`); text cut to the table's
    widths. `model_name` is the registered model the version belongs to (None outside the
    registry); `test` marks a call made while trying the service, which monitoring skips."""
    return {
        "record_id": record_id or uuid.uuid4().hex,
        "customer_id": _text(customer_id)[:_WIDTHS["customer_id"]],
        "as_of": _as_of(as_of),
        "probability": float(probability),
        "band": str(band)[:_WIDTHS["band"]],
        "reasons": [_text(r) for r in reasons],
        "model_version": _text(model_version)[:_WIDTHS["model_version"]],
        "model_name": None if model_name is None else _text(model_name)[:_WIDTHS["model_name"]],
        "source": source[:_WIDTHS["source"]],
        "created_at": created_at or _now(),
        "test": bool(test),
    }


def prediction_rows(out, as_of: datetime, model_version: str, source: str,
                    model_name: str | None = None) -> list[dict]:
    """Records of a predictor output (`scoring.predictor.Predictions`) made at `as_of`."""
    frame, now = out.frame, _now()
    reasons = out.reasons if len(out.reasons) == len(frame) else [[] for _ in range(len(frame))]
    return [make_row(cid, as_of, p, band, [r["feature"] for r in why], model_version, source, now,
                     model_name)
            for cid, p, band, why in zip(frame["customer_id"], frame["churn_probability"],
                                         frame["risk_band"], reasons, strict=True)]


def _reason_names(frame: pd.DataFrame) -> list[list[str]]:
    """The reason_{i}_feature columns of a scores table as one list per row, top first."""
    cols = sorted((c for c in frame.columns if c.startswith("reason_") and c.endswith("_feature")),
                  key=lambda c: int(c.split("_")[1]))
    values = [frame[c].tolist() for c in cols]
    return [[v for v in row if isinstance(v, str) and v] for row in zip(*values, strict=True)] \
        if values else [[] for _ in range(len(frame))]


def run_id(*parts: object) -> str:
    """A scoring run's id, the same whenever the same run is repeated: a hash of what defines
    it (the model name and version, the observation time, the source, the inputs' identity)."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def record_id_in(run: str, customer_id: object) -> str:
    """A customer's record id in scoring run `run`: a re-run stores nobody twice."""
    return hashlib.sha256(f"{run}\x1f{customer_id}".encode()).hexdigest()[:32]


def score_rows(scores: pd.DataFrame, source: str = "score",
               model_name: str | None = None, run: str | None = None,
               test: bool = False) -> list[dict]:
    """Records of a scores table (`score_batch`'s columns: customer_id, churn_probability,
    risk_band, as_of, reason_{i}_feature, model_version) scored by registered model
    `model_name`; with `run` (`run_id`) each record's id is the customer's in that run;
    `test` marks them as test calls."""
    now = _now()
    as_of = parse_timestamps(scores["as_of"], "scores", "as_of", allow_missing=True)
    return [make_row(cid, when, p, band, why, version, source, now, model_name,
                     None if run is None else record_id_in(run, cid), test)
            for cid, when, p, band, why, version in zip(
                scores["customer_id"].tolist(), list(as_of.dt.to_pydatetime()),
                scores["churn_probability"].tolist(), scores["risk_band"].tolist(),
                _reason_names(scores), scores["model_version"].tolist(), strict=True)]


def transient(exc: BaseException) -> bool:
    """A failure of the connection or a lock (worth retrying as it is), not of the rows."""
    if isinstance(exc, OperationalError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def write_all(engine: Engine, chunks: Iterable[Sequence[dict]],
              progress: Callable[[int], None] | None = None,
              delays: Sequence[float] = CLI_RETRY_DELAYS) -> int:
    """Store chunks of records synchronously, each in one transaction; a chunk whose write
    fails is retried with the same record ids (at most len(delays) more times). Raises the
    last error when a chunk cannot be stored; the chunks before it stay stored. Returns the
    rows stored; `progress(rows so far)` after each chunk."""
    done = 0
    for chunk in chunks:
        for attempt in range(len(delays) + 1):
            try:
                done += write_predictions(engine, chunk)
                break
            except Exception as exc:
                if attempt == len(delays) or not transient(exc):
                    raise
                log.warning("prediction log: write failed (%s); retrying", _short(exc))
                time.sleep(delays[attempt])
        if progress is not None:
            progress(done)
    return done


def write_run(engine: Engine, chunks: Callable[[], Iterable[Sequence[dict]]],
              progress: Callable[[int], None] | None = None,
              delays: Sequence[float] = CLI_RETRY_DELAYS) -> int:
    """Store a scoring run's records all or none: every chunk of `chunks()` in one
    transaction, so a run killed or failing part way leaves no record of it. A failure of the
    connection or a lock is retried from the start (`chunks()` again, the same record ids), at
    most len(delays) more times; other errors are raised. Returns the rows stored (rows whose
    record id is stored already are not stored again); `progress(rows so far)` per chunk."""
    for attempt in range(len(delays) + 1):
        try:
            done = 0
            with engine.begin() as conn:
                for chunk in chunks():
                    done += insert_predictions(conn, chunk)
                    if progress is not None:
                        progress(done)
            return done
        except Exception as exc:
            if attempt == len(delays) or not transient(exc):
                raise
            log.warning("prediction log: write failed (%s); retrying", _short(exc))
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


class PredictionLog:
    """A bounded queue of records and the one thread that writes them to the store.

    `engine` is called by the writer (not here) whenever it needs the store, so a database
    that is down at start delays the writes instead of failing the caller. `on_drop(reason, n)`
    is called for rows given up: "queue_full" (`record` past the bound), "write_failed" (a
    batch the database refused, after MAX_FAILED_ATTEMPTS) and "shutdown" (rows left when
    `close` ran out of time, or recorded after it). A record given up is never lost silently:
    besides being counted it is appended to `dead_letter` (JSON lines: the reason, the error
    and the record, record id included), from which it can be stored later."""

    def __init__(self, engine: Callable[[], Engine], max_queue: int = 10_000,
                 batch_rows: int = BATCH_ROWS,
                 on_drop: Callable[[str, int], None] | None = None,
                 delays: Sequence[float] = RETRY_DELAYS, dead_letter: Path | None = None):
        self._engine = engine
        self.max_queue = max_queue
        self.batch_rows = batch_rows
        self._on_drop = on_drop
        self._delays = tuple(delays)
        self._queue: deque[dict] = deque()
        self._batch: list[dict] = []  # the rows the writer holds
        self.dead_letter = dead_letter
        self.kept = 0  # rows given up and kept in the dead-letter file
        self._keep_lock = threading.Lock()
        self._cond = threading.Condition()
        self._busy = 0  # rows taken by the writer and not yet stored or given up
        self._closing = False
        self._abandoned = False  # close() gave up on the writer and counted its batch
        self._deadline = math.inf  # monotonic time at which a closing writer gives up
        self.written = 0  # rows stored by this log
        self.dropped: dict[str, int] = {}
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # ---- callers ----------------------------------------------------------------------------

    def record(self, rows: Sequence[dict]) -> int:
        """Queue rows for the writer without waiting; the rows past the queue's bound are
        dropped and counted. Returns the rows queued."""
        if not rows:
            return 0
        with self._cond:
            if self._closing:
                taken = 0
            else:
                taken = min(len(rows), self.max_queue - len(self._queue))
                self._queue.extend(rows[:taken])
                self._cond.notify()
        if taken < len(rows):
            self._drop("shutdown" if self._closing else "queue_full", len(rows) - taken,
                       rows=rows[taken:])
        return taken

    def pending(self) -> int:
        """Rows queued or being written."""
        with self._cond:
            return len(self._queue) + self._busy

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every row recorded so far is stored or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Stop taking rows and store those queued, for at most `timeout` seconds; what is
        left then is dropped and counted. True when everything was stored or given up."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 1.0)
        with self._cond:
            rest = list(self._queue)
            self._queue.clear()
            if self._thread.is_alive():  # the batch the writer holds is given up too
                rest += self._batch
                self._abandoned = True
        left = len(rest)
        if left:
            self._drop("shutdown", left, final=True, rows=rest)
        if self._thread.is_alive():
            log.error("prediction log: the writer did not finish within %.0f s", timeout)
            return False
        return not left

    # ---- the writer -------------------------------------------------------------------------

    def _drop(self, reason: str, n: int, final: bool = False, rows: Sequence[dict] = (),
              error: str | None = None) -> None:
        with self._cond:
            if self._abandoned and not final:  # close() already counted the writer's batch
                return
            self.dropped[reason] = self.dropped.get(reason, 0) + n
        self._keep(rows, reason, error)
        if reason != "queue_full":
            log.error("prediction log: %d records given up (%s)%s", n, reason,
                      f", kept in {self.dead_letter}" if self.dead_letter else "")
        if self._on_drop is not None:
            try:
                self._on_drop(reason, n)
            except Exception:  # a counter must never stop the log
                log.exception("prediction log: on_drop failed")

    def _keep(self, rows: Sequence[dict], reason: str, error: str | None) -> None:
        """Append rows given up to the dead-letter file, one JSON object a line."""
        if not rows or self.dead_letter is None:
            return
        lines = "".join(json.dumps({"reason": reason, "error": error, "record": r},
                                   default=str) + "\n" for r in rows)
        try:
            with self._keep_lock:
                self.dead_letter.parent.mkdir(parents=True, exist_ok=True)
                with open(self.dead_letter, "a", encoding="utf-8") as out:
                    out.write(lines)
                self.kept += len(rows)
        except OSError:
            log.exception("prediction log: could not keep %d records in %s", len(rows),
                          self.dead_letter)

    def _take(self) -> list[dict]:
        """The next batch, waiting for rows; empty once closing with nothing queued."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if self._closing and time.monotonic() >= self._deadline:
                return []  # out of time: close() counts what is left
            n = min(len(self._queue), self.batch_rows)
            batch = [self._queue.popleft() for _ in range(n)]
            self._busy, self._batch = n, batch
            return batch

    def _done(self, batch: list[dict]) -> None:
        with self._cond:
            self._busy, self._batch = 0, []
            self._cond.notify_all()

    def _wait(self, seconds: float) -> None:
        """Sleep between attempts; a closing log never sleeps past its deadline."""
        with self._cond:
            self._cond.wait(max(0.0, min(seconds, self._deadline - time.monotonic())))

    def _run(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._write(batch)
            self._done(batch)

    def _write(self, batch: list[dict]) -> None:
        """Store one batch: retried with the same record ids while the failure is the
        connection's (for as long as the log is open, or until its closing deadline), at most
        MAX_FAILED_ATTEMPTS times when the database refuses it. Records the store cannot hold
        (`unstorable`) are set aside first, counted as write_failed and kept. A refused batch
        is stored record by record, each refused once at most, and only the refused records
        are given up: a refusal of every record (an altered table) costs one pass, not
        MAX_FAILED_ATTEMPTS waits a record."""
        bad = [(r, why) for r in batch if (why := unstorable(r)) is not None]
        if bad:
            self._drop("write_failed", len(bad), rows=[r for r, _ in bad], error=bad[0][1])
            batch = [r for r in batch if unstorable(r) is None]
            if not batch:
                return
        error = self._store(batch, MAX_FAILED_ATTEMPTS)
        if error is None:
            return
        if len(batch) > 1:
            # one record the database refuses must not take the batch with it
            log.error("prediction log: the database refused a batch: %s; storing its "
                      "records one by one", error)
            refused = []
            for row in batch:
                if (why := self._store([row], 1)) is not None:
                    refused.append(row)
                    error = why
            if not refused:
                return
            batch = refused
        log.error("prediction log: the database refused %d of the records: %s", len(batch), error)
        self._drop("write_failed", len(batch), rows=batch, error=error)

    def _store(self, batch: list[dict], refusals: int) -> str | None:
        """Write `batch`, retrying a connection failure; None once it is stored (or given up
        at the closing deadline), else the error after `refusals` refusals by the database."""
        attempt = failed = 0
        while True:
            try:
                self.written += write_predictions(self._engine(), batch)
                self.last_error = None
                return None
            except Exception as exc:
                self.last_error = _short(exc)
                failed += not transient(exc)
                if failed >= refusals:
                    return self.last_error
                if self._closing and time.monotonic() >= self._deadline:
                    self._drop("shutdown", len(batch), rows=batch, error=self.last_error)
                    return None
                log.warning("prediction log: write failed (%s); retrying", self.last_error)
                self._wait(self._delays[min(attempt, len(self._delays) - 1)])
                attempt += 1


def open_prediction_log(settings: Settings,
                        on_drop: Callable[[str, int], None] | None = None) -> PredictionLog | None:
    """The service's log on the settings' store, or None when the log is turned off."""
    if not settings.prediction_log:
        return None
    return PredictionLog(lambda: engine_for(settings), settings.prediction_log_queue,
                         on_drop=on_drop, dead_letter=dead_letter_path(settings))


def dead_letter_path(settings: Settings) -> Path:
    """Where the service's log keeps the records it gave up (JSON lines), under mlruns/."""
    return settings.mlruns / DEAD_LETTER


def chunked(rows_of: Callable[[pd.DataFrame], list[dict]], frames: Iterable[pd.DataFrame],
            size: int = CHUNK_ROWS) -> Iterator[list[dict]]:
    """Records made from frames `size` rows at a time (a million rows of dicts at once would
    cost gigabytes)."""
    for frame in frames:
        for i in range(0, len(frame), size):
            yield rows_of(frame.iloc[i:i + size])
