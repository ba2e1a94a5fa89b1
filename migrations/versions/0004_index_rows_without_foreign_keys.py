"""Index rows without foreign keys; value indexes that end with res_pk; each type's live resources in pk order.

The foreign key from each index row to resource.pk was checked once per row, about 25
rows per resource, which cost a quarter of PostgreSQL's time in a bulk load. Index rows
are derived data written and deleted with their resource by the one write path.

Value indexes gain res_pk as their last column (composite ones h_param too), so a search
finds the keys of its matches in index-only scans.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

INDEX_TABLES = (
    "search_string", "search_token", "search_date", "search_number", "search_quantity", "search_reference", "search_uri",
    "search_composite",
)
# index name -> (table, columns before, columns after)
VALUE_INDEXES = {
    "ix_search_string_value": ("search_string", ["h_param", "normalized"], ["h_param", "normalized", "res_pk"]),
    "ix_search_date_low": ("search_date", ["h_param", "low"], ["h_param", "low", "res_pk"]),
    "ix_search_date_high": ("search_date", ["h_param", "high"], ["h_param", "high", "res_pk"]),
    "ix_search_number_value": ("search_number", ["h_param", "value"], ["h_param", "value", "res_pk"]),
    "ix_search_quantity_value": ("search_quantity", ["h_param", "value"], ["h_param", "value", "res_pk"]),
    "ix_search_quantity_sys_code": ("search_quantity", ["h_sys_code", "value"], ["h_sys_code", "value", "res_pk"]),
    "ix_search_quantity_code": ("search_quantity", ["h_code", "value"], ["h_code", "value", "res_pk"]),
    "ix_search_reference_target": (
        "search_reference", ["h_param", "target_id", "target_type"], ["h_param", "target_id", "target_type", "res_pk"],
    ),
    "ix_search_reference_reverse": ("search_reference", ["target_type", "target_id"], ["target_type", "target_id", "res_pk"]),
    "ix_search_reference_url": ("search_reference", ["h_param", "h_url"], ["h_param", "h_url", "res_pk"]),
    "ix_search_uri_value": ("search_uri", ["h_param", "h_uri"], ["h_param", "h_uri", "res_pk"]),
    "ix_search_composite_code": ("search_composite", ["l_h_code", "r_value"], ["l_h_code", "r_value", "h_param", "res_pk"]),
    "ix_search_composite_sys_code": (
        "search_composite", ["l_h_sys_code", "r_value"], ["l_h_sys_code", "r_value", "h_param", "res_pk"],
    ),
}
# A composite's token hash decides its parameter: without these, PostgreSQL multiplies the selectivity
# of both and underestimates matches by ~30 times, then sorts every match instead of walking in pk order.
COMPOSITE_STATISTICS = {
    "st_search_composite_code": ("l_h_code", "h_param"),
    "st_search_composite_sys_code": ("l_h_sys_code", "h_param"),
}
# SQLite's foreign keys have no names; batch mode names the reflected ones by this pattern to drop them.
SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    for table in INDEX_TABLES:
        with op.batch_alter_table(table, naming_convention=SQLITE_NAMES) as batch:
            batch.drop_constraint(foreign_key_name(table), type_="foreignkey")
    rebuild_value_indexes(after=True)
    if op.get_bind().dialect.name == "postgresql":
        for name, columns in COMPOSITE_STATISTICS.items():
            op.execute(f"CREATE STATISTICS {name} (dependencies) ON {', '.join(columns)} FROM search_composite")
    op.create_index(
        "ix_resource_live_type_pk", "resource", ["res_type", "pk"],
        postgresql_where=sa.text("NOT deleted"), sqlite_where=sa.text("NOT deleted"),
    )


def downgrade() -> None:
    op.drop_index("ix_resource_live_type_pk", "resource")
    if op.get_bind().dialect.name == "postgresql":
        for name in COMPOSITE_STATISTICS:
            op.execute(f"DROP STATISTICS {name}")
    rebuild_value_indexes(after=False)
    for table in INDEX_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(foreign_key_name(table), "resource", ["res_pk"], ["pk"], ondelete="CASCADE")


def foreign_key_name(table: str) -> str:
    """PostgreSQL's default name for the key, or the one SQLITE_NAMES gives SQLite's."""
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_{table}_res_pk_resource"
    return f"{table}_res_pk_fkey"


def rebuild_value_indexes(after: bool) -> None:
    for name, (table, before_columns, after_columns) in VALUE_INDEXES.items():
        op.drop_index(name, table)
        op.create_index(name, table, after_columns if after else before_columns)
