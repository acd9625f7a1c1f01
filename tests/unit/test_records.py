"""The product's store of records: contacts are checked, written in one transaction each and read
back newest first; the default database is a SQLite file under the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from scoring.records import (
    OUTCOMES,
    RecordError,
    add_contact,
    check_contact,
    contacts_of,
    database_url,
    engine_for,
    latest_contacts,
    read_predictions,
    write_predictions,
)
from scoring.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, contact_owner_max_chars=20, contact_note_max_chars=50)


def test_default_store_is_a_sqlite_file_under_mlruns(settings, tmp_path):
    assert database_url(settings) == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'churn.db'}"
    engine = engine_for(settings)
    assert (tmp_path / "mlruns" / "churn.db").exists()
    columns = [c["name"] for c in inspect(engine).get_columns("contacts")]
    assert columns == ["id", "customer_id", "owner", "note", "outcome", "created_at",
                       "model_version", "as_of"]


def test_a_database_url_setting_moves_the_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    settings = Settings(home=tmp_path / "home", database_url=url)
    assert database_url(settings) == url
    engine_for(settings)
    assert (tmp_path / "elsewhere.db").exists() and not (tmp_path / "home").exists()


def test_contacts_are_stored_and_read_back_newest_first(settings):
    engine = engine_for(settings)
    start = datetime(2026, 6, 16, 9, 0, tzinfo=UTC)
    first = add_contact(engine, check_contact("c1", " Ann ", "called", "no_answer", settings),
                        "churn v3", datetime(2026, 6, 15), now=start)
    add_contact(engine, check_contact("c2", "Bo", "", "retained", settings), now=start)
    second = add_contact(engine, check_contact("c1", "Ann", "talked\nagain", "retained", settings),
                         now=start + timedelta(hours=1))
    got = contacts_of(engine, "c1")
    assert [c.id for c in got] == [second.id, first.id]
    assert got[1].owner == "Ann" and got[1].note == "called" and got[1].model_version == "churn v3"
    assert got[1].as_of == datetime(2026, 6, 15) and got[1].created_at == datetime(2026, 6, 16, 9)
    assert got[0].note == "talked\nagain" and got[0].outcome_text == OUTCOMES["retained"]
    latest = latest_contacts(engine, ["c1", "c2", "c3"])
    assert set(latest) == {"c1", "c2"} and latest["c1"].id == second.id
    assert latest_contacts(engine, []) == {}


@pytest.mark.parametrize(("args", "field"), [
    (("c1", "", "n", "retained"), "owner"),
    (("c1", "   ", "n", "retained"), "owner"),
    (("c1", "x" * 21, "n", "retained"), "owner"),
    (("c1", "Ann\nBo", "n", "retained"), "owner"),
    (("c1", "Ann", "y" * 51, "retained"), "note"),
    (("c1", "Ann", "bell\x07", "retained"), "note"),
    (("c1", "Ann", "n", "maybe"), "outcome"),
    (("c1", "Ann", "n", ""), "outcome"),
    (("", "Ann", "n", "retained"), "customer_id"),
    (("c1", 5, "n", "retained"), "owner"),
])
def test_bad_input_names_the_field(settings, args, field):
    with pytest.raises(RecordError) as info:
        check_contact(*args, settings=settings)
    assert info.value.field == field


def test_a_failed_write_leaves_nothing_behind(settings):
    engine = engine_for(settings)
    from scoring.records import contacts

    with pytest.raises(Exception), engine.begin() as conn:  # noqa: B017, PT011
        conn.execute(contacts.insert().values(customer_id="c9", owner="Ann", note="",
                                              outcome="retained", created_at=datetime(2026, 1, 1)))
        conn.execute(contacts.insert().values(customer_id="c9"))  # NOT NULL owner: fails
    assert contacts_of(engine, "c9") == []


def test_prediction_log_stores_each_record_once_and_reads_back_filtered(tmp_path):
    engine = engine_for(Settings(home=tmp_path))

    def row(i, version):
        return {"record_id": f"r{i}", "customer_id": f"c{i}", "as_of": datetime(2026, 1, 1 + i),
                "probability": i / 10, "band": "low", "reasons": ["n_login_30d"],
                "model_version": version, "source": "score", "created_at": datetime(2026, 2, 1)}
    batch = [row(i, "1") for i in range(3)] + [row(3, "2")]
    assert write_predictions(engine, batch) == 4
    assert write_predictions(engine, batch[:2] + [row(4, "2")]) == 1  # a retry adds only the new
    assert len(read_predictions(engine)) == 5
    got = read_predictions(engine, since=datetime(2026, 1, 2), model_version="1")
    assert got["model_name"].isna().all()  # rows without a registered model's name
    assert read_predictions(engine, model_name="churn").empty
    assert got["customer_id"].tolist() == ["c1", "c2"]
    assert got["reasons"].iloc[0] == '["n_login_30d"]'
