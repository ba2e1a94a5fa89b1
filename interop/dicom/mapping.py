"""A study's DICOM attributes as FHIR R4 resources, after the R4 ImagingStudy mapping table: the ImagingStudy (one per
StudyInstanceUID, built again from all its stored instances), the Patient it is about and the referring Practitioner.

A patient is keyed by PatientID and IssuerOfPatientID, its system named as an HL7 v2 feed names the assigning
authority of PID-3 (interop/hl7v2/mapping/datatypes.py system_of_authority, with the systems set by `ehr hl7
authority add`), so that an ADT feed and a modality meet on one Patient. Dates with a time and no
TimezoneOffsetFromUTC are read as UTC, as the HL7 feed reads a time without an offset."""
import datetime
import re

from pydicom import Dataset

from interop.hl7v2.mapping.datatypes import fhir_offset, system_of_authority

DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SOURCE_PREFIX = "urn:ehr:dicom:study:"  # + the StudyInstanceUID: meta.source of what a study wrote
REFERRER_SYSTEM = "urn:ehr:dicom:referring-physician"  # a referrer known by name alone
ENDPOINT_SYSTEM = "urn:ehr:dicomweb"  # the Endpoint of our DICOMweb service, by its address
UNIDENTIFIED_SYSTEM = "urn:ehr:dicom:patient-of-study"  # a study without PatientID: its patient, known by the study
RECONCILE = {"system": "urn:ehr:dicom", "code": "reconcile",
             "display": "Created from a DICOM object: to be matched with the patient's record"}
OTHER_MODALITY = "OT"
LATERALITY = {"R": ("24028007", "Right"), "L": ("7771000", "Left"), "B": ("51440002", "Right and left")}
GENDERS = {"M": "male", "F": "female", "O": "other"}
DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # what a FHIR string cannot hold
OFFSET = re.compile(r"[+-](0\d|1[0-4])[0-5]\d")


def study_identifier(study_uid: str) -> dict:
    return {"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}


def imaging_study(study_uid: str, instances: list[Dataset], subject: str, referrer: str | None, endpoint: str | None) -> dict:
    """The ImagingStudy of a study's instances (at least one), about `subject` (`Patient/id`), its objects served by
    `endpoint` (`Endpoint/id`, when known)."""
    first = instances[0]
    series = series_of(instances)
    accession = text(first, "AccessionNumber")
    identifiers = [study_identifier(study_uid)]
    if accession:
        identifiers.append({"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]}, "value": accession})
    return compact({
        "resourceType": "ImagingStudy",
        "meta": {"source": SOURCE_PREFIX + study_uid},
        "identifier": identifiers,
        "status": "available",
        "modality": unique([entry["modality"] for entry in series if "modality" in entry]),
        "subject": {"reference": subject},
        "started": date_time(first, "StudyDate", "StudyTime"),
        "referrer": {"reference": referrer} if referrer else None,
        "endpoint": [{"reference": endpoint}] if endpoint else None,
        "numberOfSeries": len(series),
        "numberOfInstances": sum(entry["numberOfInstances"] for entry in series),
        "description": text(first, "StudyDescription"),
        "series": series,
    })


def series_of(instances: list[Dataset]) -> list[dict]:
    by_uid: dict[str, list[Dataset]] = {}
    for instance in instances:
        by_uid.setdefault(str(instance.SeriesInstanceUID), []).append(instance)
    series = [one_series(uid, members) for uid, members in by_uid.items()]
    return sorted(series, key=lambda entry: (entry.get("number") is None, entry.get("number") or 0, entry["uid"]))


def one_series(uid: str, members: list[Dataset]) -> dict:
    first = members[0]
    modality = text(first, "Modality") or OTHER_MODALITY  # R4 requires one; DICOM calls an unnamed one OT
    laterality = LATERALITY.get(text(first, "Laterality") or "")
    body_part = text(first, "BodyPartExamined")
    instances = sorted((one_instance(member) for member in members), key=lambda entry: (entry.get("number") is None, entry.get("number") or 0, entry["uid"]))
    return compact({
        "uid": uid,
        "number": integer(first, "SeriesNumber"),
        "modality": {"system": DCM, "code": modality},
        "description": text(first, "SeriesDescription"),
        "numberOfInstances": len(instances),
        "bodySite": {"display": body_part} if body_part else None,
        "laterality": {"system": SNOMED, "code": laterality[0], "display": laterality[1]} if laterality else None,
        "started": date_time(first, "SeriesDate", "SeriesTime"),
        "instance": instances,
    })


def one_instance(instance: Dataset) -> dict:
    return compact({
        "uid": str(instance.SOPInstanceUID),
        "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{instance.SOPClassUID}"},
        "number": integer(instance, "InstanceNumber"),
    })


def dicomweb_address(fhir_base: str | None) -> str | None:
    """The DICOMweb base URL beside a public FHIR base URL (https://ehr.example.org/fhir -> .../dicomweb); None without
    one (EHR_BASE_URL unset: the feed's processes cannot tell under which name clients reach the server)."""
    return fhir_base.rstrip("/").removesuffix("/fhir") + "/dicomweb" if fhir_base else None


def endpoint_key(address: str) -> dict:
    return {"system": ENDPOINT_SYSTEM, "value": address}


def endpoint_body(address: str, study_uid: str) -> dict:
    """The Endpoint of this server's DICOMweb service (WADO-RS, QIDO-RS, STOW-RS under `address`), made by the update
    of the study `study_uid`."""
    return {
        "resourceType": "Endpoint", "meta": {"source": SOURCE_PREFIX + study_uid}, "identifier": [endpoint_key(address)], "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
        "name": "DICOMweb (WADO-RS, QIDO-RS, STOW-RS)", "payloadType": [{"text": "DICOM"}], "payloadMimeType": ["application/dicom"],
        "address": address,
    }


def patient_key(patient: Dataset, study_uid: str, systems: dict[str, str]) -> dict:
    """The Patient's identifier: PatientID under its issuer's system (an MR number), or, for a study without
    PatientID, one of the study's own."""
    value = text(patient, "PatientID")
    if not value:
        return {"system": UNIDENTIFIED_SYSTEM, "value": study_uid}
    qualifiers = patient.get("IssuerOfPatientIDQualifiersSequence") or [Dataset()]
    universal, kind = text(qualifiers[0], "UniversalEntityID"), text(qualifiers[0], "UniversalEntityIDType")
    system = system_of_authority(text(patient, "IssuerOfPatientID") or "", universal or "", kind or "", systems)
    return compact({"system": system, "value": value, "type": {"coding": [{"system": V2_0203, "code": "MR"}]}})


def patient_body(patient: Dataset, key: dict, study_uid: str) -> dict:
    """A Patient made from the patient module of a study whose patient is not known yet: flagged for reconciliation."""
    return compact({
        "resourceType": "Patient",
        "meta": {"source": SOURCE_PREFIX + study_uid, "tag": [RECONCILE]},
        "identifier": [key],
        "name": [name] if (name := human_name(patient.get("PatientName"))) else None,
        "gender": GENDERS.get(text(patient, "PatientSex") or "", "unknown" if text(patient, "PatientSex") else None),
        "birthDate": date(text(patient, "PatientBirthDate")),
    })


def referrer_key(instance: Dataset) -> dict | None:
    name = instance.get("ReferringPhysicianName")
    return {"system": REFERRER_SYSTEM, "value": str(name)} if human_name(name) else None


def referrer_body(instance: Dataset, key: dict, study_uid: str) -> dict:
    return {"resourceType": "Practitioner", "meta": {"source": SOURCE_PREFIX + study_uid}, "identifier": [key],
            "name": [human_name(instance.get("ReferringPhysicianName"))]}


def human_name(value) -> dict | None:
    """A PN's alphabetic group as a HumanName; None when it names nobody."""
    if value is None or not str(value).strip("^= "):
        return None
    return compact({
        "family": value.family_name or None,
        "given": [part for part in (value.given_name, value.middle_name) if part] or None,
        "prefix": [value.name_prefix] if value.name_prefix else None,
        "suffix": [value.name_suffix] if value.name_suffix else None,
    }) or None


def text(dataset: Dataset, keyword: str) -> str | None:
    """An attribute's value as FHIR takes a string: trimmed, without control characters; None when empty."""
    value = dataset.get(keyword)
    return CONTROL.sub("", str(value)).strip() or None if value is not None else None


def integer(dataset: Dataset, keyword: str) -> int | None:
    """An IS as an unsignedInt; None for what is none (empty, not a number, negative)."""
    try:
        value = dataset.get(keyword)
        number = int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
    return number if number is not None and 0 <= number < 2**31 else None


def date(value: str | None) -> str | None:
    """A DA (YYYYMMDD) as a FHIR date; None for what is no day of the calendar (20240231, 00000101)."""
    match = DATE.fullmatch(value or "")
    try:
        return datetime.date(*map(int, match.groups())).isoformat() if match else None
    except ValueError:
        return None


def date_time(dataset: Dataset, date_keyword: str, time_keyword: str) -> str | None:
    """A DA and a TM as a FHIR dateTime: the date alone without a time, else with the study's UTC offset (UTC without
    one)."""
    day = date(text(dataset, date_keyword))
    if day is None:
        return None
    match = TIME.fullmatch(text(dataset, time_keyword) or "")
    if not match or int(match[1]) > 23 or int(match[2] or 0) > 59 or int(match[3] or 0) > 59:
        return day
    offset = text(dataset, "TimezoneOffsetFromUTC") or ""
    zone = fhir_offset(offset) if OFFSET.fullmatch(offset) else "Z"
    return f"{day}T{match[1]}:{match[2] or '00'}:{match[3] or '00'}{match[4] or ''}{zone}"


def unique(values: list) -> list:
    found = []
    for value in values:
        if value not in found:
            found.append(value)
    return found


def compact(body: dict) -> dict:
    return {name: value for name, value in body.items() if value not in (None, [], {})}
