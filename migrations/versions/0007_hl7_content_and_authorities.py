"""HL7 v2: a re-send is the same sender, control id and content; warnings kept with each message; identifier
systems an operator sets per assigning authority.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("hl7_message") as batch:
        batch.add_column(sa.Column("content_hash", sa.String(64)))
        batch.add_column(sa.Column("reuses_control_id_of", SEQ))
        batch.add_column(sa.Column("warnings", sa.Text))
        batch.drop_constraint("uq_hl7_message_sender_control_id", type_="unique")
        batch.create_unique_constraint(
            "uq_hl7_message_sender_control_id_content", ["sending_application", "sending_facility", "control_id", "content_hash"],
        )
    op.create_table(
        "hl7_authority",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(227), nullable=False),
        sa.Column("system", sa.String(1000), nullable=False),
        sa.UniqueConstraint("name", name="uq_hl7_authority_name"),
    )


def downgrade() -> None:
    op.drop_table("hl7_authority")
    with op.batch_alter_table("hl7_message") as batch:
        batch.drop_constraint("uq_hl7_message_sender_control_id_content", type_="unique")
        batch.create_unique_constraint("uq_hl7_message_sender_control_id", ["sending_application", "sending_facility", "control_id"])
        batch.drop_column("warnings")
        batch.drop_column("reuses_control_id_of")
        batch.drop_column("content_hash")
