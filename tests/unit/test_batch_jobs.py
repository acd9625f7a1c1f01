"""Batch job folders: retention, and jobs a stopped server never finished."""

from __future__ import annotations

import json
import os
import time

import pytest

from scoring.settings import Settings
from serving.batch import BatchError, BatchJobs


def job(root, task_id: str, status: str, age_s: float = 0.0) -> None:
    folder = root / task_id
    folder.mkdir(parents=True)
    (folder / "customers.csv").write_text("customer_id,signup_at\n")
    state = folder / "job.json"
    state.write_text(json.dumps({"task_id": task_id, "status": status, "created_at": "x",
                                 "model": "models:/churn/1",
                                 "files": {"customers": "customers.csv"}}))
    stamp = time.time() - age_s
    os.utime(state, (stamp, stamp))


def test_finished_jobs_are_deleted_after_their_retention(tmp_path):
    root = tmp_path / "jobs"
    job(root, "a" * 32, "completed", age_s=7200)
    job(root, "b" * 32, "failed", age_s=7200)
    job(root, "c" * 32, "completed", age_s=10)
    (root / "not-a-job").mkdir()
    jobs = BatchJobs(Settings(batch_dir=root, batch_retention_s=3600))
    jobs.sweep()
    assert sorted(p.name for p in root.iterdir()) == ["c" * 32, "not-a-job"]


def test_jobs_a_stopped_server_left_unfinished_are_failed_with_the_reason(tmp_path):
    root = tmp_path / "jobs"
    job(root, "d" * 32, "in_progress")
    job(root, "e" * 32, "pending")
    jobs = BatchJobs(Settings(batch_dir=root))
    for task_id in ("d" * 32, "e" * 32):
        state = jobs.status(task_id)
        assert state.status == "failed" and "submit it again" in state.error
        assert not (root / task_id / "customers.csv").exists()  # its upload is released


@pytest.mark.parametrize("task_id", ["../../etc", "A" * 32, "f" * 31, ""])
def test_a_task_id_is_never_a_path(tmp_path, task_id):
    jobs = BatchJobs(Settings(batch_dir=tmp_path / "jobs"))
    with pytest.raises(BatchError) as info:
        jobs.status(task_id)
    assert info.value.status == 404 and info.value.field == "task_id"
