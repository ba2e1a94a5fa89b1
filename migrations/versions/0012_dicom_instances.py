"""DICOM: stored instances, quarantined objects, each study's query attributes, and the studies whose ImagingStudy is
to be updated (interop/dicom/tables.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ATTRIBUTES = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "dicom_instance",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("study_uid", sa.String(64), nullable=False),
        sa.Column("series_uid", sa.String(64), nullable=False),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("blob", sa.String(300), nullable=False),
        sa.Column("sealed_with", sa.String(16)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(200), nullable=False),
        sa.Column("attributes", ATTRIBUTES, nullable=False),
        sa.Column("patient", sa.Text, nullable=False),
    )
    op.create_index("ix_dicom_instance_study_series", "dicom_instance", ["study_uid", "series_uid"])
    op.create_table(
        "dicom_quarantine",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("blob", sa.String(300), nullable=False),
        sa.Column("sealed_with", sa.String(16)),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "dicom_study",
        sa.Column("study_uid", sa.String(64), primary_key=True),
        sa.Column("study_date", sa.String(8)),
        sa.Column("accession_number", sa.String(64)),
        sa.Column("modalities", sa.String(200), nullable=False),
    )
    op.create_index("ix_dicom_study_date", "dicom_study", ["study_date"])
    op.create_index("ix_dicom_study_accession", "dicom_study", ["accession_number"])
    op.create_table(
        "dicom_study_pending",
        sa.Column("id", SEQ, sa.Identity(), primary_key=True),
        sa.Column("study_uid", sa.String(64), nullable=False),
    )
    op.create_index("ix_dicom_study_pending_study", "dicom_study_pending", ["study_uid"])


def downgrade() -> None:
    op.drop_table("dicom_study_pending")
    op.drop_table("dicom_study")
    op.drop_table("dicom_quarantine")
    op.drop_index("ix_dicom_instance_study_series", "dicom_instance")
    op.drop_table("dicom_instance")
