"""HL7 v2 application acknowledgements: the senders' outbound destinations and the outbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hl7_destination",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("sending_application", sa.String(227), nullable=False),
        sa.Column("sending_facility", sa.String(227), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("port", sa.Integer, nullable=False),
        sa.Column("tls", sa.Boolean, nullable=False),
        sa.Column("ca_file", sa.String(1000)),
        sa.Column("cert_file", sa.String(1000)),
        sa.Column("key_file", sa.String(1000)),
        sa.UniqueConstraint("sending_application", "sending_facility", name="uq_hl7_destination_sender"),
    )
    op.create_table(
        "hl7_outbox",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("message_id", SEQ, nullable=False),
        sa.Column("sending_application", sa.String(227)),
        sa.Column("sending_facility", sa.String(227)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("codec", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True)),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("reply", sa.Text),
    )
    op.create_index("ix_hl7_outbox_status_sender_id", "hl7_outbox", ["status", "sending_application", "sending_facility", "id"])


def downgrade() -> None:
    op.drop_table("hl7_outbox")
    op.drop_table("hl7_destination")
