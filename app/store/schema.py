"""Table definitions. The database schema itself comes only from the Alembic migrations."""
from sqlalchemy import (
    JSON, BigInteger, Boolean, Column, DateTime, Identity, Index, Integer, MetaData, Numeric, String, Table,
    Text, UniqueConstraint, text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Body = JSON().with_variant(JSONB(), "postgresql")
Sequence = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

resource = Table(
    "resource",
    metadata,
    Column("pk", Sequence, Identity(), primary_key=True),  # what index rows point at: narrower than (type, id)
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("index_mask", Integer, nullable=False, server_default="0"),  # which index tables hold rows of it
    Column("body", Body, nullable=True),
    UniqueConstraint("res_type", "res_id", name="uq_resource_type_id"),
    # searches walk one type's live resources in pk order (their default order and paging key)
    Index("ix_resource_live_type_pk", "res_type", "pk", postgresql_where=text("NOT deleted"), sqlite_where=text("NOT deleted")),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("seq", Sequence, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("superseded_at", DateTime(timezone=True), nullable=True),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("body", Body, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_resource_history_version"),
    Index("ix_resource_history_type_seq", "res_type", "seq"),
    Index("ix_resource_history_resource_seq", "res_type", "res_id", "seq"),
    Index("ix_resource_history_last_updated", "last_updated"),
)


def index_table(name: str, *columns, indexes=()) -> Table:
    """A search index table: rows of (resource pk, parameter hash, values...), see app/search/index.py.

    Each value index ends with res_pk, so that a search reads the keys of its matches from the
    index alone (an index-only scan) and visits table rows only for the page it returns.

    res_pk has no foreign key: index rows are derived data, written and deleted only with their
    resource's row by app/store/resources.py (resources are never removed, only logically deleted),
    and a key checked on each of ~25 rows per resource cost a quarter of PostgreSQL's load time."""
    return Table(
        name,
        metadata,
        Column("res_pk", Sequence, nullable=False),
        Column("h_param", BigInteger, nullable=False),
        *columns,
        Index(f"ix_{name}_res_pk", "res_pk"),
        *indexes,
    )


def hash_index(name: str, column: str) -> Index:
    """An index of a hash column and res_pk, without the rows that have no hash there (every search compares it with
    a value): most token rows have no system (h_sys), and a blind string prefix has neither system nor code hash
    (app/protection/blind.py), so each write inserts fewer index entries."""
    where = text(f"{column} IS NOT NULL")
    return Index(name, column, "res_pk", postgresql_where=where, sqlite_where=where)


search_string = index_table(
    "search_string",
    Column("normalized", String(200), nullable=False),
    Column("exact", Text, nullable=False),
    indexes=(Index("ix_search_string_value", "h_param", "normalized", "res_pk"),),
)
search_token = index_table(
    "search_token",
    Column("h_code", BigInteger),
    Column("h_sys_code", BigInteger),
    Column("h_sys", BigInteger),
    Column("system", Text),
    Column("code", Text),
    Column("text", String(200)),
    indexes=tuple(hash_index(f"ix_search_token_{suffix}", column) for suffix, column in (
        ("code", "h_code"), ("sys_code", "h_sys_code"), ("sys", "h_sys"),
    )),
)
search_date = index_table(
    "search_date",
    Column("low", DateTime(timezone=True), nullable=False),
    Column("high", DateTime(timezone=True), nullable=False),
    indexes=(Index("ix_search_date_low", "h_param", "low", "res_pk"), Index("ix_search_date_high", "h_param", "high", "res_pk")),
)
search_number = index_table(
    "search_number",
    Column("value", Numeric, nullable=False),
    indexes=(Index("ix_search_number_value", "h_param", "value", "res_pk"),),
)
search_quantity = index_table(
    "search_quantity",
    Column("h_sys_code", BigInteger),
    Column("h_code", BigInteger),
    Column("value", Numeric, nullable=False),
    Column("system", Text),
    Column("code", Text),
    Column("unit", Text),
    indexes=(
        Index("ix_search_quantity_value", "h_param", "value", "res_pk"),
        Index("ix_search_quantity_sys_code", "h_sys_code", "value", "res_pk"),
        Index("ix_search_quantity_code", "h_code", "value", "res_pk"),
    ),
)
search_reference = index_table(
    "search_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("target_version", String(64)),
    Column("url", Text),
    Column("h_url", BigInteger),  # urls can be longer than a B-tree entry may be
    indexes=(
        Index("ix_search_reference_target", "h_param", "target_id", "target_type", "res_pk"),
        Index("ix_search_reference_reverse", "target_type", "target_id", "res_pk"),
        Index("ix_search_reference_url", "h_param", "h_url", "res_pk"),
    ),
)
search_uri = index_table(
    "search_uri",
    Column("uri", Text, nullable=False),
    Column("h_uri", BigInteger, nullable=False),
    indexes=(Index("ix_search_uri_value", "h_param", "h_uri", "res_pk"),),
)

# A composite pairs a token (l_) with a value of another type (r_) taken from the same element,
# e.g. an Observation.component's code and its valueQuantity; the r_ columns mirror that type's table.
search_composite = index_table(
    "search_composite",
    Column("l_h_code", BigInteger),
    Column("l_h_sys_code", BigInteger),
    Column("l_h_sys", BigInteger),
    Column("r_h_code", BigInteger),
    Column("r_h_sys_code", BigInteger),
    Column("r_h_sys", BigInteger),
    Column("r_text", String(200)),
    Column("r_value", Numeric),
    Column("r_low", DateTime(timezone=True)),
    Column("r_high", DateTime(timezone=True)),
    Column("r_normalized", String(200)),
    Column("r_exact", Text),
    indexes=(
        Index("ix_search_composite_code", "l_h_code", "r_value", "h_param", "res_pk"),
        Index("ix_search_composite_sys_code", "l_h_sys_code", "r_value", "h_param", "res_pk"),
    ),
)

# Parameter type -> its index table; the order fixes the bits of resource.index_mask.
INDEX_TABLES = {
    "string": search_string, "token": search_token, "date": search_date, "number": search_number,
    "quantity": search_quantity, "reference": search_reference, "uri": search_uri, "composite": search_composite,
}
