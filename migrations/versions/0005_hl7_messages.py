"""HL7 v2 messages as received: stored before any acknowledgement, with their outcome.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hl7_message",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(200), nullable=False),
        sa.Column("sending_application", sa.String(227)),
        sa.Column("sending_facility", sa.String(227)),
        sa.Column("control_id", sa.String(199)),
        sa.Column("message_type", sa.String(50)),
        sa.Column("version", sa.String(60)),
        sa.Column("codec", sa.String(20)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("ack", sa.Text),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("sending_application", "sending_facility", "control_id", name="uq_hl7_message_sender_control_id"),
    )
    op.create_index("ix_hl7_message_status_id", "hl7_message", ["status", "id"])


def downgrade() -> None:
    op.drop_table("hl7_message")
