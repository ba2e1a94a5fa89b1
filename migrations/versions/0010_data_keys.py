"""Field-level protection: the data keys, wrapped by a key-encryption key kept outside the database
(app/protection/tables.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_key",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("purpose", sa.String(8), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
        sa.Column("covered_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("data_key")
