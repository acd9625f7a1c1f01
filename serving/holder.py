"""Holds the served model and swaps in a new version when the alias moves."""

from __future__ import annotations

import logging
import threading

from mlflow import MlflowClient

from serving.predictor import LoadedModel, load_model

log = logging.getLogger(__name__)


def alias_target(uri: str) -> tuple[str, str] | None:
    """(name, alias) for a models:/name@alias URI, else None (a fixed version never moves)."""
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri[len("models:/"):].split("@", 1)
        return name, alias
    return None


class ModelHolder:
    """The current model. `current` is replaced in one assignment, so a request that already
    holds the old model finishes with it and no request ever sees a half-loaded one."""

    def __init__(self, uri: str, poll_seconds: float = 10.0):
        self.uri = uri
        self.current: LoadedModel = load_model(uri)
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start_polling(self) -> None:
        if alias_target(self.uri) is None or self.poll_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._poll, name="model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def refresh(self) -> bool:
        """Load the alias's version if it moved. True when a new version was swapped in."""
        target = alias_target(self.uri)
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
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as exc:  # keep serving the current model
                log.warning("could not check %s for a new version: %s", self.uri, exc)
