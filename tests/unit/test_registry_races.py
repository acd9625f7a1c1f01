"""Races over the embedded SQLite store: first runs on an empty store, steps that read and then
write, and promotes deciding against a champion that someone else moves.

Everything is real: MLflow and its SQLite store, separate processes or threads, our locks. A
version is registered the way `churn train` registers one (a pyfunc logged with
`registered_model_name`), but the model is a trivial function, so each costs under a second.
To line racers up deterministically the test holds the store lock itself and waits until the
kernel lists them as blocked on it (/proc/locks), i.e. until they have done their reading and
come to their write. The lock is a flock on a file opened per use, so threads contend for it
exactly as processes do."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc.utils import pyfunc

from scoring.settings import Settings
from scoring.store import configure, embedded_uri, experiment_id, store_lock, store_uri
from tests.helpers import CHURN, churn_env
from training.promotion import ChampionMoved, promote
from training.promotion import initial_alias as _initial_alias

LOCKS = Path("/proc/locks")
T = TypeVar("T")


@pyfunc  # typed and decorated, as MLflow wants a function model to be, so it does not warn
def identity(model_input: list[str]) -> list[str]:
    """The registered model: its content plays no part in a race."""
    return model_input


def register(settings: Settings, label: str) -> str:
    """Register a version as `churn train` does, from a run whose dataset.json the gate reads:
    versions of different labels are not comparable, so a forced promote needs no scoring."""
    with mlflow.start_run(experiment_id=experiment_id(settings.experiment, settings)):
        mlflow.log_dict({"label": label, "horizon_days": 30}, "dataset.json")
        info = mlflow.pyfunc.log_model(name="model", python_model=identity, pip_requirements=[],
                                       registered_model_name=settings.model_name)
    return str(info.registered_model_version)


@pytest.fixture
def own_store(monkeypatch):
    """A test's store is its own. mlflow.set_tracking_uri (in configure) also exports
    MLFLOW_TRACKING_URI, which Settings reads: without clearing it a later Settings(home=...)
    would follow another test's store. The session's URIs come back afterwards."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


def embedded(home: Path) -> Settings:
    """Settings for the embedded store under `home`, refusing any other."""
    settings = Settings(home=home)
    assert store_uri(settings) == embedded_uri(settings)
    return settings


def champion() -> str:
    return str(MlflowClient().get_model_version_by_alias("churn", "champion").version)


# two first runs on an empty store

def first_run(home: Path, start, results) -> None:
    """What a `churn train` does to the store, from configure to its first alias, started at
    the same moment as the other first run."""
    try:
        settings = embedded(home)
        start.wait(timeout=60)
        configure(settings)
        version = register(settings, "explicit")
        results.put((version, _initial_alias(settings, version)))
    except BaseException:  # the parent reports it: a child's traceback would be lost
        results.put(traceback.format_exc())


def test_two_first_runs_on_an_empty_store_both_register_and_one_is_champion(tmp_path, own_store):
    # forked, not spawned: a child starts with the modules imported and reaches the barrier in
    # milliseconds, not after seconds of imports; the store is new, so no connection is shared.
    # Spawned only when this process has other threads (a pytest-xdist worker's): a child forked
    # from it died of a segmentation fault while collecting garbage
    ctx = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=first_run, args=(tmp_path, start, results)) for _ in range(2)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    failures = [o for o in outcomes if isinstance(o, str)]
    assert not failures, "\n".join(failures)

    assert sorted(version for version, _ in outcomes) == ["1", "2"]
    assert sorted(alias for _, aliases in outcomes for alias in aliases) == ["challenger", "champion"]
    configure(embedded(tmp_path))
    assert champion() == next(v for v, aliases in outcomes if aliases == ["champion"])


# steps that read and then write, lined up on the store lock

def waiting_for(lock: Path) -> list[int]:
    """The pids of the requests waiting for `lock` ("->" lines of /proc/locks), one per
    waiter: a thread's request shows its process's pid."""
    inode = str(lock.stat().st_ino)
    return [int(fields[5]) for fields in map(str.split, LOCKS.read_text().splitlines())
            if len(fields) > 6 and fields[1] == "->" and fields[6].rsplit(":", 1)[-1] == inode]


def wait_until_waiting(settings: Settings, pids: list[int], ended: Callable[[], bool]) -> None:
    """Wait until a request from each of `pids` waits for the store lock this test holds, i.e.
    each racer has done its reading and come to its write. `ended` says a racer finished
    without ever asking for the lock."""
    assert LOCKS.exists(), "these tests read /proc/locks (Linux) to see racers waiting"
    lock, deadline = settings.mlruns / ".store.lock", time.monotonic() + 120
    while sorted(waiting_for(lock)) != sorted(pids):
        assert not ended(), "a racer ended before reaching the store lock"
        assert time.monotonic() < deadline, "the racers never reached the store lock"
        time.sleep(0.02)


def race(settings: Settings, calls: list[Callable[[], T]]) -> list[T]:
    """Run `calls` in threads, released together once all of them wait for the store lock."""
    with ThreadPoolExecutor(len(calls)) as pool:
        with store_lock(settings):
            futures = [pool.submit(call) for call in calls]
            wait_until_waiting(settings, [os.getpid()] * len(calls),
                               ended=lambda: any(f.done() for f in futures))
        return [f.result(timeout=120) for f in futures]


def test_two_runs_creating_the_experiment_together_share_it(tmp_path, own_store):
    settings = embedded(tmp_path)
    configure(settings)
    first, second = race(settings, [lambda: experiment_id("new", settings)] * 2)
    assert first == second == mlflow.get_experiment_by_name("new").experiment_id


def test_of_two_runs_registering_together_on_no_champion_only_one_becomes_it(tmp_path, own_store):
    settings = embedded(tmp_path)
    configure(settings)
    versions = [register(settings, "explicit") for _ in range(2)]
    aliases = race(settings, [lambda v=v: _initial_alias(settings, v) for v in versions])
    assert sorted(aliases) == [["challenger"], ["champion"]]
    assert champion() == versions[aliases.index(["champion"])]


# promotes racing a moving champion

@pytest.fixture
def store(tmp_path, own_store) -> Settings:
    """Champion v1 (inactivity label); v2 and v3 (explicit label) the gate cannot compare to
    it, so it refuses them and --force promotes them without scoring anything."""
    settings = embedded(tmp_path)
    configure(settings)
    register(settings, "inactivity")
    MlflowClient().set_registered_model_alias("churn", "champion", "1")
    register(settings, "explicit")
    register(settings, "explicit")
    return settings


def test_promote_refuses_when_the_champion_moves_while_it_decides(store):
    with store_lock(store):
        proc = subprocess.Popen([CHURN, "promote", "--version", "3", "--force"], cwd=store.home,
                                env=churn_env(store.home), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until_waiting(store, [proc.pid], ended=lambda: proc.poll() is not None)
        MlflowClient().set_registered_model_alias("churn", "champion", "2")  # another client
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 1, out + err
    assert err.strip() == ("error: champion moved from version 1 to version 2 while deciding; "
                           "run promote again")
    assert champion() == "2"
    assert "promotion" not in MlflowClient().get_model_version("churn", "3").tags


def outcome(settings: Settings, version: str) -> str:
    """What a forced promote of `version` reports, its refusal included."""
    try:
        result = promote(settings, version, force=True)
    except ChampionMoved as exc:
        return f"error: {exc}"
    return f"{'promoted' if result.promoted else 'not promoted'}: {result.reason}"


@pytest.mark.parametrize(("versions", "loser"), [
    (("2", "3"), "error: champion moved from version 1 to version {winner} while deciding"),
    (("2", "2"), "not promoted: the candidate is already champion (another promote moved it"),
], ids=["different-versions", "same-version"])
def test_of_two_concurrent_forced_promotes_only_one_promotes(store, versions, loser):
    reports = race(store, [lambda v=v: outcome(store, v) for v in versions])

    promoted = [i for i, report in enumerate(reports) if report.startswith("promoted")]
    assert len(promoted) == 1, reports
    winner = versions[promoted[0]]
    assert champion() == winner
    assert reports[1 - promoted[0]].startswith(loser.format(winner=winner)), reports
