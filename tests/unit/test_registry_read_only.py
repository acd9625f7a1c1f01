"""The service opens the registry read only (issue 26, point 5): a registry moved away stays
missing (SQLite would otherwise create an empty file in its place), nothing is written, and the
problem is one plain line without SQLAlchemy's SQL text.

Real MLflow on a real SQLite store; the registered model is a trivial function."""

from __future__ import annotations

import os
import sqlite3

import mlflow
import pytest
from mlflow import MlflowClient

from scoring.settings import Settings
from scoring.store import (
    RegistryUnavailable,
    configure,
    embedded_uri,
    registry_problem,
    sqlite_problem,
)
from serving.holder import _reopen_store
from tests.unit.test_registry_races import embedded, own_store, register  # noqa: F401


def _alias(client: MlflowClient) -> str:
    return str(client.get_model_version_by_alias("churn", "champion").version)


@pytest.fixture
def store(tmp_path, own_store):  # noqa: F811 (the fixture, imported)
    settings = embedded(tmp_path)
    configure(settings)
    version = register(settings, "explicit")
    MlflowClient().set_registered_model_alias("churn", "champion", version)
    yield settings
    _reopen_store()  # this test's read-only engine must not outlive it


def test_a_missing_registry_is_refused_in_one_line_and_not_created(tmp_path, own_store):  # noqa: F811
    (tmp_path / "mlruns").mkdir()
    settings = Settings(home=tmp_path)
    with pytest.raises(RegistryUnavailable) as caught:
        configure(settings, read_only=True)
    message = str(caught.value)
    assert "\n" not in message and "is missing" in message
    assert str(tmp_path / "mlruns" / "mlflow.db") in message
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_a_registry_moved_away_under_a_reader_stays_missing(store, tmp_path):
    db = store.mlruns / "mlflow.db"
    uri = configure(store, read_only=True)
    client = MlflowClient()
    assert _alias(client) == "1"
    before = db.stat().st_mtime_ns

    away = tmp_path / "away.db"
    os.replace(db, away)
    _reopen_store()  # what the poller does after a failure or a replaced file
    with pytest.raises(Exception) as caught:
        _alias(MlflowClient())
    assert not db.exists(), "the reader created the registry it could not find"
    line = registry_problem(uri, caught.value)
    assert "is missing" in line and "\n" not in line and "[SQL" not in line

    os.replace(away, db)
    _reopen_store()
    assert _alias(MlflowClient()) == "1"
    assert db.stat().st_mtime_ns == before  # read, never written


def test_an_empty_or_foreign_file_is_named_without_sql(store):
    db = store.mlruns / "mlflow.db"
    uri = configure(store, read_only=True)
    db.write_bytes(b"")
    _reopen_store()
    with pytest.raises(Exception) as caught:
        _alias(MlflowClient())
    assert db.stat().st_size == 0, "the reader migrated an empty file into a registry"
    line = registry_problem(uri, caught.value)
    assert "holds no MLflow registry" in line and "[SQL" not in line

    db.write_bytes(b"not a database" * 100)
    assert "cannot be read: file is not a database" in sqlite_problem(uri)


def test_a_sql_error_loses_its_sql_text(store):
    uri = embedded_uri(store)
    with sqlite3.connect(store.mlruns / "mlflow.db") as db:
        db.execute("DROP TABLE model_version_tags")
    configure(store, read_only=True)
    _reopen_store()
    with pytest.raises(Exception) as caught:
        MlflowClient().get_model_version("churn", "1")
    assert "[SQL" in str(caught.value) or "no such table" in str(caught.value)
    line = registry_problem(uri, caught.value)
    assert "no such table: model_version_tags" in line
    assert "[SQL" not in line and "\n" not in line and "sqlalche.me" not in line


def test_writes_are_refused_by_a_read_only_store(store):
    configure(store, read_only=True)
    with pytest.raises(Exception, match="readonly"):
        MlflowClient().set_registered_model_alias("churn", "other", "1")
    mlflow.set_registry_uri(embedded_uri(store))
