"""PV1 to an Encounter upserted by its visit number PV1-19 (IG PV1[Encounter], Event[EncounterStatus])."""
from dataclasses import dataclass

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import (V2_TABLE, MessageDefaults, codeable_concept, compact, date_time, identifier,
                                             identifier_type, period)
from interop.hl7v2.mapping.fields import FieldValue, SegmentView
from interop.hl7v2.mapping.locations import location_reference
from interop.hl7v2.mapping.practitioners import practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import unsent_elements, upsert_by_identifier

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PATIENT_CLASS = V2_TABLE + "0004"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENCOUNTER_CLASSES = {  # PV1-2 (table 0004) -> Encounter.class (IG PatientClass[EncounterClass]); others stay v2-0004
    "E": (ACT_CODE, "EMER", "emergency"), "I": (ACT_CODE, "IMP", "inpatient encounter"),
    "O": (ACT_CODE, "AMB", "ambulatory"), "P": (ACT_CODE, "PRENC", "pre-admission"),
    "R": (PATIENT_CLASS, "R", "Recurring patient"), "B": (PATIENT_CLASS, "B", "Obstetrics"),
    "C": (PATIENT_CLASS, "C", "Commercial Account"), "N": (PATIENT_CLASS, "N", "Not Applicable"),
    "U": (PATIENT_CLASS, "U", "Unknown"),
}
PARTICIPANTS = {7: ("ATND", "attender"), 8: ("REF", "referrer"), 9: ("CON", "consultant"), 17: ("ADM", "admitter")}
LOCATION_STATUSES = {"planned": "planned", "finished": "completed", "cancelled": "completed"}  # by Encounter.status
ENDED = ("finished", "cancelled")  # an Encounter with this status is at none of its locations
CANCELLED = "cancelled"  # marks a mapped location to drop from the history (never stored: not an R4 status)
PV1_SOURCES = {  # Encounter element -> PV1 fields it comes from; an update keeps the element when none was sent
    "class": (2,), "type": (4,), "serviceType": (10,), "location": (3, 6),
    "participant": tuple(PARTICIPANTS), "period": (44, 45),
}
VISIT_NUMBER_TYPE = "VN"


@dataclass(frozen=True)
class VisitEvent:
    """What a trigger event does to the visit beyond what PV1 says."""

    status: str  # Encounter.status written; "unknown" where the event conveys none
    keep: tuple[str, ...] = ()  # elements an existing Encounter keeps whatever the message says
    prior_location: str | None = None  # what PV1-6 is: "completed" (A02 transfer), CANCELLED (A12 cancel transfer)
    removes_end: bool = False  # period.end is dropped, PV1-45 ignored (A13 cancel discharge)


STATUS_UPDATE = VisitEvent("unknown", keep=("status",))  # A08, A28, A31: new data, same state
RESULT_CONTEXT = VisitEvent("unknown", keep=("status", *PV1_SOURCES))  # ORU: the visit is referenced, never changed


def has_visit_number(pv1: SegmentView | None) -> bool:
    return pv1 is not None and bool(pv1.field(19)())


def encounter_upsert(pv1: SegmentView, subject: dict, shared: SharedUpserts, event: VisitEvent) -> Upsert:
    """The Encounter of a PV1 that has a visit number (PV1-19), for `subject`, as `event` leaves it."""
    defaults = shared.defaults
    key = visit_identifier(pv1.field(19), defaults)
    body = compact({
        "resourceType": "Encounter",
        "identifier": [key],
        "status": event.status,
        "class": encounter_class(pv1.field(2)),
        "type": [admission_type] if (admission_type := codeable_concept(pv1.field(4), "0007")) else [],
        "serviceType": codeable_concept(pv1.field(10), "0069"),
        "subject": subject,
        "participant": participants(pv1, shared),
        "period": period(date_time(pv1.field(44), defaults), None if event.removes_end else date_time(pv1.field(45), defaults)),
        "location": locations(pv1, event, shared),
    })
    keep = tuple(element for element in unsent_elements(pv1, PV1_SOURCES) + event.keep
                 if not (event.removes_end and element == "period"))
    return upsert_by_identifier(body, key, tuple(dict.fromkeys(keep)), with_location_history)


def visit_identifier(cx: FieldValue, defaults: MessageDefaults) -> dict:
    """PV1-19 as an identifier typed VN (visit number) unless CX.5 says otherwise."""
    found = identifier(cx, defaults)
    return found if "type" in found else {"type": identifier_type(VISIT_NUMBER_TYPE), **found}


def encounter_class(value: FieldValue) -> dict:
    """PV1-2; FHIR R4 requires a class, so an empty PV1-2 reads as U (unknown)."""
    code = value().upper() or "U"
    system, fhir_code, display = ENCOUNTER_CLASSES.get(code, (PATIENT_CLASS, code, None))
    return compact({"system": system, "code": fhir_code, "display": display})


def participants(pv1: SegmentView, shared: SharedUpserts) -> list[dict]:
    found = []
    for field, (code, display) in PARTICIPANTS.items():
        for xcn in pv1.repetitions(field):
            individual = practitioner_reference(xcn, shared)
            if individual:
                kind = {"coding": [{"system": PARTICIPATION_TYPE, "code": code, "display": display}]}
                found.append({"type": [kind], "individual": individual})
    return found


def locations(pv1: SegmentView, event: VisitEvent, shared: SharedUpserts) -> list[dict]:
    """PV1-3 as the current location; PV1-6 as the event says (a transfer's prior location, a cancelled one's)."""
    status = LOCATION_STATUSES.get(event.status) or ("planned" if pv1.field(2)().upper() == "P" else "active")
    current = location(pv1.field(3), status, shared)
    prior = location(pv1.field(6), event.prior_location, shared) if event.prior_location else None
    if current and prior and same_location(current, prior):
        prior = None
    return [found for found in (current, prior) if found]


def location(pl: FieldValue, status: str, shared: SharedUpserts) -> dict | None:
    found = location_reference(pl, shared)
    return {"location": found, "status": status} if found else None


def with_location_history(stored: dict, body: dict) -> dict:
    """The Encounter's locations after a message (Upsert.combine, on create with nothing stored): the message's own,
    then the stored ones it does not name, as completed, since each message names only the current location (and an
    A02 the prior one) while the Encounter keeps where the patient has been. A planned location the message does not
    name was never occupied and goes; so does one an A12 cancels. An ended Encounter's locations are all completed."""
    named = body.get("location", [])
    earlier = [entry for entry in stored.get("location", []) if entry.get("status") != "planned" and not any(same_location(entry, other) for other in named)]
    entries = [entry for entry in named if entry.get("status") != CANCELLED] + [{**entry, "status": "completed"} for entry in earlier]
    if body.get("status") in ENDED:
        entries = [{**entry, "status": "completed"} for entry in entries]
    return {**without_locations(body), **({"location": entries} if entries else {})}


def without_locations(body: dict) -> dict:
    return {name: value for name, value in body.items() if name != "location"}


def same_location(entry: dict, other: dict) -> bool:
    """By reference; by display where one of them has none (stored before Locations were resources)."""
    mine, theirs = entry["location"], other["location"]
    if "reference" in mine and "reference" in theirs:
        return mine["reference"] == theirs["reference"]
    return mine.get("display") == theirs.get("display")
