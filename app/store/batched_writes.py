"""Resource versions written one batched statement per table: executemany on SQLite, COPY streams on PostgreSQL.

SQLite writes every version this way. PostgreSQL writes a few versions as one statement (app/store/postgresql_writes.py)
and uses these COPY streams for large batches, where they cost less than expanding JSON.
Versions are dicts of (res_type, res_id, version, last_updated, deleted, index_mask, method, body).
"""
from sqlalchemy import Connection, bindparam, update

from app.store.db import conflict_insert, insert_rows, insert_rows_returning_keys
from app.store.index_rows import delete_index_rows, write_index_rows
from app.store.schema import resource, resource_history

# Statements built once: building them per call costs more than the database round trip.
SWAP_VERSION = (
    update(resource)
    .where(resource.c.res_type == bindparam("key_type"), resource.c.res_id == bindparam("key_id"), resource.c.version == bindparam("expected_version"))
    .values(
        version=bindparam("new_version"), last_updated=bindparam("new_last_updated"), deleted=bindparam("new_deleted"),
        body=bindparam("new_body"), index_mask=bindparam("new_index_mask"),
    )
)
MARK_SUPERSEDED = (
    update(resource_history)
    .where(
        resource_history.c.res_type == bindparam("key_type"),
        resource_history.c.res_id == bindparam("key_id"),
        resource_history.c.version == bindparam("old_version"),
    )
    .values(superseded_at=bindparam("moment"))
)


def insert_first_versions(connection: Connection, versions: list[dict], row_sets: list[dict]) -> None:
    """Insert resources' first versions with their index rows (from index_rows, completed in place)."""
    pks = insert_rows_returning_keys(connection, resource, [resource_row(version) for version in versions])
    insert_rows(connection, resource_history, [history_row(version) for version in versions])
    write_index_rows(connection, list(zip(pks, row_sets)))


def try_insert_first_version(connection: Connection, version: dict, rows: dict) -> bool:
    """Insert unless another writer created the same id first; False then."""
    pk = connection.execute(conflict_insert(connection.dialect.name, resource).values(resource_row(version)).on_conflict_do_nothing().returning(resource.c.pk)).scalar()
    if pk is None:
        return False
    insert_rows(connection, resource_history, [history_row(version)])
    write_index_rows(connection, [(pk, rows)])
    return True


def write_next_version(connection: Connection, version: dict, rows: dict, pk: int, current_mask: int,
                       targets: frozenset = frozenset()) -> frozenset | None:
    """Swap in the next version if the current one is still the one before (compare-and-swap), mark that one superseded,
    add the history row and replace the index rows; None when another writer swapped first. Else no target found:
    here the unit's check at its end looks them up (`targets` is for the one-statement writer's signature)."""
    if not swap_version(connection, version):
        return None
    connection.execute(MARK_SUPERSEDED, {
        "key_type": version["res_type"], "key_id": version["res_id"], "old_version": version["version"] - 1, "moment": version["last_updated"],
    })
    insert_rows(connection, resource_history, [history_row(version)])
    delete_index_rows(connection, pk, current_mask)
    write_index_rows(connection, [(pk, rows)])
    return frozenset()


def swap_version(connection: Connection, version: dict) -> bool:
    swapped = connection.execute(SWAP_VERSION, {
        "key_type": version["res_type"], "key_id": version["res_id"], "expected_version": version["version"] - 1,
        "new_version": version["version"], "new_last_updated": version["last_updated"], "new_deleted": version["deleted"],
        "new_body": version["body"], "new_index_mask": version["index_mask"],
    })
    return swapped.rowcount == 1


def resource_row(version: dict) -> dict:
    return {name: value for name, value in version.items() if name != "method"}


def history_row(version: dict) -> dict:
    return {name: value for name, value in version.items() if name != "index_mask"}
