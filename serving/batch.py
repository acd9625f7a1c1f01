"""Batch scoring jobs over HTTP: upload customers and events files, poll, fetch a Parquet.

Each job is a folder under `batch_root` (settings): the two uploads, `job.json` with its state,
and at the end `scores.parquet` or the error (the layout is serving.jobs'). A job runs
serving.batch_job in its own process, which calls scoring.batch.score_files as `churn score`
does, so:
- a job's memory is returned when it ends, however large its files were;
- its output and its errors are `churn score`'s (the same columns, the same one-line
  message for bad input, the same atomic write);
- a job that crashes or hangs never takes the server with it.

One job runs at a time; at most `batch_max_pending` wait or run, and a submit past that is a
429. The uploads are deleted once the job ends; a finished job's folder is deleted after
`batch_retention_s`. There is no retry or cancel endpoint: submit again.

A job takes the targeting options of `churn score` as form fields (`OPTIONS`), so its Parquet
carries the same targeting columns and can feed the reviewer page.

A job's status is one of `STATUSES`: pending (queued), in_progress (being scored), completed
(`/batch/get` returns the Parquet; `warnings` holds `churn score`'s notes on the files' columns)
or failed (`error` says why; `/batch/get` answers 422 for bad input, which includes whatever the
query engine raised on the files, and 500 for a failure of ours).

Routes (mounted by serving.service): POST /batch/submit, GET /batch/status, GET /batch/get.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from scoring.settings import Settings
from serving.errors import error_body
from serving.guard import BodyTooLarge
from serving.jobs import NOTES, SCORES, STATE, TASK_ID, Job, read_job, write_job
from serving.jobs import now as _now

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
FILES = ("customers", "events")
COPY_CHUNK = 1 << 20
MAX_FIELD_CHARS = 100
PARQUET = "application/vnd.apache.parquet"
STATUSES = {
    "pending": "queued; waits for the job before it",
    "in_progress": "being scored",
    "completed": "done: GET /batch/get returns the scores as Parquet",
    "failed": "not scored: `error` says why (/batch/get answers 422 for bad input, 500 for "
              "a failure of the service)",
}


@dataclass(frozen=True)
class Option:
    """A form field of a batch job: an argument of scoring.batch.score_files, and the
    `churn score` option of the same name."""

    kind: type  # str, float or int
    flag: str | None  # the `churn score` option, or None for a setting (top_reasons)
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the bound itself is refused


OPTIONS: dict[str, Option] = {
    "as_of": Option(str, "--as-of", "Score customers active at this time (ISO 8601, e.g. "
                    "2026-06-30 or 2026-06-30T09:00:00Z); default: now (UTC)."),
    "date_format": Option(str, "--date-format", "strftime format of the dates in CSV files "
                          "that are not ISO 8601, e.g. %m/%d/%Y."),
    "value_column": Option(str, "--value-column", "Feature or numeric attribute with each "
                           "customer's value; adds customer_value, expected_value_at_risk and "
                           "contact (default: the offer settings')."),
    "value_multiplier": Option(float, "--value-multiplier", "Periods of that value a saved "
                               "customer is worth.", low=0, low_open=True),
    "offer_cost": Option(float, "--offer-cost", "Cost of one offer.", low=0),
    "save_rate": Option(float, "--save-rate", "Share of contacted churners saved, 0 to 1.",
                        low=0, high=1),
    "top_reasons": Option(int, None, "Reasons per customer (1 to 20; default: the settings').",
                          low=1, high=20),
}
# the job process (serving.batch_job) and its exit code for bad input; any other failure is ours
JOB_MODULE = "serving.batch_job"
BAD_INPUT_EXIT = 2


class BatchError(Exception):
    """A refused submit or lookup: HTTP status and a body naming the field."""

    def __init__(self, status: int, field: str, problem: str):
        super().__init__(problem)
        self.status, self.field, self.problem = status, field, problem

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.problem, self.field), status_code=self.status)


class BatchJobs:
    """The job folders and the one worker thread that runs them."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.batch_root
        self.root.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()
        self._abandon_unfinished()
        self._worker = threading.Thread(target=self._work, name="batch-jobs", daemon=True)
        self._worker.start()

    # ---- state on disk ----------------------------------------------------------------------

    def _folder(self, task_id: str) -> Path:
        if not TASK_ID.fullmatch(task_id):
            raise BatchError(404, "task_id", "no such task")
        return self.root / task_id

    def _read(self, task_id: str) -> Job:
        try:
            return read_job(self._folder(task_id))
        except (FileNotFoundError, json.JSONDecodeError):
            raise BatchError(404, "task_id", "no such task (finished tasks are kept for "
                             f"{self.settings.batch_retention_s:g} s)") from None

    def _write(self, job: Job) -> None:
        write_job(self.root, job)

    def _abandon_unfinished(self) -> None:
        """Jobs a previous server left queued or running will never finish: say so."""
        for path in self.root.glob(f"*/{STATE}"):
            try:
                job = read_job(path.parent)
            except (json.JSONDecodeError, TypeError):
                continue
            if job.status in ("pending", "in_progress"):
                job.status, job.completed_at = "failed", _now()
                job.error = "the server stopped before this job finished; submit it again"
                self._write(job)
                self._drop_uploads(job)

    def sweep(self) -> None:
        """Delete finished jobs past their retention, and folders a crash left half-made."""
        cutoff = time.time() - self.settings.batch_retention_s
        for folder in self.root.iterdir():
            if not folder.is_dir() or not TASK_ID.fullmatch(folder.name):
                continue
            state = folder / STATE
            try:
                finished = json.loads(state.read_text())["status"] in ("completed", "failed")
                stamp = state.stat().st_mtime
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                finished, stamp = True, folder.stat().st_mtime
            if finished and stamp < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    # ---- requests ---------------------------------------------------------------------------

    def pending(self) -> int:
        return sum(1 for p in self.root.glob(f"*/{STATE}")
                   if json.loads(p.read_text()).get("status") in ("pending", "in_progress"))

    async def submit(self, request: Request, model: str,
                     value_columns: frozenset[str] | None = None) -> Job:
        """Validate the form and stream both files into a new job folder, or refuse.
        `value_columns`: the columns the served model can value customers by (None: not
        checked here; the job then fails with `churn score`'s message)."""
        self.sweep()
        if self.pending() >= self.settings.batch_max_pending:
            raise BatchError(429, "", f"{self.settings.batch_max_pending} batch jobs are already "
                             "waiting or running; try again when one has finished")
        kind = request.headers.get("content-type", "")
        if not kind.lower().startswith("multipart/form-data"):
            raise BatchError(415, "Content-Type", "send the files as multipart/form-data")
        task_id = uuid.uuid4().hex
        folder = self.root / task_id
        try:
            form = await request.form(max_files=2, max_fields=len(OPTIONS),
                                      max_part_size=1024)
        except BodyTooLarge as exc:
            raise BatchError(413, "body", f"the upload is larger than the limit of {exc.limit} "
                             "bytes (CHURN_BATCH_MAX_UPLOAD_BYTES)") from None
        except (MultiPartException, ValueError) as exc:
            raise BatchError(400, "body", f"not a readable multipart form: {exc}") from None
        try:
            unknown = sorted(set(form) - {*FILES, *OPTIONS})
            if unknown:
                raise BatchError(400, unknown[0][:MAX_FIELD_CHARS], "is not a field of a batch "
                                 f"job ({', '.join((*FILES, *OPTIONS))})")
            options = {name: _option(name, self._text(form.get(name), name)) for name in OPTIONS}
            if options["as_of"] is not None:
                _check_time(options["as_of"])
            column = options["value_column"]
            if column is not None and value_columns is not None and column not in value_columns:
                raise BatchError(400, "value_column", f"{column!r} is neither a feature nor a "
                                 "numeric attribute of the served model")
            uploads = {name: form.get(name) for name in FILES}
            for name, upload in uploads.items():
                if not isinstance(upload, UploadFile):
                    raise BatchError(400, name, "missing file: send it as a multipart file field")
            folder.mkdir()
            files = {name: _save(upload, folder, name) for name, upload in uploads.items()}
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            await form.close()
        job = Job(task_id=task_id, status="pending", created_at=_now(), model=model,
                  files=files, **options)
        self._write(job)
        self._queue.put(task_id)
        log.info("batch job %s submitted", task_id)
        return job

    @staticmethod
    def _text(value: object, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise BatchError(400, name, "must be a text field, not a file")
        value = value.strip()
        if len(value) > MAX_FIELD_CHARS:
            raise BatchError(400, name, f"longer than {MAX_FIELD_CHARS} characters")
        return value or None

    def status(self, task_id: str) -> Job:
        return self._read(task_id)

    def result(self, task_id: str) -> Response:
        job = self._read(task_id)
        if job.status == "completed":
            return FileResponse(self.root / task_id / SCORES,
                                media_type="application/vnd.apache.parquet",
                                filename=f"scores-{task_id}.parquet")
        if job.status == "failed":
            status = 422 if job.bad_input else 500
            return JSONResponse(error_body(job.error or "the job failed", task_id=task_id),
                                status_code=status)
        return JSONResponse(error_body(f"the job is {job.status.replace('_', ' ')}; poll "
                                       "/batch/status until it is completed", "task_id",
                                       task_id=task_id), status_code=409)

    # ---- the worker -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                task_id = self._queue.get(timeout=60)
            except queue.Empty:
                self.sweep()
                continue
            try:
                self._run(task_id)
            except Exception:
                log.exception("batch job %s could not be run", task_id)

    def _run(self, task_id: str) -> None:
        job = self._read(task_id)
        folder = self.root / task_id
        job.status, job.executed_at = "in_progress", _now()
        self._write(job)
        out = folder / SCORES
        cmd = [sys.executable, "-m", JOB_MODULE, str(folder)]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                                  timeout=self.settings.batch_timeout_s)
        except subprocess.TimeoutExpired:
            job.status, job.error = "failed", (
                f"stopped after {self.settings.batch_timeout_s:g} s (CHURN_BATCH_TIMEOUT_S)")
        else:
            if proc.returncode == 0 and out.exists():
                job.status = "completed"
                job.warnings = [self._public_text(job, folder, n) for n in _notes(folder)]
                if proc.stderr.strip():  # a warning, such as a prediction log that failed
                    log.warning("batch job %s: %s", task_id, _last_line(proc.stderr))
            else:
                job.status, job.bad_input = "failed", proc.returncode == BAD_INPUT_EXIT
                job.error = self._public_text(
                    job, folder, _last_line(proc.stderr) or f"the job exited {proc.returncode}")
                if not job.bad_input:
                    log.error("batch job %s failed: %s", task_id, proc.stderr[-4000:])
        job.completed_at = _now()
        self._drop_uploads(job)
        self._write(job)
        log.info("batch job %s %s in %.1f s", task_id, job.status, time.monotonic() - started)

    @staticmethod
    def _public_text(job: Job, folder: Path, text: str) -> str:
        """A line of the job process as a client reads it: the upload named by its field, not
        by our path, and the form field, not the CLI flag."""
        for field_name, file_name in job.files.items():
            text = text.replace(str(folder / file_name), f"the {field_name} file")
        text = text.replace(str(folder), "the job folder")
        for name, option in OPTIONS.items():
            if option.flag:
                text = text.replace(option.flag, name)
        return text

    def _drop_uploads(self, job: Job) -> None:
        for name in (*job.files.values(), NOTES):
            (self.root / job.task_id / name).unlink(missing_ok=True)


def _save(upload: UploadFile, folder: Path, name: str) -> str:
    """Copy an upload into the job folder under a safe name that keeps its format's suffix
    (the client's file name is never used as a path)."""
    head = upload.file.read(4)
    upload.file.seek(0)
    if not head:
        raise BatchError(400, name, "is an empty file")
    tsv = (upload.filename or "").lower().endswith((".tsv", ".tsv.gz"))
    text = ".tsv" if tsv else ".csv"
    # the bytes decide the format; the client's name only tells CSV from TSV
    suffix = ".parquet" if head == b"PAR1" else text + ".gz" if head[:2] == b"\x1f\x8b" else text
    target = folder / f"{name}{suffix}"
    with open(target, "wb") as fh:
        shutil.copyfileobj(upload.file, fh, COPY_CHUNK)
    return target.name


def _option(name: str, text: str | None) -> str | float | int | None:
    """A form field's text as its option's type, within its bounds, or a 400 naming it."""
    option = OPTIONS[name]
    if text is None or option.kind is str:
        return text
    try:
        value = option.kind(text)
    except ValueError:
        raise BatchError(400, name, f"{text!r} is not {'a whole' if option.kind is int else 'a'} "
                         "number") from None
    if not math.isfinite(value):
        raise BatchError(400, name, "must be a finite number")
    if option.low is not None and (value < option.low or option.low_open and value == option.low):
        raise BatchError(400, name, f"must be {'above' if option.low_open else 'at least'} "
                         f"{option.low:g}")
    if option.high is not None and value > option.high:
        raise BatchError(400, name, f"must be at most {option.high:g}")
    return value


def _check_time(value: str) -> None:
    """The batch as_of under the rule of every other as_of (serving.schemas.resolve_as_of)."""
    from serving.schemas import RequestError, resolve_as_of

    try:
        resolve_as_of(value)
    except RequestError as exc:
        raise BatchError(400, "as_of", f"{value!r}: {exc.problem}") from None


def _notes(folder: Path) -> list[str]:
    """The notes the job process left (serving.batch_job), or none."""
    try:
        notes = json.loads((folder / NOTES).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [str(n)[:1000] for n in notes][:50] if isinstance(notes, list) else []


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:1000] if lines else ""


async def submit_route(request: Request) -> Response:
    service = _service()
    try:
        job = await service.jobs.submit(request, service.batch_model(), service.value_columns())
    except BatchError as exc:
        return exc.response()
    return JSONResponse(job.public())


async def status_route(request: Request) -> Response:
    try:
        return JSONResponse(_service().jobs.status(_task_id(request)).public())
    except BatchError as exc:
        return exc.response()


async def get_route(request: Request) -> Response:
    try:
        return _service().jobs.result(_task_id(request))
    except BatchError as exc:
        return exc.response()


def _task_id(request: Request) -> str:
    task_id = request.query_params.get("task_id")
    if not task_id:
        raise BatchError(400, "task_id", "is required")
    return task_id


def _service():
    import bentoml

    return bentoml.get_current_service()
