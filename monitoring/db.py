"""The monitor's database, reached through a URL (SQLAlchemy Core): SQLite by default, PostgreSQL for replicas.

Tables: ``halves`` (one side of a prediction waiting for the other), ``predictions``
(one row per car, request and response paired), ``feedback`` (the consumption a
stakeholder observed for a prediction). The schema is versioned: ``MIGRATIONS`` are
applied in order, each in its own transaction, and ``schema_version`` records the
last one, so any older database is brought up to date on start.

Every write is idempotent: halves and predictions have natural primary keys and are
inserted with ON CONFLICT DO NOTHING, so a redelivered event changes nothing. An id
that names two different requests (or responses) is ambiguous: which response answers
which request can no longer be told, so nothing under it is kept (``conflicts`` remembers
it until the halves' pairing window has passed) and its predictions are never joined.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from core.errors import MlopsError
from core.features import FEATURE_NAMES
from monitoring.events import Half

metadata = sa.MetaData()
schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))
halves = sa.Table(
    "halves",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("namespace", sa.String(200), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("received", sa.Float, nullable=False),
    sa.Column("model_id", sa.String(64)),
    sa.Column("rows", sa.Text, nullable=False),
)
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.String(64), nullable=False),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("namespace", sa.String(200), nullable=False),
    sa.Column("time", sa.Float, nullable=False),
    *(sa.Column(name, sa.Float, nullable=False) for name in FEATURE_NAMES),
    sa.Column("mpg", sa.Float, nullable=False),
    sa.Column("l_per_100km", sa.Float, nullable=False),
    sa.Column("outside_training_range", sa.String(200), nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("row", sa.Integer, primary_key=True),
    sa.Column("actual_mpg", sa.Float, nullable=False),
    sa.Column("reported", sa.Float, nullable=False),
    # who reported it: the client's address as nginx saw it, and the reporter a token names ("": untrusted)
    sa.Column("client", sa.String(100), nullable=False, server_default=""),
    sa.Column("reporter", sa.String(100), nullable=False, server_default=""),
)


#: One row per daily report the CronJob recorded (`mlops monitor report --record`): the monitor exposes the
#: latest one on /metrics, and Prometheus pages on its alerts; the report's Job succeeds either way (an alert is an
#: answer, and a failed Job turns the CronJob, and so the Application, Degraded in Argo CD >= 3.2).
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("time", sa.Float, primary_key=True),
    sa.Column("model_id", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("alerts", sa.Integer, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
)


#: Event ids seen with two different requests or two different responses: nothing under them is paired or kept.
conflicts = sa.Table(
    "conflicts",
    metadata,
    sa.Column("event_id", sa.String(200), primary_key=True),
    sa.Column("received", sa.Float, nullable=False),
)


class MonitorDatabaseError(MlopsError):
    """The database URL is unusable or the database cannot be reached."""


def _v1(connection: Connection) -> None:
    for table in (halves, predictions, feedback):
        table.create(connection)


def _v2(connection: Connection) -> None:
    """Reports read by model and time, expiry by arrival: index both (plain DDL: a migration is a fixed step,
    not the current table definitions, which a later migration may change)."""
    connection.exec_driver_sql("CREATE INDEX predictions_model_time ON predictions (model_id, time)")
    connection.exec_driver_sql("CREATE INDEX halves_received ON halves (received)")


def _v3(connection: Connection) -> None:
    """Feedback says who reported it (screening feedback before it becomes training data needs that). A
    database made at v1 with today's table definitions has the columns already."""
    present = {column["name"] for column in sa.inspect(connection).get_columns("feedback")}
    for column in ("client", "reporter"):
        if column not in present:
            connection.exec_driver_sql(f"ALTER TABLE feedback ADD COLUMN {column} VARCHAR(100) NOT NULL DEFAULT ''")


def _v4(connection: Connection) -> None:
    """The reports the daily CronJob records (their alerts go to Prometheus through the monitor's /metrics)."""
    if not sa.inspect(connection).has_table("reports"):
        reports.create(connection)


def _v5(connection: Connection) -> None:
    """Ids that named two different predictions (kept apart, never paired)."""
    if not sa.inspect(connection).has_table("conflicts"):
        conflicts.create(connection)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1, _v2, _v3, _v4, _v5]


def record_report(engine: Engine, model_id: str, rows: int, alerts: list[str]) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(reports).values(
                time=time.time(), model_id=model_id, rows=rows, alerts=len(alerts), summary="\n".join(alerts)
            )
        )


def latest_report(engine: Engine) -> dict | None:
    with engine.connect() as connection:
        row = connection.execute(sa.select(reports).order_by(reports.c.time.desc()).limit(1)).mappings().first()
    return dict(row) if row else None


def current_version(connection: Connection) -> int:
    if not sa.inspect(connection).has_table("schema_version"):
        return 0
    return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(engine: Engine, upto: int | None = None) -> int:
    """Apply the migrations the database has not seen (up to ``upto``); returns its version."""
    target = len(MIGRATIONS) if upto is None else upto
    with engine.begin() as connection:
        if not sa.inspect(connection).has_table("schema_version"):
            schema_version.create(connection)
    version = 0
    while True:
        with engine.begin() as connection:
            version = current_version(connection)
            if version >= target:
                return version
            MIGRATIONS[version](connection)
            connection.execute(sa.insert(schema_version).values(version=version + 1))


def connect(url: str, create: bool = True) -> Engine:
    """An engine for ``url`` with the schema up to date; one clear line when that is impossible.

    ``create`` False (readers: the report, ingest): a SQLite file that does not exist is an error, not a
    new empty database that would report "nothing recorded" for a mistyped path.
    """
    try:
        engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)  # no row data in any log
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
        raise MonitorDatabaseError(f"{url!r} is not a database URL (sqlite:///PATH or postgresql+psycopg://...)") from e
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:" and not Path(database).parent.is_dir():
            raise MonitorDatabaseError(f"the folder of the database {database} does not exist; create it first")
        if not create and database and database != ":memory:" and not Path(database).is_file():
            raise MonitorDatabaseError(
                f"no monitor database at {database}: check --db (the monitor writes {database} once it runs)"
            )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers (reports) never block the writer
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()

    try:
        migrate(engine)
    except sa.exc.OperationalError as e:
        raise MonitorDatabaseError(f"cannot open the monitor database {engine.url!r}: {e.orig}") from e
    return engine


def _insert_ignore(connection: Connection, table: sa.Table, rows: list[dict]) -> None:
    """Insert ``rows`` (all with the same keys), skipping any whose key is already stored.

    Plain SQL through the driver's executemany: the ingest path's hottest statement, and
    SQLAlchemy's per-statement compilation and row processing cost more than the insert.
    ``INSERT ... ON CONFLICT DO NOTHING`` is the same text in SQLite and PostgreSQL.
    """
    if not rows:
        return
    columns = list(rows[0])
    quote = connection.dialect.identifier_preparer.quote
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    names, marks = ", ".join(map(quote, columns)), ", ".join([mark] * len(columns))
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"  # noqa: S608 - schema names
    connection.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in rows])


def _paired_rows(request: dict, response: dict) -> list[dict]:
    cars, answers = orjson.loads(request["rows"]), orjson.loads(response["rows"])
    if len(cars) != len(answers):
        return []  # a response for other cars: never a prediction (the halves expire)
    return [
        {
            "request_id": request["event_id"],
            "row": index,
            "model_id": response["model_id"],
            "service": response["service"] or request["service"],
            "namespace": response["namespace"] or request["namespace"],
            "time": response["time"],
            **dict(zip(FEATURE_NAMES, car, strict=True)),
            "mpg": mpg,
            "l_per_100km": litres,
            "outside_training_range": ",".join(flags),
        }
        for index, (car, (mpg, litres, flags)) in enumerate(zip(cars, answers, strict=True))
    ]


def pair(connection: Connection, event_ids: Iterable[str] | None = None) -> int:
    """Turn every complete pair of halves (among ``event_ids``, or all) into prediction rows; returns how many."""
    query = sa.select(halves)
    if event_ids is not None:
        query = query.where(halves.c.event_id.in_(list(event_ids)))
    else:  # the sweep: ids with both halves, which replicas racing on one pair may have left
        complete = sa.select(halves.c.event_id).group_by(halves.c.event_id).having(sa.func.count() == 2)
        query = query.where(halves.c.event_id.in_(complete))
    found: dict[str, dict[str, dict]] = {}
    for row in connection.execute(query).mappings():
        found.setdefault(row["event_id"], {})[row["kind"]] = dict(row)
    complete_pairs = {eid: sides for eid, sides in found.items() if len(sides) == 2}
    rows = [r for sides in complete_pairs.values() for r in _paired_rows(sides["request"], sides["response"])]
    _insert_ignore(connection, predictions, rows)
    if complete_pairs:
        connection.execute(sa.delete(halves).where(halves.c.event_id.in_(list(complete_pairs))))
    return len(rows)


def _half_row(h: Half, now: float) -> dict:
    return {
        "event_id": h.event_id,
        "kind": h.kind,
        "service": h.service,
        "namespace": h.namespace,
        "time": h.time,
        "received": now,
        "model_id": h.model_id,
        "rows": orjson.dumps(h.rows).decode(),
    }


class Stored(NamedTuple):
    added: int  # prediction rows added
    conflicts: int  # ids found to name two different predictions (nothing under them is kept)


def _stored_sides(connection: Connection, ids: list[str]) -> dict[str, dict[str, tuple]]:
    """What is stored under ``ids``, per id and kind, in the form ``_content`` gives a half."""
    sides: dict[str, dict[str, tuple]] = {}
    for row in connection.execute(sa.select(halves).where(halves.c.event_id.in_(ids))).mappings():
        sides.setdefault(row["event_id"], {})[row["kind"]] = _content(row)
    paired: dict[str, list] = {}
    query = sa.select(predictions).where(predictions.c.request_id.in_(ids)).order_by(predictions.c.row)
    for row in connection.execute(query).mappings():
        paired.setdefault(row["request_id"], []).append(row)
    for event_id, found in paired.items():
        cars = [[row[name] for name in FEATURE_NAMES] for row in found]
        answers = [[row["mpg"], row["l_per_100km"], _flags(row["outside_training_range"])] for row in found]
        sides.setdefault(event_id, {}).update(
            request=(None, _canonical(cars)), response=(found[0]["model_id"], _canonical(answers))
        )
    return sides


def _flags(text: str) -> list[str]:
    return text.split(",") if text else []


def _canonical(value):
    """``value`` with every number a float (an event may say 4 where the database says 4.0)."""
    if isinstance(value, list):
        return tuple(_canonical(item) for item in value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _content(row: dict) -> tuple:
    """What makes a half this half: a redelivery has the same; another prediction under its id does not."""
    return (row["model_id"] if row["kind"] == "response" else None, _canonical(orjson.loads(row["rows"])))


def _forget(connection: Connection, ids: set[str], now: float) -> None:
    """Keep nothing under ``ids`` (and remember them, so a late half is not paired either)."""
    listed = list(ids)
    for table, column in ((halves, halves.c.event_id), (predictions, predictions.c.request_id),
                          (feedback, feedback.c.request_id)):  # fmt: skip
        connection.execute(sa.delete(table).where(column.in_(listed)))
    _insert_ignore(connection, conflicts, [{"event_id": event_id, "received": now} for event_id in listed])


def store_halves(connection: Connection, received: list[Half], now: float) -> Stored:
    """Store a batch of halves; returns prediction rows added and ids found ambiguous.

    A pair complete within the batch (the usual case: the logger posts request and
    response a moment apart) becomes prediction rows at once, never touching ``halves``;
    the rest are inserted there and paired with what earlier batches left. A redelivered
    event changes nothing either way. A half whose id already names a different half of
    its kind (in this batch, waiting, or paired) makes the id ambiguous: everything under
    it is dropped (its feedback too) and nothing under it is paired again.
    """
    by_id: dict[str, dict[str, dict]] = {}
    ambiguous: set[str] = set()
    for h in received:
        row = _half_row(h, now)
        seen = by_id.setdefault(h.event_id, {}).setdefault(h.kind, row)
        if seen is not row and _content(seen) != _content(row):
            ambiguous.add(h.event_id)
    if by_id:
        ids = list(by_id)
        known = set(connection.execute(sa.select(conflicts.c.event_id).where(conflicts.c.event_id.in_(ids))).scalars())
        for event_id, stored in _stored_sides(connection, ids).items():
            if any(kind in stored and stored[kind] != _content(row) for kind, row in by_id[event_id].items()):
                ambiguous.add(event_id)
        new = ambiguous - known
        if ambiguous:
            _forget(connection, ambiguous, now)
        for event_id in ambiguous | known:
            del by_id[event_id]
    else:
        new = set()
    complete = [sides for sides in by_id.values() if len(sides) == 2]
    rows = [r for sides in complete for r in _paired_rows(sides["request"], sides["response"])]
    _insert_ignore(connection, predictions, rows)
    single = [row for sides in by_id.values() if len(sides) == 1 for row in sides.values()]
    _insert_ignore(connection, halves, single)
    added = len(rows) + (pair(connection, {row["event_id"] for row in single}) if single else 0)
    return Stored(added, len(new))


def retain(connection: Connection, older_than: float) -> int:
    """Drop the predictions made before ``older_than`` that no feedback labels (labelled ones stay: they are what
    ``mlops data ingest --from-feedback`` reads, and feedback is rate-limited); returns how many rows."""
    labelled = sa.exists().where(feedback.c.request_id == predictions.c.request_id, feedback.c.row == predictions.c.row)
    return connection.execute(sa.delete(predictions).where(predictions.c.time < older_than, ~labelled)).rowcount


def expire(connection: Connection, older_than: float) -> int:
    """Drop halves whose other side never came (received before ``older_than``), and forget ambiguous ids seen
    before then (no half of theirs is left to pair); returns how many halves."""
    connection.execute(sa.delete(conflicts).where(conflicts.c.received < older_than))
    return connection.execute(sa.delete(halves).where(halves.c.received < older_than)).rowcount


def add_feedback(
    connection: Connection, request_id: str, row: int, actual_mpg: float, client: str = "", reporter: str = ""
) -> bool:
    """Record (or correct) what a car really did; False when no such prediction is stored.

    One upsert: two reports for one car at once both succeed, the later one wins (a delete then an insert
    raced into a unique violation).
    """
    known = connection.execute(
        sa.select(predictions.c.row).where(predictions.c.request_id == request_id, predictions.c.row == row)
    ).first()
    if known is None:
        return False
    values = {"actual_mpg": actual_mpg, "reported": time.time(), "client": client, "reporter": reporter}
    insert = _dialect_insert(connection)(feedback).values(request_id=request_id, row=row, **values)
    connection.execute(insert.on_conflict_do_update(index_elements=["request_id", "row"], set_=values))
    return True


def _dialect_insert(connection: Connection):
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def summary(connection: Connection) -> dict:
    """Counts, the models seen (latest first) and the feedback coverage."""
    total = connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar()
    labelled = connection.execute(sa.select(sa.func.count()).select_from(feedback)).scalar()
    waiting = connection.execute(sa.select(sa.func.count()).select_from(halves)).scalar()
    models = connection.execute(
        sa.select(
            predictions.c.model_id,
            predictions.c.namespace,
            sa.func.count().label("predictions"),
            sa.func.max(predictions.c.time).label("last_seen"),
        )
        .group_by(predictions.c.model_id, predictions.c.namespace)
        .order_by(sa.desc("last_seen"))
    ).mappings()
    return {
        "predictions": total,
        "feedback": labelled,
        "feedback_coverage": round(labelled / total, 6) if total else 0.0,
        "unpaired_halves": waiting,
        "models": [{str(key): value for key, value in m.items()} for m in models],  # quoted_name keys: plain str
    }
