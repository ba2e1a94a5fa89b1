"""ADT messages: Practitioners, Patient, and the Encounter of PV1-19 (structures ADT_A01, A02, A03, A05, A09, A12);
patient merges (ADT_A39)."""
from dataclasses import dataclass

from interop.hl7v2.mapping import MappingError, Merge, Upsert
from interop.hl7v2.mapping.datatypes import MessageDefaults
from interop.hl7v2.mapping.encounter import CANCELLED, STATUS_UPDATE, VisitEvent, encounter_upsert, has_visit_number
from interop.hl7v2.mapping.fields import SegmentView, first_segment, patient_groups
from interop.hl7v2.mapping.patient import key_identifier, patient_upsert
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import identifier_criteria, reference


@dataclass(frozen=True)
class AdtEvent:
    structure: str  # its message structure (MSH-9.3, HL7 table 0354)
    visit: VisitEvent


ADT_EVENTS = {  # Encounter.status per event: IG Event[EncounterStatus]; A12 and the keep rules are ours
    "A01": AdtEvent("ADT_A01", VisitEvent("in-progress")),
    "A02": AdtEvent("ADT_A02", VisitEvent("in-progress", prior_location="completed")),
    "A03": AdtEvent("ADT_A03", VisitEvent("finished")),
    "A04": AdtEvent("ADT_A01", VisitEvent("planned")),
    "A05": AdtEvent("ADT_A05", VisitEvent("planned")),
    "A08": AdtEvent("ADT_A01", STATUS_UPDATE),
    "A11": AdtEvent("ADT_A09", VisitEvent("cancelled")),
    "A12": AdtEvent("ADT_A12", VisitEvent("in-progress", prior_location=CANCELLED)),
    "A13": AdtEvent("ADT_A01", VisitEvent("in-progress", removes_end=True)),
    "A28": AdtEvent("ADT_A05", STATUS_UPDATE),
    "A31": AdtEvent("ADT_A05", STATUS_UPDATE),
}
MERGE_EVENTS = {"A40": "ADT_A39"}  # event -> its structure; the IG maps no merge message, this mapping is ours


def adt_upserts(segments: list[SegmentView], defaults: MessageDefaults, event: str) -> list[Upsert | Merge]:
    """Practitioners, the Patient, and the Encounter when PV1 carries a visit number (PV1-19); merges for A40."""
    if event in MERGE_EVENTS:
        return merge_upserts(segments, defaults)
    shared = SharedUpserts(defaults)
    patient = patient_upsert(segments, shared)
    pv1 = first_segment(segments, "PV1")
    encounters = []
    if has_visit_number(pv1):
        encounters.append(encounter_upsert(pv1, reference(patient), shared, ADT_EVENTS[event].visit))
    return [*shared.upserts, patient, *encounters]


def merge_upserts(segments: list[SegmentView], defaults: MessageDefaults) -> list[Upsert | Merge]:
    """Per PATIENT group (PID, PD1, MRG): the surviving Patient of PID, updated as by an A08, and a Merge of MRG-1's into it.

    PV1 is read past: a merge moves the merged patient's visits along with everything else."""
    shared = SharedUpserts(defaults)
    survivors: dict[str, Upsert] = {}  # criteria -> the first upsert of that patient, when several groups merge into it
    merges = []
    for number, group in enumerate(patient_groups(segments), 1):
        patient = patient_upsert(group, shared)
        survivor = survivors.setdefault(patient.criteria, patient)
        merges.append(Merge(survivor.local_ref, "Patient", merged_criteria(group, number, defaults)))
    return [*shared.upserts, *survivors.values(), *merges]


def merged_criteria(group: list[SegmentView], number: int, defaults: MessageDefaults) -> str:
    """The business key of the patient merged away: MRG-1 read as PID-3 is (the MR repetition, else the first)."""
    mrg = first_segment(group, "MRG")
    if mrg is None:
        raise MappingError(f"Patient group {number} has no MRG segment: there is no patient to merge.", 101, "MRG", number, 1)
    return identifier_criteria(key_identifier(mrg, 1, defaults))
