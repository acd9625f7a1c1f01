"""Outcomes of a campaign: the call centre's file, checked row by row, and churn from the data
once the horizon has passed.

The file (CSV) has a row per contacted customer: `customer_id`, `reached` (yes/no), `result`
(stayed, left, no_answer), `reason` (a key or label of the playbook's reasons; empty when none
was given) and `reason_text` (the customer's words; required for a free-text reason such as
`other`). Other columns (the contact list's own) are ignored, so the contact list can be filled
in and sent back as it is.

Each bad row is a `Problem` (spreadsheet row number: the header is row 1, column, problem); the
good rows are returned to be stored. Pure apart from reading the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from campaigns.playbook import Playbook

REQUIRED = ("customer_id", "reached", "result")
OPTIONAL = ("reason", "reason_text")
MAX_FILE_BYTES = 64 * 2**20
MAX_ROWS = 500_000
MAX_TEXT_CHARS = 2000
MAX_ID_CHARS = 200
YES = {"yes", "y", "true", "t", "1"}
NO = {"no", "n", "false", "f", "0"}


class OutcomeFileError(ValueError):
    """The file as a whole cannot be read (not the problem of one row)."""


@dataclass(frozen=True)
class Problem:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, {self.column}: {self.problem}"


def read_outcome_file(path: Path, max_bytes: int = MAX_FILE_BYTES,
                      max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The file's rows as text (nothing converted), or OutcomeFileError naming the problem."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".txt"):
        raise OutcomeFileError(f"--file: {path.name}: give a CSV file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OutcomeFileError(f"--file: {path}: file not found") from None
    if size > max_bytes:
        raise OutcomeFileError(f"--file: {path.name} is {size / 2**20:,.1f} MB; at most "
                               f"{max_bytes / 2**20:,.0f} MB")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise OutcomeFileError(f"--file: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise OutcomeFileError("--file: contains NUL bytes: not a text CSV")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise OutcomeFileError("--file: the file is empty")
        header = [h.strip().lower() for h in header]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise OutcomeFileError(f"--file: missing column {missing[0]!r} (columns: "
                                   f"{', '.join(REQUIRED + OPTIONAL)})")
        dup = [h for h in header if h and header.count(h) > 1]
        if dup:
            raise OutcomeFileError(f"--file: column {dup[0]!r} appears twice")
        rows = []
        for record in reader:
            if len(rows) >= max_rows:
                raise OutcomeFileError(f"--file: more than {max_rows:,} rows")
            rows.append(record)
    except csv.Error as exc:
        raise OutcomeFileError(f"--file: not valid CSV near row {reader.line_num}: {exc}") from None
    keep = [c for c in (*REQUIRED, *OPTIONAL) if c in header]
    index = {c: header.index(c) for c in keep}
    data = {c: [r[index[c]] if index[c] < len(r) else "" for r in rows] for c in keep}
    # the row number a spreadsheet shows: quoted line breaks make CSV lines and rows differ
    return pd.DataFrame(data, dtype=object).assign(_row=range(2, len(rows) + 2))


def _flag(value: str) -> bool | None:
    low = value.strip().lower()
    return True if low in YES else False if low in NO else None


def check_outcomes(frame: pd.DataFrame, arms: Mapping[str, str], playbook: Playbook
                   ) -> tuple[list[dict], list[Problem]]:
    """(good rows for `record_outcomes`, problems one per bad row, in file order).

    `arms` maps each member of the campaign to its arm: customers outside the campaign, and
    those in the control arm (who must not have been contacted), are refused. A customer given
    twice keeps the first row; the second is a problem."""
    reasons = {k: k for k in playbook.reasons}
    reasons.update({r.label.strip().lower(): k for k, r in playbook.reasons.items()})
    good: list[dict] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for rec in frame.to_dict("records"):
        row = int(rec["_row"])
        cells = {c: str(rec.get(c) or "") for c in (*REQUIRED, *OPTIONAL)}
        if not any(v.strip() for v in cells.values()):
            continue  # a blank line
        problem = _check_row(cells, row, arms, reasons, playbook, seen)
        if isinstance(problem, Problem):
            problems.append(problem)
        else:
            seen[problem["customer_id"]] = row
            good.append(problem)
    return good, problems


def _check_row(cells: dict[str, str], row: int, arms: Mapping[str, str],
               reasons: Mapping[str, str], playbook: Playbook,
               seen: Mapping[str, int]) -> dict | Problem:
    customer = cells["customer_id"].strip()
    if not customer:
        return Problem(row, "customer_id", "is empty")
    if len(customer) > MAX_ID_CHARS:
        return Problem(row, "customer_id", f"is longer than {MAX_ID_CHARS} characters")
    arm = arms.get(customer)
    if arm is None:
        return Problem(row, "customer_id", f"{customer!r} is not in this campaign")
    if arm != "treatment":
        return Problem(row, "customer_id", f"{customer!r} is in the control arm, which must not "
                       "be contacted; its outcome comes from the data only")
    if customer in seen:
        return Problem(row, "customer_id", f"{customer!r} appears again (first in row "
                       f"{seen[customer]}); the first row is kept")
    reached = _flag(cells["reached"])
    if reached is None:
        return Problem(row, "reached", f"{cells['reached'].strip()!r} is not yes or no"
                       if cells["reached"].strip() else "is empty (yes or no)")
    result = cells["result"].strip().lower().replace(" ", "_").replace("-", "_")
    if result not in ("stayed", "left", "no_answer"):
        return Problem(row, "result", f"{cells['result'].strip()!r} is not one of stayed, left, "
                       "no_answer" if cells["result"].strip() else "is empty (stayed, left or "
                       "no_answer)")
    if reached != (result != "no_answer"):
        return Problem(row, "result", f"{result} does not go with reached = "
                       f"{'yes' if reached else 'no'} (no_answer means not reached)")
    given = cells["reason"].strip()
    reason = None
    if given:
        reason = reasons.get(given.lower())
        if reason is None:
            return Problem(row, "reason", f"{given!r} is not one of " + ", ".join(playbook.reasons))
        if not reached:
            return Problem(row, "reason", "a reason needs reached = yes")
    text = cells["reason_text"].strip()
    if len(text) > MAX_TEXT_CHARS:
        return Problem(row, "reason_text", f"is {len(text):,} characters; at most "
                       f"{MAX_TEXT_CHARS:,}")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in text):
        return Problem(row, "reason_text", "contains control characters")
    if reason is not None and playbook.reasons[reason].free_text and not text:
        return Problem(row, "reason_text", f"reason {reason!r} needs the customer's words")
    return {"customer_id": customer, "reached": reached, "result": result, "reason": reason,
            "reason_text": text, "source": "import"}


# -- from the data ------------------------------------------------------------------------------


def data_outcome_rows(member_ids: list[str], labels: pd.Series, recorded_at) -> list[dict]:
    """Outcome rows of source 'data' from the training label (1: left within the horizon)."""
    return [{"customer_id": c, "reached": None, "result": "left" if int(y) else "stayed",
             "reason": None, "reason_text": "", "source": "data", "recorded_at": recorded_at}
            for c, y in zip(member_ids, labels, strict=True)]


class NotYetError(ValueError):
    """The data does not cover the campaign's horizon yet."""


def label_members(tables, member_ids: list[str], as_of: pd.Timestamp, label: str,
                  horizon_days: int, activity_types: Sequence[str] = ()) -> pd.Series:
    """Whether each member left within (as_of, as_of + horizon], by the label training uses
    (features.observations.label_sql: an explicit churn date, or no event of `activity_types`,
    the model's activity types, in the horizon; empty: any event), read by the tables' own
    engine. A member missing from the customers file, or already gone at
    as_of, is a ValueError. NotYetError while the data ends before the horizon does."""
    import numpy as np
    import pyarrow as pa

    from features.contract import AttributeKinds
    from features.definitions import FeatureSpec
    from features.observations import data_end, horizon_seen, label_sql
    from features.relations import epoch_second, relations

    as_of = pd.Timestamp(as_of)
    ends = as_of + pd.Timedelta(days=horizon_days)
    last = data_end(tables.customers, tables.events)
    if not horizon_seen(as_of, last, horizon_days):
        raise NotYetError(f"the data ends at {last:%Y-%m-%d %H:%M}; the campaign's horizon ends "
                          f"at {ends:%Y-%m-%d %H:%M}: import outcomes from the data after that")
    known = set(tables.customers["customer_id"].astype(str))
    stranger = next((c for c in member_ids if c not in known), None)
    if stranger is not None:
        raise ValueError(f"--customers: campaign member {stranger!r} is not in the customers "
                         "file: is it the file the campaign was scored from?")
    spec = FeatureSpec(event_types=(), attributes=AttributeKinds())
    rel = relations(tables.customers, tables.events, spec)
    t = epoch_second(as_of)
    obs = pa.table({"obs_id": np.arange(len(member_ids), dtype="int64"),
                    "customer_id": pa.array(member_ids, pa.string()),
                    "as_of": np.full(len(member_ids), t)})
    labels = rel.query(label_sql(label, horizon_days, tuple(activity_types)),
                       obs=obs).sort_values("obs_id")
    return pd.Series(labels["label"].to_numpy().astype(int), index=member_ids)
