"""ADT messages: Practitioners, Organizations, Locations, the Patient, its RelatedPersons, AllergyIntolerances and
Conditions, and the Encounter of the PV1; patient merges (A34, A40) and identifier changes (A47).

Encounter.status per event: IG Event[EncounterStatus] for A01, A02, A03, A05, A08, A11, A13;
A04 in-progress (the patient has arrived: a registration is a visit under way); the rest ours.
"""
from interop.hl7v2.mapping import IdentifierChange, Instruction, MappingError, Merge, Upsert
from interop.hl7v2.mapping.clinical import allergy_upserts, condition_upserts
from interop.hl7v2.mapping.datatypes import MessageContext
from interop.hl7v2.mapping.encounter import (ADMISSION_SYSTEM, CANCELLED, STATUS_UPDATE, VisitEvent, diagnosis_entry,
                                             encounter_upsert, visit_key)
from interop.hl7v2.mapping.events import MessageEvent
from interop.hl7v2.mapping.fields import SegmentView, first_segment, patient_groups
from interop.hl7v2.mapping.patient import key_identifier, patient_upsert
from interop.hl7v2.mapping.related import related_person_upserts
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import composite_key, identifier_criteria, reference

VISIT_EVENTS = {  # trigger event -> (its structures, newest first, as table 0354 gives them from v2.3.1 to v2.8; what it does)
    "A01": (("ADT_A01",), VisitEvent("in-progress")),
    "A02": (("ADT_A02",), VisitEvent("in-progress", locations={6: "completed"})),
    "A03": (("ADT_A03",), VisitEvent("finished")),
    "A04": (("ADT_A01",), VisitEvent("in-progress")),
    "A05": (("ADT_A05", "ADT_A01"), VisitEvent("planned")),
    "A06": (("ADT_A06",), VisitEvent("in-progress")),  # outpatient to inpatient: PV1-2 gives the new class
    "A07": (("ADT_A06",), VisitEvent("in-progress")),  # inpatient to outpatient
    "A08": (("ADT_A01",), STATUS_UPDATE),
    "A09": (("ADT_A09",), VisitEvent("unknown", keep=("status",), locations={43: "completed"})),  # departing: to PV1-11
    "A10": (("ADT_A09",), VisitEvent("unknown", keep=("status",), locations={6: "completed", 43: "completed"})),  # arriving
    "A11": (("ADT_A09",), VisitEvent("cancelled")),
    "A12": (("ADT_A12", "ADT_A09"), VisitEvent("in-progress", locations={6: CANCELLED})),
    "A13": (("ADT_A01",), VisitEvent("in-progress", removes_end=True)),
    "A14": (("ADT_A05", "ADT_A01"), VisitEvent("planned")),
    "A15": (("ADT_A15", "ADT_A09"), VisitEvent("unknown", keep=("status",))),  # pending transfer: PV1-42 reserved
    "A16": (("ADT_A16",), VisitEvent("unknown", keep=("status",))),  # pending discharge: PV2-9 the expected end
    "A25": (("ADT_A21", "ADT_A02"), VisitEvent("unknown", keep=("status",), drops_planned_end=True)),
    "A26": (("ADT_A21", "ADT_A02"), VisitEvent("unknown", keep=("status",), locations={42: CANCELLED})),
    "A27": (("ADT_A21", "ADT_A02"), VisitEvent("cancelled")),
    "A28": (("ADT_A05", "ADT_A01"), STATUS_UPDATE),
    "A31": (("ADT_A05", "ADT_A01"), STATUS_UPDATE),
    "A32": (("ADT_A21", "ADT_A02"), VisitEvent("unknown", keep=("status",), locations={6: CANCELLED})),  # cancel arriving
    "A33": (("ADT_A21", "ADT_A02"), VisitEvent("unknown", keep=("status",), locations={11: CANCELLED})),  # cancel departing
}
PERSON_EVENTS = ("A28", "A29", "A31")  # about the person, not a visit: a PV1 without a key is no loss
VISIT_STARTS = ("A01", "A04", "A05", "A14")  # admit, register, pre-admit, pending admit


def adt_upserts(segments: list[SegmentView], context: MessageContext, event: str) -> list[Instruction]:
    """Practitioners, Organizations, Locations, the Patient, its RelatedPersons, allergies and diagnoses, and the
    Encounter of the PV1."""
    shared = SharedUpserts(context)
    if event == "A29":  # delete person information: *ours*, the patient is made inactive, its record and history kept
        patient = patient_upsert(segments, shared, {"active": False})
        return [*shared.upserts, patient]
    patient = patient_upsert(segments, shared)
    patient_key = patient.key
    subject = reference(patient)
    pv1, pv2 = first_segment(segments, "PV1"), first_segment(segments, "PV2")
    key = visit_key(pv1, patient_key, context) or keyless_visit(segments, pv1, patient_key, event, context)
    related = related_person_upserts(segments, patient, patient_key, shared)
    allergies = allergy_upserts(segments, subject, patient_key, context)
    conditions = condition_upserts(segments, subject, key or patient_key, shared)
    encounters = []
    if key is not None:
        diagnoses = [diagnosis_entry(reference(condition), dg1, context) for dg1, condition in conditions]
        encounters.append(encounter_upsert(pv1, pv2, key, subject, shared, VISIT_EVENTS[event][1], diagnoses))
    return [*shared.upserts, patient, *related, *allergies, *(condition for _, condition in conditions), *encounters]


def keyless_visit(segments: list[SegmentView], pv1: SegmentView | None, patient_key: dict, event: str, context: MessageContext) -> dict | None:
    """A PV1 without visit number or admit time (*ours*): a visit that starts here is keyed by the patient and the
    event's time (EVN-6, else EVN-2, else MSH-7), so its data is kept; a later message cannot name it, and says so."""
    if pv1 is None or event in PERSON_EVENTS or pv1.field(2)().upper() == "N":
        return None
    if event not in VISIT_STARTS:
        context.lenient(pv1.error("PV1 has no visit number (PV1-19, PV1-50) nor admit time (PV1-44): no Encounter is written", 101, 19))
        return None
    evn = first_segment(segments, "EVN")
    moment = (evn.field(6)() or evn.field(2)() if evn else "") or segments[0].field(7)()
    context.lenient(pv1.error("PV1 has no visit number (PV1-19, PV1-50) nor admit time (PV1-44): the visit is keyed by the "
                              "patient and the event time, and later messages without them cannot update it", 101, 19))
    return composite_key(ADMISSION_SYSTEM, patient_key.get("system", ""), patient_key["value"], moment)


def merge_upserts(segments: list[SegmentView], context: MessageContext, event: str) -> list[Instruction]:
    """Per PATIENT group (PID, PD1, MRG): the surviving Patient of PID, updated as by an A08, and a Merge of MRG-1's into
    it (A40 and its ADT_A39 groups; A34 with its one PID and MRG).

    PV1 is read past: a merge moves the merged patient's visits along with everything else."""
    shared = SharedUpserts(context)
    survivors: dict[str, Upsert] = {}  # criteria -> the first upsert of that patient, when several groups merge into it
    merges = []
    for number, group in enumerate(patient_groups(segments), 1):
        patient = patient_upsert(group, shared)
        survivor = survivors.setdefault(patient.criteria, patient)
        merges.append(Merge(survivor.local_ref, "Patient", identifier_criteria(merged_key(group, number, context))))
    return [*shared.upserts, *survivors.values(), *merges]


def identifier_change_upserts(segments: list[SegmentView], context: MessageContext, event: str) -> list[Instruction]:
    """A47 (change patient identifier list): the Patient MRG-1 identifies takes PID-3's identifier in place of it, then
    is updated from the PID as by an A08."""
    shared = SharedUpserts(context)
    patient = patient_upsert(segments, shared)
    new_key = patient.key
    old_key = merged_key(segments, 1, context)
    change = IdentifierChange(patient.local_ref, "Patient", identifier_criteria(old_key), old_key, new_key)
    return [change, *shared.upserts, patient]


def merged_key(group: list[SegmentView], number: int, context: MessageContext) -> dict:
    """The identifier MRG-1 names, read as PID-3 is (the MR repetition, else the first)."""
    mrg = first_segment(group, "MRG")
    if mrg is None:
        raise MappingError(f"Patient group {number} has no MRG segment: there is no patient to merge or change.", 101, "MRG", number, 1)
    return key_identifier(mrg, 1, context)


ADT_EVENTS = {
    **{code: MessageEvent(structures, ("PID",), adt_upserts) for code, (structures, _) in VISIT_EVENTS.items()},
    "A29": MessageEvent(("ADT_A21", "ADT_A02"), ("PID",), adt_upserts),
    "A34": MessageEvent(("ADT_A30",), ("PID", "MRG"), merge_upserts),
    "A40": MessageEvent(("ADT_A39",), ("PID", "MRG"), merge_upserts),  # the IG maps no merge message: this mapping is ours
    "A47": MessageEvent(("ADT_A44", "ADT_A30"), ("PID", "MRG"), identifier_change_upserts),
}
