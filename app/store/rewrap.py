"""Bringing stored values to the protection now configured, in batches, while the server keeps serving: `ehr keys
rewrap` after a key was promoted, a path added or removed, or protection turned on for a database that holds plaintext.

A row whose sealed values are not all under the primary value key, or whose sealed paths (its own, and those of the
resources inside it) are not those configured, is opened and sealed again; a current row whose paths changed (or every current row of a protected type, after an index
key was promoted: `rebuild_index`) gets its index rows rebuilt in the same transaction, blind ones under the primary
index key. Current rows are locked for their batch, so a writer waits at most one batch; writers never change a
history row's body, only add rows and set superseded_at.

`key_uses` counts the rows that still hold values sealed with a value key, for `ehr keys retire`.
"""
import multiprocessing
import operator
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import reduce

import orjson
from sqlalchemy import Connection, Engine, Text, TypeDecorator, and_, case, cast, delete, false, func, literal, not_, null, or_, select
from sqlalchemy.dialects.postgresql import JSONB

from app.errors import DatabaseUnavailable
from app.protection.fields import FORMAT, SEALED, holds_resources, sealings
from app.protection.service import Protection, protection_of
from app.search.index import hash64, index_rows
from app.store.db import column_in, is_postgresql, read_unit, update_each, write_unit
from app.store.index_rows import index_mask, parameter_types_in, write_index_rows
from app.store.resources import stored_from_row
from app.store.schema import INDEX_TABLES, resource, resource_history

BATCH_SIZE = 500
BATCH_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 1.0
ROW_KEYS = {resource: resource.c.pk, resource_history: resource_history.c.seq}
TABLES = {table.name: table for table in ROW_KEYS}


def rows_to_rewrap(engine: Engine, rebuild_index: bool = False) -> int:
    """How many current and history rows rewrap looks at (see candidates)."""
    with read_unit(engine) as connection:
        protection = protection_of(connection)
        return sum(connection.execute(select(func.count()).select_from(table).where(candidates(connection, table, protection, rebuilt(table, rebuild_index)))).scalar()
                   for table in ROW_KEYS)


def rebuilt(table, rebuild_index: bool) -> bool:
    """Whether a rewrap rebuilds the index rows of the table's rows: only current rows have them."""
    return rebuild_index and table is resource


def candidates(connection: Connection, table, protection, rebuild_index: bool):
    """The rows rewrap looks at: those of protected types, those holding sealed values, and those that hold other
    resources (contained ones, a Bundle's entries), which may be of protected types; on PostgreSQL, when their index
    rows are not rebuilt, only those of them that may not be sealed as now (may_need_sealing)."""
    protected_types = list(protection.paths.by_type) if isinstance(protection, Protection) else []
    looked_at = has_key(connection, table, SEALED)
    if protected_types:
        looked_at = or_(looked_at, table.c.res_type.in_(protected_types), holding_resources(connection, table))
    if not rebuild_index and is_postgresql(connection) and isinstance(protection, Protection):
        looked_at = and_(looked_at, may_need_sealing(connection, table, protection))
    return and_(table.c.deleted == false(), looked_at)


def holding_resources(connection: Connection, table):
    return or_(has_key(connection, table, "contained"), table.c.res_type == "Bundle")


def may_need_sealing(connection: Connection, table, protection: Protection):
    """(PostgreSQL) The rows that sealed_as_now may find not sealed as now, told in SQL, so that a rewrap after an
    index key's promotion does not read every history row into Python: those that hold other resources, sealed
    nothing, list other sealed paths than those configured for their type, or hold the start of a ciphertext under
    another value key than the primary (a client's own text that looks like one is looked at too)."""
    whens = [(table.c.res_type == type_name, cast(literal(orjson.dumps([path.text for path in paths]).decode()), JSONB))
             for type_name, paths in protection.paths.by_type.items()]
    configured = case(*whens, else_=null()) if whens else null()  # nothing protected: every sealed row is opened
    other_key = f"{re.escape(FORMAT)}(?!{re.escape(protection.ring().primary('value').id)}:)"
    return or_(
        holding_resources(connection, table),
        not_(has_key(connection, table, SEALED)),
        table.c.body[SEALED]["paths"].is_distinct_from(configured),
        cast(table.c.body, Text).op("~")(other_key),
    )


def has_key(connection: Connection, table, name: str):
    """The row's body has `name` at its top level."""
    return table.c.body.op("?", is_comparison=True)(name) if is_postgresql(connection) else func.json_type(table.c.body, f'$."{name}"').is_not(None)


def rewrap(engine: Engine, rebuild_index: bool = False, processes: int = 1) -> Iterator[tuple[int, int]]:
    """Rewrap every row that needs it (and rebuild every current row's index rows with `rebuild_index`); yields (rows
    looked at, rows changed) per batch, each in a transaction of its own. On PostgreSQL, with `processes` > 1, that
    many processes forked from this one rewrap batches at once (sealing and index extraction are Python's work, one
    core's per process): only from a process whose other threads hold nothing the children need, such as `ehr keys
    rewrap` (not a server)."""
    for table in ROW_KEYS:
        rebuilding = rebuilt(table, rebuild_index)
        batches = [(table.name, *keys, rebuilding) for keys in batch_ranges(engine, table, rebuilding)]
        if processes > 1 and len(batches) > 1 and engine.dialect.name == "postgresql":
            yield from rewrapped_in_processes(engine, batches, processes)
        else:
            yield from (rewrapped_range(engine, *batch) for batch in batches)


def batch_ranges(engine: Engine, table, rebuild_index: bool) -> list[tuple[int, int]]:
    """The (after, through] key ranges of BATCH_SIZE rows each that cover the rows to rewrap now (rows added later are
    written as configured)."""
    key = ROW_KEYS[table]
    with read_unit(engine) as connection:
        numbered = (select(key, func.row_number().over(order_by=key).label("n"), func.count().over().label("total"))
                    .where(candidates(connection, table, protection_of(connection), rebuild_index)).subquery())
        ends = connection.execute(select(numbered.c[key.name]).where(or_(numbered.c.n % BATCH_SIZE == 0, numbered.c.n == numbered.c.total))
                                  .order_by(numbered.c[key.name])).scalars().all()
    return list(zip([0, *ends], ends))


def rewrapped_range(engine: Engine, table_name: str, after: int, through: int, rebuild_index: bool) -> tuple[int, int]:
    """Rewrap one batch: (rows looked at, rows changed). A batch the database gave up on (a deadlock with a writer
    that locks several resources, a connection dropped) rolled back whole, and is tried again."""
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            return rewrapped_batch(engine, table_name, after, through, rebuild_index)
        except DatabaseUnavailable:
            if attempt == BATCH_ATTEMPTS:
                raise
            time.sleep(RETRY_PAUSE_SECONDS)


def rewrapped_batch(engine: Engine, table_name: str, after: int, through: int, rebuild_index: bool) -> tuple[int, int]:
    """Rewrap one batch in a transaction of its own, current rows locked."""
    table = TABLES[table_name]
    key = ROW_KEYS[table]
    with write_unit(engine) as connection:
        columns = [column for column in table.c if column.name != "body"]
        statement = (select(*columns, cast(table.c.body, UnorderedBody).label("body"))
                     .where(key > after, key <= through, candidates(connection, table, protection_of(connection), rebuild_index)).order_by(key))
        rows = connection.execute(statement.with_for_update() if table is resource else statement).all()
        return len(rows), rewrapped(connection, table, rows, rebuild_index)


class UnorderedBody(TypeDecorator):
    """A body as its JSON text parsed, keys in the order the database gives them: rewrap seals it and indexes it, which
    FHIR's element order (that reading a body restores, at a cost) does not change."""
    impl = Text
    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else orjson.loads(value)


FORKED_ENGINE: list[Engine] = []  # the engine the forked processes of rewrapped_in_processes use


def rewrapped_in_processes(engine: Engine, batches: list[tuple], processes: int) -> Iterator[tuple[int, int]]:
    """rewrapped_range of each batch, in order, by `processes` processes forked from this one (each with the engine's
    settings and key ring, and connections of its own)."""
    FORKED_ENGINE[:] = [engine]
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork"), initializer=engine.dispose, initargs=(False,)) as pool:
        try:
            yield from pool.map(rewrapped_range_forked, batches)  # BrokenProcessPool when one dies
        finally:
            pool.shutdown(cancel_futures=True)


def rewrapped_range_forked(batch: tuple) -> tuple[int, int]:
    return rewrapped_range(FORKED_ENGINE[0], *batch)


def rewrapped(connection: Connection, table, rows: list, rebuild_index: bool) -> int:
    """Seal again the rows of one batch that are not current, and rebuild index rows where they changed (all of them,
    with `rebuild_index`); the number of rows changed."""
    protection = protection_of(connection)
    key = ROW_KEYS[table]
    bodies, rebuilt = [], []
    for row in rows:
        current = protection.sealed_as_now(row.res_type, row.res_id, row.body)
        if current and not rebuild_index:
            continue
        stored = stored_from_row(row, protection)
        body = row.body if current else protection.sealed(row.res_type, row.res_id, stored.body)
        if not current:
            bodies.append((row._mapping[key.name], body))
        if table is resource and (rebuild_index or sealings(row.body, row.res_type, row.res_id) != sealings(body, row.res_type, row.res_id)):
            codes = rebuilt_codes(row, protection)
            if codes != frozenset():  # an AuditEvent's protected query: no parameter reads it, no row to rebuild
                rebuilt.append((row, stored, codes))
    update_each(connection, table.c.body, key, bodies)
    if rebuilt:
        rebuild_index_rows(connection, rebuilt, protection)
    return len({*(row_key for row_key, _ in bodies), *(row.pk for row, _, _ in rebuilt)})


def rebuilt_codes(row, protection: Protection) -> frozenset[str] | None:
    """The parameters whose index rows a rewrap replaces: those that read protected elements now, when every path the
    row sealed is protected now and it holds no other resources (then only their rows change: blind rows made under
    another index key, or plaintext rows that become blind); None, every parameter, otherwise (a path no longer
    protected: its parameters' blind rows become plaintext rows)."""
    if holds_resources(row.body, row.res_type):
        return None
    sealing = row.body.get(SEALED)
    sealed = sealing.get("paths") if isinstance(sealing, dict) else []
    protected_now = {path.text for path in protection.paths.of(row.res_type)}
    if not isinstance(sealed, list) or not all(isinstance(text, str) and text in protected_now for text in sealed):
        return None
    return protection.paths.codes_by_type.get(row.res_type, frozenset())


def rebuild_index_rows(connection: Connection, rebuilt: list, protection) -> None:
    """Replace the index rows of a batch's current rows, of the parameters rebuilt_codes gives each, by those of their
    bodies now: a statement per table and set of parameters."""
    groups = defaultdict(list)
    for row, stored, codes in rebuilt:
        groups[(row.res_type, codes)].append(row)
    for (type_name, codes), rows in groups.items():
        for parameter_type in parameter_types_in(reduce(operator.or_, (row.index_mask for row in rows))):
            table = INDEX_TABLES[parameter_type]
            of_parameters = [] if codes is None else [column_in(connection, table.c.h_param, [hash64(type_name, code) for code in codes])]
            connection.execute(delete(table).where(column_in(connection, table.c.res_pk, [row.pk for row in rows]), *of_parameters))
    new_rows = [(row, index_rows(row.res_type, stored.body, protection, codes)) for row, stored, codes in rebuilt]
    write_index_rows(connection, [(row.pk, rows) for row, rows in new_rows])
    kept = {row.pk: row.index_mask for row, _, codes in rebuilt if codes is not None}  # the other parameters' tables
    update_each(connection, resource.c.index_mask, resource.c.pk, [(row.pk, mask) for row, rows in new_rows
                                                                   if (mask := kept.get(row.pk, 0) | index_mask(rows)) != row.index_mask])


def key_uses(engine: Engine, key_id: str) -> int:
    """How many current and history rows still hold values sealed with this value key (found by their text, then
    counted only where a sealed path holds it: a client's own string that looks like one does not count)."""
    pattern, uses = f"%{FORMAT}{key_id}:%", 0
    with read_unit(engine) as connection:
        protection = protection_of(connection)
        for table in ROW_KEYS:
            for row in connection.execute(select(table).where(cast(table.c.body, Text).like(pattern), table.c.deleted == false())):
                uses += key_id in protection.sealed_key_ids(row.res_type, row.res_id, row.body)
    return uses


class ResourceSealing:
    """The resource tables as one of the stores `ehr keys rewrap` and `retire` go through (app/feeds.py SealedStore)."""

    def rows_to_rewrap(self, engine: Engine, rebuild_index: bool) -> int:
        return rows_to_rewrap(engine, rebuild_index)

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        return rewrap(engine, rebuild_index, processes)

    def key_uses(self, engine: Engine, key_id: str) -> int:
        return key_uses(engine, key_id)


RESOURCES = ResourceSealing()
