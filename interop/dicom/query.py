"""Which stored studies, series and instances a query asks for: QIDO-RS (http.py) and C-FIND (scp.py) ask here.

Study keys are matched in dicom_study (written with each ImagingStudy, studies.py): StudyInstanceUID (one or a
list), PatientID (the studies whose ImagingStudy is about a Patient that has that identifier, both found by FHIR
searches, so that it works on encrypted identifiers and follows patient merges; with IssuerOfPatientID, under that
issuer's system), AccessionNumber (exact, or with the wildcards
* and ?), StudyDate (a date, or a range: 20240101-20241231, -20241231, 20240101-) and ModalitiesInStudy. PatientName
and ReferringPhysicianName (without regard to case), StudyTime (a range too), StudyID, StudyDescription and a
PatientID with wildcards are matched on each candidate study's attributes, as are the series and instance keys
(SeriesInstanceUID, Modality, SeriesNumber; SOPInstanceUID, SOPClassUID, InstanceNumber) on the stored instances of
the studies found. An empty value (or *) matches everything; other keys are not matched."""
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from pydicom import Dataset
from sqlalchemy import Engine, func, or_, select

from app.protection.service import protection_of
from app.search.service import search_request
from app.store.db import read_unit
from app.store.resources import StoredResource
from app.store.unit import Unit, reading
from interop.dicom.mapping import DICOM_UID, text
from interop.dicom.sealed import patient_context
from interop.dicom.tables import dicom_instance, dicom_study
from interop.hl7v2.authorities import authority_systems
from interop.hl7v2.mapping.datatypes import system_of_authority
from interop.hl7v2.mapping.upserts import SEARCH_SPECIAL

LEVELS = ("STUDY", "SERIES", "IMAGE")
MAX_PATIENTS = 1000  # Patients one PatientID (and issuer) may name
MAX_PATIENTS_PER_SEARCH = 100
STUDIES_PER_SEARCH = 100  # Study Instance UIDs in one search of their ImagingStudies
MAX_STUDIES = 100_000  # ImagingStudies of the patients of one PatientID
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber")
READ_STUDY_KEYS = ("PatientName", "StudyTime", "StudyID", "StudyDescription", "ReferringPhysicianName")  # not in dicom_study
NAME_KEYS = frozenset({"PatientName", "ReferringPhysicianName"})
TIME_KEYS = frozenset({"StudyTime"})
INSTANCE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")


@dataclass(frozen=True)
class Query:
    level: str  # STUDY, SERIES or IMAGE (instances)
    keys: dict[str, str] = field(default_factory=dict)  # keyword -> value as DICOM matching takes it (empty: any)
    limit: int = 100
    offset: int = 0
    within: frozenset[str] | None = None  # the StudyInstanceUIDs the caller may see; None: every study

    def value(self, keyword: str) -> str | None:
        """The key's value; None for one that matches everything (empty, *, or separators alone)."""
        value = (self.keys.get(keyword) or "").strip(" \x00")  # NUL pads a UI value
        return value if uid_list(value) and value != "*" else None

    def names_nothing_stored(self) -> bool:
        """A value with a NUL inside matches no stored value (and PostgreSQL takes none in a text parameter)."""
        return any("\x00" in value.strip(" \x00") for value in self.keys.values() if value)


def matches(engine: Engine, query: Query) -> list[Dataset]:
    """Each match's attributes at the query's level (the study's, with the series' and the instance's below it), from
    `offset`, at most `limit`. Keys the study index does not hold (study_keys_read) are matched on each candidate."""
    if query.names_nothing_stored():
        return []
    with read_unit(engine) as connection:
        conditions = study_conditions(connection, engine, query)
        if conditions is None:
            return []
        studies = (select(dicom_study.c.study_uid).where(*conditions)
                   .order_by(dicom_study.c.study_date.is_(None), dicom_study.c.study_date.desc(), dicom_study.c.study_uid))
        if query.level == "STUDY":
            if not study_keys_read(query):
                return study_answers(connection, list(connection.execute(studies.limit(query.limit).offset(query.offset)).scalars()))
            candidates = study_answers(connection, list(connection.execute(studies).scalars()))
            return [answer for answer in candidates if study_matches(query, answer)][query.offset:query.offset + query.limit]
        rows = connection.execute(
            select(dicom_instance.c.study_uid, dicom_instance.c.series_uid, dicom_instance.c.sop_instance_uid, dicom_instance.c.attributes,
                   dicom_instance.c.patient).where(dicom_instance.c.study_uid.in_(studies.scalar_subquery())).order_by(dicom_instance.c.id)
        ).all()
        protection = protection_of(connection)
    found = [row for row in rows if instance_matches(query, Dataset.from_json(row.attributes))]
    if study_keys_read(query):
        found = [row for row in found if study_matches(query, with_patient(Dataset.from_json(row.attributes), row, protection))]
    if query.level == "SERIES":
        return series_answers(found, protection, query)
    return [with_patient(Dataset.from_json(row.attributes), row, protection) for row in found[query.offset:query.offset + query.limit]]


def study_keys_read(query: Query) -> list[str]:
    """The study keys of the query that the study index does not hold: matched on each candidate's attributes."""
    keys = [keyword for keyword in READ_STUDY_KEYS if query.value(keyword) is not None]
    if (patient_id := query.value("PatientID")) is not None and has_wildcard(patient_id):
        keys.append("PatientID")
    return keys


def study_matches(query: Query, attributes: Dataset) -> bool:
    return all(value_matches(query.value(keyword), text(attributes, keyword), keyword) for keyword in study_keys_read(query))


def study_conditions(connection, engine: Engine, query: Query) -> list | None:
    """The SQL conditions on dicom_study; None when no study can match (a PatientID no Patient has)."""
    column = dicom_study.c
    conditions = [] if query.within is None else [column.study_uid.in_(query.within)]
    if (uids := query.value("StudyInstanceUID")) is not None:
        conditions.append(column.study_uid.in_(uid_list(uids)))
    if (accession := query.value("AccessionNumber")) is not None:
        conditions.append(wildcard_condition(connection, column.accession_number, accession))
    if (dates := query.value("StudyDate")) is not None:
        conditions += date_conditions(column.study_date, dates)
    if (modality := query.value("ModalitiesInStudy")) is not None:
        conditions.append(or_(*(column.modalities.contains(f"\\{code}\\", autoescape=True) for code in uid_list(modality))))
    if (patient_id := query.value("PatientID")) is not None and not has_wildcard(patient_id):
        studies = studies_of_patients(engine, patients_named(engine, patient_id, query.value("IssuerOfPatientID")))
        if not studies:
            return None
        conditions.append(column.study_uid.in_(studies))
    return conditions


def uid_list(value: str) -> list[str]:
    """A list of values: separated by backslashes (C-FIND) or commas (QIDO-RS)."""
    return [part.strip() for part in value.replace("\\", ",").split(",") if part.strip()]


def has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def wildcard_condition(connection, column, value: str):
    """Case-sensitive matching with * and ?, as PS3.4 C.2.2.2.4 asks: GLOB on SQLite (whose LIKE ignores case)."""
    if not has_wildcard(value):
        return column == value
    if connection.dialect.name == "sqlite":
        return column.op("GLOB")(value.replace("[", "[[]"))
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%").replace("?", "_")
    return column.like(escaped, escape="\\")


def date_conditions(column, value: str) -> list:
    low, separator, high = value.partition("-")
    if not separator:
        return [column == low]
    return [condition for bound, condition in ((low, column >= low), (high, column <= high)) if bound]


def patients_named(engine: Engine, patient_id: str, issuer: str | None) -> list[str]:
    """`Patient/<id>` of the Patients with the identifier PatientID (under the issuer's system, when given)."""
    value = patient_id.translate(SEARCH_SPECIAL)
    if issuer:
        value = f"{(system_of_authority(issuer, '', '', authority_systems(engine)) or '').translate(SEARCH_SPECIAL)}|{value}"
    request, _ = search_request("Patient", [("identifier", value), ("_count", str(MAX_PATIENTS))], False, MAX_PATIENTS, MAX_PATIENTS)
    with reading(engine) as unit:
        return [f"Patient/{patient.id}" for patient in unit.search(request).matches]


def studies_of_patients(engine: Engine, patients: list[str]) -> list[str]:
    """The StudyInstanceUIDs of the studies whose ImagingStudy, the one the feed wrote, is about `patients`
    (`Patient/<id>`) now: a study follows its subject when an ADT feed merges two patients. Another ImagingStudy
    naming the same study UID in its identifiers does not bring it in."""
    written = set()
    for subjects in (",".join(group) for group in groups(patients, MAX_PATIENTS_PER_SEARCH)):
        request, _ = search_request("ImagingStudy", [("subject", subjects), ("_count", str(MAX_STUDIES))], False, MAX_STUDIES, MAX_STUDIES)
        with reading(engine) as unit:
            written |= {found.id for found in unit.search(request).matches}
    return sorted(studies_written_as(engine, written))


def instance_matches(query: Query, attributes: Dataset) -> bool:
    keys = SERIES_KEYS + (INSTANCE_KEYS if query.level == "IMAGE" else ())
    return all(value_matches(query.value(keyword), text(attributes, keyword), keyword) for keyword in keys)


def value_matches(wanted: str | None, stored: str | None, keyword: str) -> bool:
    """PS3.4 C.2.2.2 matching of one key: a list of values, each with * and ? wildcards; person names without regard
    to case (as most archives match them); times as ranges (HHMMSS-HHMMSS)."""
    if wanted is None:
        return True
    if keyword in TIME_KEYS and "-" in wanted:
        low, _, high = wanted.partition("-")
        time = (stored or "")[:6].ljust(6, "0")
        return bool(stored) and (not low or time >= low[:6].ljust(6, "0")) and (not high or time <= high[:6].ljust(6, "9"))
    if keyword in NAME_KEYS:
        return any(fnmatch.fnmatchcase((stored or "").casefold(), pattern.casefold()) for pattern in uid_list(wanted))
    return any(fnmatch.fnmatchcase(stored or "", pattern) for pattern in uid_list(wanted))


def study_answers(connection, study_uids: list[str]) -> list[Dataset]:
    """Each study's attributes (from its first instance) with its patient, modalities and counts."""
    if not study_uids:
        return []
    protection = protection_of(connection)
    counts = {row.study_uid: row for row in connection.execute(
        select(dicom_instance.c.study_uid, func.count(func.distinct(dicom_instance.c.series_uid)).label("series"),
               func.count().label("instances"), func.min(dicom_instance.c.id).label("first"))
        .where(dicom_instance.c.study_uid.in_(study_uids)).group_by(dicom_instance.c.study_uid)
    )}
    firsts = {row.study_uid: row for row in connection.execute(
        select(dicom_instance.c.study_uid, dicom_instance.c.sop_instance_uid, dicom_instance.c.attributes, dicom_instance.c.patient)
        .where(dicom_instance.c.id.in_([row.first for row in counts.values()]))
    )}
    modalities = dict(connection.execute(select(dicom_study.c.study_uid, dicom_study.c.modalities).where(dicom_study.c.study_uid.in_(study_uids))).all())
    answers = []
    for study_uid in study_uids:
        if study_uid not in firsts:
            continue
        answer = study_level(with_patient(Dataset.from_json(firsts[study_uid].attributes), firsts[study_uid], protection))
        answer.ModalitiesInStudy = [code for code in modalities.get(study_uid, "").split("\\") if code]
        answer.NumberOfStudyRelatedSeries = counts[study_uid].series
        answer.NumberOfStudyRelatedInstances = counts[study_uid].instances
        answers.append(answer)
    return answers


def series_answers(rows: list, protection, query: Query) -> list[Dataset]:
    by_series: dict[tuple, list] = {}
    for row in rows:
        by_series.setdefault((row.study_uid, row.series_uid), []).append(row)
    answers = []
    for members in list(by_series.values())[query.offset:query.offset + query.limit]:
        answer = with_patient(Dataset.from_json(members[0].attributes), members[0], protection)
        for keyword in INSTANCE_KEYS:
            if keyword in answer:
                del answer[keyword]
        answer.NumberOfSeriesRelatedInstances = len(members)
        answers.append(answer)
    return answers


def study_level(dataset: Dataset) -> Dataset:
    """A study's attributes without those of its series and instances."""
    for keyword in (*SERIES_KEYS, *INSTANCE_KEYS, "SeriesDescription", "BodyPartExamined", "Laterality", "SeriesDate", "SeriesTime"):
        if keyword in dataset:
            del dataset[keyword]
    return dataset


def with_patient(dataset: Dataset, row, protection) -> Dataset:
    """The attributes with the patient module of the instance's row (opened when sealed)."""
    patient = Dataset.from_json(orjson.loads(protection.opened_text(row.patient, patient_context(row.sop_instance_uid))))
    for element in patient:
        dataset[element.tag] = element
    return dataset


def imaging_studies(unit: Unit, study_uids: Iterable[str]) -> list[StoredResource]:
    """The ImagingStudies of studies, by their Study Instance UIDs, read through a unit of the one reader (whose
    caller's reach and audit trail apply: it records them as searched): the one the feed wrote for each study
    (dicom_study.imaging_study), or, for a study whose id is not recorded yet (stored before it was), those with its
    identifier."""
    uids = sorted(set(study_uids) - {""})
    column = dicom_study.c
    recorded = dict(row for group in groups(uids, STUDIES_PER_SEARCH) for row in unit.connection.execute(
        select(column.study_uid, column.imaging_study).where(column.study_uid.in_(group), column.imaging_study.is_not(None))))
    ids, unrecorded = sorted(recorded.values()), [uid for uid in uids if uid not in recorded]
    searches = [("_id", ",".join(group)) for group in groups(ids, STUDIES_PER_SEARCH)]
    searches += [("identifier", ",".join(f"{DICOM_UID}|urn:oid:{uid}" for uid in group)) for group in groups(unrecorded, STUDIES_PER_SEARCH)]
    studies = []
    for name, value in searches:
        search, _ = search_request("ImagingStudy", [(name, value)], False, STUDIES_PER_SEARCH, STUDIES_PER_SEARCH)
        studies += unit.search(search).matches
    return studies


def studies_written_as(engine: Engine, imaging_study_ids: set[str]) -> frozenset[str]:
    """The Study Instance UIDs of the studies whose ImagingStudy the feed wrote under one of those ids."""
    column = dicom_study.c
    with read_unit(engine) as connection:
        return frozenset(uid for group in groups(sorted(imaging_study_ids), STUDIES_PER_SEARCH)
                         for uid in connection.execute(select(column.study_uid).where(column.imaging_study.in_(group))).scalars())


def groups(values: list, size: int) -> list[list]:
    """`values` in groups of at most `size`, in order: the terms of one IN list or one search each."""
    return [values[start:start + size] for start in range(0, len(values), size)]
