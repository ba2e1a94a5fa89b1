"""search_token's hash indexes leave out the rows without a hash in their column (app/store/schema.py hash_index):
most token rows have no system, and blind string prefixes neither system nor code hash, so every write of such rows
inserted index entries no search reads. Rebuilding them takes search_token's lock for a few seconds per million rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

HASH_INDEXES = {"ix_search_token_code": "h_code", "ix_search_token_sys_code": "h_sys_code", "ix_search_token_sys": "h_sys"}


def upgrade() -> None:
    for name, column in HASH_INDEXES.items():
        op.drop_index(name, "search_token")
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, "search_token", [column, "res_pk"], postgresql_where=where, sqlite_where=where)


def downgrade() -> None:
    for name, column in HASH_INDEXES.items():
        op.drop_index(name, "search_token")
        op.create_index(name, "search_token", [column, "res_pk"])
