"""ADT messages (structures ADT_A01, A02, A03, A05, A09, A12): Practitioners, Patient, and the Encounter of PV1-19."""
from dataclasses import dataclass

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import MessageDefaults
from interop.hl7v2.mapping.encounter import STATUS_UPDATE, VisitEvent, encounter_upsert, has_visit_number
from interop.hl7v2.mapping.fields import SegmentView, first_segment
from interop.hl7v2.mapping.patient import patient_upsert
from interop.hl7v2.mapping.practitioners import PractitionerUpserts
from interop.hl7v2.mapping.upserts import reference


@dataclass(frozen=True)
class AdtEvent:
    structure: str  # its message structure (MSH-9.3, HL7 table 0354)
    visit: VisitEvent


ADT_EVENTS = {  # Encounter.status per event: IG Event[EncounterStatus]; A12 and the keep rules are ours
    "A01": AdtEvent("ADT_A01", VisitEvent("in-progress")),
    "A02": AdtEvent("ADT_A02", VisitEvent("in-progress", prior_location=True)),
    "A03": AdtEvent("ADT_A03", VisitEvent("finished")),
    "A04": AdtEvent("ADT_A01", VisitEvent("planned")),
    "A05": AdtEvent("ADT_A05", VisitEvent("planned")),
    "A08": AdtEvent("ADT_A01", STATUS_UPDATE),
    "A11": AdtEvent("ADT_A09", VisitEvent("cancelled")),
    "A12": AdtEvent("ADT_A12", VisitEvent("in-progress")),
    "A13": AdtEvent("ADT_A01", VisitEvent("in-progress", removes_end=True)),
    "A28": AdtEvent("ADT_A05", STATUS_UPDATE),
    "A31": AdtEvent("ADT_A05", STATUS_UPDATE),
}


def adt_upserts(segments: list[SegmentView], defaults: MessageDefaults, event: str) -> list[Upsert]:
    """Practitioners, the Patient, and the Encounter when PV1 carries a visit number (PV1-19)."""
    practitioners = PractitionerUpserts(defaults)
    patient = patient_upsert(segments, defaults, practitioners)
    pv1 = first_segment(segments, "PV1")
    encounters = []
    if has_visit_number(pv1):
        encounters.append(encounter_upsert(pv1, reference(patient), defaults, practitioners, ADT_EVENTS[event].visit))
    return [*practitioners.upserts, patient, *encounters]
