"""The monitor's storage: pairing in either order, redelivery, expiry, feedback, migrations (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from monitoring import db
from monitoring.events import Half

MODEL = "7" * 64
CAR = [4.0, 140.0, 90.0, 2800.0, 15.5, 1976.0, 1.0]


def request(event_id: str = "r1", cars=(CAR,)) -> Half:
    return Half(event_id, "request", "mpg", "mpg-staging", 1000.0, [list(c) for c in cars])


def response(event_id: str = "r1", answers=((23.4, 10.05, []),)) -> Half:
    return Half(event_id, "response", "mpg", "mpg-staging", 1000.5, [list(a) for a in answers], MODEL)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        yield db.connect(f"sqlite:///{tmp_path / 'monitor.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        engine = db.connect(url)
        yield engine
        with engine.begin() as connection:  # the session's server is shared: leave it empty
            for table in (db.predictions, db.feedback, db.halves, db.conflicts):
                connection.execute(sa.delete(table))


def store(engine, *halves: Half, now: float = 2000.0) -> int:
    with engine.begin() as connection:
        return db.store_halves(connection, list(halves), now).added


def rows(engine) -> list[dict]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.select(db.predictions)).mappings()]


@pytest.mark.parametrize("order", ["request first", "response first"])
def test_a_request_and_its_response_pair_in_either_order(engine, order):
    first, second = (request(), response()) if order == "request first" else (response(), request())
    assert store(engine, first) == 0
    assert store(engine, second) == 1
    [row] = rows(engine)
    assert row["request_id"] == "r1" and row["model_id"] == MODEL and row["weight"] == 2800.0
    assert row["mpg"] == 23.4 and row["namespace"] == "mpg-staging" and row["time"] == 1000.5
    with engine.connect() as connection:
        assert db.summary(connection)["unpaired_halves"] == 0


def test_redelivered_events_change_nothing(engine):
    store(engine, request(), response())
    for _ in range(3):
        store(engine, request())
        store(engine, response())
    assert len(rows(engine)) == 1


HEAVY = [8.0, 351.0, 142.0, 3955.0, 13.2, 1981.0, 1.0]


def ambiguous(engine, *halves: Half) -> int:
    with engine.begin() as connection:
        return db.store_halves(connection, list(halves), 2000.0).conflicts


# Two predictions under one id (a caller that chose the id: the review raced a heavy V8 and a light car and found
# 0.5-2 % stored crosswise, the V8 with the light car's 37.3 mpg). Every order the halves can arrive in, in one
# batch or spread over several: nothing under the id is kept, and nothing is paired under it afterwards.
LIGHT_ANSWER, HEAVY_ANSWER = ((37.3, 6.3, []),), ((20.0, 11.8, []),)
ORDERS = {
    "one batch": [["A", "a", "B", "b"]],
    "crosswise, one at a time": [["A"], ["b"], ["B"], ["a"]],
    "paired, then replayed": [["A", "a"], ["B"], ["b"]],
    "paired, then a second response only": [["A", "a"], ["b"]],
    "two requests waiting": [["A"], ["B"], ["a"], ["b"]],
    "responses first": [["b"], ["a"], ["A", "B"]],
}


@pytest.mark.parametrize("order", ORDERS)
def test_an_id_naming_two_predictions_keeps_nothing_and_pairs_nothing_later(engine, order):
    halves = {
        "A": request("dup"),
        "a": response("dup", LIGHT_ANSWER),
        "B": request("dup", (HEAVY,)),
        "b": response("dup", HEAVY_ANSWER),
    }
    found = sum(ambiguous(engine, *(halves[name] for name in batch)) for batch in ORDERS[order])
    assert found == 1, "one ambiguous id, counted once"
    assert rows(engine) == [], "no request paired with a response that may be another's"
    with engine.begin() as connection:
        assert not db.add_feedback(connection, "dup", 0, 37.0), "feedback finds no prediction under it"
        assert connection.execute(sa.select(sa.func.count()).select_from(db.halves)).scalar() == 0
    assert store(engine, request("dup"), response("dup", LIGHT_ANSWER)) == 0, "a later pair under it is refused"
    assert store(engine, request("other"), response("other")) == 1, "other ids are untouched"


def test_an_id_found_ambiguous_loses_its_feedback_too(engine):
    store(engine, request("dup"), response("dup"))
    with engine.begin() as connection:
        assert db.add_feedback(connection, "dup", 0, 25.0)
    assert ambiguous(engine, request("dup", (HEAVY,))) == 1
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(db.feedback)).scalar() == 0


def test_a_redelivery_in_another_number_form_is_not_a_second_prediction(engine):
    """The agent may resend an event; JSON may say 4 where the database says 4.0."""
    store(engine, request(), response())
    as_ints = request("r1", ([int(v) if v.is_integer() else v for v in CAR],))
    assert ambiguous(engine, as_ints, response()) == 0
    assert len(rows(engine)) == 1


def test_an_ambiguous_id_is_forgotten_once_its_pairing_window_has_passed(engine):
    ambiguous(engine, request("dup"), request("dup", (HEAVY,)))
    with engine.begin() as connection:
        db.expire(connection, older_than=2001.0)
        assert connection.execute(sa.select(sa.func.count()).select_from(db.conflicts)).scalar() == 0


def test_a_batch_of_cars_becomes_one_row_each(engine):
    cars = (CAR, [8.0, 350.0, 165.0, 3693.0, 11.5, 1970.0, 1.0])
    store(engine, request("b", cars), response("b", ((23.4, 10.0, []), (13.0, 18.1, ["weight"]))))
    assert [(r["row"], r["outside_training_range"]) for r in sorted(rows(engine), key=lambda r: r["row"])] == [
        (0, ""),
        (1, "weight"),
    ]


def test_an_unpaired_half_expires(engine):
    store(engine, request("lonely"), now=1000.0)
    with engine.begin() as connection:
        assert db.expire(connection, older_than=999.0) == 0
        assert db.expire(connection, older_than=1001.0) == 1
    store(engine, response("lonely"))
    assert rows(engine) == [], "the other half arrived too late: no prediction"


def test_the_sweep_pairs_halves_stored_by_different_replicas(engine):
    """Two replicas each store one half in their own transaction: neither saw the other; the sweep pairs them."""
    with engine.begin() as connection:
        db._insert_ignore(connection, db.halves, [_raw(request())])
    with engine.begin() as connection:
        db._insert_ignore(connection, db.halves, [_raw(response())])
    with engine.begin() as connection:
        assert db.pair(connection) == 1
    assert len(rows(engine)) == 1


def _raw(half: Half) -> dict:
    import orjson

    return {
        "event_id": half.event_id,
        "kind": half.kind,
        "service": half.service,
        "namespace": half.namespace,
        "time": half.time,
        "received": 1.0,
        "model_id": half.model_id,
        "rows": orjson.dumps(half.rows).decode(),
    }


def test_feedback_needs_a_stored_prediction_and_a_correction_replaces_it(engine):
    with engine.begin() as connection:
        assert not db.add_feedback(connection, "r1", 0, 25.0)
    store(engine, request(), response())
    with engine.begin() as connection:
        assert db.add_feedback(connection, "r1", 0, 25.0)
        assert not db.add_feedback(connection, "r1", 3, 25.0), "no row 3 in that request"
        assert db.add_feedback(connection, "r1", 0, 26.0)
    with engine.connect() as connection:
        assert connection.execute(sa.select(db.feedback.c.actual_mpg)).scalars().all() == [26.0]
        summary = db.summary(connection)
    assert summary["feedback"] == 1 and summary["feedback_coverage"] == 1.0
    assert summary["models"][0]["model_id"] == MODEL


def test_migrations_bring_an_old_database_up_to_date_and_keep_its_rows(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    assert db.migrate(engine, upto=1) == 1
    with engine.begin() as connection:
        paired = db._paired_rows(db._half_row(request(), 2000.0), db._half_row(response(), 2000.0))
        db._insert_ignore(connection, db.predictions, paired)  # as version 1 stored a prediction
        assert "predictions_model_time" not in {i["name"] for i in sa.inspect(connection).get_indexes("predictions")}
    upgraded = db.connect(f"sqlite:///{tmp_path / 'old.db'}")
    with upgraded.connect() as connection:
        assert db.current_version(connection) == len(db.MIGRATIONS) == 5
        assert "predictions_model_time" in {i["name"] for i in sa.inspect(connection).get_indexes("predictions")}
        assert sa.inspect(connection).has_table("reports"), "v4: the daily reports the CronJob records"
        assert sa.inspect(connection).has_table("conflicts"), "v5: ids that named two predictions"
    assert len(rows(upgraded)) == 1
    assert db.migrate(upgraded) == 5, "running them again changes nothing"


def test_a_bad_database_url_is_one_clear_error(tmp_path):
    with pytest.raises(db.MonitorDatabaseError, match="not a database URL"):
        db.connect("monitor.db")
    with pytest.raises(db.MonitorDatabaseError, match="does not exist"):
        db.connect(f"sqlite:///{tmp_path / 'no' / 'monitor.db'}")
    with pytest.raises(db.MonitorDatabaseError, match="cannot open the monitor database"):
        db.connect("postgresql+psycopg://nobody@127.0.0.1:9/none")


def test_a_v2_database_gets_the_reporter_columns_and_keeps_its_feedback(tmp_path):
    """v3 adds who reported a feedback; a v2 database (feedback without those columns) keeps its rows."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'v2.db'}")
    with engine.begin() as connection:
        for statement in (
            "CREATE TABLE schema_version (version INTEGER NOT NULL)",
            "INSERT INTO schema_version VALUES (1), (2)",
            "CREATE TABLE feedback (request_id VARCHAR(200) NOT NULL, row INTEGER NOT NULL, actual_mpg FLOAT NOT NULL,"
            " reported FLOAT NOT NULL, PRIMARY KEY (request_id, row))",
            "INSERT INTO feedback VALUES ('old', 0, 30.0, 1.0)",
        ):
            connection.exec_driver_sql(statement)
    assert db.migrate(engine) == len(db.MIGRATIONS)
    with engine.connect() as connection:
        [row] = connection.execute(sa.select(db.feedback)).mappings()
    assert (row["request_id"], row["actual_mpg"], row["client"], row["reporter"]) == ("old", 30.0, "", "")


def test_predictions_older_than_the_retention_go_and_those_with_feedback_stay(engine):
    """The review's flood: one client stored 569,000 rows in 30 s and nothing ever expired. Stored predictions
    are now kept --retain-days (90 by default); the ones feedback labels stay until ingest reads them."""
    store(engine, request("old"), response("old"), request("labelled"), response("labelled"))
    store(engine, request("new"), response("new"))
    with engine.begin() as connection:
        assert db.add_feedback(connection, "labelled", 0, 25.0)
        connection.execute(sa.update(db.predictions).where(db.predictions.c.request_id == "new").values(time=5000.0))
    with engine.begin() as connection:
        assert db.retain(connection, older_than=2000.0) == 1
    assert sorted(r["request_id"] for r in rows(engine)) == ["labelled", "new"]


def test_the_monitors_writer_applies_the_retention_as_it_commits(engine):
    from monitoring.service import Metrics, Writer

    metrics = Metrics()
    writer = Writer(engine, metrics, pair_timeout=600, retain=86400)
    assert writer._commit([request("ancient"), response("ancient")]) == 1  # stored, dated 1970: then dropped
    assert rows(engine) == [] and metrics.expired._value.get() == 1
    forever = Writer(engine, Metrics(), pair_timeout=600)  # retain 0: kept for ever
    assert forever._commit([request("kept"), response("kept")]) == 1 and len(rows(engine)) == 1
    writer.connection.close()
    forever.connection.close()
