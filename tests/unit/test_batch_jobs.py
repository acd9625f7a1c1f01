"""Batch job folders: retention, and jobs a stopped server never finished."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from scoring.settings import Settings
from serving.batch import OPTIONS, BatchError, BatchJobs, _option
from tests.helpers import CHURN


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


@pytest.mark.parametrize("name,text,want", [
    ("save_rate", "0.4", 0.4), ("save_rate", "1", 1.0), ("offer_cost", "0", 0.0),
    ("value_multiplier", "6", 6.0), ("top_reasons", "5", 5), ("value_column", "seats", "seats"),
    ("offer_cost", None, None),
])
def test_batch_options_are_read_as_their_type(name, text, want):
    got = _option(name, text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("name,text,words", [
    ("save_rate", "1.5", "at most 1"), ("save_rate", "-0.1", "at least 0"),
    ("offer_cost", "-1", "at least 0"), ("offer_cost", "nan", "finite"),
    ("offer_cost", "inf", "finite"), ("value_multiplier", "0", "above 0"),
    ("value_multiplier", "lots", "not a number"), ("top_reasons", "0", "at least 1"),
    ("top_reasons", "21", "at most 20"), ("top_reasons", "2.5", "not a whole number"),
])
def test_bad_batch_options_are_400_naming_the_field(name, text, words):
    with pytest.raises(BatchError) as info:
        _option(name, text)
    assert info.value.status == 400 and info.value.field == name
    assert words in info.value.problem


def test_every_batch_option_is_a_churn_score_option_or_setting():
    """A form field becomes the CLI flag of the same name, or its setting (top_reasons). The
    CLI is asked as a user would ask it (nothing imports the CLI)."""
    proc = subprocess.run([CHURN, "score", "--help"], capture_output=True, text=True,
                          check=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    flags = set(re.findall(r"--[a-z][a-z-]+", proc.stdout))
    assert "--as-of" in flags and "--value-column" in flags
    for name, option in OPTIONS.items():
        if option.flag is None:
            assert name in Settings.model_fields
        else:
            assert option.flag == "--" + name.replace("_", "-") and option.flag in flags


def test_whatever_the_engine_raises_is_bad_input_in_one_line():
    """A query engine's error on the input files is a data error (exit 2, so a /batch job is a
    422), shown by its first line only."""
    import duckdb

    from scoring.batch import one_line

    exc = duckdb.ConversionException("Conversion Error: Unimplemented type for cast "
                                      "(TIMESTAMPTZ_NS -> TIMESTAMP)\n\nLINE 1: SELECT ...")
    assert one_line(exc) == ("data error: Conversion Error: Unimplemented type for cast "
                             "(TIMESTAMPTZ_NS -> TIMESTAMP)", 2)
    assert one_line(RuntimeError("ours"))[1] == 1
