"""Composite search index: a token paired with a value from the same element.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "search_composite",
        sa.Column("res_pk", SEQ, sa.ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("h_param", sa.BigInteger, nullable=False),
        sa.Column("l_h_code", sa.BigInteger),
        sa.Column("l_h_sys_code", sa.BigInteger),
        sa.Column("l_h_sys", sa.BigInteger),
        sa.Column("r_h_code", sa.BigInteger),
        sa.Column("r_h_sys_code", sa.BigInteger),
        sa.Column("r_h_sys", sa.BigInteger),
        sa.Column("r_text", sa.String(200)),
        sa.Column("r_value", sa.Numeric),
        sa.Column("r_low", sa.DateTime(timezone=True)),
        sa.Column("r_high", sa.DateTime(timezone=True)),
        sa.Column("r_normalized", sa.String(200)),
        sa.Column("r_exact", sa.Text),
    )
    op.create_index("ix_search_composite_res_pk", "search_composite", ["res_pk"])
    op.create_index("ix_search_composite_code", "search_composite", ["l_h_code", "r_value"])
    op.create_index("ix_search_composite_sys_code", "search_composite", ["l_h_sys_code", "r_value"])


def downgrade() -> None:
    op.drop_table("search_composite")
