"""The layout of a /batch job folder, owned here: `job.json` (a `Job`), the uploads, and at the
end `scores.parquet` (and, until the job's state is written, the job process's `notes.json`).
serving.batch writes the folders, serving.batch_job scores one, and `latest_scores` is the one
reader others (`churn campaign plan`) use."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

TASK_ID = re.compile(r"[0-9a-f]{32}")
STATE = "job.json"
SCORES = "scores.parquet"
NOTES = "notes.json"  # the job process's notes, read into Job.warnings when it ends


@dataclass
class Job:
    task_id: str
    status: str  # one of serving.batch.STATUSES
    created_at: str
    model: str
    as_of: str | None = None
    date_format: str | None = None
    value_column: str | None = None
    value_multiplier: float | None = None
    offer_cost: float | None = None
    save_rate: float | None = None
    top_reasons: int | None = None
    executed_at: str | None = None
    completed_at: str | None = None
    error: str | None = None
    bad_input: bool = False
    files: dict[str, str] = field(default_factory=dict)  # field -> file name in the folder
    # what `churn score` notes about the files: columns ignored, how the model uses the rest
    warnings: list[str] = field(default_factory=list)

    def public(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("files", "bad_input")}
        if self.error is None:
            out.pop("error")
        if not self.warnings:
            out.pop("warnings")
        return out


def now() -> str:
    return datetime.now(UTC).isoformat()


def read_job(folder: Path) -> Job:
    """The job of a folder; FileNotFoundError, json.JSONDecodeError or TypeError when it has
    none or a broken one."""
    return Job(**json.loads((folder / STATE).read_text()))


def write_job(root: Path, job: Job) -> None:
    """Replace a job's state atomically (a reader never sees half a file)."""
    folder = root / job.task_id
    tmp = folder / f"{STATE}.tmp"
    tmp.write_text(json.dumps(asdict(job)))
    os.replace(tmp, folder / STATE)


def latest_scores(root: Path) -> Path | None:
    """The scores file of the newest completed job under `root`, or None."""
    found = []
    for state in root.glob(f"*/{STATE}") if root.is_dir() else []:
        try:
            done = json.loads(state.read_text()).get("status") == "completed"
        except (OSError, json.JSONDecodeError):
            continue
        scores = state.with_name(SCORES)
        if done and scores.is_file():
            found.append((scores.stat().st_mtime, scores))
    return max(found)[1] if found else None
