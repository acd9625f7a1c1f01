"""Evaluation: the feature table, computed from the feature entries on DuckDB or Spark for
large inputs (`features.sql`), with the NumPy evaluator (`features.online`) for small ones, for
a whole history or one customer's; and labelled snapshots (`build_snapshots`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from features import online
from features.btyd import BGNBDParams, expected_purchases, p_alive, p_no_purchase
from features.btyd_fit import fit_bgnbd
from features.contract import CUSTOMER_ID, Tables
from features.definitions import BTYD_MODEL_FEATURES, BTYD_SQL_FEATURES, FeatureSpec
from features.engines import spark_schema
from features.observations import (
    LABEL,
    MIN_HISTORY_DAYS,
    active_at,
    label_observations,
    observation_times,
)
from features.relations import AS_OF, Relations, epoch_seconds, from_epoch, obs_relation, relations
from features.sql import feature_sql

Progress = Callable[[int, int], None]

log = logging.getLogger(__name__)

MIN_BTYD_CUSTOMERS = 20  # customers with a purchase needed to fit BG/NBD parameters


def fit_btyd_params(table: pd.DataFrame) -> dict[str, float] | None:
    """BG/NBD parameters fitted on the frequency, recency and age columns of feature rows (all
    from events before each row's time); None when too few customers have an event."""
    rows = table[list(BTYD_SQL_FEATURES)].dropna()
    if len(rows) < MIN_BTYD_CUSTOMERS or not (rows["btyd_frequency"] > 0).any():
        return None
    params = fit_bgnbd(rows["btyd_frequency"], rows["btyd_recency_days"], rows["btyd_age_days"],
                       penalizer=1e-3)
    return params.to_dict()


def btyd_columns(summaries: dict[str, np.ndarray], spec: FeatureSpec, params: dict[str, float] | None
                  ) -> dict[str, np.ndarray]:
    """P(alive), P(no event in the horizon) and expected events, from the rows' frequency,
    recency and age and BG/NBD parameters fitted on the past; NaN without parameters."""
    n = len(summaries[BTYD_SQL_FEATURES[0]])
    if params is None:
        return {c: np.full(n, np.nan) for c in BTYD_MODEL_FEATURES}
    p = BGNBDParams.from_dict(params)
    x, t_x, age = (summaries[c] for c in BTYD_SQL_FEATURES)
    h = float(spec.btyd_horizon_days)
    return {
        "btyd_p_alive": np.asarray(p_alive(p, x, t_x, age), dtype="float64"),
        "btyd_p_inactive": np.asarray(p_no_purchase(p, h, x, t_x, age), dtype="float64"),
        "btyd_expected_events": np.asarray(expected_purchases(p, h, x, t_x, age), dtype="float64"),
    }


# up to this many events the NumPy evaluator is used, above it DuckDB. Measured on 2 cores
# (benchmarks/bench_features.py --crossover): NumPy 6-10x faster up to 100k events, 1.2x at 1M,
# even at 3M, DuckDB 1.3x faster at 10M; NumPy holds its join in memory (109 MB at 3M events
# against DuckDB's 27 MB), so DuckDB takes over from 1M.
ONLINE_MAX_EVENTS = 1_000_000
EVALUATORS = ("auto", "sql", "numpy")


def features_of_pairs(rel: Relations, obs: pd.DataFrame | pa.Table, fit_btyd: bool = False,
                       evaluator: str = "auto") -> pd.DataFrame:
    """The feature table for (customer_id, as_of) pairs, in the order given (`rows_of_pairs`
    as a DataFrame)."""
    return rows_of_pairs(rel, obs, fit_btyd, evaluator).to_frame()


def rows_of_pairs(rel: Relations, obs: pd.DataFrame | pa.Table, fit_btyd: bool = False,
                   evaluator: str = "auto") -> FeatureRows:
    """Feature rows for (customer_id, as_of) pairs, in the order given.

    `evaluator` picks the query engine ("sql") or the NumPy evaluator ("numpy"), both from the
    same feature entries; "auto" uses NumPy for small inputs. With buy-till-you-die features,
    their BG/NBD parameters are the spec's (fitted when the model was trained), or with
    `fit_btyd` fitted on these rows, for snapshots at one time."""
    spec = rel.spec
    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, not {evaluator!r}")
    if not isinstance(rel, Relations):  # the events live in an engine: its SQL
        evaluator = "sql"
    elif evaluator == "auto":
        evaluator = "numpy" if rel.events.num_rows <= ONLINE_MAX_EVENTS else "sql"
    obs_rel = obs if isinstance(obs, pa.Table) else obs_relation(obs)
    if evaluator == "numpy":
        cols = online.evaluate(spec, rel.customers, rel.events, obs_rel)
    else:
        table = rel.query(feature_sql(spec), obs=obs_rel)
        table = table.sort_values("obs_id", kind="stable")
        cols = {c: table[c].to_numpy() for c in table.columns}
    return finish_rows(cols, spec, fit_btyd)


@dataclass
class FeatureRows:
    """Feature rows as arrays: numbers in one float block, categories as object arrays. What a
    small request scores from without paying a DataFrame's fixed cost; `to_frame` gives the
    feature table (`feature_table`'s shape)."""

    spec: FeatureSpec
    customer_id: np.ndarray  # object
    as_of: np.ndarray  # datetime64[us]
    numeric: np.ndarray  # (rows, numeric features) float64, in spec.feature_names order
    categorical: dict[str, np.ndarray]  # feature -> object array, None when missing

    def __len__(self) -> int:
        return len(self.customer_id)

    @property
    def numeric_names(self) -> list[str]:
        cats = set(self.spec.categorical_features)
        return [c for c in self.spec.feature_names if c not in cats]

    def to_frame(self) -> pd.DataFrame:
        out: dict[str, object] = {
            CUSTOMER_ID: pd.Series(self.customer_id, dtype=object),
            AS_OF: self.as_of,
        }
        numeric = dict(zip(self.numeric_names, self.numeric.T, strict=True))
        for c in self.spec.feature_names:
            # object columns stay object (pandas would infer its string dtype from an array)
            out[c] = (pd.Series(self.categorical[c], dtype=object) if c in self.categorical
                      else numeric[c])
        return pd.DataFrame(out)


def finish_rows(cols: dict[str, np.ndarray], spec: FeatureSpec, fit_btyd: bool) -> FeatureRows:
    """Feature rows from an evaluator's columns: times as datetimes, the BG/NBD columns,
    numbers as float64, missing categories as None."""
    if spec.btyd_horizon_days is not None:
        summaries = {c: np.asarray(cols[c], dtype="float64") for c in BTYD_SQL_FEATURES}
        params = (fit_btyd_params(pd.DataFrame(summaries)) if fit_btyd else spec.btyd_params)
        cols = {**cols, **btyd_columns(summaries, spec, params)}
    n = len(cols["as_of"])
    cats = spec.categorical_features
    numeric = [c for c in spec.feature_names if c not in set(cats)]
    block = np.empty((n, len(numeric)), dtype="float64")
    for j, c in enumerate(numeric):
        block[:, j] = cols[c]
    categorical = {}
    for c in cats:
        values = np.asarray(cols[c], dtype=object)
        categorical[c] = np.where(pd.isna(values), None, values).astype(object)
    return FeatureRows(spec, np.asarray(cols["customer_id"], dtype=object),
                       from_epoch(cols["as_of"]), block, categorical)


def with_btyd(tables: Tables, spec: FeatureSpec, horizon_days: float, at: pd.Timestamp
              ) -> FeatureSpec:
    """The spec plus buy-till-you-die features for a `horizon_days` label, with BG/NBD
    parameters fitted on the customers active at `at` and their events before it (training
    passes its last training time; scoring then uses these parameters)."""
    spec = replace(spec, btyd_horizon_days=float(horizon_days), btyd_params=None)
    t = pd.Timestamp(at)
    who = tables.customers.loc[active_at(tables.customers, t), CUSTOMER_ID]
    rows = features_of_pairs(relations(tables.customers, tables.events, spec),
                              pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: t}))
    return replace(spec, btyd_params=fit_btyd_params(rows))



def feature_table(
    customers: pd.DataFrame,
    events: pd.DataFrame,
    spec: FeatureSpec,
    at: Sequence[pd.Timestamp] | pd.DataFrame,
    progress: Progress | None = None,
    evaluator: str = "auto",
) -> pd.DataFrame:
    """The feature table: one row per (customer, observation time), columns customer_id, as_of
    and `spec.feature_names`. The one public way to compute features.

    `at` is either a list of times (every customer active at each time: signed up at or before
    it and not churned by it), or a frame of (customer_id, as_of) pairs, answered in order.
    `evaluator` is "auto" (NumPy for small inputs, DuckDB for large), "sql" or "numpy"; all
    give the same table."""
    rel = relations(customers, events, spec)
    if isinstance(at, pd.DataFrame):
        return features_of_pairs(rel, at, evaluator=evaluator)
    parts = []
    for i, when in enumerate(at):
        t = pd.Timestamp(when)
        who = customers.loc[active_at(customers, t), CUSTOMER_ID]
        parts.append(features_of_pairs(rel, pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: t}),
                                        evaluator=evaluator))
        if progress:
            progress(i + 1, len(at))
    if not parts:
        return features_of_pairs(rel, pd.DataFrame({CUSTOMER_ID: [], AS_OF: []}),
                                  evaluator=evaluator)
    return pd.concat(parts, ignore_index=True)


def features_of_relations(customers: pa.Table, events: pa.Table, obs: pa.Table,
                          spec: FeatureSpec, evaluator: str = "auto") -> FeatureRows:
    """The feature rows for observations already in the relational form (customers, events
    and obs as documented in `features.definitions`): what a request path uses after it has
    validated its input once. Rows in `obs` order; `.to_frame()` gives the feature table."""
    rel = Relations.from_arrow(customers, events, spec)
    return rows_of_pairs(rel, obs, evaluator=evaluator)



def build_snapshots(
    tables: Tables,
    spec: FeatureSpec,
    label: str,
    horizon_days: int,
    cadence_days: int,
    times: Sequence[pd.Timestamp] | None = None,
    min_history_days: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Labelled feature rows at regular observation times whose horizon is fully observed."""
    if times is None:
        times = observation_times(
            tables.customers, tables.events, horizon_days, cadence_days,
            MIN_HISTORY_DAYS if min_history_days is None else min_history_days,
        )
    if not times:
        raise ValueError(
            "no observation time has both enough history and a fully observed horizon; "
            "use a shorter horizon or more data"
        )
    rel = relations(tables.customers, tables.events, spec)
    parts = []
    for i, t in enumerate(times):
        labelled = label_observations(rel, [t], label, horizon_days)
        # BG/NBD parameters fitted at each time on that time's past alone
        feats = features_of_pairs(rel, labelled[[CUSTOMER_ID, AS_OF]], fit_btyd=True)
        parts.append(feats.assign(**{LABEL: labelled[LABEL].to_numpy()}))
        if progress:
            progress(i + 1, len(times))
    return pd.concat(parts, ignore_index=True)




def _query_rows(rows: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Rows of the feature query, in any order, as the feature table (`finish_rows`)."""
    rows = rows.sort_values("obs_id", kind="stable")
    frame = finish_rows({c: rows[c].to_numpy() for c in rows.columns}, spec, fit_btyd=False
                        ).to_frame()
    return frame.assign(**{AS_OF: frame[AS_OF].astype("datetime64[us]")})


def _empty_query_row(spec: FeatureSpec, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row shaped as the feature query's output, every feature missing."""
    cats = set(spec.categorical_features)
    row = {"obs_id": [0], CUSTOMER_ID: ["x"], AS_OF: epoch_seconds(pd.Series([as_of]))}
    for name in spec.feature_names:
        if name not in BTYD_MODEL_FEATURES:  # added by finish_rows
            row[name] = [None] if name in cats else [float("nan")]
    return pd.DataFrame(row)


def spark_feature_table(customers: pd.DataFrame, events, spec: FeatureSpec, as_of: pd.Timestamp
                        ) -> tuple[object, pd.DataFrame] | None:
    """`feature_table` at `as_of` in Spark, for events scanned there (`features.sources` on a
    `SparkEngine`): a Spark DataFrame of the feature table (the feature query in `spark.sql`,
    each partition finished by `finish_rows` in `mapInPandas`), and the same code's output on
    one row with every feature missing, a pandas frame whose dtypes give later stages their
    schema. None when nobody is active at `as_of`."""
    who = customers.loc[active_at(customers, as_of), CUSTOMER_ID]
    if who.empty:
        return None
    obs = obs_relation(pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: as_of}))
    rel = relations(customers, events, spec)
    # the schema from one row of the query's shape: running the query for one customer would
    # scan every event
    sample = _query_rows(_empty_query_row(spec, as_of), spec)
    # registered last and kept: a Spark Connect plan names the view until it runs
    raw = rel.frame(feature_sql(spec), obs=obs)

    def finish(batches):
        for rows in batches:
            yield _query_rows(rows, spec)

    return raw.mapInPandas(finish, schema=spark_schema(sample)), sample
