"""One engine per process and a unit of work per request, on SQLite or PostgreSQL.

SQLite runs in WAL mode with a busy timeout; a write unit of work opens with
BEGIN IMMEDIATE so that two writers queue on the database lock instead of
deadlocking when a read lock is upgraded. PostgreSQL writers lock rows instead.
"""
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
# One lock per SQLite file in this process: writer threads queue on it in order, instead of
# polling SQLite's lock with growing sleeps (which gave writes a p99 of 400 ms under load).
SQLITE_WRITER_TURNS: dict[str, threading.Lock] = {}


def json_dumps(value) -> str:
    return orjson.dumps(value).decode()


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url)
    return create_engine(
        url, pool_size=10, max_overflow=20,
        json_serializer=json_dumps, json_deserializer=orjson.loads,
    )


def sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, json_serializer=json_dumps, json_deserializer=orjson.loads,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )
    SQLITE_WRITER_TURNS.setdefault(str(url.database), threading.Lock())
    event.listen(engine, "connect", configure_sqlite_connection)
    event.listen(engine, "begin", begin_sqlite_transaction)
    return engine


def configure_sqlite_connection(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see begin_sqlite_transaction
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def begin_sqlite_transaction(connection: Connection) -> None:
    writing = connection.get_execution_options().get("ehr_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


@contextmanager
def write_unit(engine: Engine):
    """A connection in a transaction that may write; commits on success, rolls back on error."""
    with writer_turn(engine), engine.connect() as connection:
        connection.execution_options(ehr_write=True)
        with connection.begin():
            yield connection


def writer_turn(engine: Engine):
    """This process's turn to write an SQLite file; PostgreSQL writers need none."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    return SQLITE_WRITER_TURNS.get(str(engine.url.database), nullcontext())


@contextmanager
def read_unit(engine: Engine):
    """A connection for reading. On PostgreSQL it runs in autocommit: a read needs no BEGIN and
    COMMIT round trips, and each statement sees committed data."""
    with engine.connect() as connection:
        if is_postgresql(connection):
            connection.execution_options(isolation_level="AUTOCOMMIT")
        with connection.begin():
            yield connection
