"""PID, PD1 and NK1 to one Patient, upserted by its PID-3 identifier (IG PID[Patient], PD1[Patient], NK1[Patient])."""
from interop.hl7v2.mapping import MappingError, Upsert
from interop.hl7v2.mapping.datatypes import (MessageDefaults, address, codeable_concept, compact, contact_point,
                                             date_time, date_value, human_name, identifier, period)
from interop.hl7v2.mapping.fields import FieldValue, SegmentView, first_segment
from interop.hl7v2.mapping.practitioners import practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import unsent_elements, upsert_by_identifier

GENDERS = {"F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other"}  # table 0001
YES_NO = {"Y": True, "N": False}  # table 0136
KEY_IDENTIFIER_TYPE = "MR"  # the medical record number is the business key when PID-3 repeats
PID_SOURCES = {  # Patient element -> PID fields it comes from; an update keeps the element when none was sent
    "name": (5, 9), "telecom": (13, 14, 40), "gender": (8,), "birthDate": (7,),
    "deceasedBoolean": (29, 30), "deceasedDateTime": (29, 30), "address": (11,),
}
TELECOM_FIELDS = {13: "home", 14: "work", 40: None}  # PID field -> ContactPoint.use when XTN.2 is empty
MERGE_ELEMENTS = ("active", "link")  # no PID field carries them: an A40 merge sets them, and later updates keep them


def patient_upsert(segments: list[SegmentView], shared: SharedUpserts) -> Upsert:
    """The Patient of the PID in `segments` (a message, or one ORU patient group) with its NK1 contacts and PD1-4 doctors."""
    defaults = shared.defaults
    pid = first_segment(segments, "PID")
    if pid is None:
        raise MappingError("The message has no PID segment: there is no patient to apply it to.", 101, "PID", 1)
    identifiers = [found for field in (2, 3, 4) for cx in pid.repetitions(field) if (found := identifier(cx, defaults))]
    key = key_identifier(pid, 3, defaults)
    pd1 = first_segment(segments, "PD1")
    contacts = [found for nk1 in segments if nk1.id == "NK1" and (found := contact(nk1, defaults))]
    body = compact({
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [found for field in (5, 9) for xpn in pid.repetitions(field) if (found := human_name(xpn))],
        "telecom": telecom(pid, TELECOM_FIELDS),
        "gender": gender(pid.field(8)),
        "birthDate": date_value(pid.field(7)),
        **deceased(pid, defaults),
        "address": [found for xad in pid.repetitions(11) if (found := address(xad))],
        "contact": contacts,
        "generalPractitioner": [found for xcn in pd1.repetitions(4) if (found := practitioner_reference(xcn, shared))] if pd1 else [],
    })
    keep = unsent_elements(pid, PID_SOURCES) + unsent_elements(pd1, {"generalPractitioner": (4,)})
    return upsert_by_identifier(body, key, keep + (() if contacts else ("contact",)) + MERGE_ELEMENTS)


def key_identifier(segment: SegmentView, field: int, defaults: MessageDefaults) -> dict:
    """The repetition typed MR, else the first, of a patient identifier list (PID-3, MRG-1): a Patient's business key."""
    candidates = [found for cx in segment.repetitions(field) if (found := identifier(cx, defaults))]
    if not candidates:
        name = segment.field(field).name
        raise segment.error(f"{name} (patient identifier list) has no identifier: the patient cannot be matched.", 101, field)
    typed = [candidate for candidate in candidates if identifier_type_code(candidate) == KEY_IDENTIFIER_TYPE]
    return (typed or candidates)[0]


def identifier_type_code(found: dict) -> str:
    return found.get("type", {}).get("coding", [{}])[0].get("code", "")


def telecom(segment: SegmentView, fields: dict[int, str | None]) -> list[dict]:
    return [found for field, use in fields.items() for xtn in segment.repetitions(field) if (found := contact_point(xtn, use))]


def gender(value: FieldValue) -> str | None:
    """Administrative sex (table 0001) as a FHIR gender; FHIR binds it to a required set, so other codes are refused (103)."""
    code = value().upper()
    if code and code not in GENDERS:
        raise value.error(f"'{code}' is not an administrative sex of HL7 table 0001 (F, M, O, U, A, N)", 103)
    return GENDERS.get(code)


def deceased(pid: SegmentView, defaults: MessageDefaults) -> dict:
    """PID-29 death date/time, else PID-30 death indicator (Y/N)."""
    moment = date_time(pid.field(29), defaults)
    if moment:
        return {"deceasedDateTime": moment}
    indicator = pid.field(30)().upper()
    if indicator and indicator not in YES_NO:
        raise pid.field(30).error(f"'{indicator}' is not Y or N (HL7 table 0136)", 103)
    return {"deceasedBoolean": YES_NO[indicator]} if indicator else {}


def contact(nk1: SegmentView, defaults: MessageDefaults) -> dict | None:
    """NK1 as Patient.contact: relationship NK1-3 (table 0063) and contact role NK1-7 (0131), name, phones, address."""
    organization = nk1.field(13)(1)
    details = compact({
        "name": human_name(nk1.field(2)),
        "telecom": telecom(nk1, {5: None, 6: "work"}),
        "address": next((found for xad in nk1.repetitions(4) if (found := address(xad))), None),
        "organization": {"display": organization} if organization else None,
    })
    if not details:  # FHIR pat-1: a contact has details or an organization
        return None
    relationship = [found for found in (codeable_concept(nk1.field(3), "0063"), codeable_concept(nk1.field(7), "0131")) if found]
    return compact({
        "relationship": relationship,
        **details,
        "gender": gender(nk1.field(15)),
        "period": period(date_value(nk1.field(8)), date_value(nk1.field(9))),
    })
