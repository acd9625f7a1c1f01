"""One /batch job in its own process: `python -m serving.batch_job FOLDER` scores the job's
uploads with scoring.batch.score_files, as `churn score` does, into the folder's scores file.
A failure is one line on stderr; the exit code is 2 for bad input, 1 for a failure of ours.
serving.batch starts it and reads both."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from serving.jobs import NOTES, SCORES, now, read_job

log = logging.getLogger(__name__)


def run(folder: Path) -> None:
    """Score the job of `folder` on DuckDB (/batch/get serves one Parquet file; the Spark
    engine would write a folder), logging its rows as source batch."""
    from features.contract import check_date_format, to_utc_naive
    from scoring.batch import open_batch_tables, score_files
    from scoring.settings import get_settings

    job = read_job(folder)
    if job.date_format is not None:
        check_date_format(job.date_format)
    settings = get_settings()
    tables = open_batch_tables(settings, folder / job.files["customers"],
                               folder / job.files["events"], job.date_format, engine="duckdb")
    done, logged = score_files(
        settings, tables, to_utc_naive(job.as_of or now()), folder / SCORES, model=job.model,
        value_column=job.value_column, value_multiplier=job.value_multiplier,
        offer_cost=job.offer_cost, save_rate=job.save_rate, top_reasons=job.top_reasons,
        engine="duckdb", log_source="batch", read_only=True)
    # what `churn score` prints as notes, for the job's status (serving.batch reads it)
    (folder / NOTES).write_text(json.dumps([*tables.notes, done.columns]))
    if logged is not None and logged.error:  # the scores stand; serving.batch logs this line
        log.warning("the prediction log stored %d of %d predictions, then failed (%s)",
                    logged.stored, logged.total, logged.error)


def main(argv: list[str] | None = None) -> int:
    from scoring.batch import configure_process, one_line

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m serving.batch_job FOLDER\n")
        return 2
    configure_process()
    try:
        run(Path(args[0]))
    except Exception as exc:  # one line for the job's status, never a traceback
        text, code = one_line(exc)
        sys.stderr.write(text + "\n")
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
