"""AL1 to AllergyIntolerance and DG1 to Condition (IG AL1[AllergyIntolerance], DG1[Condition], DG1[Encounter]).

Neither segment carries an identifier in v2.5 but DG1-20, so their business keys are *ours*: an
allergy is the patient and the allergen (AL1-3); a diagnosis is DG1-20, else the visit (or the
patient) and the diagnosis code (DG1-3). An ADT message that lists no AL1 or DG1 leaves the
stored ones as they are; one that no longer lists an allergy does not remove it.
"""
from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import (MessageContext, codeable_concept, compact, date_time, entity_identifier)
from interop.hl7v2.mapping.fields import SegmentView
from interop.hl7v2.mapping.practitioners import practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import composite_key, enriching, upsert_by_identifier
from interop.hl7v2.mapping.vocabulary import (ALLERGEN_TYPE, ALLERGY_SEVERITY, CRITICALITY, REACTION_SEVERITY, sent_code)
from interop.hl7v2.text import quoted

ALLERGY_SYSTEM = "urn:ehr:hl7v2:allergy"  # identifier values: patient system / value / allergen system / code
DIAGNOSIS_SYSTEM = "urn:ehr:hl7v2:diagnosis"  # identifier values: visit (or patient) system / value / code system / code
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ASSERTED_DATE = "http://hl7.org/fhir/StructureDefinition/condition-assertedDate"
ALLERGY_ELEMENTS = frozenset({  # what the mapping writes, replaced by each message; the rest (note, recorder...) stays
    "identifier", "clinicalStatus", "type", "category", "code", "patient", "onsetDateTime", "criticality", "reaction",
})
CONDITION_ELEMENTS = frozenset({
    "identifier", "extension", "verificationStatus", "category", "code", "subject", "onsetDateTime", "recordedDate", "asserter",
})
ALLERGY_TYPES = {"DA": "allergy", "FA": "allergy", "MA": "allergy", "EA": "allergy", "AA": "allergy", "PA": "allergy", "LA": "allergy"}


def allergy_upserts(segments: list[SegmentView], patient: dict, patient_key: dict, context: MessageContext) -> list[Upsert]:
    return [upsert for al1 in segments if al1.id == "AL1" and (upsert := allergy_upsert(al1, patient, patient_key, context))]


def allergy_upsert(al1: SegmentView, patient: dict, patient_key: dict, context: MessageContext) -> Upsert | None:
    """AL1-2 allergen type as category and type, AL1-3 the allergen, AL1-4 severity, AL1-5 reactions, AL1-6 onset."""
    allergen = codeable_concept(al1.field(3))
    if allergen is None:
        context.lenient(al1.field(3).error("an allergen (AL1-3) is required: the allergy is left out", 101))
        return None
    key = composite_key(ALLERGY_SYSTEM, patient_key.get("system", ""), patient_key["value"], *concept_key(allergen))
    body = compact({
        "resourceType": "AllergyIntolerance",
        "identifier": [key],
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": "active"}]},
        **allergen_type(al1, context),
        "code": allergen,
        "patient": patient,
        "onsetDateTime": date_time(al1.field(6), context),
        **severity(al1, context),
    })
    return upsert_by_identifier(body, key, combine=enriching(ALLERGY_ELEMENTS))


def allergen_type(al1: SegmentView, context: MessageContext) -> dict:
    """AL1-2 (table 0127) as category and type (IG AllergenType, AllergyType); a code outside it is warned about."""
    code = sent_code(al1.field(2))
    if code and not ALLERGEN_TYPE.knows(code):
        context.lenient(al1.field(2).error(f"{quoted(al1.field(2)())} is not a code of {ALLERGEN_TYPE.described()}: not mapped", 103))
    category = ALLERGEN_TYPE.to_fhir.get(code)
    return compact({"type": ALLERGY_TYPES.get(code), "category": [category] if category else []})


def severity(al1: SegmentView, context: MessageContext) -> dict:
    """AL1-4 (table 0128) as the reactions' severity when AL1-5 names reactions (a reaction needs a manifestation in
    R4), else as criticality (IG: either, by how the sender uses it)."""
    code = sent_code(al1.field(4))
    if code and not ALLERGY_SEVERITY.knows(code):
        context.lenient(al1.field(4).error(f"{quoted(al1.field(4)())} is not a code of {ALLERGY_SEVERITY.described()}: not mapped", 103))
    reactions = [text for value in al1.repetitions(5) if (text := value.text())]
    if not reactions:
        return compact({"criticality": CRITICALITY.get(code)})
    return {"reaction": [compact({"manifestation": [{"text": text}], "severity": REACTION_SEVERITY.get(code)}) for text in reactions]}


def condition_upserts(segments: list[SegmentView], patient: dict, owner_key: dict, shared: SharedUpserts) -> list[tuple[SegmentView, Upsert]]:
    """Each DG1 with its Condition; `owner_key` is the visit's key (else the patient's), which keys a DG1 without DG1-20."""
    return [(dg1, upsert) for dg1 in segments if dg1.id == "DG1" and (upsert := condition_upsert(dg1, patient, owner_key, shared))]


def condition_upsert(dg1: SegmentView, patient: dict, owner_key: dict, shared: SharedUpserts) -> Upsert | None:
    """DG1-3 code (DG1-4 its text), DG1-5 onset, DG1-16 asserter, DG1-19 recorded and asserted, DG1-20 identifier,
    DG1-21 D as entered in error; category encounter-diagnosis."""
    context = shared.context
    code = codeable_concept(dg1.field(3))
    description = dg1.field(4)()
    if description:
        code = {**(code or {}), "text": (code or {}).get("text") or description}
    if code is None:
        context.lenient(dg1.field(3).error("a diagnosis code (DG1-3) or description (DG1-4) is required: the diagnosis is left out", 101))
        return None
    identifier = entity_identifier(dg1.field(20), context, "")
    key = identifier or composite_key(DIAGNOSIS_SYSTEM, owner_key.get("system", ""), owner_key["value"], *concept_key(code))
    recorded = date_time(dg1.field(19), context)
    body = compact({
        "resourceType": "Condition",
        "identifier": [key],
        "extension": [{"url": ASSERTED_DATE, "valueDateTime": recorded}] if recorded else [],
        "verificationStatus": {"coding": [{"system": VERIFICATION_STATUS, "code": "entered-in-error"}]} if sent_code(dg1.field(21)) == "D" else None,
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}],
        "code": code,
        "subject": patient,
        "onsetDateTime": date_time(dg1.field(5), context),
        "recordedDate": recorded,
        "asserter": practitioner_reference(dg1.field(16), shared),
    })
    return upsert_by_identifier(body, key, combine=enriching(CONDITION_ELEMENTS, frozenset({ASSERTED_DATE})))


def concept_key(concept: dict) -> tuple[str, str]:
    """A concept's first coding as (system, code), else ("", its text): what tells two allergies or diagnoses apart."""
    first = (concept.get("coding") or [{}])[0]
    return (first.get("system", ""), first["code"]) if "code" in first else ("", concept.get("text", ""))
