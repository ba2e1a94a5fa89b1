"""Search index tables, one per search parameter type.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("search_string", "search_token", "search_date", "search_number", "search_quantity", "search_reference", "search_uri")


def create_index_table(name: str, *columns) -> None:
    op.create_table(
        name,
        sa.Column("res_pk", SEQ, sa.ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False),
        sa.Column("h_param", sa.BigInteger, nullable=False),
        *columns,
    )
    op.create_index(f"ix_{name}_res_pk", name, ["res_pk"])


def upgrade() -> None:
    create_index_table("search_string", sa.Column("normalized", sa.String(200), nullable=False), sa.Column("exact", sa.Text, nullable=False))
    op.create_index("ix_search_string_value", "search_string", ["h_param", "normalized"])

    create_index_table(
        "search_token",
        sa.Column("h_code", sa.BigInteger), sa.Column("h_sys_code", sa.BigInteger), sa.Column("h_sys", sa.BigInteger),
        sa.Column("system", sa.Text), sa.Column("code", sa.Text), sa.Column("text", sa.String(200)),
    )
    op.create_index("ix_search_token_code", "search_token", ["h_code", "res_pk"])
    op.create_index("ix_search_token_sys_code", "search_token", ["h_sys_code", "res_pk"])
    op.create_index("ix_search_token_sys", "search_token", ["h_sys", "res_pk"])

    create_index_table("search_date", sa.Column("low", sa.DateTime(timezone=True), nullable=False), sa.Column("high", sa.DateTime(timezone=True), nullable=False))
    op.create_index("ix_search_date_low", "search_date", ["h_param", "low"])
    op.create_index("ix_search_date_high", "search_date", ["h_param", "high"])

    create_index_table("search_number", sa.Column("value", sa.Numeric, nullable=False))
    op.create_index("ix_search_number_value", "search_number", ["h_param", "value"])

    create_index_table(
        "search_quantity",
        sa.Column("h_sys_code", sa.BigInteger), sa.Column("h_code", sa.BigInteger), sa.Column("value", sa.Numeric, nullable=False),
        sa.Column("system", sa.Text), sa.Column("code", sa.Text), sa.Column("unit", sa.Text),
    )
    op.create_index("ix_search_quantity_value", "search_quantity", ["h_param", "value"])
    op.create_index("ix_search_quantity_sys_code", "search_quantity", ["h_sys_code", "value"])
    op.create_index("ix_search_quantity_code", "search_quantity", ["h_code", "value"])

    create_index_table(
        "search_reference",
        sa.Column("target_type", sa.String(64)), sa.Column("target_id", sa.String(64)), sa.Column("target_version", sa.String(64)),
        sa.Column("url", sa.Text), sa.Column("h_url", sa.BigInteger),
    )
    op.create_index("ix_search_reference_target", "search_reference", ["h_param", "target_id", "target_type"])
    op.create_index("ix_search_reference_reverse", "search_reference", ["target_type", "target_id"])
    op.create_index("ix_search_reference_url", "search_reference", ["h_param", "h_url"])

    create_index_table("search_uri", sa.Column("uri", sa.Text, nullable=False), sa.Column("h_uri", sa.BigInteger, nullable=False))
    op.create_index("ix_search_uri_value", "search_uri", ["h_param", "h_uri"])


def downgrade() -> None:
    for name in reversed(TABLES):
        op.drop_table(name)
