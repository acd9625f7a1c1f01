"""Holds the served model and swaps in a new version when the alias moves."""

from __future__ import annotations

import logging
import threading
import time

from mlflow import MlflowClient

from scoring.store import LoadedModel, load_model, parse_model_uri

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
        with self._lock:
            mv = MlflowClient().get_model_version_by_alias(*target)
            if str(mv.version) == self.current.version:
                return False
            new = load_model(f"models:/{target[0]}/{mv.version}")
            new.uri, new.aliases = self.uri, list(mv.aliases or [])
            old = self.current.version
            self.current = new
        log.warning("model %s moved from version %s to %s", self.uri, old, new.version)
        return True

    def _poll(self) -> None:
        while True:
            time.sleep(self.poll_seconds)
            try:
                self.refresh()
            except Exception as exc:  # keep serving the current model
                log.warning("could not check %s for a new version: %s", self.uri, exc)
