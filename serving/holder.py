"""Holds the served model and swaps in a new version when the alias moves."""

from __future__ import annotations

import logging
import os
import threading
import time

import mlflow
from mlflow import MlflowClient

from scoring.store import LoadedModel, load_model, parse_model_uri, registry_problem

log = logging.getLogger(__name__)


class ModelHolder:
    """The current model. `current` is replaced in one assignment, so a request that already
    holds the old model finishes with it and no request ever sees a half-loaded one."""

    def __init__(self, uri: str, poll_seconds: float = 10.0):
        self.uri = uri
        self.current: LoadedModel = load_model(uri)
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._other: dict[str, LoadedModel] = {}  # the last version asked for by `at`
        self.last_poll: float | None = time.time()  # when the alias was last read, epoch s
        self.last_error: str | None = None  # why the last poll failed, if it did
        self._store_id = _store_identity()

    def start_polling(self) -> None:
        if self._alias() is None or self.poll_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._poll, name="model-poll", daemon=True)
        self._thread.start()

    def _alias(self) -> tuple[str, str] | None:
        """(name, alias) when the URI names an alias; a fixed version never moves."""
        ref = parse_model_uri(self.uri)
        return (ref.name, ref.alias) if ref is not None and ref.alias else None

    def at(self, version: str | None) -> LoadedModel:
        """The model of `version` (None: the current one). The public service names the
        version every request is scored with, so the scorer process answers with the same
        model even before its own poll has seen an alias move."""
        current = self.current
        if version is None or version == current.version:
            return current
        with self._lock:
            other = self._other.get(version)
            if other is None:
                ref = parse_model_uri(self.uri)
                if ref is None:
                    return self.current
                other = load_model(f"models:/{ref.name}/{version}")
                other.uri = self.uri
                self._other = {version: other}
        return other

    def refresh(self) -> bool:
        """Load the alias's version if it moved. True when a new version was swapped in."""
        target = self._alias()
        if target is None:
            return False
        identity = _store_identity()
        if identity != self._store_id:
            log.warning("the registry file was replaced; reopening it")
            _reopen_store()
            self._store_id = identity
        with self._lock:
            mv = MlflowClient().get_model_version_by_alias(*target)
            if self.last_error is not None:
                log.warning("the registry can be read again")
            self.last_poll, self.last_error = time.time(), None
            if str(mv.version) == self.current.version:
                return False
            new = load_model(f"models:/{target[0]}/{mv.version}")
            new.uri, new.aliases = self.uri, list(mv.aliases or [])
            old = self.current.version
            self.current = new
        log.warning("model %s moved from version %s to %s", self.uri, old, new.version)
        return True

    def poll_age(self) -> float | None:
        """Seconds since the alias was last read; None when it never moves (a fixed version)."""
        if self._thread is None:
            return None
        return time.time() - (self.last_poll or 0.0)

    def _poll(self) -> None:
        while True:
            time.sleep(self.poll_seconds)
            try:
                self.refresh()
            except Exception as exc:  # keep serving the current model, and reopen the store
                self.failed(exc)
                _reopen_store()

    def failed(self, exc: BaseException) -> None:
        """Note a failed poll in one plain line (a missing registry says so, a SQL error loses
        its SQL text); logged when it differs from the last one, not at every poll."""
        problem = registry_problem(mlflow.get_registry_uri() or "", exc)
        if problem != self.last_error:
            log.warning("could not check %s for a new version; serving version %s meanwhile: %s",
                        self.uri, self.current.label, problem)
        self.last_error = problem


def _sqlite_path() -> str | None:
    uri = mlflow.get_registry_uri() or ""
    return uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None


def _store_identity() -> tuple[int, int] | None:
    """(device, inode) of a SQLite registry file. A restore that moves a file into place
    changes it while the poller's pooled connections still read the old file (a copy over the
    file in place keeps the inode, and SQLite then sees the new content by itself)."""
    path = _sqlite_path()
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _reopen_store() -> None:
    """Close MLflow's pooled database connections, so the next query opens the file anew."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    for store in (Registry, Tracking):
        for engine in list(store._engine_map.values()):
            engine.dispose()
