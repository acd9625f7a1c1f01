"""Smoke tests of the `churn` command as a user runs it: a subprocess, no tracebacks.

Each command costs a couple of seconds of interpreter start-up, so after one `generate` every
command runs at once in a small thread pool; the tests then look at the results.
"""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHURN = ROOT / ".venv" / "bin" / "churn"
AS_OF = "2026-06-01T02:00:00+02:00"  # 2026-06-01 00:00 UTC


def churn(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHURN_")}
    return subprocess.run(
        [str(CHURN), *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=180, check=False,
    )


GOOD = {
    "snapshots": ["snapshots", "--customers", "{dir}/customers.parquet", "--events",
                  "{dir}/events.parquet", "--label", "explicit", "--horizon", "30",
                  "--cadence", "180", "--out", "{dir}/nested/snapshots.parquet"],
    "features": ["features", "--customers", "{dir}/customers.parquet", "--events",
                 "{dir}/events.parquet", "--as-of", AS_OF, "--out", "{dir}/features.parquet"],
    "help": ["--help"],
}

# id: (arguments, exit code, words the single stderr line must contain)
BAD = {
    "bad-as-of": (
        ["features", "--customers", "{dir}/customers.parquet", "--events", "{dir}/events.parquet",
         "--as-of", "notadate", "--out", "{dir}/bad/x.parquet"],
        2, ["error:", "--as-of", "'notadate'"],
    ),
    "missing-file": (
        ["features", "--customers", "{dir}/missing.csv", "--events", "{dir}/events.parquet",
         "--as-of", "2026-06-01", "--out", "{dir}/bad/x.parquet"],
        2, ["data error:", "missing.csv", "file not found"],
    ),
    "duplicate-ids": (
        ["features", "--customers", "{dir}/dup.csv", "--events", "{dir}/events.parquet",
         "--as-of", "2026-06-01", "--out", "{dir}/bad/x.parquet"],
        2, ["data error:", "dup.csv: column 'customer_id': duplicate customer ids (1 repeated)",
            "(e.g. customer_id='1' appears 2 times)"],
    ),
    "bad-label": (
        ["snapshots", "--customers", "{dir}/customers.parquet", "--events", "{dir}/events.parquet",
         "--label", "sometimes", "--horizon", "30", "--out", "{dir}/bad/x.parquet"],
        2, ["error:", "--label", "'sometimes'"],
    ),
    "horizon-too-long": (
        ["snapshots", "--customers", "{dir}/customers.parquet", "--events", "{dir}/events.parquet",
         "--label", "explicit", "--horizon", "3000", "--out", "{dir}/bad/x.parquet"],
        2, ["error:", "--horizon 3000 needs at least", "use --horizon"],
    ),
    "bad-kind": (
        ["generate", "--customers", "10", "--kind", "wholesale", "--out", "{dir}/bad"],
        2, ["error:", "--kind", "'wholesale'"],
    ),
    # usage errors found by the argument parser itself
    "missing-option": (
        ["features", "--customers", "{dir}/customers.parquet", "--events", "{dir}/events.parquet",
         "--out", "{dir}/bad/x.parquet"],
        2, ["error:", "--as-of"],
    ),
    "not-an-integer": (
        ["snapshots", "--customers", "{dir}/customers.parquet", "--events", "{dir}/events.parquet",
         "--label", "explicit", "--horizon", "soon", "--out", "{dir}/bad/x.parquet"],
        2, ["error:", "--horizon"],
    ),
    "unknown-option": (
        ["features", "--colour", "red"], 2, ["error:", "--colour"],
    ),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("generated")
    result = churn("generate", "--customers", 200, "--seed", 1, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


@pytest.fixture(scope="module")
def runs(generated) -> dict[str, subprocess.CompletedProcess[str]]:
    folder, _ = generated
    (folder / "dup.csv").write_text("customer_id,signup_at\n1,2024-01-01\n1,2024-02-01\n")
    commands = dict(GOOD) | {k: v[0] for k, v in BAD.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(churn, *[a.format(dir=folder) for a in args])
            for name, args in commands.items()
        }
        return {name: f.result() for name, f in futures.items()}


def test_generate_writes_two_parquet_files(generated):
    folder, result = generated
    assert "wrote 200 customers" in result.stdout
    customers = pd.read_parquet(folder / "customers.parquet")
    events = pd.read_parquet(folder / "events.parquet")
    assert len(customers) == 200
    assert {"customer_id", "signup_at", "churned_at"} <= set(customers.columns)
    assert {"customer_id", "timestamp", "event_type", "amount"} <= set(events.columns)
    assert len(events) > 0
    assert events["customer_id"].isin(customers["customer_id"]).all()
    assert not list(folder.glob(".*tmp*"))  # atomic writes leave no temporary files


def test_snapshots_writes_labelled_rows(generated, runs):
    folder, _ = generated
    result = runs["snapshots"]
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(folder / "nested" / "snapshots.parquet")
    assert len(table) > 0
    assert set(table["label"].unique()) <= {0, 1}
    assert {"customer_id", "as_of", "tenure_days", "n_events_30d", "label"} <= set(table.columns)
    assert table["as_of"].nunique() >= 2
    assert f"wrote {len(table):,} rows" in result.stdout


def test_features_writes_one_row_per_active_customer(generated, runs):
    folder, _ = generated
    result = runs["features"]
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(folder / "features.parquet")
    customers = pd.read_parquet(folder / "customers.parquet")
    t = pd.Timestamp("2026-06-01")  # the aware --as-of, in UTC
    active = (customers["signup_at"] <= t) & ~(customers["churned_at"] <= t)
    assert len(table) == int(active.sum()) > 0
    assert (table["as_of"] == t).all()
    assert "label" not in table.columns


@pytest.mark.parametrize("name", ["features", "snapshots"])
def test_feature_commands_say_how_every_column_is_used(runs, name):
    said = " ".join(runs[name].stderr.split())
    assert ("note: columns used: events: amount as numbers; customers: seats as numbers; plan, "
            "contract, country as categories; date_of_birth as dates") in said, said


def test_help_lists_the_commands(runs):
    result = runs["help"]
    assert result.returncode == 0, result.stderr
    for command in ("generate", "features", "snapshots"):
        assert command in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int,
                          words: list[str]) -> None:
    """The CLI's promise for bad input: one plain line naming the problem, a non-zero code."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.returncode == code, lines[0]


@pytest.mark.parametrize("name", list(BAD))
def test_errors_are_one_line_without_traceback(generated, runs, name):
    folder, _ = generated
    _, code, words = BAD[name]
    assert_one_line_error(runs[name], code, words)
    assert not (folder / "bad").exists()


@pytest.mark.parametrize(("how", "words"), [
    ("option", ["error:", "--activity", "'bogus'", "not in the events file"]),
    ("config", ["error:", "--activity", "'bogus'", "not in the events file"]),
    ("empty", ["error:", "--activity", "must not be empty"]),
])
def test_train_refuses_an_unknown_activity_type(generated, tmp_path, how, words):
    """--activity (or activity_types in the config) names event types of the events file; any
    other is one line naming the option and the type, before anything is trained."""
    folder, _ = generated
    args = ["train", "--customers", folder / "customers.parquet", "--events",
            folder / "events.parquet", "--label", "inactivity", "--horizon", "30"]
    if how == "config":
        config = tmp_path / "activity.toml"
        config.write_text('activity_types = ["login", "bogus"]\n')
        args += ["--config", config]
    else:
        args += ["--activity", "login,bogus" if how == "option" else "login,"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    result = subprocess.run([str(CHURN), *map(str, args)], capture_output=True, text=True,
                            env=env | {"CHURN_HOME": str(tmp_path)}, cwd=ROOT, timeout=180,
                            check=False)
    assert_one_line_error(result, 2, words)


def test_a_note_is_printed_once(tmp_path):
    customers, events = tmp_path / "c.csv", tmp_path / "e.csv"
    customers.write_text("customer_id,signup_at\n1,2025-01-01\n")
    events.write_text("customer_id,timestamp,event_type\n1,2025-02-01,login\n9,2025-02-01,login\n")
    proc = churn("features", "--customers", customers, "--events", events, "--as-of",
                 "2025-03-01", "--out", tmp_path / "f.parquet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("dropped") == 1, proc.stderr


def test_write_parquet_removes_temp_files_a_killed_run_left(tmp_path):
    import pandas as pd

    from features.files import write_parquet

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    out = tmp_path / "scores.parquet"
    stale = tmp_path / f".scores.parquet.tmp-{dead.pid}"
    stale.write_bytes(b"half")
    busy = tmp_path / f".scores.parquet.tmp-{os.getppid()}"  # a running process is writing
    busy.write_bytes(b"busy")
    write_parquet(pd.DataFrame({"a": [1]}), out)
    assert not stale.exists() and busy.exists()
    assert pd.read_parquet(out)["a"].tolist() == [1]


def test_a_mistyped_churn_home_is_refused_not_made_into_an_empty_store(tmp_path):
    home = tmp_path / "typo"
    proc = subprocess.run([str(CHURN), "compare"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith(("CHURN_", "MLFLOW_"))},
                               "CHURN_HOME": str(home)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "CHURN_HOME" in proc.stderr
    assert not home.exists()


def test_the_compare_table_fits_100_columns_with_long_names_and_keeps_every_number(monkeypatch):
    """`churn compare` on a wide terminal: long data and config names fold inside the 100
    columns, whole; the metrics are never cut, and each ROC-AUC shows its interval."""
    import io

    from rich.console import Console

    import cli.training as cli
    from cli import common

    long = {"data": "quarterly-export-from-the-billing-system to 2026-06-29",
            "config": "regularised-more-leaves-longer-search"}
    table = pd.DataFrame([
        {"run_id": "0" * 32, "version": "12", "label": "inactivity", "horizon_days": 91.0,
         "roc_auc": 0.7691, "roc_auc_ci_low": 0.7412, "roc_auc_ci_high": 0.7953,
         "ci_level": 0.95, "pr_auc": 0.1980, "brier": 0.0347, "lift_top10": 4.186,
         "champion": True, **long},
        {"run_id": "1" * 32, "version": "3", "label": "explicit", "horizon_days": 30.0,
         "roc_auc": 0.5359, "roc_auc_ci_low": 0.4987, "roc_auc_ci_high": 0.5731,
         "ci_level": 0.95, "pr_auc": 0.0612, "brier": 0.0404, "lift_top10": 1.5173,
         "champion": False, "data": "demo to 2026-06-29", "config": "default"},
        {"run_id": "2" * 32, "version": "2", "label": "explicit", "horizon_days": 30.0,
         "roc_auc": 0.61, "roc_auc_ci_low": float("nan"), "roc_auc_ci_high": float("nan"),
         "ci_level": float("nan"), "pr_auc": 0.07, "brier": 0.04, "lift_top10": 1.6,
         "champion": False, "data": "demo to 2026-06-29", "config": "no-bootstrap"},
    ])
    printed = io.StringIO()
    monkeypatch.setattr(common, "out", Console(file=printed, width=300))
    cli.print_compare(table)
    text = printed.getvalue()
    assert max(map(len, text.splitlines())) <= cli.TABLE_WIDTH, text
    assert "…" not in text
    cells = "".join(c.strip() for line in text.splitlines() for c in line.split("│")[2:3])
    assert long["data"].replace(" ", "") in cells.replace(" ", "")  # folded, not cut
    for shown in ("0.7691", "0.1980", "0.0347", "4.1860", "0.5359", "12 ★", "inactivity", "91d",
                  "explicit 30d", "PR-AUC", "config", "95% interval", "0.741–0.795",
                  "0.499–0.573"):
        assert shown in text, shown
    assert "nan" not in text  # a run without a bootstrap shows no interval, not nan–nan


def test_the_cli_runs_as_a_module():
    """`python -m cli.main` imports cli.main a second time as __main__: the command modules
    must not import it back (they share cli/common.py), or that second import fails."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "cli.main", "campaign", "--help"],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "returning" in done.stdout


def test_table_cells_are_text_not_markup(monkeypatch):
    """Ids and what customers said may hold [brackets]: printed as written, never read as
    rich markup (which fails on "[/]" and drops "[was told]")."""
    import io

    from rich.console import Console

    from cli import common

    printed = io.StringIO()
    monkeypatch.setattr(common, "out", Console(file=printed, width=200))
    common.print_table("t", ["said"], [["price [/] too dear"], ["Price: [was told] too dear"],
                                       ["[bold]cheaper elsewhere"]])
    text = printed.getvalue()
    assert "price [/] too dear" in text and "[was told]" in text and "[bold]cheaper" in text


def test_brackets_in_names_and_words_print_as_written(capsys):
    """A campaign named "[/]", a column "[bold]x" or a customer's "[red]" words print as
    written: rich markup would fail on the first (after the work was done) and drop the rest."""
    from cli.common import out, print_note, print_table

    print_note("campaign [/] stored; column [bold]x[/bold] is text")
    out.print("campaign 3 ([/]): 12 to call")
    print_table("Reasons [red]", ["reason", "customers"], [["[red]too dear[/]", 3], ["[/]", 1.5]])
    got = capsys.readouterr()
    assert "note: campaign [/] stored; column [bold]x[/bold] is text" in got.err
    assert "campaign 3 ([/]): 12 to call" in got.out
    for text in ("Reasons [red]", "[red]too dear[/]", "[/]", "1.5000"):
        assert text in got.out
    assert "\\[" not in got.out
