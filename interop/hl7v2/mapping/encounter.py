"""PV1 and PV2 to an Encounter (IG PV1[Encounter], PV2[Encounter], Event[EncounterStatus]).

Its business key is the visit number PV1-19, else the alternate visit id PV1-50, else (*ours*:
the IG maps the visit whatever PV1-19 holds) the patient and the admit time PV1-44, so that a
sender without visit numbers still gets one Encounter per admission. A PV1 with none of them
names no Encounter.
"""
from collections.abc import Mapping
from dataclasses import dataclass, field

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import MessageContext, codeable_concept, compact, date_time, identifier, identifier_type, period
from interop.hl7v2.mapping.fields import FieldValue, SegmentView
from interop.hl7v2.mapping.locations import location_reference
from interop.hl7v2.mapping.practitioners import practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import composite_key, enriching, unsent_elements, upsert_by_identifier
from interop.hl7v2.mapping.vocabulary import BED_STATUS, DIAGNOSIS_TYPE, PATIENT_CLASS, PRIORITY, mapped_concept, table_coding

PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PARTICIPANTS = {7: ("ATND", "attender"), 8: ("REF", "referrer"), 9: ("CON", "consultant"), 17: ("ADM", "admitter"), 52: ("PART", "Participation")}
EXTENSION = "http://hl7.org/fhir/StructureDefinition/"
PLANNED_START = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate"  # IG PV2-8
PLANNED_END = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate"  # IG PV2-9
LOCATION_CLASSIFICATION = EXTENSION + "subject-locationClassification"
LOCATION_STATUSES = {"planned": "planned", "finished": "completed", "cancelled": "completed"}  # of PV1-3, by Encounter.status
ENDED = ("finished", "cancelled")  # an Encounter with this status is at none of its locations
CANCELLED = "cancelled"  # marks a mapped location to drop from the history (never stored: not an R4 status)
NOT_OCCUPIED = ("planned", "reserved")  # a location the message does not name again was never occupied: it goes
DEFAULT_LOCATIONS = {11: "active", 42: "reserved"}  # IG: PV1-11 temporary location, PV1-42 pending location
PV1_SOURCES = {  # Encounter element -> PV1 fields it comes from; an update keeps the element when none was sent
    "class": (2,), "type": (4,), "serviceType": (10,), "location": (3, 6, 11, 42), "participant": tuple(PARTICIPANTS),
    "period": (44, 45), "hospitalization": (5, 13, 14, 15, 16, 36, 37, 38),
}
PV2_SOURCES = {"reasonCode": (3,), "length": (11,), "priority": (25,), "text": (12,)}
ENCOUNTER_ELEMENTS = frozenset({  # what the mapping writes; the rest (serviceProvider, episodeOfCare, account...) stays
    "identifier", "extension", "status", "class", "type", "serviceType", "priority", "subject", "participant", "period",
    "length", "reasonCode", "diagnosis", "hospitalization", "location", "text",
})
VISIT_NUMBER_TYPE = "VN"
ADMISSION_SYSTEM = "urn:ehr:hl7v2:admission"  # identifier values: patient system / value / PV1-44, when there is no visit number


@dataclass(frozen=True)
class VisitEvent:
    """What a trigger event does to the visit beyond what PV1 says."""

    status: str  # Encounter.status written; "unknown" where the event conveys none (kept when stored)
    keep: tuple[str, ...] = ()  # elements an existing Encounter keeps whatever the message says
    locations: Mapping[int, str] = field(default_factory=dict)  # PV1 location field -> its status (CANCELLED: drop it)
    removes_end: bool = False  # period.end is dropped, PV1-45 ignored (A13 cancel discharge)
    drops_planned_end: bool = False  # the expected discharge goes (A25 cancel pending discharge)


STATUS_UPDATE = VisitEvent("unknown", keep=("status",))  # A08, A28, A31 and the like: new data, same state
RESULT_CONTEXT = VisitEvent("unknown", keep=("status", *PV1_SOURCES, *PV2_SOURCES, "diagnosis"))  # ORU


def visit_key(pv1: SegmentView | None, patient_key: dict, context: MessageContext) -> dict | None:
    """The Encounter's business key: PV1-19 (typed VN unless CX.5 says otherwise), else PV1-50, else the patient and
    PV1-44; None when the PV1 has none of them."""
    if pv1 is None:
        return None
    for number in (19, 50):
        found = identifier(pv1.field(number), context)
        if found:
            return found if "type" in found else {"type": identifier_type(VISIT_NUMBER_TYPE), **found}
    admitted = pv1.field(44)()
    return composite_key(ADMISSION_SYSTEM, patient_key.get("system", ""), patient_key["value"], admitted) if admitted else None


def encounter_upsert(pv1: SegmentView, pv2: SegmentView | None, key: dict, subject: dict, shared: SharedUpserts, event: VisitEvent,
                     diagnoses: list[dict] = ()) -> Upsert:
    """The Encounter of a PV1 by its `key`, for `subject`, as `event` leaves it; `diagnoses` are Encounter.diagnosis
    entries of the message's DG1s."""
    context = shared.context
    status, keep_status = encounter_status(pv1, event)
    admitted = date_time(pv1.field(44), context)
    expected_start = date_time(pv2.field(8), context) if pv2 else None
    start = admitted or (expected_start if status == "planned" else None)  # IG: PV2-8 is when a planned visit starts
    body = compact({
        "resourceType": "Encounter",
        "identifier": visit_identifiers(pv1, key, context),
        "extension": planned_dates(pv2, context, event),
        "status": status,
        "class": table_coding(pv1.field(2), PATIENT_CLASS, context) or unknown_class(),
        "type": [admission_type] if (admission_type := codeable_concept(pv1.field(4), "0007")) else [],
        "serviceType": codeable_concept(pv1.field(10), "0069"),
        "priority": mapped_concept(pv2.field(25), PRIORITY, context) if pv2 else None,
        "subject": subject,
        "participant": participants(pv1, pv2, shared),
        "period": period(start, None if event.removes_end else date_time(pv1.field(45), context)),
        "length": length_of_stay(pv2),
        "reasonCode": [reason] if pv2 and (reason := codeable_concept(pv2.field(3))) else [],
        "diagnosis": list(diagnoses),
        "hospitalization": hospitalization(pv1, shared),
        "location": locations(pv1, pv2, status, event, shared),
        "text": narrative(pv2.field(12).text()) if pv2 and pv2.field(12)() else None,
    })
    keep = unsent_elements(pv1, PV1_SOURCES) + unsent_elements(pv2, PV2_SOURCES) + (("diagnosis",) if not diagnoses else ())
    keep += tuple(element for element in event.keep if element != "status" or keep_status)
    keep = tuple(element for element in keep if not (event.removes_end and element == "period"))
    period_sent = (not pv1.is_unvalued(44) or start is not None, not pv1.is_unvalued(45) and not event.removes_end)
    return upsert_by_identifier(body, key, tuple(dict.fromkeys(keep)), visit_update(planned_urls(pv2, event), event.removes_end, period_sent))


def planned_urls(pv2: SegmentView | None, event: VisitEvent) -> frozenset[str]:
    """The planned-date extensions the message sets (PV2-8, PV2-9 sent) or removes (A25): the others stay."""
    if event is RESULT_CONTEXT:
        return frozenset()
    sent = {url for url, number in ((PLANNED_START, 8), (PLANNED_END, 9)) if pv2 is not None and not pv2.is_unvalued(number)}
    return frozenset(sent | ({PLANNED_END} if event.drops_planned_end else set()))


def visit_update(extension_urls: frozenset[str], removes_end: bool, period_sent: tuple[bool, bool]):
    """The Encounter's Upsert.combine: what the feed does not map or the message does not name stays (identifiers such
    as PV1-50, elements set over REST), the location history is kept (with_location_history), and the period is kept
    by its parts: a discharge without PV1-44 keeps the admission's start, an update without PV1-45 the stored end; a
    cancelled discharge (A13) drops the end."""
    enrich = enriching(ENCOUNTER_ELEMENTS, extension_urls)

    def combine(stored: dict, body: dict) -> dict:
        combined = enrich(stored, body)
        period = dict(body.get("period", {}))
        for part, sent in zip(("start", "end"), period_sent):
            if not sent and part not in period and part in stored.get("period", {}):
                period[part] = stored["period"][part]
        if removes_end:
            period.pop("end", None)
        combined.pop("period", None)
        return with_location_history(stored, {**combined, **({"period": period} if period else {})})

    return combine


def encounter_status(pv1: SegmentView, event: VisitEvent) -> tuple[str, bool]:
    """The status the event gives, and whether a stored Encounter keeps its own. An event that conveys no status with
    PV1-45 (discharge) sent ends the visit: IG PV1-45 sets status finished."""
    if event.status == "unknown" and pv1.field(45)() and "status" in event.keep and event is not RESULT_CONTEXT:
        return "finished", False
    return event.status, "status" in event.keep


def unknown_class() -> dict:
    """FHIR R4 requires a class: an empty PV1-2 reads as U (unknown)."""
    system, code, display = PATIENT_CLASS.to_fhir["U"]
    return {"system": system, "code": code, "display": display}


def visit_identifiers(pv1: SegmentView, key: dict, context: MessageContext) -> list[dict]:
    """The key, and PV1-50 (alternate visit id) when it is not the key."""
    alternate = identifier(pv1.field(50), context)
    return [key] + ([alternate] if alternate and alternate["value"] != key["value"] else [])


def planned_dates(pv2: SegmentView | None, context: MessageContext, event: VisitEvent) -> list[dict]:
    """PV2-8 expected admit and PV2-9 expected discharge, as the R5 plannedStartDate and plannedEndDate (IG); a result
    message's are not written: results never change a visit."""
    if pv2 is None or event is RESULT_CONTEXT:
        return []
    dates = ((PLANNED_START, date_time(pv2.field(8), context)),
             (PLANNED_END, None if event.drops_planned_end else date_time(pv2.field(9), context)))
    return [{"url": url, "valueDateTime": moment} for url, moment in dates if moment]


def length_of_stay(pv2: SegmentView | None) -> dict | None:
    """PV2-11 actual length of inpatient stay, in days."""
    days = pv2.field(11)() if pv2 else ""
    if not days.isdigit():
        return None
    return {"value": int(days), "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}


def narrative(text: str) -> dict:
    """PV2-12 visit description as the Encounter's narrative (IG text.div)."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", "<br/>")
    return {"status": "additional", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{escaped}</div>'}


def participants(pv1: SegmentView, pv2: SegmentView | None, shared: SharedUpserts) -> list[dict]:
    """PV1-7 ATND, PV1-8 REF, PV1-9 CON, PV1-17 ADM, PV1-52 PART, PV2-13 REF (referral source)."""
    named = [(field, xcn) for field in PARTICIPANTS for xcn in pv1.repetitions(field)]
    named += [(8, xcn) for xcn in pv2.repetitions(13)] if pv2 else []
    found = []
    for field, xcn in named:
        individual = practitioner_reference(xcn, shared)
        code, display = PARTICIPANTS[field]
        if individual:
            found.append({"type": [{"coding": [{"system": PARTICIPATION_TYPE, "code": code, "display": display}]}], "individual": individual})
    return found


def hospitalization(pv1: SegmentView, shared: SharedUpserts) -> dict | None:
    """PV1-5 pre-admit number, 13 re-admission, 14 admit source, 15 special arrangements, 16 VIP, 36 discharge
    disposition, 37 discharged to, 38 diet."""
    context = shared.context
    destination = pv1.field(37)
    return compact({
        "preAdmissionIdentifier": identifier(pv1.field(5), context),
        "reAdmission": codeable_concept(pv1.field(13), "0092"),
        "admitSource": codeable_concept(pv1.field(14), "0023"),
        "specialArrangement": [found for cwe in pv1.repetitions(15) if (found := codeable_concept(cwe, "0009"))],
        "specialCourtesy": [courtesy] if (courtesy := codeable_concept(pv1.field(16), "0099")) else [],
        "dischargeDisposition": codeable_concept(pv1.field(36), "0112"),
        "destination": {"display": destination(1)} if destination(1) else None,
        "dietPreference": [diet] if (diet := codeable_concept(pv1.field(38), "0114")) else [],
    }) or None


def locations(pv1: SegmentView, pv2: SegmentView | None, status: str, event: VisitEvent, shared: SharedUpserts) -> list[dict]:
    """PV1-3 as the current location (status by the Encounter's), and the other location fields as the event and the
    IG say: PV1-6 a transfer's prior location, PV1-11 a temporary one, PV1-42 a pending one (reserved), PV2-1 a prior
    pending one (planned). The same Location named twice is listed once, as the first names it."""
    context = shared.context
    current_status = LOCATION_STATUSES.get(status) or ("planned" if pv1.field(2)().upper() == "P" else "active")
    bed_status = table_coding(pv1.field(40), BED_STATUS, context) if pv1.field(40)() else None
    named = [location(pv1.field(3), current_status, shared, bed_status)]
    named += [location(pv1.field(number), role, shared) for number, role in {**DEFAULT_LOCATIONS, **event.locations}.items()]
    if pv2 is not None:
        named.append(location(pv2.field(1), "planned", shared))
    found = []
    for entry in (entry for entry in named if entry):
        if not any(same_location(entry, earlier) for earlier in found):
            found.append(temporary(entry) if entry["status"] == "active" and entry is not named[0] else entry)
    return found


def location(pl: FieldValue, status: str, shared: SharedUpserts, operational_status: dict | None = None) -> dict | None:
    found = location_reference(pl, shared, operational_status)
    return {"location": found, "status": status} if found else None


def temporary(entry: dict) -> dict:
    """An active location other than PV1-3: the IG marks PV1-11 with the subject-locationClassification extension."""
    classification = {"coding": [{"system": "http://hl7.org/fhir/ValueSet/subject-location", "code": "temporary"}]}
    return {**entry, "extension": [{"url": LOCATION_CLASSIFICATION, "valueCodeableConcept": classification}]}


def with_location_history(stored: dict, body: dict) -> dict:
    """The Encounter's locations after a message (Upsert.combine, on create with nothing stored): the message's own,
    then the stored ones it does not name, as completed, since each message names only the current location (and an
    A02 the prior one) while the Encounter keeps where the patient has been. A planned or reserved location the
    message does not name was never occupied and goes; so does one a cancel event cancels. An ended Encounter's
    locations are all completed."""
    named = body.get("location", [])
    earlier = [entry for entry in stored.get("location", []) if entry.get("status") not in NOT_OCCUPIED and not any(same_location(entry, other) for other in named)]
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


def diagnosis_entry(condition: dict, dg1: SegmentView, context: MessageContext) -> dict:
    """Encounter.diagnosis for a DG1's Condition: DG1-6 diagnosis type as use (IG DiagnosisType), DG1-15 as rank."""
    rank = dg1.field(15)()
    return compact({
        "condition": condition,
        "use": mapped_concept(dg1.field(6), DIAGNOSIS_TYPE, context),
        "rank": int(rank) if rank.isdigit() and int(rank) > 0 else None,
    })
