"""One engine per process and a unit of work per request, on SQLite or PostgreSQL.

SQLite runs in WAL mode with a busy timeout; a write unit of work opens with
BEGIN IMMEDIATE so that two writers queue on the database lock instead of
deadlocking when a read lock is upgraded. PostgreSQL writers lock rows instead.
"""
import threading
import time
from contextlib import contextmanager, nullcontext
from functools import cache
from operator import itemgetter
from pathlib import Path

import orjson
from psycopg.pq import TransactionStatus
from sqlalchemy import (
    ARRAY, JSON, Column, ColumnElement, Connection, Engine, Table, any_, bindparam, cast, create_engine, event, func, insert, select, text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.sql.dml import Insert
from sqlalchemy.engine import URL, make_url

from app.config import Database
from app.errors import DatabaseUnavailable
from app.model.ordering import in_element_order
from app.protection.service import PROTECTION, open_protection
from app.store.turns import let_others_run

SQLITE_BUSY_TIMEOUT_MS = 30_000
# One lock per SQLite file in this process: writer threads queue on it in order, instead of
# polling SQLite's lock with growing sleeps (which gave writes a p99 of 400 ms under load).
SQLITE_WRITER_TURNS: dict[str, threading.Lock] = {}
# Plan every execution with its own values: blind to how selective a code or date is, generic plans made searches 4-7
# times slower (docs/benchmarks.md); planning a search costs 0.3-2 ms. So psycopg prepares only the statements marked
# PREPARED (a write's statement, a row read by its key), once one has run 5 times (its own rule: a statement of a rare
# shape is not worth a round trip to prepare, nor a place in its cache of 100), and sends every other one unnamed,
# which PostgreSQL plans with its values each time. A PREPARED statement's best plan is the same for any values once
# the tables are large (an index lookup per row), and planning a write's CTE anew cost PostgreSQL a third of its CPU
# per write; but a plan made while the tables are small scans them, and it stays while they grow (until an ANALYZE,
# which a database without autovacuum never runs). So a connection runs with force_custom_plan until the resource
# table has GENERIC_PLAN_MIN_PAGES: when the pool hands it out, it looks again every SIZE_CHECK_SECONDS, and once the
# table is that large it lets PostgreSQL keep plans (plan_cache_mode=auto).
# Sessions also run in UTC: psycopg returns timestamptz values in the session's zone, and in one east of UTC
# the latest instant we store (9999-12-31T23:59:59.999999Z, app/model/instants.py) falls in year 10000,
# which Python cannot hold.
POSTGRESQL_OPTIONS = "-c plan_cache_mode=force_custom_plan -c TimeZone=UTC"
PREPARED = "ehr_prepared"
GENERIC_PLAN_MIN_PAGES = 1000  # 8 MB: a few thousand resources
SIZE_CHECK_SECONDS = 10
KEEPS_PLANS, SIZE_CHECKED_AT = "ehr_keeps_plans", "ehr_size_checked_at"  # in a pooled connection's info
SQLITE_ERROR = 1  # SQLite's generic result code: the statement's own fault (no such table, a syntax error)


def json_dumps(value) -> str:
    return orjson.dumps(value).decode()


def jsonb_loads(text: str | bytes):
    """A JSONB value as Python; a resource in FHIR's element order again, which JSONB does not keep (it sorts keys by
    length). Bodies are written in that order, so SQLite's JSON text gives it back as it is."""
    value = orjson.loads(text)
    return in_element_order(value) if isinstance(value, dict) and "resourceType" in value else value


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return sqlite_engine(url)
    engine = create_engine(
        url, pool_size=10, max_overflow=20,
        json_serializer=json_dumps, json_deserializer=jsonb_loads,
        connect_args={"options": " ".join(filter(None, (url.query.get("options"), POSTGRESQL_OPTIONS)))},
    )
    event.listen(engine, "checkout", keep_plans_once_large)
    event.listen(engine, "do_execute", execute_prepared_when_marked)
    return engine


def keep_plans_once_large(dbapi_connection, connection_record, _proxy) -> None:
    """Switch this connection to plan_cache_mode=auto once the resource table has GENERIC_PLAN_MIN_PAGES (its size on
    disk now, which needs no statistics); looked at most every SIZE_CHECK_SECONDS."""
    info, now = connection_record.info, time.monotonic()
    if info.get(KEEPS_PLANS) or now - info.get(SIZE_CHECKED_AT, -SIZE_CHECK_SECONDS) < SIZE_CHECK_SECONDS:
        return
    info[SIZE_CHECKED_AT] = now
    size = dbapi_connection.execute("SELECT pg_relation_size(to_regclass('resource')) / current_setting('block_size')::int").fetchone()[0]
    if size is not None and size >= GENERIC_PLAN_MIN_PAGES:
        dbapi_connection.execute("SET plan_cache_mode = auto")
        info[KEEPS_PLANS] = True
    dbapi_connection.commit()


def execute_prepared_when_marked(cursor, statement, parameters, context) -> bool:
    """psycopg prepares a statement marked PREPARED by its own rule and never any other (see PREPARED). True: it ran."""
    cursor.execute(statement, parameters, prepare=None if context.execution_options.get(PREPARED) else False)
    return True


def open_database(database: Database) -> Engine:
    """The engine of `database`; its units of work check references as `database.integrity` says, and protect fields as
    `database.protection` says (KeyFileError or PathError when that cannot be done)."""
    engine = make_engine(database.url)
    protection = open_protection(engine, database.protection)
    return engine.execution_options(ehr_integrity=database.integrity, **{PROTECTION: protection})


def is_missing_database(url: URL) -> bool:
    """True when the PostgreSQL server of `url` answers but has no database of its name (asked in the server's
    maintenance database `postgres`: the refusal's own words come in the server's language)."""
    maintenance = make_engine(url.set(database="postgres"))
    try:
        with maintenance.connect() as connection:
            found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}).first()
        return found is None
    except SQLAlchemyError:
        return False
    finally:
        maintenance.dispose()


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


def is_disconnect(error: Exception) -> bool:
    """True for the error of a connection the database dropped (a restart): SQLAlchemy then renews the pool, so the
    work can be tried again once."""
    cause = error.__cause__ if isinstance(error, DatabaseUnavailable) else error
    return isinstance(cause, DBAPIError) and cause.connection_invalidated


def is_unavailability(error: Exception) -> bool:
    """True for an error that says the database is away or too busy, not that a statement is wrong: a connection lost
    or refused, no pooled connection free in time, PostgreSQL's operational errors (shutdown, too many connections,
    lock and serialization failures), SQLite's busy, locked, unopenable or failing file."""
    if isinstance(error, PoolTimeout) or (isinstance(error, DBAPIError) and error.connection_invalidated):
        return True
    if not isinstance(error, OperationalError):
        return False
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    return sqlite_code is None or sqlite_code & 0xFF != SQLITE_ERROR


@contextmanager
def unavailability_converted():
    """Database errors that say the database is unavailable become DatabaseUnavailable (503, try again)."""
    try:
        yield
    except (DBAPIError, PoolTimeout) as error:
        if not is_unavailability(error):
            raise
        raise DatabaseUnavailable("The database is not available at the moment; send the request again later.") from error


def is_postgresql(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


@contextmanager
def write_unit(engine: Engine):
    """A connection in a transaction that may write; commits on success, rolls back on error."""
    with unavailability_converted(), writer_turn(engine), engine.connect() as connection:
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
    with unavailability_converted(), engine.connect() as connection:
        if is_postgresql(connection):
            connection.execution_options(isolation_level="AUTOCOMMIT")
        with connection.begin():
            yield connection


def insert_rows(connection: Connection, table: Table, rows: list[dict]) -> None:
    """Insert many rows with the same keys. On PostgreSQL they go as one COPY stream: no statement to
    parse, plan and execute per row, which made index rows the larger part of a bulk load's cost, and
    none for SQLAlchemy to build, which made the few rows of one write cost more CPU than COPY's
    second round trip costs time."""
    if rows and is_postgresql(connection):
        copy_rows(connection, table, rows)
    elif rows:
        connection.execute(insert_statement(table), rows)


def conflict_insert(dialect_name: str, table: Table):
    """INSERT of `table` in the dialect named, which takes ON CONFLICT clauses (PostgreSQL's or SQLite's)."""
    return (postgresql if dialect_name == "postgresql" else sqlite).insert(table)


@cache  # statements built once: building one costs more than a round trip to the database
def insert_statement(table: Table) -> Insert:
    return insert(table)


@cache
def insert_returning_key(table: Table) -> Insert:
    return insert(table).returning(table.c.pk, sort_by_parameter_order=True)


def insert_rows_returning_keys(connection: Connection, table: Table, rows: list[dict]) -> list[int]:
    """insert_rows for a table with an identity key; returns the new rows' keys in order. On PostgreSQL
    the keys come from the identity's sequence first, then the rows go as COPY."""
    if not rows or not is_postgresql(connection):
        return connection.execute(insert_returning_key(table), rows).scalars().all() if rows else []
    keys = connection.exec_driver_sql(
        f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'pk')) FROM generate_series(1, %(count)s)", {"count": len(rows)}
    ).scalars().all()
    copy_rows(connection, table, [{**row, "pk": key} for row, key in zip(rows, keys)])
    return keys


def execute_returning_all(connection: Connection, statement: str, parameters: dict, last_of_unit: bool = False) -> list:
    """Run a driver-level statement and return its rows; in autocommit when it is the unit's only statement
    (`last_of_unit`, see autocommitted): a REST create is then one round trip."""
    with autocommitted(connection, last_of_unit):
        return connection.exec_driver_sql(statement, parameters, execution_options={PREPARED: True}).all()


@contextmanager
def autocommitted(connection: Connection, wanted: bool = True):
    """Statements in this block run in autocommit when `wanted`, on PostgreSQL, while nothing of the unit's
    transaction has been sent: each is atomic by itself, and this spares the BEGIN and COMMIT round trips that would
    frame it. For a unit's only write, or a read before it that needs no lock (an optimistic update's)."""
    if not (wanted and is_postgresql(connection) and transaction_not_begun(connection)):
        yield
        return
    driver = connection.connection.driver_connection
    driver.autocommit = True
    try:
        yield
    finally:
        if not driver.closed:  # a lost connection raised its own error, which this must not replace
            driver.autocommit = False


def transaction_not_begun(connection: Connection) -> bool:
    """True while psycopg has sent no statement of this transaction (it sends BEGIN with the first one)."""
    return connection.connection.driver_connection.pgconn.transaction_status == TransactionStatus.IDLE


def column_in(connection: Connection, column, values) -> ColumnElement:
    """`column IN values`; on PostgreSQL as `= ANY(one array parameter)`, one statement text for any count."""
    if is_postgresql(connection):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def update_each(connection: Connection, column: Column, key: Column, new_values: list[tuple[int, object]]) -> None:
    """Set `column` of the rows of the given keys, each to its own value: on PostgreSQL in one statement over an array
    of keys and one of values (an executemany sends a statement per row), elsewhere a statement per row."""
    if not new_values:
        return
    table = column.table
    if not is_postgresql(connection):
        connection.execute(update(table).where(key == bindparam("row_key")).values({column.name: bindparam("new_value")}),
                           [{"row_key": row_key, "new_value": value} for row_key, value in new_values])
        return
    keys = func.unnest(bindparam("row_keys", [row_key for row_key, _ in new_values], type_=ARRAY(key.type)))
    if isinstance(column.type, JSON):  # one JSON array: psycopg escapes each item of a text array with a regular expression
        values = func.jsonb_array_elements(cast(bindparam("new_values", orjson.dumps([value for _, value in new_values]).decode()), JSONB))
    else:
        values = func.unnest(bindparam("new_values", [value for _, value in new_values], type_=ARRAY(column.type)))
    pairs = select(keys.label("row_key"), values.label("new_value")).subquery()
    connection.execute(update(table).where(key == pairs.c.row_key).values({column.name: pairs.c.new_value}))


def copy_rows(connection: Connection, table: Table, rows: list[dict]) -> None:
    names = [column.name for column in table.columns if column.name in rows[0]]
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for values in map(copy_values(table, names), rows):
            let_others_run()
            copy.write_row(values)


def copy_values(table: Table, names: list[str]):
    """The function from a row to its values in `names` order, JSON columns as JSON text."""
    json_names = {column.name for column in table.columns if isinstance(column.type, JSON)}
    if json_names.isdisjoint(names) and len(names) > 1:  # itemgetter of one name gives a value, not a tuple
        return itemgetter(*names)
    return lambda row: [json_dumps(row[name]) if name in json_names and row[name] is not None else row[name] for name in names]
