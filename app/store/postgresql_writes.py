"""PostgreSQL: each write of resource versions is one statement, a data-modifying CTE that writes the resource rows,
their history rows and every index table's rows together, fed by one JSON array per table.

Why one statement: a create used to be BEGIN, nextval, a COPY for each of resource, history and the ~5 index tables it
touched, and COMMIT: 9 statements and 17 round trips, and the CPU of building each of them. Here the client builds a
few JSON texts (orjson) and sends one statement whose text is built once per shape (which tables it writes) and then
prepared by psycopg; PostgreSQL expands the arrays with jsonb_to_recordset into the tables' own column types.

Values cross as JSON: timestamptz as RFC 3339 text, numerics (Decimal) as their exact decimal text, 64-bit hashes as
JSON integers (jsonb keeps them exact), bodies as nested JSON (stored as JSONB, as COPY stored them), missing keys and
JSON null as SQL NULL.
"""
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql

from app.store.db import execute_returning_all, transaction_not_begun
from app.store.group_commit import group_of
from app.store.index_rows import parameter_types_in
from app.store.schema import INDEX_TABLES, resource, resource_history

VERSION_FIELDS = ("res_type", "res_id", "version", "last_updated", "deleted", "index_mask", "method", "body")
RESOURCE_COLUMNS = ("res_type", "res_id", "version", "last_updated", "deleted", "index_mask", "body")
HISTORY_COLUMNS = ("res_type", "res_id", "version", "last_updated", "deleted", "method", "body")
DIALECT = postgresql.dialect()
INSERTED_KEYS = "SELECT new.n, inserted.pk FROM new JOIN inserted USING (res_type, res_id)"
# The planner takes a set-returning function for 100 rows, and then joins `resource` to a unit's one or few versions
# and targets by a hash join over a sequential scan of the whole table. A LIMIT of about the array's length makes it
# expect the real count, and look each row up by its index. The limit is written in the statement, rounded up to a
# power of two (few texts to prepare): a plan made once for all values (app/store/db.py, PREPARED) knows it too, so
# it costs the same as one made with the values, and PostgreSQL keeps it.
VERSIONS_LIMIT, TARGETS_LIMIT = "LIMIT <versions>", "LIMIT <targets>"
LIVE_ARRAY = "(SELECT array_agg(res_type || '/' || res_id) FROM live) AS live"  # the live targets, as 'type/id' texts


@dataclass(frozen=True)
class Creates:
    """One unit's first versions (dicts of VERSION_FIELDS), their index rows (from index_rows) and the (type, id) of
    what they refer to."""

    versions: list[dict]
    row_sets: list[dict]
    targets: frozenset


def insert_first_versions(connection: Connection, versions: list[dict], row_sets: list[dict], targets: frozenset = frozenset(),
                          last_of_unit=False) -> set[tuple[str, str]]:
    """Insert resources' first versions with their index rows, in the same statement as the check of their
    references: the `targets` are locked FOR SHARE if live, and nothing is inserted unless all are. Returns the targets
    found live. When these creates are all the unit writes (`last_of_unit`, nothing sent before), the statement commits
    by itself and may be shared with other units' creates (app/store/group_commit.py)."""
    creates = Creates(versions, row_sets, targets)
    if last_of_unit and transaction_not_begun(connection):
        return group_of(connection).write(connection, creates, len(versions), write_committed)
    return write_creates(connection, [creates])[0]


def write_committed(connection: Connection, units: list[Creates]) -> list[set[tuple[str, str]]]:
    return write_creates(connection, units, commits=True)


def write_creates(connection: Connection, units: list[Creates], commits: bool = False) -> list[set[tuple[str, str]]]:
    """One statement for the creates of `units`, each unit's written only if its targets are all live; the live
    targets of each unit. `commits`: the statement runs in autocommit, the unit having sent nothing before."""
    versions = [{**version, "unit": n} for n, creates in enumerate(units) for version in creates.versions]
    parameters, index_types = statement_parameters(versions, [rows for creates in units for rows in creates.row_sets])
    targets = [(n, target) for n, creates in enumerate(units) for target in creates.targets]
    if targets:
        parameters.update(targets_parameters(targets))
    statement = first_versions_statement(index_types, skip_existing=False, checks_targets=bool(targets))
    found = execute(connection, statement, parameters, commits)
    live = [set() for _ in units]
    for row in found if targets else ():
        live[row.unit].add((row.res_type, row.res_id))
    return live


def write_unit_versions(connection: Connection, creates: Creates, updates: list[dict], old_types: tuple[str, ...],
                        update_rows: list[dict]) -> tuple[set[tuple[str, str]], bool]:
    """One unit's creates (`creates`) and next versions of resources it found (`updates`, from versions whose index
    rows are of `old_types`) in one statement, inside the unit's transaction; nothing is written unless all the
    targets are live. Returns the targets found live, and whether every next version swapped in (False: another
    writer changed one of them since it was found, and the unit must fail)."""
    parameters, index_types = one_unit_parameters([*creates.versions, *updates], [*creates.row_sets, *update_rows], creates.targets)
    (found,) = execute(connection, unit_versions_statement(index_types, old_types), parameters)
    return set(live_keys(found.live)), found.swapped == len(updates)


def swap_committed_with_creates(connection: Connection, version: dict, rows: dict, current_mask: int, creates: Creates) -> tuple[bool, frozenset[tuple[str, str]]]:
    """swap_committed that also writes `creates` (the unit's AuditEvents) in the same statement, only if the next
    version swapped in: an update that is its unit's only write keeps its two round trips when it is audited."""
    parameters, index_types = one_unit_parameters([*creates.versions, version], [*creates.row_sets, rows], creates.targets)
    statement = unit_versions_statement(index_types, parameter_types_in(current_mask), all_or_nothing=True)
    (found,) = execute(connection, statement, parameters, last_of_unit=True)
    return found.swapped == 1, live_keys(found.live)


def try_insert_first_version(connection: Connection, version: dict, rows: dict) -> bool:
    """Insert unless another writer created the same id first; False then."""
    parameters, index_types = statement_parameters([version], [rows])
    return len(execute(connection, first_versions_statement(index_types, skip_existing=True), parameters)) == 1


def write_next_version(connection: Connection, version: dict, rows: dict, pk: int, current_mask: int,
                       targets: frozenset = frozenset()) -> frozenset[tuple[str, str]] | None:
    """Swap in the next version of a resource if its current version is still the one before (compare-and-swap), mark
    that one superseded, add the history row and replace the index rows; None when another writer swapped first.
    Else the (type, id) of `targets` found live, each locked FOR SHARE by the same statement. (`pk` is for the
    batched writer's signature: here the swap returns it.)"""
    parameters, index_types = one_unit_parameters([version], [rows], targets)
    found = execute(connection, next_versions_statement(parameter_types_in(current_mask), index_types), parameters)
    return live_keys(found[0].live) if found else None


def swap_committed(connection: Connection, version: dict, rows: dict, current_mask: int,
                   targets: frozenset = frozenset()) -> tuple[bool, frozenset[tuple[str, str]]]:
    """write_next_version as a unit's only statement, committing by itself: the swap happens only if all `targets` are
    live (a unit cannot refuse a committed write afterwards). Returns whether it swapped, and the targets found live:
    not swapped with every target live means another writer swapped first."""
    parameters, index_types = one_unit_parameters([version], [rows], targets)
    statement = next_versions_statement(parameter_types_in(current_mask), index_types, gated=True)
    (found,) = execute(connection, statement, parameters, last_of_unit=True)
    return found.swapped, live_keys(found.live)


def execute(connection: Connection, statement: str, parameters: dict, last_of_unit: bool = False) -> list:
    """execute_returning_all with the statement's LIMITs set from the counts in `parameters` (taken out of them)."""
    limits = row_limit(parameters.pop("version_count")), row_limit(parameters.pop("target_count", 0))
    return execute_returning_all(connection, with_limits(statement, *limits), parameters, last_of_unit)


def row_limit(count: int) -> int:
    """`count` rounded up to a power of two (0 stays 0)."""
    return 1 << (count - 1).bit_length() if count else 0


@cache
def with_limits(statement: str, versions: int, targets: int) -> str:
    return statement.replace(VERSIONS_LIMIT, f"LIMIT {versions}").replace(TARGETS_LIMIT, f"LIMIT {targets}")


def one_unit_parameters(versions: list[dict], row_sets: list[dict], targets: frozenset) -> tuple[dict[str, str], tuple[str, ...]]:
    """statement_parameters for the versions of one unit (numbered 0) that wants `targets` live."""
    parameters, index_types = statement_parameters([{**version, "unit": 0} for version in versions], row_sets)
    parameters.update(targets_parameters([(0, target) for target in targets]))
    return parameters, index_types


def live_keys(live: list[str] | None) -> frozenset[tuple[str, str]]:
    """The (type, id) of each target a statement found live, from its LIVE_ARRAY ('type/id' texts, NULL for none)."""
    return frozenset(tuple(target.split("/", 1)) for target in live or ())


def statement_parameters(versions: list[dict], row_sets: list[dict]) -> tuple[dict[str, str], tuple[str, ...]]:
    """The JSON parameters of a statement, and the index types it writes: `versions` numbered by position (n), each
    index row tagged with the n of its resource (completing index_rows' rows in place)."""
    parameters = {"versions": json_text([{**version, "n": n} for n, version in enumerate(versions)]), "version_count": len(versions)}
    by_type = defaultdict(list)
    for n, rows in enumerate(row_sets):
        for parameter_type, table_rows in rows.items():
            for row in table_rows:
                row["n"] = n
            by_type[parameter_type] += table_rows
    index_types = tuple(parameter_type for parameter_type in INDEX_TABLES if by_type.get(parameter_type))
    parameters.update((parameter_type, json_text(by_type[parameter_type])) for parameter_type in index_types)
    return parameters, index_types


def targets_parameters(targets: list[tuple[int, tuple[str, str]]]) -> dict:
    """(unit, (type, id)) of each target, as the statement's `wanted` reads them, and their count (see execute)."""
    rows = [{"unit": unit, "res_type": type_name, "res_id": resource_id} for unit, (type_name, resource_id) in targets]
    return {"targets": json_text(rows), "target_count": len(rows)}


def json_text(value) -> str:
    return orjson.dumps(value, default=exact_decimal).decode()


def exact_decimal(value):
    """Decimals as their text, every digit kept (a float would round them); PostgreSQL reads the text as numeric."""
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


@cache
def first_versions_statement(index_types: tuple[str, ...], skip_existing: bool, checks_targets: bool = False) -> str:
    """Returns (n, pk) of each resource inserted, or with `checks_targets` the (unit, res_type, res_id) of each live
    target."""
    conflict = " ON CONFLICT DO NOTHING" if skip_existing else ""
    writes = [inserted_versions(conflict=conflict), f"keys AS ({INSERTED_KEYS})", history_insert(), *map(index_insert, index_types)]
    if not checks_targets:
        return with_statement([new_versions(), *writes])
    return with_statement([*live_targets(), new_versions(all_targets_live=True), *writes], "SELECT unit, res_type, res_id FROM live")


@cache
def unit_versions_statement(index_types: tuple[str, ...], old_types: tuple[str, ...], all_or_nothing: bool = False) -> str:
    """first_versions_statement and next_versions_statement together, for one unit whose versions are gated by its
    targets: version 1 is inserted, a later one swapped in. `all_or_nothing`: the first versions are inserted only if
    every later one swapped in (the statement may commit by itself). Returns one row: (swapped, live)."""
    every_swap = " AND (SELECT count(*) FROM swapped) = (SELECT count(*) FROM new WHERE version > 1)" if all_or_nothing else ""
    writes = (
        *swapped_versions("swapped", "new.version > 1 AND "),
        inserted_versions(condition=f" WHERE version = 1{every_swap}"),
        f"keys AS ({INSERTED_KEYS} UNION ALL SELECT n, pk FROM swapped)",
        history_insert(),
        *replaced_index_rows(old_types, "swapped"),
        *map(index_insert, index_types),
    )
    returning = f"SELECT (SELECT count(*) FROM swapped) AS swapped, {LIVE_ARRAY}"
    return with_statement([*live_targets(), new_versions(all_targets_live=True), *writes], returning)


def live_targets() -> tuple[str, str]:
    """The targets that are live, each with the unit that wants it, locked FOR SHARE: a delete, which locks its row FOR
    UPDATE, waits for this statement's transaction and then finds the new referrer (see app/store/integrity.py)."""
    return (
        "wanted AS (SELECT * FROM jsonb_to_recordset(%(targets)s::jsonb) AS t(unit integer, res_type text, res_id text)"
        f" {TARGETS_LIMIT})",
        "live AS (SELECT wanted.unit, res_type, res_id FROM wanted JOIN resource USING (res_type, res_id)"
        " WHERE NOT resource.deleted FOR SHARE OF resource)",
    )


@cache
def next_versions_statement(old_types: tuple[str, ...], index_types: tuple[str, ...], gated: bool = False) -> str:
    """Returns (n, pk, live) of each version swapped in; `gated`: swaps only if the wanted targets are all live, and
    returns one row (swapped, live) either way."""
    writes = [*swapped_versions("keys"), history_insert(), *replaced_index_rows(old_types, "keys"), *map(index_insert, index_types)]
    returning = f"SELECT EXISTS (SELECT FROM keys) AS swapped, {LIVE_ARRAY}" if gated else f"SELECT n, pk, {LIVE_ARRAY} FROM keys"
    return with_statement([*live_targets(), new_versions(all_targets_live=gated), *writes], returning)


def inserted_versions(condition: str = "", conflict: str = "") -> str:
    """CTE `inserted`: the resource rows of the versions of `new` (those meeting `condition`), inserted."""
    columns = ", ".join(RESOURCE_COLUMNS)
    return f"inserted AS (INSERT INTO resource ({columns}) SELECT {columns} FROM new{condition} ORDER BY n{conflict} RETURNING pk, res_type, res_id)"


def replaced_index_rows(old_types: tuple[str, ...], swapped: str) -> list[str]:
    """CTEs deleting the index rows, in the tables of `old_types`, of the resources swapped in by CTE `swapped`. Each
    sub-statement sees the tables as they were before the statement, so the deletes never meet the inserted rows."""
    return [f"deleted_{t} AS (DELETE FROM {INDEX_TABLES[t].name} WHERE res_pk IN (SELECT pk FROM {swapped}))" for t in old_types]


def swapped_versions(name: str, condition: str = "") -> tuple[str, str]:
    """CTEs `name` (n, pk), the versions of `new` swapped in where the current one is still the one before (and
    `condition`), and `superseded`, which marks those current versions' history rows superseded."""
    return (
        f"{name} AS (UPDATE resource SET " + ", ".join(f"{column} = new.{column}" for column in RESOURCE_COLUMNS[2:]) + " FROM new"
        f" WHERE {condition}resource.res_type = new.res_type AND resource.res_id = new.res_id AND resource.version = new.version - 1"
        " RETURNING new.n, resource.pk)",
        f"superseded AS (UPDATE resource_history SET superseded_at = new.last_updated FROM new JOIN {name} USING (n)"
        " WHERE resource_history.res_type = new.res_type AND resource_history.res_id = new.res_id"
        " AND resource_history.version = new.version - 1)",
    )


def with_statement(parts: list[str], returning: str = "SELECT n, pk FROM keys") -> str:
    """The statement of these CTEs; by default it returns the (n, pk) of each resource written."""
    return "WITH " + ",\n".join(parts) + "\n" + returning


def new_versions(all_targets_live: bool = False) -> str:
    """The versions to write; with `all_targets_live`, those of the units whose wanted targets are all live."""
    fields = [f"n integer, unit integer, {record_types(resource, VERSION_FIELDS[:-2])}", record_types(resource_history, ("method", "body"))]
    condition = (" WHERE (SELECT count(*) FROM live WHERE live.unit = x.unit) = (SELECT count(*) FROM wanted WHERE wanted.unit = x.unit)"
                 if all_targets_live else "")
    return f"new AS MATERIALIZED (SELECT * FROM jsonb_to_recordset(%(versions)s::jsonb) AS x({', '.join(fields)}){condition} {VERSIONS_LIMIT})"


def history_insert() -> str:
    columns = ", ".join(HISTORY_COLUMNS)
    return f"history AS (INSERT INTO resource_history ({columns}) SELECT {', '.join(f'new.{c}' for c in HISTORY_COLUMNS)} FROM new JOIN keys USING (n))"


def index_insert(parameter_type: str) -> str:
    table = INDEX_TABLES[parameter_type]
    names = [column.name for column in table.columns if column.name != "res_pk"]
    return (
        f"rows_{parameter_type} AS (INSERT INTO {table.name} (res_pk, {', '.join(names)})"
        f" SELECT keys.pk, {', '.join(f'x.{name}' for name in names)}"
        f" FROM jsonb_to_recordset(%({parameter_type})s::jsonb) AS x(n integer, {record_types(table, names)}) JOIN keys USING (n))"
    )


def record_types(table: Table, names) -> str:
    """`name TYPE, ...`: the columns as jsonb_to_recordset declares them, in the table's own types."""
    return ", ".join(f"{name} {table.c[name].type.compile(dialect=DIALECT)}" for name in names)
