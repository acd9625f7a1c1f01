"""The churn curve on the dev sets, measured as survival models are (issue #28, first slice).

For each dev set (`benchmarks/devsets.py`): cut the log at the cutoff; on the past alone build
the product's snapshots at its observation times and at the newer times whose horizon is not
yet seen, each with its time to churn (`features.observations.churn_durations`, censored where
the past ends), and fit the hazard model of `training.curve` (a fifth of the customers choose
its rounds). At the cutoff, score every
active customer's curve and judge it with their time to churn read from the full log:
time-dependent ROC-AUC and Brier at 7, 30, 90 days and the training horizon, the integrated
Brier score and Uno's concordance (scikit-survival, censoring weights from the test rows),
beside the Kaplan-Meier curve (one for everyone) and Kaplan-Meier by tenure quintile, with
paired customer-bootstrap intervals of the differences. The single-horizon probability the
curve gives is set beside a LightGBM fitted on the same rows' labels alone.

    .venv/bin/python benchmarks/bench_curve.py --sets subscription shop_btyd --root /tmp/devsets
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from devsets import MAKERS, DevSet, truncate  # noqa: E402

from features.contract import CUSTOMER_ID  # noqa: E402
from features.engine import build_snapshots, features_of_pairs, relations, with_btyd  # noqa: E402
from features.observations import (  # noqa: E402
    DURATION,
    LABEL,
    OBSERVED,
    active_at,
    churn_durations,
    data_end,
    plan_observations,
)
from features.relations import AS_OF  # noqa: E402
from features.spec_inference import infer_spec  # noqa: E402
from features.tables import load_tables  # noqa: E402
from scoring.artifact import CategoryEncoder  # noqa: E402
from training.curve import DEFAULT_HORIZONS, STEP_DAYS, Grid, fit_hazard  # noqa: E402
from training.curve_metrics import (  # noqa: E402
    curve_metrics,
    kaplan_meier_curve,
    outcomes,
    paired_bootstrap,
    stratified_kaplan_meier,
    tenure_strata,
)

BOOTSTRAP = 200


def _interval(values: list[float]) -> str:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return f"[{lo:+.4f}, {hi:+.4f}]"


def evaluate(dev: DevSet, workdir: Path, seed: int) -> list[dict[str, object]]:
    customers, events = dev.load()
    label, horizon = dev.label, dev.horizon_days
    grid = Grid.for_label(label, horizon)
    # the curve is judged up to its cap: the cutoff leaves the cap (and, for a lapse, its
    # horizon) of the log after it where the log is long enough
    follow = grid.cap + (horizon if label == "inactivity" else 0)
    # ... but keeps two horizons and four weeks of history before it (several training times)
    earliest = events["timestamp"].min() + pd.Timedelta(days=2 * horizon + 29)
    end = data_end(customers, events)
    cutoff = max(earliest.ceil("D"), (end - pd.Timedelta(days=follow)).floor("D"))
    # and at least 30 days judged (after a lapse's horizon)
    lapse = horizon if label == "inactivity" else 0
    cutoff = min(dev.cutoff, cutoff, (end - pd.Timedelta(days=lapse + 30)).floor("D"))
    past_c, past_e = truncate(customers, events, cutoff)
    past_c.to_parquet(workdir / "customers.parquet", index=False)
    past_e.to_parquet(workdir / "events.parquet", index=False)
    past = load_tables(workdir / "customers.parquet", workdir / "events.parquet")
    full = load_tables(dev.customers_path, dev.events_path)

    started = time.perf_counter()
    plan = plan_observations(past.customers, past.events, horizon)
    # the curve learns from every time with some follow-up (censoring says how much), not only
    # from times whose whole horizon is seen: the newest ones too
    some = STEP_DAYS + (horizon if label == "inactivity" else 0)
    times = sorted({*plan.times, *plan_observations(past.customers, past.events, some,
                                                    plan.cadence_days).times})
    spec = infer_spec(past, before=max(times))
    if label == "inactivity":
        spec = with_btyd(past, spec, horizon, max(times))
    snaps = build_snapshots(past, spec, label, horizon, plan.cadence_days, times=times)
    rel_past = relations(past.customers, past.events, spec)
    dur = churn_durations(rel_past, snaps[[CUSTOMER_ID, AS_OF]], label, horizon,
                          data_end(past.customers, past.events))
    labelled = snaps[AS_OF].isin(plan.times).to_numpy()  # the single-horizon model's rows
    ids = snaps[CUSTOMER_ID].unique()
    held = set(np.random.default_rng(seed).choice(ids, len(ids) // 5, replace=False))
    va = snaps[CUSTOMER_ID].isin(held).to_numpy()  # a fifth of the customers choose rounds
    tr = ~va

    pairs = past.customers.loc[active_at(past.customers, cutoff), [CUSTOMER_ID]].assign(
        **{AS_OF: cutoff}).reset_index(drop=True)
    test = features_of_pairs(rel_past, pairs, fit_btyd=True)
    truth = churn_durations(relations(full.customers, full.events, spec), pairs, label, horizon,
                            data_end(full.customers, full.events))
    keep = truth[DURATION].to_numpy() >= 0  # the label at the cutoff is seen in the full log
    if not keep.any():
        raise SystemExit(f"{dev.name}: the log ends before the label at {cutoff:%Y-%m-%d} is seen")
    test, truth = test[keep].reset_index(drop=True), truth[keep].reset_index(drop=True)

    names = list(spec.feature_names)
    encoder = CategoryEncoder(tuple(spec.categorical_features)).fit(snaps[tr])
    cats = tuple(names.index(c) for c in spec.categorical_features)
    x = encoder.encode(snaps, names)
    xt = encoder.encode(test, names)
    d, o = dur[DURATION].to_numpy(), dur[OBSERVED].to_numpy()
    model = fit_hazard(x[tr], d[tr], o[tr], grid, x[va], d[va], o[va], categorical=cats,
                       num_threads=2, seed=seed)
    curve = model.curve(xt)
    fit_s = time.perf_counter() - started

    # the single-horizon model beside it: the same rows' labels alone
    y = snaps[LABEL].to_numpy()
    single = lgb.train({"objective": "binary", "learning_rate": 0.05, "num_leaves": 15,
                        "min_data_in_leaf": 100, "verbosity": -1, "num_threads": 2, "seed": seed},
                       lgb.Dataset(x[tr & labelled], y[tr & labelled],
                                   categorical_feature=list(cats)), 400,
                       valid_sets=[lgb.Dataset(x[va & labelled], y[va & labelled],
                                               categorical_feature=list(cats))],
                       callbacks=[lgb.early_stopping(30, verbose=False)])
    p_single = single.predict(xt)
    at_label = 0.0 if label == "inactivity" else float(horizon)
    p_curve = curve[:, grid.index_of(at_label)]
    td, to = truth[DURATION].to_numpy(), truth[OBSERVED].to_numpy()
    seen = to | (td > at_label) if label == "explicit" else np.ones(len(td), dtype=bool)
    y_test = ((td <= at_label) & to)[seen]

    tenure_tr = snaps.loc[tr, "tenure_days"].to_numpy()
    strata_tr = tenure_strata(tenure_tr, tenure_tr)
    strata_te = tenure_strata(tenure_tr, test["tenure_days"].to_numpy())
    curves = {
        "hazard": curve,
        "km": np.tile(kaplan_meier_curve(d[tr], o[tr], grid), (len(test), 1)),
        "km_tenure": stratified_kaplan_meier(strata_tr, d[tr], o[tr], strata_te, grid),
    }
    horizons = tuple(sorted({*DEFAULT_HORIZONS, horizon}))

    def metrics_on(rows: np.ndarray) -> dict[str, dict[str, float]]:
        test_y = outcomes(td[rows], to[rows])
        # censoring weights from the test rows themselves: theirs is the log's end after the
        # cutoff, which the training rows (censored by the past's end) do not reach
        return {name: curve_metrics(test_y, test_y, c[rows], grid, horizons)
                for name, c in curves.items()}

    whole = metrics_on(np.arange(len(test)))
    observed_curve = kaplan_meier_curve(td, to, grid)  # what happened, for the means beside
    boots = paired_bootstrap(metrics_on, len(test), BOOTSTRAP, seed)
    out = []
    for name, m in whole.items():
        row: dict[str, object] = {"set": dev.name, "cutoff": f"{cutoff:%Y-%m-%d}",
                                  "curve": name, "rows": len(test),
                                  "fit_s": round(fit_s) if name == "hazard" else ""}
        for key, value in m.items():
            row[key] = round(value, 4)
            if key.startswith("brier_"):  # calibration in the large beside it
                h = float(key[6:-1])
                at = grid.index_of(h)
                row[f"mean_{h:g}d (seen {observed_curve[at]:.4f})"] = round(
                    float(curves[name][:, at].mean()), 4)
            if name != "hazard":
                diffs = [b["hazard"][key] - b[name][key] for b in boots
                         if key in b["hazard"] and key in b[name]]
                row[f"{key} (hazard - this)"] = _interval(diffs) if diffs else ""
        out.append(row)
    out.append({"set": dev.name, "curve": f"single horizon at {at_label:g}d: hazard vs label model",
                "rows": int(seen.sum()),
                "auc": f"{roc_auc_score(y_test, p_curve[seen]):.4f} vs "
                       f"{roc_auc_score(y_test, p_single[seen]):.4f}",
                "brier": f"{brier_score_loss(y_test, p_curve[seen]):.4f} vs "
                         f"{brier_score_loss(y_test, p_single[seen]):.4f}"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="*", default=["subscription", "shop_btyd"],
                        choices=list(MAKERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "devsets")
    args = parser.parse_args()
    for name in args.sets:
        started = time.perf_counter()
        dev = MAKERS[name](args.root / name, seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            rows = evaluate(dev, Path(tmp), args.seed)
        print(f"\n{name} ({dev.label}, horizon {dev.horizon_days} d): "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        print(pd.DataFrame(rows).astype(object).fillna("").T.to_string(header=False), flush=True)


if __name__ == "__main__":
    main()
