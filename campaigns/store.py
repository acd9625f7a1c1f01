"""Campaign records in the product's store: what a campaign planned (its arms and actions) and
what came of each contact.

Three tables on `scoring.records.metadata`, so `scoring.records.engine_for(settings)` creates
them with the rest of the store (SQLite `mlruns/churn.db` or CHURN_DATABASE_URL):
- `campaigns`: one row per campaign: who planned it with which model, as of when, for how long;
- `campaign_members`: every planned customer in either arm, with the action the treatment arm
  gets (the control arm keeps the action it would have had, so breakdowns compare like with
  like);
- `campaign_outcomes`: what happened, from the call centre's file (`source='import'`) or from the
  data once the horizon has passed (`source='data'`). One row per campaign, customer and source:
  a later outcome of the same source replaces the earlier one.

Every write is one transaction; rows are checked before anything is written, and a bad one is a
`scoring.records.RecordError` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    tuple_,
)

from features.contract import to_utc_naive
from scoring.records import RecordError, metadata

ARMS = ("treatment", "control")
RESULTS = ("stayed", "left", "no_answer")
SOURCES = ("import", "data")
WRITE_CHUNK = 2_000  # rows per statement: bounds a statement's parameters on every backend

campaigns_table = Table(
    "campaigns", metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime, nullable=False),  # UTC, naive
    Column("model_version", String(200), nullable=False),  # the model whose scores chose them
    Column("as_of", DateTime, nullable=False),  # UTC, naive: the scores' observation time
    Column("horizon_days", Integer, nullable=False),  # outcomes from the data after as_of + this
    Column("control_share", Float, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("cut", Text, nullable=False),  # how targets were chosen, in words
    Column("params", Text, nullable=False, default="{}"),  # JSON: the plan's settings
)

campaign_members_table = Table(
    "campaign_members", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(64), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("arm", String(10), nullable=False),  # treatment | control
    Column("risk_band", String(20), nullable=False),
    Column("value_segment", String(20), nullable=False),
    Column("probability", Float, nullable=False),
    Column("customer_value", Float, nullable=True),
    Column("action_family", String(60), nullable=False),
    Column("action", Text, nullable=False),
    UniqueConstraint("campaign_id", "customer_id", name="uq_campaign_members"),
    Index("ix_campaign_members_customer", "customer_id"),
)
MEMBER_COLUMNS = ("customer_id", "arm", "risk_band", "value_segment", "probability",
                  "customer_value", "action_family", "action")

campaign_outcomes_table = Table(
    "campaign_outcomes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(64), nullable=False),
    Column("customer_id", String(200), nullable=False),
    Column("reached", Boolean, nullable=True),  # None: not known (source 'data')
    Column("result", String(20), nullable=False),  # stayed | left | no_answer
    Column("reason", String(40), nullable=True),  # a key of the playbook's reasons
    Column("reason_text", Text, nullable=False, default=""),
    Column("recorded_at", DateTime, nullable=False),  # UTC, naive: when it happened or was told
    Column("source", String(10), nullable=False),  # import | data
    UniqueConstraint("campaign_id", "customer_id", "source", name="uq_campaign_outcomes"),
    Index("ix_campaign_outcomes_customer", "customer_id"),
)
OUTCOME_COLUMNS = ("customer_id", "reached", "result", "reason", "reason_text", "recorded_at",
                   "source")


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    name: str
    model_version: str
    as_of: datetime  # naive UTC
    horizon_days: int
    control_share: float
    seed: int
    cut: str
    params: dict = field(default_factory=dict)
    created_at: datetime | None = None  # set by create_campaign when None

    @property
    def ends_at(self) -> datetime:
        return self.as_of + pd.Timedelta(days=self.horizon_days).to_pytimedelta()


def _naive_utc(value: datetime) -> datetime:
    return to_utc_naive(value).to_pydatetime()


def _check_members(members: pd.DataFrame) -> list[dict]:
    missing = [c for c in MEMBER_COLUMNS if c not in members.columns]
    if missing:
        raise RecordError("members", "missing columns: " + ", ".join(missing))
    if members.empty:
        raise RecordError("members", "a campaign needs at least one customer")
    ids = members["customer_id"].astype(str)
    if ids.duplicated().any():
        raise RecordError("customer_id", f"{ids[ids.duplicated()].iloc[0]!r} appears twice")
    bad_arm = ~members["arm"].isin(ARMS)
    if bad_arm.any():
        raise RecordError("arm", f"{members['arm'][bad_arm].iloc[0]!r}: must be treatment or "
                          "control")
    rows = []
    for rec in members.loc[:, list(MEMBER_COLUMNS)].to_dict("records"):
        value = rec["customer_value"]
        rows.append({**rec, "customer_id": str(rec["customer_id"]),
                     "probability": float(rec["probability"]),
                     "customer_value": None if pd.isna(value) else float(value),
                     "risk_band": str(rec["risk_band"]), "value_segment": str(rec["value_segment"]),
                     "action_family": str(rec["action_family"]), "action": str(rec["action"])})
    return rows


def create_campaign(engine: Engine, campaign: Campaign, members: pd.DataFrame) -> Campaign:
    """Store a campaign and its members (MEMBER_COLUMNS) in one transaction: all or nothing.
    Returns the campaign with its creation time."""
    rows = _check_members(members)
    created = _naive_utc(campaign.created_at or datetime.now(UTC))
    head = {**asdict(campaign), "created_at": created, "as_of": _naive_utc(campaign.as_of),
            "params": json.dumps(campaign.params, default=str)}
    with engine.begin() as conn:
        taken = conn.execute(select(campaigns_table.c.campaign_id)
                             .where(campaigns_table.c.campaign_id == campaign.campaign_id)).first()
        if taken:
            raise RecordError("campaign_id", f"{campaign.campaign_id!r} already exists")
        conn.execute(campaigns_table.insert().values(**head))
        for i in range(0, len(rows), WRITE_CHUNK):
            conn.execute(campaign_members_table.insert(),
                         [{**r, "campaign_id": campaign.campaign_id}
                          for r in rows[i:i + WRITE_CHUNK]])
    return Campaign(**{**asdict(campaign), "created_at": created})


def _campaign(row: object) -> Campaign:
    m = dict(row._mapping)  # type: ignore[attr-defined]
    m["params"] = json.loads(m["params"] or "{}")
    return Campaign(**m)


def list_campaigns(engine: Engine) -> list[Campaign]:
    """Every campaign, newest first."""
    query = (select(campaigns_table)
             .order_by(campaigns_table.c.created_at.desc(), campaigns_table.c.campaign_id))
    with engine.connect() as conn:
        return [_campaign(r) for r in conn.execute(query)]


def get_campaign(engine: Engine, campaign_id: str) -> Campaign | None:
    with engine.connect() as conn:
        row = conn.execute(select(campaigns_table)
                           .where(campaigns_table.c.campaign_id == campaign_id)).first()
    return None if row is None else _campaign(row)


def overlapping_members(engine: Engine, start: datetime, end: datetime,
                        model_name: str | None = None) -> dict[str, str]:
    """Customers in a campaign whose window (as_of, as_of + horizon] overlaps (start, end],
    each with one such campaign's id. A customer held out by one campaign and called by
    another while both are judged would bias the first one's uplift towards zero. With
    `model_name`, campaigns recorded for another model (other data: the demo's customer 1 is
    not yours) do not count; those without a recorded model still do."""
    start, end = _naive_utc(start), _naive_utc(end)
    overlapping = [c.campaign_id for c in list_campaigns(engine)
                   if c.as_of < end and c.as_of + timedelta(days=c.horizon_days) > start
                   and (model_name is None or c.params.get("model_name") in (None, model_name))]
    if not overlapping:
        return {}
    query = (select(campaign_members_table.c.customer_id, campaign_members_table.c.campaign_id)
             .where(campaign_members_table.c.campaign_id.in_(overlapping)))
    with engine.connect() as conn:
        return {customer: campaign for customer, campaign in conn.execute(query)}


def campaign_members(engine: Engine, campaign_id: str) -> pd.DataFrame:
    """The campaign's members (MEMBER_COLUMNS), in the order planned."""
    query = (select(*(campaign_members_table.c[c] for c in MEMBER_COLUMNS))
             .where(campaign_members_table.c.campaign_id == campaign_id)
             .order_by(campaign_members_table.c.id))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=list(MEMBER_COLUMNS))


def campaign_outcomes(engine: Engine, campaign_id: str, source: str | None = None) -> pd.DataFrame:
    """The campaign's outcomes (OUTCOME_COLUMNS), one row per customer and source."""
    query = (select(*(campaign_outcomes_table.c[c] for c in OUTCOME_COLUMNS))
             .where(campaign_outcomes_table.c.campaign_id == campaign_id)
             .order_by(campaign_outcomes_table.c.id))
    if source is not None:
        query = query.where(campaign_outcomes_table.c.source == source)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    return frame.astype({"reached": "boolean"}) if not frame.empty else frame


def _check_outcome(row: dict) -> dict:
    customer = row.get("customer_id")
    if not isinstance(customer, str) or not customer.strip():
        raise RecordError("customer_id", "is required")
    reached = row.get("reached")
    if reached is not None and not isinstance(reached, bool):
        raise RecordError("reached", "must be true, false or empty")
    if row.get("result") not in RESULTS:
        raise RecordError("result", "must be one of " + ", ".join(RESULTS))
    if row.get("source") not in SOURCES:
        raise RecordError("source", "must be one of " + ", ".join(SOURCES))
    reason = row.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 40):
        raise RecordError("reason", "must be a reason key")
    text = row.get("reason_text") or ""
    if not isinstance(text, str):
        raise RecordError("reason_text", "must be text")
    when = row.get("recorded_at")
    return {"customer_id": customer.strip(), "reached": reached, "result": row["result"],
            "reason": reason, "reason_text": text, "source": row["source"],
            "recorded_at": _naive_utc(when) if when is not None else
            datetime.now(UTC).replace(tzinfo=None)}


def record_outcomes(engine: Engine, campaign_id: str, rows: Sequence[dict]) -> int:
    """Store outcomes (OUTCOME_COLUMNS; `recorded_at` defaults to now) in one transaction. Every
    customer must be a member of the campaign. A customer's outcome replaces an earlier one of
    the same source; the other source's is kept. Returns the rows stored."""
    clean = [_check_outcome(dict(r)) for r in rows]
    if not clean:
        return 0
    keys = [(r["customer_id"], r["source"]) for r in clean]
    if len(set(keys)) != len(keys):  # the last of a customer's rows in one call wins
        last = {k: r for k, r in zip(keys, clean, strict=True)}
        clean = list(last.values())
    with engine.begin() as conn:
        if _campaign_exists(conn, campaign_id) is None:
            raise RecordError("campaign", f"{campaign_id!r} does not exist")
        for i in range(0, len(clean), WRITE_CHUNK):
            part = clean[i:i + WRITE_CHUNK]
            ids = list({r["customer_id"] for r in part})
            known = set(conn.execute(
                select(campaign_members_table.c.customer_id)
                .where(campaign_members_table.c.campaign_id == campaign_id,
                       campaign_members_table.c.customer_id.in_(ids))).scalars())
            strangers = [c for c in ids if c not in known]
            if strangers:
                raise RecordError("customer_id", f"{strangers[0]!r} is not in campaign "
                                  f"{campaign_id!r}")
            conn.execute(delete(campaign_outcomes_table).where(
                campaign_outcomes_table.c.campaign_id == campaign_id,
                tuple_(campaign_outcomes_table.c.customer_id, campaign_outcomes_table.c.source)
                .in_([(r["customer_id"], r["source"]) for r in part])))
            conn.execute(campaign_outcomes_table.insert(),
                         [{**r, "campaign_id": campaign_id} for r in part])
    return len(clean)


def _campaign_exists(conn, campaign_id: str) -> object | None:
    return conn.execute(select(campaigns_table.c.campaign_id)
                        .where(campaigns_table.c.campaign_id == campaign_id)).first()


def customer_campaigns(engine: Engine, customer_id: str, limit: int = 50) -> list[dict]:
    """A customer's campaigns, newest first, for the customer page: campaign_id, name,
    created_at, as_of, model_version, arm, action_family, action, and `outcomes`: a list of
    {source, reached, result, reason, reason_text, recorded_at} (imports first)."""
    query = (select(campaigns_table.c.campaign_id, campaigns_table.c.name, campaigns_table.c.created_at,
                    campaigns_table.c.as_of, campaigns_table.c.model_version, campaigns_table.c.params,
                    campaign_members_table.c.arm,
                    campaign_members_table.c.action_family, campaign_members_table.c.action)
             .join(campaigns_table,
                   campaigns_table.c.campaign_id == campaign_members_table.c.campaign_id)
             .where(campaign_members_table.c.customer_id == customer_id)
             .order_by(campaigns_table.c.created_at.desc(), campaigns_table.c.campaign_id).limit(limit))
    with engine.connect() as conn:
        found = [dict(r._mapping) for r in conn.execute(query)]
        if not found:
            return []
        ids = [f["campaign_id"] for f in found]
        outs = conn.execute(
            select(campaign_outcomes_table).where(campaign_outcomes_table.c.customer_id == customer_id,
                                            campaign_outcomes_table.c.campaign_id.in_(ids))
            .order_by(campaign_outcomes_table.c.source.desc(), campaign_outcomes_table.c.id)).all()
    by_campaign: dict[str, list[dict]] = {i: [] for i in ids}
    for o in outs:
        m = o._mapping
        by_campaign[m["campaign_id"]].append(
            {k: m[k] for k in ("source", "reached", "result", "reason", "reason_text",
                               "recorded_at")})
    return [{**f, "outcomes": by_campaign[f["campaign_id"]]} for f in found]
