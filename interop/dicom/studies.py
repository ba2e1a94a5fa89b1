"""Each ImagingStudy brought up to date with its study's stored instances, through the one writer.

Storing an instance marks its study (service.py mark_pending) in the instance's transaction; an update claims a
marked study, builds its ImagingStudy again from every stored instance (mapping.py), finds or makes its Patient and
referring Practitioner, writes what changed with a Provenance, and removes the marks it saw (an instance stored
meanwhile leaves its own). The C-STORE SCP updates after each association and every few seconds, so that a study sent over one
association becomes one version, not one per instance; marks survive a restart."""
import logging
import threading
import time
from datetime import datetime

import orjson
from pydicom import Dataset
from sqlalchemy import Engine, delete, func, select

from app.errors import Gone, NotFound
from app.model.instants import format_instant, utc_now
from app.protection.service import protection_of
from app.search.index import hash64
from app.store.db import conflict_insert, is_postgresql, read_unit
from app.store.resources import StoredResource, same_content
from app.store.unit import Unit, writing
from interop.dicom import mapping
from interop.dicom.sealed import patient_context
from interop.dicom.tables import dicom_instance, dicom_study, dicom_study_pending
from interop.hl7v2.authorities import authority_systems
from interop.hl7v2.mapping.upserts import identifier_criteria

log = logging.getLogger("ehr.dicom")
CLAIM_CANDIDATES = 20  # marked studies looked at for one not held by another update


def update_pending_studies(engine: Engine, dicomweb_address: str | None, only: set[str] | None = None) -> int:
    """Update the ImagingStudy of every marked study (or of those `only` names), each in its own transaction, naming
    the Endpoint of the DICOMweb service at `dicomweb_address` (when known); how many were updated. Several processes may run this at once: each
    takes other studies (an advisory lock per study on PostgreSQL; SQLite has one writer). A study whose update fails
    is logged and left marked for the next round; the others are updated all the same."""
    systems = authority_systems(engine)
    updated, failed = 0, set()
    while True:
        study_uid = None
        try:
            with writing(engine) as unit:
                claimed = claimed_study(unit.connection, failed, only)
                if claimed is None:
                    return updated
                study_uid, marks = claimed
                update_study(unit, study_uid, systems, dicomweb_address)
                unit.connection.execute(delete(dicom_study_pending).where(dicom_study_pending.c.id.in_(marks)))
            updated += 1
        except Exception:
            if study_uid is None:  # the claim itself failed: the database did
                raise
            log.exception("the ImagingStudy of DICOM study %s could not be written (its instances are stored)", study_uid)
            failed.add(study_uid)


class LaterUpdates:
    """ImagingStudy updates a little later, by a thread of this process that runs while studies are marked: a stream
    of requests that each store a few instances of a large study then makes one version every `delay` seconds, not one
    per request (each rebuilds the ImagingStudy from all of the study's instances). Each round updates every marked
    study (also those another process left, or could not claim just then), and the thread stops when none is left,
    or when the database fails (the marks stay for the round a later request asks for)."""

    def __init__(self, engine: Engine, dicomweb_address: str | None, delay: float):
        self.engine, self.dicomweb_address, self.delay = engine, dicomweb_address, delay
        self.lock = threading.Lock()
        self.asked = False  # a request marked studies since the last round began
        self.running = False

    def ask(self) -> None:
        with self.lock:
            self.asked = True
            if not self.running:
                self.running = True
                threading.Thread(target=self.run, name="ehr-dicom-later-updates", daemon=True).start()

    def run(self) -> None:
        while True:
            time.sleep(self.delay)
            with self.lock:
                self.asked = False
            try:
                update_pending_studies(self.engine, self.dicomweb_address)
                left = studies_marked(self.engine)
            except Exception:  # the database failed: the marks stay, for the round the next request asks for
                log.exception("DICOM ImagingStudy updates failed (the instances are stored)")
                left = False
            with self.lock:
                if not left and not self.asked:
                    self.running = False
                    return


def studies_marked(engine: Engine) -> bool:
    with read_unit(engine) as connection:
        return connection.execute(select(dicom_study_pending.c.id).limit(1)).first() is not None


def claimed_study(connection, excluding: set[str], only: set[str] | None) -> tuple[str, list[int]] | None:
    """The marked study waiting longest that no other update holds (not `excluding`; one of `only`, if given), held
    now, and the ids of its marks seen: the update removes those alone, so that an instance stored meanwhile leaves its
    mark for the next one."""
    column = dicom_study_pending.c.study_uid
    chosen = [column.not_in(excluding), *([column.in_(only)] if only is not None else [])]
    waiting = select(column).where(*chosen).group_by(column).order_by(func.min(dicom_study_pending.c.id))
    for study_uid in connection.execute(waiting.limit(CLAIM_CANDIDATES)).scalars():
        if is_postgresql(connection) and not connection.execute(select(func.pg_try_advisory_xact_lock(hash64("dicom study", study_uid)))).scalar():
            continue
        marks = list(connection.execute(select(dicom_study_pending.c.id).where(dicom_study_pending.c.study_uid == study_uid)).scalars())
        if marks:
            return study_uid, marks
    return None


def update_study(unit: Unit, study_uid: str, systems: dict[str, str], dicomweb_address: str | None) -> None:
    """Write the study's ImagingStudy (and its Patient and referrer when new) from its stored instances."""
    rows = unit.connection.execute(
        select(dicom_instance.c.sop_instance_uid, dicom_instance.c.attributes, dicom_instance.c.patient, dicom_instance.c.peer)
        .where(dicom_instance.c.study_uid == study_uid).order_by(dicom_instance.c.id)
    ).all()
    if not rows:
        return
    instances = [Dataset.from_json(row.attributes) for row in rows]
    written = []
    subject, created = study_patient(unit, study_uid, rows, systems)
    written += [subject] if created else []
    referrer = None
    if (key := mapping.referrer_key(instances[0])) is not None:
        result = unit.create_unless_matched(mapping.referrer_body(instances[0], key, study_uid), "Practitioner", identifier_criteria(key))
        referrer = f"Practitioner/{result.stored.id}"
        written += [referrer] if result.created else []
    endpoint = None
    if dicomweb_address:
        result = unit.create_unless_matched(mapping.endpoint_body(dicomweb_address, study_uid), "Endpoint",
                                            identifier_criteria(mapping.endpoint_key(dicomweb_address)))
        endpoint = f"Endpoint/{result.stored.id}"
        written += [endpoint] if result.created else []
    body = mapping.imaging_study(study_uid, instances, subject, referrer, endpoint)
    study_id, changed = written_study(unit, body, recorded_study_id(unit.connection, study_uid))
    written += [f"ImagingStudy/{study_id}"] if changed else []
    record_query_attributes(unit.connection, study_uid, instances[0], body, study_id)
    if written:
        unit.create(provenance(written, study_uid, sorted({row.peer for row in rows}), utc_now()))


def study_patient(unit: Unit, study_uid: str, rows: list, systems: dict[str, str]) -> tuple[str, bool]:
    """`Patient/id` of the study's patient (the patient module of its first instance that has a PatientID), made
    from that module when no Patient has its identifier; and whether it was made now."""
    protection = protection_of(unit.connection)
    modules = (Dataset.from_json(orjson.loads(protection.opened_text(row.patient, patient_context(row.sop_instance_uid)))) for row in rows)
    first = next(modules)
    patient = first if mapping.text(first, "PatientID") else next((module for module in modules if mapping.text(module, "PatientID")), first)
    key = mapping.patient_key(patient, study_uid, systems)
    result = unit.create_unless_matched(mapping.patient_body(patient, key, study_uid), "Patient", identifier_criteria(key))
    return f"Patient/{result.stored.id}", result.created


def written_study(unit: Unit, body: dict, recorded_id: str | None) -> tuple[str, bool]:
    """Create or update the study's ImagingStudy: the one the feed wrote (`recorded_id`), or the first time the one
    ImagingStudy with the study's identifier (written before its id was recorded), else a new one; its id, and
    whether it was written now (not when it already says this)."""
    existing = recorded_study(unit, recorded_id) if recorded_id else adoptable_study(unit, body)
    if existing is None:
        return unit.create(body, "ImagingStudy").stored.id, True
    if same_content(existing.body, {**body, "id": existing.id}):
        return existing.id, False
    unit.update("ImagingStudy", existing.id, {**body, "id": existing.id}, found=existing)
    return existing.id, True


def recorded_study_id(connection, study_uid: str) -> str | None:
    return connection.execute(select(dicom_study.c.imaging_study).where(dicom_study.c.study_uid == study_uid)).scalar()


def recorded_study(unit: Unit, study_id: str) -> StoredResource | None:
    """The ImagingStudy the feed wrote for the study; None when it was deleted since (a new one is written)."""
    try:
        return unit.read("ImagingStudy", study_id)
    except (NotFound, Gone):
        return None


def adoptable_study(unit: Unit, body: dict) -> StoredResource | None:
    """The one ImagingStudy with the study's identifier; None when there is none, or several (one is not the feed's)."""
    matches = unit.matching("ImagingStudy", identifier_criteria(body["identifier"][0]))
    return matches[0] if len(matches) == 1 else None


def record_query_attributes(connection, study_uid: str, first: Dataset, body: dict, study_id: str) -> None:
    """The study's row of dicom_study, which QIDO-RS and C-FIND match (query.py), with its ImagingStudy's id."""
    values = {
        "study_date": (mapping.text(first, "StudyDate") or "")[:8] or None,
        "accession_number": (mapping.text(first, "AccessionNumber") or "")[:64] or None,
        "modalities": ("\\" + "".join(f"{coding['code']}\\" for coding in body.get("modality", [])))[:200],
        "imaging_study": study_id,
    }
    connection.execute(conflict_insert(connection.dialect.name, dicom_study).values(study_uid=study_uid, **values)
                       .on_conflict_do_update(index_elements=["study_uid"], set_=values))


def provenance(targets: list[str], study_uid: str, peers: list[str], moment: datetime) -> dict:
    return {
        "resourceType": "Provenance",
        "meta": {"source": mapping.SOURCE_PREFIX + study_uid},
        "target": [{"reference": target} for target in targets],
        "recorded": format_instant(moment),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"display": "DICOM " + ", ".join(peers)},
        }],
        "entity": [{"role": "source", "what": {"identifier": mapping.study_identifier(study_uid), "display": f"DICOM study {study_uid}"}}],
    }
