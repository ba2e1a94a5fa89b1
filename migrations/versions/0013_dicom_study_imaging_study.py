"""DICOM: each study's ImagingStudy by id (dicom_study.imaging_study), so that the study is updated, audited and
confined through the ImagingStudy the feed wrote, never through another that names the same Study Instance UID.
Every study is marked for an update, which fills the column in (interop/dicom/studies.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dicom_study", sa.Column("imaging_study", sa.String(64)))
    op.create_index("ix_dicom_study_imaging_study", "dicom_study", ["imaging_study"])
    op.execute("INSERT INTO dicom_study_pending (study_uid) SELECT study_uid FROM dicom_study")


def downgrade() -> None:
    op.drop_index("ix_dicom_study_imaging_study", "dicom_study")
    op.drop_column("dicom_study", "imaging_study")
