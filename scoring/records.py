"""The product's store of records: what was predicted and what people did about it. The
prediction log (`predictions`, written by scoring/predlog.py), the contacts a retention lead
records on /review, and the campaign and monitoring records.

One database, SQLAlchemy Core: a SQLite file `mlruns/churn.db` under the store by default, or
any URL in CHURN_DATABASE_URL. Tables are created on first use, not at import. Every write is
one transaction; inputs are checked first (`check_contact`) and a bad one is a `RecordError`
naming the field.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    false,
    func,
    inspect,
    select,
    text,
)

from scoring.settings import Settings

# what came of a contact, in the words the page shows; campaign reports count these
OUTCOMES: dict[str, str] = {
    "reached": "Reached, talked it through",
    "retained": "Agreed to stay",
    "offer_accepted": "Accepted an offer",
    "callback": "Asked to be called back",
    "no_answer": "No answer",
    "leaving": "Still plans to leave",
}

metadata = MetaData()

contacts = Table(
    "contacts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_id", String(200), nullable=False, index=True),
    Column("owner", String(200), nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("outcome", String(40), nullable=False),
    Column("created_at", DateTime, nullable=False),  # UTC, naive
    Column("model_version", String(200), nullable=True),  # the model that scored the customer
    Column("as_of", DateTime, nullable=True),  # the scores' observation time
)

# The prediction log: one row per prediction made by /predict, /predict_features, /batch or
# `churn score`. `record_id` is made by the writer, so a retried write never stores a row twice.
predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_id", String(32), nullable=False, unique=True),
    Column("customer_id", String(200), nullable=False),
    Column("as_of", DateTime, nullable=False),  # UTC, naive: the observation time
    Column("probability", Float, nullable=False),
    Column("band", String(20), nullable=False),
    Column("reasons", Text, nullable=False, default="[]"),  # JSON list of feature names, top first
    Column("model_version", String(200), nullable=False),
    # the registered model the version belongs to (None: a model outside the registry)
    Column("model_name", String(200), nullable=True),
    Column("source", String(40), nullable=False),  # predict, predict_features, batch, score
    Column("created_at", DateTime, nullable=False),  # UTC, naive: when it was made
    # a call made while trying the service (X-Churn-Test, CHURN_TEST_TRAFFIC): kept, never
    # monitored; added to a log created before it by `engine_for`
    Column("test", Boolean, nullable=False, default=False, server_default=false()),
    Index("ix_predictions_version_as_of", "model_name", "model_version", "as_of"),
    Index("ix_predictions_customer", "customer_id", "as_of"),
)
PREDICTION_COLUMNS = ("record_id", "customer_id", "as_of", "probability", "band", "reasons",
                      "model_version", "model_name", "source", "created_at", "test")


class RecordError(ValueError):
    """A record that cannot be stored as given; `field` names the input."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass(frozen=True)
class Contact:
    customer_id: str
    owner: str
    note: str
    outcome: str
    created_at: datetime | None = None
    model_version: str | None = None
    as_of: datetime | None = None
    id: int | None = None

    @property
    def outcome_text(self) -> str:
        return OUTCOMES.get(self.outcome, self.outcome)


def database_url(settings: Settings) -> str:
    return settings.database_url or f"sqlite:///{settings.mlruns / 'churn.db'}"


_engines: dict[str, tuple[Engine, int]] = {}
_engines_lock = threading.Lock()


def engine_for(settings: Settings) -> Engine:
    """The store's engine, one per URL in this process, with its tables created: every table
    defined on `metadata` so far, including those of modules imported since the last call."""
    url = database_url(settings)
    with _engines_lock:
        engine, known = _engines.get(url, (None, 0))
        if engine is None:
            if url.startswith("sqlite:///") and settings.database_url is None:
                settings.mlruns.mkdir(parents=True, exist_ok=True)
            # SQLite: wait for another process's write instead of failing at once
            args = {"timeout": 30} if url.startswith("sqlite") else {}
            engine = create_engine(url, connect_args=args)
        if known != len(metadata.tables):
            metadata.create_all(engine)
            add_missing_columns(engine)
            _engines[url] = (engine, len(metadata.tables))
        return engine


# columns added to a table after its first release: (table, column, its SQL definition per
# dialect); `create_all` makes missing tables only, so an existing table gets them here
_ADDED_COLUMNS = (("predictions", "test", {"sqlite": "BOOLEAN NOT NULL DEFAULT 0",
                                           "postgresql": "BOOLEAN NOT NULL DEFAULT FALSE"}),)


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns an existing table lacks (ALTER TABLE ... ADD COLUMN with its default, so
    every row already stored gets it); returns 'table.column' for each one added. Another
    process adding the same column at the same time is no error."""
    added = []
    for table, column, definitions in _ADDED_COLUMNS:
        if column in {c["name"] for c in inspect(engine).get_columns(table)}:
            continue
        ddl = definitions.get(engine.dialect.name, definitions["postgresql"])
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            added.append(f"{table}.{column}")
        except Exception:
            if column not in {c["name"] for c in inspect(engine).get_columns(table)}:
                raise
    return added


def _clean(value: object, field: str, max_chars: int, required: bool) -> str:
    if not isinstance(value, str):
        raise RecordError(field, "must be text")
    value = value.strip()
    if required and not value:
        raise RecordError(field, "is required")
    if len(value) > max_chars:
        raise RecordError(field, f"is {len(value):,} characters; at most {max_chars:,}")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise RecordError(field, "contains control characters")
    return value


def check_contact(customer_id: object, owner: object, note: object, outcome: object,
                  settings: Settings) -> Contact:
    """A contact from untrusted input, or RecordError naming the first bad field."""
    customer = _clean(customer_id, "customer_id", settings.max_id_chars, required=True)
    who = _clean(owner, "owner", settings.contact_owner_max_chars, required=True)
    if "\n" in who or "\r" in who:
        raise RecordError("owner", "must be one line")
    text = _clean("" if note is None else note, "note", settings.contact_note_max_chars,
                  required=False)
    if outcome not in OUTCOMES:
        raise RecordError("outcome", "must be one of " + ", ".join(OUTCOMES))
    return Contact(customer, who, text, str(outcome))


def add_contact(engine: Engine, contact: Contact, model_version: str | None = None,
                as_of: datetime | None = None, now: datetime | None = None) -> Contact:
    """Store one checked contact in its own transaction; returns it with its id and time."""
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    row = {"customer_id": contact.customer_id, "owner": contact.owner, "note": contact.note,
           "outcome": contact.outcome, "created_at": created, "model_version": model_version,
           "as_of": as_of}
    with engine.begin() as conn:
        new_id = conn.execute(contacts.insert().values(**row)).inserted_primary_key[0]
    return Contact(**{**row, "id": int(new_id)})


def _contact(row: object) -> Contact:
    m = row._mapping  # type: ignore[attr-defined]
    return Contact(m["customer_id"], m["owner"], m["note"], m["outcome"], m["created_at"],
                   m["model_version"], m["as_of"], m["id"])


def contacts_of(engine: Engine, customer_id: str, limit: int = 50) -> list[Contact]:
    """A customer's contacts, newest first."""
    query = (select(contacts).where(contacts.c.customer_id == customer_id)
             .order_by(contacts.c.created_at.desc(), contacts.c.id.desc()).limit(limit))
    with engine.connect() as conn:
        return [_contact(r) for r in conn.execute(query)]


def latest_contacts(engine: Engine, customer_ids: Sequence[str]) -> dict[str, Contact]:
    """The newest contact of each of these customers that has one."""
    ids = list(dict.fromkeys(customer_ids))
    if not ids:
        return {}
    newest = (select(func.max(contacts.c.id).label("id"))
              .where(contacts.c.customer_id.in_(ids)).group_by(contacts.c.customer_id))
    query = select(contacts).where(contacts.c.id.in_(newest))
    with engine.connect() as conn:
        return {c.customer_id: c for c in map(_contact, conn.execute(query))}


# -- the prediction log -------------------------------------------------------------------------


def write_predictions(engine: Engine, rows: Sequence[dict]) -> int:
    """Store prediction rows (PREDICTION_COLUMNS; `reasons` a list or JSON text) in one
    transaction: all or none. Rows whose record_id is already stored are left out, so a write
    retried after an unclear failure stores each row once. Returns the rows stored."""
    if not rows:
        return 0
    with engine.begin() as conn:
        return insert_predictions(conn, rows)


def insert_predictions(conn: Connection, rows: Sequence[dict]) -> int:
    """`write_predictions` inside the caller's transaction, so that many chunks can be stored
    all or none (`scoring.predlog.write_run`)."""
    if not rows:
        return 0
    clean = [{**r, "model_name": r.get("model_name"), "test": bool(r.get("test", False)),
              "reasons": r["reasons"] if isinstance(r["reasons"], str)
              else json.dumps(list(r["reasons"]))} for r in rows]
    stored = 0
    upsert = _insert_if_new(conn.dialect.name)
    for i in range(0, len(clean), WRITE_CHUNK):  # bound the statement's parameters
        part = clean[i:i + WRITE_CHUNK]
        if upsert is not None:  # one statement: no read before the write, no lock upgrade
            stored += len(conn.execute(upsert, part).all())
            continue
        ids = [r["record_id"] for r in part]
        seen = set(conn.execute(select(predictions.c.record_id)
                                .where(predictions.c.record_id.in_(ids))).scalars())
        fresh = [r for r in part if r["record_id"] not in seen]
        if fresh:
            conn.execute(predictions.insert(), fresh)
        stored += len(fresh)
    return stored


def _insert_if_new(dialect: str):
    """INSERT ... ON CONFLICT (record_id) DO NOTHING where the database has it."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        return None
    return (insert(predictions).on_conflict_do_nothing(index_elements=["record_id"])
            .returning(predictions.c.id))  # the rows stored (executemany's rowcount is not kept)


WRITE_CHUNK = 5_000


def read_predictions(engine: Engine, since: datetime | None = None, until: datetime | None = None,
                     model_version: str | None = None, source: str | None = None,
                     model_name: str | None = None, test: bool | None = None):
    """Logged predictions as a DataFrame (PREDICTION_COLUMNS, `reasons` as JSON text), filtered
    by observation time (`since` <= as_of < `until`, naive UTC), model name and version,
    source, and whether they were test calls (`test`; None: both)."""
    import pandas as pd

    query = select(*(predictions.c[c] for c in PREDICTION_COLUMNS)).order_by(predictions.c.id)
    if since is not None:
        query = query.where(predictions.c.as_of >= since)
    if until is not None:
        query = query.where(predictions.c.as_of < until)
    if model_version is not None:
        query = query.where(predictions.c.model_version == model_version)
    if model_name is not None:
        query = query.where(predictions.c.model_name == model_name)
    if source is not None:
        query = query.where(predictions.c.source == source)
    if test is not None:
        query = query.where(predictions.c.test == test)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
