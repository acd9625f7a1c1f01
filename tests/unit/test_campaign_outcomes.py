"""Outcome imports: each bad row named with its row and column, the good ones kept; the file's
bounds; and churn from the data by training's own label."""

from __future__ import annotations

import pandas as pd
import pytest

from campaigns.outcomes import (
    NotYetError,
    OutcomeFileError,
    check_outcomes,
    label_members,
    read_outcome_file,
)
from campaigns.playbook import load_playbook
from features.tables import load_tables

PLAYBOOK = load_playbook()
ARMS = {"a": "treatment", "b": "treatment", "c": "treatment", "d": "treatment", "e": "treatment",
        "k": "control"}

FILE = """customer_id,segment,reached,result,reason,reason_text
a,top,yes,stayed,Price,
b,top,YES,Left,other,"moving abroad,
for work"
c,top,no,no answer,,

x,top,yes,stayed,,
k,top,yes,stayed,,
a,top,no,no_answer,,
d,top,maybe,stayed,,
d,top,yes,gone,,
d,top,no,stayed,,
d,top,yes,stayed,cost,
d,top,no,no_answer,price,
d,top,yes,stayed,other,
,top,yes,stayed,,
e,top,y,stayed,competitor,cheaper elsewhere
"""


def test_bad_rows_are_named_and_good_ones_kept(tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text(FILE)
    good, problems = check_outcomes(read_outcome_file(path), ARMS, PLAYBOOK)
    assert [(g["customer_id"], g["reached"], g["result"], g["reason"]) for g in good] == [
        ("a", True, "stayed", "price"), ("b", True, "left", "other"),
        ("c", False, "no_answer", None), ("e", True, "stayed", "competitor")]
    assert good[1]["reason_text"] == "moving abroad,\nfor work"
    # rows as a spreadsheet numbers them (header 1; the quoted line break is inside row 3)
    assert [str(p) for p in problems] == [
        "row 6, customer_id: 'x' is not in this campaign",
        "row 7, customer_id: 'k' is in the control arm, which must not be contacted; its "
        "outcome comes from the data only",
        "row 8, customer_id: 'a' appears again (first in row 2); the first row is kept",
        "row 9, reached: 'maybe' is not yes or no",
        "row 10, result: 'gone' is not one of stayed, left, no_answer",
        "row 11, result: stayed does not go with reached = no (no_answer means not reached)",
        "row 12, reason: 'cost' is not one of price, service_quality, competitor, "
        "no_longer_needed, payment_problems, moved, other",
        "row 13, reason: a reason needs reached = yes",
        "row 14, reason_text: reason 'other' needs the customer's words",
        "row 15, customer_id: is empty",
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"),
    ("customer_id,result\na,stayed\n", "missing column 'reached'"),
    ("customer_id,reached,result,result\n", "column 'result' appears twice"),
    ('customer_id,reached,result\n"a,yes,stayed\n', "not valid CSV near row 2"),
    ('customer_id,reached,result\n"a"x,yes,stayed\n', "not valid CSV near row 2"),
    ("customer_id,reached,result\na,yes,\x00stayed\n", "NUL bytes"),
])
def test_unreadable_files_are_one_error(tmp_path, text, message):
    path = tmp_path / "calls.csv"
    path.write_text(text)
    with pytest.raises(OutcomeFileError, match=message):
        read_outcome_file(path)


def test_file_bounds(tmp_path):
    path = tmp_path / "calls.csv"
    path.write_text("customer_id,reached,result\n" + "a,yes,stayed\n" * 20)
    with pytest.raises(OutcomeFileError, match="more than 10 rows"):
        read_outcome_file(path, max_rows=10)
    with pytest.raises(OutcomeFileError, match="at most 0 MB"):
        read_outcome_file(path, max_bytes=100)
    with pytest.raises(OutcomeFileError, match="give a CSV"):
        read_outcome_file(tmp_path / "calls.xlsx")
    with pytest.raises(OutcomeFileError, match="file not found"):
        read_outcome_file(tmp_path / "none.csv")
    path.write_bytes(b"customer_id,reached,result\n\xff,yes,stayed\n")
    with pytest.raises(OutcomeFileError, match="not UTF-8"):
        read_outcome_file(path)


CUSTOMERS = """customer_id,signup_at,churned_at
a,2026-01-01,2026-03-10
b,2026-01-01,2026-05-01
c,2026-01-01,
"""
EVENTS = """customer_id,timestamp,event_type
a,2026-02-20,login
b,2026-03-05,login
c,2026-02-25,login
c,2026-04-30,login
"""


def _tables(tmp_path):
    (tmp_path / "c.csv").write_text(CUSTOMERS)
    (tmp_path / "e.csv").write_text(EVENTS)
    return load_tables(tmp_path / "c.csv", tmp_path / "e.csv")


def test_churn_from_the_data_uses_the_training_label(tmp_path):
    tables = _tables(tmp_path)
    as_of = pd.Timestamp("2026-03-01")
    explicit = label_members(tables, ["a", "b", "c"], as_of, "explicit", 30)
    assert explicit.to_dict() == {"a": 1, "b": 0, "c": 0}
    quiet = label_members(tables, ["a", "b", "c"], as_of, "inactivity", 30)
    assert quiet.to_dict() == {"a": 1, "b": 0, "c": 1}
    with pytest.raises(NotYetError, match="the campaign's horizon ends at 2026-05-30"):
        label_members(tables, ["a"], as_of, "explicit", 90)
    with pytest.raises(ValueError, match="'zz' is not in the customers file"):
        label_members(tables, ["a", "zz"], as_of, "explicit", 30)
