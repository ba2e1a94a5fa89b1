"""Rebuilding index rows after the search parameter data changes, in batches, while the server keeps serving.

Each batch is its own short write transaction that replaces the rows of a few
hundred resources, so searches stay correct throughout: a resource's old rows and
new rows swap atomically, and writers wait at most one batch.
"""
from sqlalchemy import Engine, false, func, select

from app.protection.service import protection_of
from app.search.index import index_rows
from app.store.db import read_unit, write_unit
from app.store.index_rows import delete_index_rows, index_mask, write_index_rows
from app.store.resources import stored_from_row
from app.store.schema import resource

BATCH_SIZE = 500


def resources_to_reindex(engine: Engine, type_name: str | None) -> int:
    with read_unit(engine) as connection:
        return connection.execute(select(func.count()).select_from(resource).where(*live(type_name))).scalar()


def live(type_name: str | None) -> list:
    conditions = [resource.c.deleted == false()]
    return conditions + [resource.c.res_type == type_name] if type_name else conditions


def reindex(engine: Engine, type_name: str | None = None):
    """Rebuild the index rows of every live resource (of one type, if given); yields how many each batch did."""
    after_pk = 0
    while True:
        with write_unit(engine) as connection:
            statement = select(resource).where(resource.c.pk > after_pk, *live(type_name)).order_by(resource.c.pk).limit(BATCH_SIZE)
            rows = connection.execute(statement.with_for_update()).all()
            for row in rows:
                reindex_row(connection, row)
        if not rows:
            return
        after_pk = rows[-1].pk
        yield len(rows)


def reindex_row(connection, row) -> None:
    """Replace the row's index rows by those its body has now (blind ones under the primary index key, and the body
    sealed again to name it, when protection is on)."""
    protection = protection_of(connection)
    stored = stored_from_row(row, protection)
    rows = index_rows(row.res_type, stored.body, protection)
    delete_index_rows(connection, row.pk, row.index_mask)
    write_index_rows(connection, [(row.pk, rows)])
    values = {"index_mask": index_mask(rows), "body": protection.sealed(row.res_type, row.res_id, stored.body)}
    connection.execute(resource.update().where(resource.c.pk == row.pk).values(**values))
