"""Prediction quality the way the product is used, on dev sets, beside classical baselines.

For each dev set (`benchmarks/devsets.py`): cut the log at the cutoff, run the default
`churn train --customers C --events E --label L --horizon H` on the past alone (no cadence, no
config), then `churn score --as-of cutoff`, and wait one horizon: the truth comes from the full
log. The baselines (`benchmarks/baselines.py`) score the same customers from the same past:
recency alone (its calibrated form for Brier), BG/NBD on shops, and the book's 28-day counts plus
tenure with L1 logistic regression. Every number has a 95% customer-bootstrap interval, and the
product's ROC-AUC and Brier differences to each baseline have paired intervals on the same rows.

It also prints the wall time of each stage of `churn train` (from its progress) and of
`churn score`, so a slow stage is visible, and, when `churn train --json` reports them, the
candidates training evaluated (validation and test metrics, paired differences) and the one it
registered (`chosen`). With `--each-candidate`, every candidate is also trained alone and scored
at the cutoff (rows `only NAME`), so each is measured the way the registered one is.

    .venv/bin/python benchmarks/bench_quality.py [--sets subscription shop_btyd ...] [--seed 0]
        [--each-candidate] [--config FILE]

Never run in the tests. Nothing here reads a held-out evaluation set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import BASELINES, labels_at  # noqa: E402
from devsets import MAKERS, DevSet, truncate  # noqa: E402

from training.config import CANDIDATES  # noqa: E402
from training.intervals import cluster_bootstrap, paired_difference  # noqa: E402

CHURN = str(Path(sys.executable).with_name("churn"))
LEVEL = 0.95


def _run(args: list[str], home: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHURN_", "MLFLOW_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true", COLUMNS="160")
    started = time.perf_counter()
    proc = subprocess.run([CHURN, *args], cwd=home, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"churn {args[0]} failed: {proc.stderr[-2000:]}")
    return proc, time.perf_counter() - started


def product_scores(dev: DevSet, past: Path, home: Path, config: Path | None = None
                   ) -> tuple[pd.Series, dict[str, object], pd.DataFrame | None]:
    """Train with the defaults (or `config`) on the past, score at the cutoff; probabilities by
    customer, the run's facts, and its candidates (None when `churn train --json` lists none)."""
    home.mkdir(parents=True, exist_ok=True)
    files = ["--customers", str(past / "customers.parquet"), "--events", str(past / "events.parquet")]
    extra = ["--config", str(config)] if config is not None else []
    proc, train_s = _run(["train", *files, "--label", dev.label, "--horizon",
                          str(dev.horizon_days), "--json", *extra], home)
    trained = json.loads(proc.stdout)
    out = home / "scores.parquet"
    _, score_s = _run(["score", *files, "--as-of", str(dev.cutoff), "--out", str(out)], home)
    scores = pd.read_parquet(out)
    info = {"train_s": train_s, "score_s": score_s,
            "validation": trained["dataset"]["validation_scheme"],
            "test": trained["dataset"]["test_scheme"],
            "cadence": trained["dataset"]["cadence_days"]}
    if trained.get("chosen") is not None:
        info["chosen"] = str(trained["chosen"])
    return (scores.set_index(scores["customer_id"].astype(str))["churn_probability"], info,
            candidate_table(trained))


def _flat(prefix: str, value: object, out: dict[str, object]) -> None:
    """Nested dicts as one level of 'outer inner' keys."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix} {key}".strip(), inner, out)
    elif isinstance(value, float):
        out[prefix] = f"{value:.4f}"
    elif isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(v, float) for v in value):  # an interval
        out[prefix] = f"[{value[0]:.4f}, {value[1]:.4f}]"
    else:
        out[prefix] = value


def candidate_table(trained: dict) -> pd.DataFrame | None:
    """One row per candidate of `churn train --json` (`candidates`: name -> validation_roc_auc,
    test metrics, paired differences), the registered one (`chosen`) marked; None without them."""
    candidates = trained.get("candidates")
    if not isinstance(candidates, dict) or not candidates:
        return None
    chosen = trained.get("chosen")
    rows = []
    for name, given in candidates.items():
        row: dict[str, object] = {"candidate": name, "chosen": "yes" if name == chosen else ""}
        facts = given if isinstance(given, dict) else {"value": given}
        if "validation_roc_auc" in facts:
            _flat("validation_roc_auc", facts["validation_roc_auc"], row)
        for key, value in facts.items():
            if key != "validation_roc_auc":
                _flat(key, value, row)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _signed(iv) -> str:
    return f"{iv.estimate:+.4f} [{iv.low:+.4f}, {iv.high:+.4f}]"


# the candidates `--each-candidate` trains alone (BG/NBD ones need an inactivity label)


def candidate_scores(dev: DevSet, past: Path, workdir: Path) -> dict[str, pd.Series]:
    """Each candidate trained alone with the defaults otherwise (`[candidates] include`), scored
    at the cutoff like the product: what each would have given had it been registered."""
    out = {}
    for name in CANDIDATES:
        if "bgnbd" in name and dev.label != "inactivity":
            continue
        config = workdir / f"only_{name}.toml"
        config.write_text(f'[candidates]\ninclude = ["{name}"]\n')
        scores, _, _ = product_scores(dev, past, workdir / f"only_{name}", config)
        out[f"only {name}"] = scores
    return out


def evaluate(dev: DevSet, workdir: Path, seed: int, each_candidate: bool = False,
             config: Path | None = None) -> tuple[list[dict[str, object]], pd.DataFrame | None]:
    customers, events = dev.load()
    past_c, past_e = truncate(customers, events, dev.cutoff)
    past = workdir / "past"
    past.mkdir(parents=True, exist_ok=True)
    past_c.to_parquet(past / "customers.parquet", index=False)
    past_e.to_parquet(past / "events.parquet", index=False)
    truth = labels_at(customers, events, dev.cutoff, dev.horizon_days, dev.label)
    truth.index = truth.index.astype(str)

    ours, info, candidates = product_scores(dev, past, workdir, config)
    scores = {"churn-service": ours}
    if each_candidate:
        scores.update(candidate_scores(dev, past, workdir))
    for name, baseline in BASELINES.items():
        if name == "bgnbd" and dev.label != "inactivity":
            continue
        s = baseline(past_c, past_e, dev.cutoff, dev.horizon_days, dev.label)
        scores[name] = pd.Series(s.to_numpy(dtype="float64"), index=s.index.astype(str))
    ids = truth.index.intersection(ours.index)
    for s in scores.values():
        ids = ids.intersection(s.dropna().index)
    y = truth.loc[ids].to_numpy()
    rows = []
    for name, s in scores.items():
        p = s.loc[ids].to_numpy()
        if name == "recency":  # a score, not a probability: ranking only
            p = (p - p.min()) / max(p.max() - p.min(), 1e-12)
        iv = cluster_bootstrap(y, p, ids.to_numpy(), level=LEVEL, seed=seed)
        row: dict[str, object] = {"set": dev.name, "model": name, "customers": len(ids),
                                  "churners": int(y.sum())}
        for m in ("roc_auc", "brier", "lift_top10"):
            show = not (name == "recency" and m == "brier")
            row[m] = f"{iv[m].estimate:.4f} [{iv[m].low:.4f}, {iv[m].high:.4f}]" if show else "-"
        if name != "churn-service":
            d = paired_difference(y, ours.loc[ids].to_numpy(), p, ids.to_numpy(), level=LEVEL,
                                  seed=seed)
            row["ours - this: AUC"] = _signed(d["roc_auc"])
            row["ours - this: Brier"] = "-" if name == "recency" else _signed(d["brier"])
        else:
            row.update({k: str(v) if not isinstance(v, float) else f"{v:.0f} s"
                        for k, v in info.items()})
        rows.append(row)
    return rows, candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(MAKERS), choices=list(MAKERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "devsets")
    parser.add_argument("--each-candidate", action="store_true",
                        help="also train and score each candidate alone (five more trainings)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a training config for the product's run (default: none, as a new "
                             "user runs it); to measure a setting before it becomes a default")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; level {LEVEL:.0%}; seed {args.seed}")
    rows = []
    for name in args.sets:
        started = time.perf_counter()
        dev = MAKERS[name](args.root / name, seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            found, candidates = evaluate(dev, Path(tmp), args.seed, args.each_candidate,
                                         args.config)
        rows += found
        print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
        table = pd.DataFrame([r for r in rows if r["set"] == name]).fillna("")
        print(table.to_string(index=False), flush=True)
        if candidates is not None:
            print(f"{name}: candidates of churn train (on its own test split)")
            print(candidates.to_string(index=False), flush=True)
    print("\nall sets:")
    print(pd.DataFrame(rows).fillna("").to_markdown(index=False)
          if _has_tabulate() else pd.DataFrame(rows).fillna("").to_string(index=False))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
