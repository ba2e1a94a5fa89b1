"""Store, then acknowledge: the one service behind both DICOM entrances (the C-STORE SCP, scp.py; STOW-RS, http.py).

An object's encoded bytes (a DICOM Part 10 stream: preamble, file meta, data set) go to blob storage as received,
pixel data never decoded, sealed when protection is on; then its row, the attributes the ImagingStudy mapping reads
and its study marked for an ImagingStudy update (studies.py), in one transaction; only then is it answered success.
An object already stored (its SOP Instance UID, in the same study and series) is answered success and not stored again;
one whose SOP Instance UID is stored in another study or series is quarantined as a conflict. What cannot be read as an
instance is quarantined with the reason and answered with a failure status (0xC000: cannot understand)."""
import logging
import re
import uuid
from dataclasses import dataclass
from io import BytesIO

import orjson
from pydicom import Dataset, dcmread
from sqlalchemy import Engine, delete, func, select, update

from app.model.instants import utc_now
from app.protection.fields import blob_key_id
from app.protection.service import protection_of
from app.store.db import conflict_insert, read_unit, write_unit
from interop.dicom.blobs import BlobStore
from interop.dicom.sealed import blob_context, patient_context
from interop.dicom.tables import dicom_instance, dicom_quarantine, dicom_study_pending

log = logging.getLogger("ehr.dicom")
SUCCESS = 0x0000
CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3: failure, cannot understand (C000-CFFF)
NOT_OF_THE_STUDY = 0xA900  # PS3.18 STOW-RS: an instance posted to /studies/{uid} of another study
UID = re.compile(r"[0-9]+(\.[0-9]+)*")  # PS3.5 forbids leading zeros in a component; devices send them, archives take them
# The patient module: sealed with each instance (it names the patient), read to find or make the Patient.
PATIENT_KEYWORDS = ("PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientName", "PatientBirthDate", "PatientSex")
# The study, series and instance attributes the ImagingStudy mapping reads, kept in the clear.
INDEXED_KEYWORDS = (
    "StudyInstanceUID", "StudyDate", "StudyTime", "TimezoneOffsetFromUTC", "AccessionNumber", "StudyDescription", "StudyID",
    "ReferringPhysicianName", "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription", "BodyPartExamined",
    "Laterality", "SeriesDate", "SeriesTime", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
)


# What an object is read for (dcmread reads these elements alone, and no pixel data).
READ_KEYWORDS = ("SOPInstanceUID", "SOPClassUID", *PATIENT_KEYWORDS, *INDEXED_KEYWORDS)


class Unstorable(Exception):
    """Bytes that are not a DICOM instance this server can index: the reason."""


@dataclass(frozen=True)
class Outcome:
    status: int  # the DICOM status to answer
    instance: "Instance | None" = None  # what was stored, or what a failure's object says it is (None: unreadable)
    reason: str | None = None


@dataclass(frozen=True)
class Instance:
    """What an object is, read from its file meta and data set (pixel data not read)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    attributes: dict  # DICOM JSON of INDEXED_KEYWORDS
    patient: dict  # DICOM JSON of PATIENT_KEYWORDS

    @classmethod
    def read(cls, encoded: bytes) -> "Instance":
        try:
            dataset = dcmread(BytesIO(encoded), stop_before_pixels=True, specific_tags=READ_KEYWORDS)
        except Exception as error:  # noqa: BLE001 - whatever pydicom raises on bytes that are not a DICOM file (zlib.error...)
            raise Unstorable(f"Not a DICOM Part 10 object: {error or type(error).__name__}") from None
        uids = {keyword: uid_of(dataset, keyword) for keyword in ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")}
        transfer_syntax = str(getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", "") or "")
        if not UID.fullmatch(transfer_syntax):
            raise Unstorable("The file meta information has no valid TransferSyntaxUID (0002,0010).")
        return cls(uids["SOPInstanceUID"], uids["SOPClassUID"], uids["StudyInstanceUID"], uids["SeriesInstanceUID"], transfer_syntax,
                   json_of(dataset, INDEXED_KEYWORDS), json_of(dataset, PATIENT_KEYWORDS))

    @property
    def blob_key(self) -> str:
        return f"instances/{self.study_uid}/{self.series_uid}/{self.sop_instance_uid}.dcm"


def uid_of(dataset: Dataset, keyword: str) -> str:
    try:
        value = str(dataset.get(keyword, "") or "").strip().rstrip("\x00")
    except Exception as error:  # noqa: BLE001 - a value pydicom cannot convert
        raise Unstorable(f"{keyword} cannot be read: {error}") from None
    if not value:
        raise Unstorable(f"The object has no {keyword}.")
    if len(value) > 64 or not UID.fullmatch(value):
        raise Unstorable(f"{keyword} '{value[:80]}' is not a UID (digits and dots, at most 64 characters).")
    return value


def json_of(dataset: Dataset, keywords: tuple[str, ...]) -> dict:
    """The attributes of `keywords` the data set holds, as DICOM JSON (PS3.18 F.2); one whose value cannot be read is
    left out (liberal in what is accepted: the instance is still stored as sent)."""
    selected = Dataset({dataset[keyword].tag: dataset[keyword] for keyword in keywords if keyword in dataset})
    try:
        return selected.to_json_dict()
    except Exception:  # noqa: BLE001 - pydicom's value conversion of what a sender wrote: each alone, to keep the others
        return {tag: value for keyword in keywords if keyword in selected for tag, value in readable_json(selected, keyword).items()}


def readable_json(dataset: Dataset, keyword: str) -> dict:
    try:
        return Dataset({dataset[keyword].tag: dataset[keyword]}).to_json_dict()
    except Exception as error:  # noqa: BLE001 - as above
        log.warning("dicom %s left out of the index: %s", keyword, error)
        return {}


class DicomStore:
    """Stores objects for an engine's database into a blob store; the ImagingStudies it writes name the Endpoint of
    the DICOMweb service at `dicomweb_address` (mapping.dicomweb_address), when known."""

    def __init__(self, engine: Engine, blobs: BlobStore, dicomweb_address: str | None = None):
        self.engine, self.blobs, self.dicomweb_address = engine, blobs, dicomweb_address

    def store(self, encoded: bytes, peer: str, study_uid: str | None = None) -> Outcome:
        """Store one object (a Part 10 stream) received from `peer` (when `study_uid` is given, only an instance of
        that study); raises only when the database or the blob store failed (then nothing is acknowledged: the
        sender is answered a failure and sends it again)."""
        instance = None
        try:
            instance = Instance.read(encoded)
            if study_uid is not None and instance.study_uid != study_uid:
                return Outcome(NOT_OF_THE_STUDY, instance, f"The instance belongs to study {instance.study_uid}, not {study_uid}.")
            return self.stored(instance, encoded, peer)
        except Unstorable as error:
            return self.quarantined(encoded, peer, str(error), instance)

    def stored(self, instance: "Instance", encoded: bytes, peer: str) -> Outcome:
        """Keep an instance's bytes (unless its first copy is kept) and write its row and its study's mark; Unstorable
        when its SOP Instance UID is stored in another study or series (the first copy stays; this one is not kept)."""
        protection = protection_of(self.engine)
        sealed = protection.sealed_blob(encoded, blob_context(instance.blob_key))
        if not self.blobs.add(instance.blob_key, sealed):  # a duplicate: the first copy stays, and its row is its own (written now, if a crash lost it)
            sealed = self.blobs.get(instance.blob_key)
            encoded = protection.opened_blob(sealed, blob_context(instance.blob_key))
            instance = Instance.read(encoded)
        with write_unit(self.engine) as connection:
            row = instance_row(instance, len(encoded), peer, protection, blob_key_id(sealed))
            inserted = connection.execute(insert_instance(connection.dialect.name), row).first()
            if inserted is not None:
                mark_pending(connection, instance.study_uid)
                return Outcome(SUCCESS, instance)
            column = dicom_instance.c
            kept = connection.execute(select(column.study_uid, column.series_uid, column.blob)
                                      .where(column.sop_instance_uid == instance.sop_instance_uid)).one()
        if kept.blob == instance.blob_key:
            return Outcome(SUCCESS, instance)
        self.blobs.delete(instance.blob_key)  # no row names it: the row of this SOP Instance UID names the first copy
        raise Unstorable(f"Stored already in another study or series: SOP Instance UID {instance.sop_instance_uid} is in study "
                         f"{kept.study_uid} series {kept.series_uid}; this object says study {instance.study_uid} series {instance.series_uid}.")

    def quarantined(self, encoded: bytes, peer: str, reason: str, instance: Instance | None = None) -> Outcome:
        """Keep what could not be stored as an instance (`instance`: what it says it is, when it could be read), with
        the reason; answered as not understood."""
        key = f"quarantine/{uuid.uuid4().hex}.dcm"
        sealed = protection_of(self.engine).sealed_blob(encoded, blob_context(key))
        self.blobs.add(key, sealed)
        sealed_with = blob_key_id(sealed)
        with write_unit(self.engine) as connection:
            connection.execute(dicom_quarantine.insert().values(
                received_at=utc_now(), peer=peer[:200], reason=reason, blob=key, sealed_with=sealed_with, size=len(encoded),
            ))
        log.warning("dicom object from %s quarantined as %s: %s", peer, key, reason)
        return Outcome(CANNOT_UNDERSTAND, instance, reason)

    def quarantined_objects(self, limit: int = 50) -> list:
        """The newest quarantined objects first: id, when, from whom, why, size."""
        column = dicom_quarantine.c
        with read_unit(self.engine) as connection:
            return connection.execute(select(column.id, column.received_at, column.peer, column.reason, column.size)
                                      .order_by(column.id.desc()).limit(limit)).all()

    def replayed(self, quarantine_id: int) -> Outcome | None:
        """Store a quarantined object again (after a fix that reads it); out of quarantine when it is stored now, kept
        there with the new reason when it is not. None when there is no such object."""
        with read_unit(self.engine) as connection:
            row = connection.execute(select(dicom_quarantine).where(dicom_quarantine.c.id == quarantine_id)).first()
        if row is None:
            return None
        encoded = self.stored_bytes(row.blob)
        try:
            outcome = self.stored(Instance.read(encoded), encoded, row.peer)
        except Unstorable as error:
            with write_unit(self.engine) as connection:
                connection.execute(update(dicom_quarantine).where(dicom_quarantine.c.id == quarantine_id).values(reason=str(error)))
            return Outcome(CANNOT_UNDERSTAND, reason=str(error))
        with write_unit(self.engine) as connection:
            connection.execute(delete(dicom_quarantine).where(dicom_quarantine.c.id == quarantine_id))
        self.blobs.delete(row.blob)
        return outcome

    def stored_objects(self, study_uid: str, series_uid: str | None = None, sop_instance_uid: str | None = None) -> list:
        """A study's stored instances (of one series, or one instance), in series and arrival order: their blob key,
        transfer_syntax_uid, series_uid and sop_instance_uid."""
        column = dicom_instance.c
        given = [(series_uid, column.series_uid), (sop_instance_uid, column.sop_instance_uid)]
        conditions = [column.study_uid == study_uid, *(of == uid for uid, of in given if uid is not None)]
        with read_unit(self.engine) as connection:
            statement = (select(column.blob, column.transfer_syntax_uid, column.series_uid, column.sop_instance_uid)
                         .where(*conditions).order_by(column.series_uid, column.id))
            return connection.execute(statement).all()

    def instance_counts(self, study_uids: set[str]) -> dict[str, int]:
        """How many instances each of the studies holds."""
        column = dicom_instance.c
        with read_unit(self.engine) as connection:
            statement = select(column.study_uid, func.count()).where(column.study_uid.in_(study_uids)).group_by(column.study_uid)
            return dict(connection.execute(statement).all())

    def stored_bytes(self, key: str) -> bytes:
        """An object's bytes as received (opened when sealed)."""
        return protection_of(self.engine).opened_blob(self.blobs.get(key), blob_context(key))


def instance_row(instance: Instance, size: int, peer: str, protection, sealed_with: str | None) -> dict:
    return {
        "sop_instance_uid": instance.sop_instance_uid, "sop_class_uid": instance.sop_class_uid, "study_uid": instance.study_uid,
        "series_uid": instance.series_uid, "transfer_syntax_uid": instance.transfer_syntax_uid, "blob": instance.blob_key,
        "sealed_with": sealed_with, "size": size,
        "received_at": utc_now(), "peer": peer[:200], "attributes": instance.attributes,
        "patient": protection.sealed_text(orjson.dumps(instance.patient).decode(), patient_context(instance.sop_instance_uid)),
    }


def insert_instance(dialect_name: str):
    """INSERT of an instance that does nothing when its SOP Instance UID is stored (another association sent it too)."""
    return conflict_insert(dialect_name, dicom_instance).on_conflict_do_nothing(index_elements=["sop_instance_uid"]).returning(dicom_instance.c.id)


def mark_pending(connection, study_uid: str) -> None:
    """Mark the study for an ImagingStudy update: a row of its own, which no update under way locks (so the store
    never waits for one), taken by the update that sees it (studies.py)."""
    connection.execute(dicom_study_pending.insert().values(study_uid=study_uid))
