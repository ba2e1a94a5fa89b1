"""Index rows without foreign keys; an index of each type's live resources in pk order.

The foreign key from each index row to resource.pk was checked once per row, about 25
rows per resource, which cost a quarter of PostgreSQL's time in a bulk load. Index rows
are derived data written and deleted with their resource by the one write path.

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
# SQLite's foreign keys have no names; batch mode names the reflected ones by this pattern to drop them.
SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    for table in INDEX_TABLES:
        with op.batch_alter_table(table, naming_convention=SQLITE_NAMES) as batch:
            batch.drop_constraint(foreign_key_name(table), type_="foreignkey")
    op.create_index(
        "ix_resource_live_type_pk", "resource", ["res_type", "pk"],
        postgresql_where=sa.text("NOT deleted"), sqlite_where=sa.text("NOT deleted"),
    )


def downgrade() -> None:
    op.drop_index("ix_resource_live_type_pk", "resource")
    for table in INDEX_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(foreign_key_name(table), "resource", ["res_pk"], ["pk"], ondelete="CASCADE")


def foreign_key_name(table: str) -> str:
    """PostgreSQL's default name for the key, or the one SQLITE_NAMES gives SQLite's."""
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_{table}_res_pk_resource"
    return f"{table}_res_pk_fkey"
