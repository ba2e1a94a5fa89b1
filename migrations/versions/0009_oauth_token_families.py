"""SMART on FHIR: refresh token families. Each token issued by refreshing another keeps the family of the first one,
so that a refresh token used a second time (stolen, or replayed) revokes the whole family (OAuth 2.0 Security Best
Current Practice, refresh token rotation).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oauth_token") as table:
        table.add_column(sa.Column("family_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite")))
    op.create_index("ix_oauth_token_family_id", "oauth_token", ["family_id"])


def downgrade() -> None:
    op.drop_index("ix_oauth_token_family_id", "oauth_token")
    with op.batch_alter_table("oauth_token") as table:
        table.drop_column("family_id")
