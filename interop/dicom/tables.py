"""The DICOM feed's own tables, on the store's metadata. No module outside interop/dicom queries them.

dicom_instance: each object stored, its encoded bytes in blob storage (blobs.py) under `blob`, and the attributes the
ImagingStudy mapping reads (DICOM JSON, no pixel data): the study, series and instance modules' in `attributes`, the
patient module's in `patient`, sealed like the bytes when protection is on. dicom_quarantine: what could not be stored as an instance, kept with the reason. dicom_study_pending: the
studies whose ImagingStudy is to be brought up to date with their instances (written with each instance, in its
transaction, so that an update survives a restart)."""
from sqlalchemy import JSON, BigInteger, Column, DateTime, Identity, Index, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from app.store import Sequence, metadata

Attributes = JSON().with_variant(JSONB(), "postgresql")

dicom_instance = Table(
    "dicom_instance",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("sop_instance_uid", String(64), nullable=False, unique=True),
    Column("sop_class_uid", String(64), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("transfer_syntax_uid", String(64), nullable=False),
    Column("blob", String(300), nullable=False),
    Column("sealed_with", String(16)),  # the value key that sealed the blob and the patient module; None: in the clear
    Column("size", BigInteger, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("peer", String(200), nullable=False),  # dicom:<calling AE>@host:port, or http:host
    Column("attributes", Attributes, nullable=False),
    Column("patient", Text, nullable=False),  # DICOM JSON of the patient module, sealed when protection is on
    Index("ix_dicom_instance_study_series", "study_uid", "series_uid"),
)

dicom_quarantine = Table(
    "dicom_quarantine",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("peer", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("blob", String(300), nullable=False),
    Column("sealed_with", String(16)),
    Column("size", BigInteger, nullable=False),
)

dicom_study = Table(  # each study's attributes that QIDO-RS and C-FIND match, written with its ImagingStudy
    "dicom_study",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("study_date", String(8)),  # YYYYMMDD
    Column("accession_number", String(64)),
    Column("modalities", String(200), nullable=False),  # \CT\SR\ : each series' modality between backslashes
    Column("imaging_study", String(64)),  # the id of the study's ImagingStudy, as the feed wrote it
    Index("ix_dicom_study_date", "study_date"),
    Index("ix_dicom_study_accession", "accession_number"),
    Index("ix_dicom_study_imaging_study", "imaging_study"),
)

dicom_study_pending = Table(  # a row per instance stored: a study's rows are taken by the update that saw them
    "dicom_study_pending",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Index("ix_dicom_study_pending_study", "study_uid"),
)
