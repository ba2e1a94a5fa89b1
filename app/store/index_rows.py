"""Writing and deleting a resource's search index rows (extracted by app/search/index.py), one table per parameter type.

The resource row's `index_mask` records which tables hold its rows, so an update deletes only from those."""
from collections import defaultdict

from sqlalchemy import Connection, bindparam, delete

from app.store.db import insert_rows
from app.store.schema import INDEX_TABLES

TABLE_BITS = {parameter_type: 1 << bit for bit, parameter_type in enumerate(INDEX_TABLES)}
DELETES = {parameter_type: delete(table).where(table.c.res_pk == bindparam("pk")) for parameter_type, table in INDEX_TABLES.items()}


def index_mask(rows: dict[str, list[dict]]) -> int:
    return sum(TABLE_BITS[parameter_type] for parameter_type, table_rows in rows.items() if table_rows)


def parameter_types_in(mask: int) -> tuple[str, ...]:
    """The parameter types whose tables hold rows of a resource with this index_mask."""
    return tuple(parameter_type for parameter_type, bit in TABLE_BITS.items() if mask & bit)


def write_index_rows(connection: Connection, indexed: list[tuple[int, dict[str, list[dict]]]]) -> None:
    """Insert the rows of many resources, given as (pk, rows) pairs from index_rows (whose rows this
    completes in place): one batched statement per table."""
    by_table = defaultdict(list)
    for pk, rows in indexed:
        for parameter_type, table_rows in rows.items():
            for row in table_rows:
                row["res_pk"] = pk
            by_table[parameter_type].extend(table_rows)
    for parameter_type, table_rows in by_table.items():
        insert_rows(connection, INDEX_TABLES[parameter_type], table_rows)


def delete_index_rows(connection: Connection, pk: int, mask: int) -> None:
    for parameter_type in parameter_types_in(mask):
        connection.execute(DELETES[parameter_type], {"pk": pk})
