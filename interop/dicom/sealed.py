"""The DICOM feed's sealed values: each stored object's bytes in blob storage and the patient module kept with each
instance (service.py), sealed under a value key when protection is on; sealed again by `ehr keys rewrap` and counted
by `ehr keys retire` (app/protection/commands.py), by the `sealed_with` key each row records.

A blob is rewritten before its row says so, so a crash between them leaves a row whose blob is sealed under the new
key while the row still names the old: the next rewrap reseals it again (opening reads the key id from the blob)."""
import logging
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, Table, func, or_, select, update

from app.config import load_settings
from app.feeds import rows_resealed
from app.protection.fields import FORMAT, blob_key_id, sealed_under
from app.protection.service import protection_of
from app.store.db import read_unit
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.tables import dicom_instance, dicom_quarantine

BATCH_SIZE = 200
log = logging.getLogger("ehr.dicom")


def blob_context(key: str) -> str:
    """What a sealed object is bound to: its key, so that bytes copied under another key do not open."""
    return f"dicom blob {key}"


def patient_context(sop_instance_uid: str) -> str:
    return f"dicom_instance.patient|{sop_instance_uid}"


class DicomSealing:
    """The configured blob storage (EHR_DICOM_STORAGE) and its rows, as a store `ehr keys rewrap` goes through."""

    def rows_to_rewrap(self, engine: Engine, rebuild_index: bool) -> int:
        with read_unit(engine) as connection:
            return sum(connection.execute(select(func.count()).select_from(table)).scalar() for table in (dicom_instance, dicom_quarantine))

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        """Every object and patient module not sealed under the primary value key sealed again, by this process
        (`rebuild_index` does nothing: no blind rows are kept of them)."""
        blobs = DirectoryBlobStore(Path(load_settings().dicom_storage))
        for table in (dicom_instance, dicom_quarantine):
            yield from rows_resealed(engine, table.c.id, lambda connection, rows, table=table: sum(resealed(connection, table, blobs, row) for row in rows),
                                     BATCH_SIZE)

    def key_uses(self, engine: Engine, key_id: str) -> int:
        prefix = f"{FORMAT}{key_id}:"
        with read_unit(engine) as connection:
            instances = connection.execute(select(func.count()).select_from(dicom_instance).where(or_(
                dicom_instance.c.sealed_with == key_id, func.substr(dicom_instance.c.patient, 1, len(prefix)) == prefix,
            ))).scalar()
            quarantined = connection.execute(select(func.count()).select_from(dicom_quarantine).where(dicom_quarantine.c.sealed_with == key_id)).scalar()
        return instances + quarantined


def resealed(connection, table: Table, blobs: DirectoryBlobStore, row) -> bool:
    """Seal one row's blob (and patient module) again under the primary value key, unless they are; whether it did."""
    protection = protection_of(connection)
    primary = protection.ring().primary("value").id
    patient = getattr(row, "patient", None)
    if row.sealed_with == primary and sealed_under(patient, primary):
        return False
    context = blob_context(row.blob)
    try:
        stored = blobs.get(row.blob)
    except FileNotFoundError:  # EHR_DICOM_STORAGE names another directory, or the file was removed: the row keeps its key
        log.warning("dicom blob %s is missing from %s: not sealed again", row.blob, blobs.root)
        return False
    sealed = protection.sealed_blob(protection.opened_blob(stored, context), context)
    blobs.put(row.blob, sealed)
    values = {"sealed_with": blob_key_id(sealed)}
    if patient is not None:
        values["patient"] = protection.sealed_text(protection.opened_text(patient, patient_context(row.sop_instance_uid)), patient_context(row.sop_instance_uid))
    connection.execute(update(table).where(table.c.id == row.id).values(**values))
    return True
