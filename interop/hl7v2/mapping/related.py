"""NK1 and PID-21 to RelatedPerson (IG NK1[RelatedPerson], CX[RelatedPerson-Mother]).

An NK1 about a person (not an employer or agency) becomes a RelatedPerson of the patient (*ours*:
the IG gives no key): keyed by the patient and NK1-12 (else NK1-33), or without an identifier by
the patient, the relationship and the name. A RelatedPerson is one patient's relation, so two
patients with one mother have a RelatedPerson each. PID-21 (mother's identifier) is the mother.
"""
from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import (address, codeable_concept, compact, date_value, human_name, identifier,
                                             identifier_type, period)
from interop.hl7v2.mapping.fields import SegmentView, first_segment
from interop.hl7v2.mapping.patient import SSN_SYSTEM, gender, is_organization, relationships, telecom
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import composite_key, enriching, reference, upsert_by_identifier
from interop.hl7v2.mapping.vocabulary import V3

RELATED_PERSON_SYSTEM = "urn:ehr:hl7v2:related-person"  # identifier values: patient system / value / relationship / family / given
RELATED_PERSON_ELEMENTS = frozenset({
    "identifier", "patient", "relationship", "name", "telecom", "gender", "_gender", "birthDate", "address", "period", "communication",
})


def related_person_upserts(segments: list[SegmentView], patient: Upsert, patient_key: dict, shared: SharedUpserts) -> list[Upsert]:
    """The RelatedPersons of a patient: one per NK1 about a person, and the mother PID-21 identifies."""
    found = [related_person(nk1, patient, patient_key, shared) for nk1 in segments if nk1.id == "NK1" and not is_organization(nk1)]
    pid = first_segment(segments, "PID")
    mothers = [mother(cx, patient, patient_key, shared) for cx in pid.repetitions(21)] if pid else []
    return [upsert for upsert in found + mothers if upsert is not None]


def related_person(nk1: SegmentView, patient: Upsert, patient_key: dict, shared: SharedUpserts) -> Upsert | None:
    context = shared.context
    names = [found for field in (2, 30) if (found := human_name(nk1.field(field), context))]
    identifiers = [found for field in (12, 33) for cx in nk1.repetitions(field) if (found := identifier(cx, context))]
    if ssn := nk1.field(37)():
        identifiers.append({"type": identifier_type("SS"), "system": SSN_SYSTEM, "value": ssn})
    if not names and not identifiers:
        return None
    relationship = nk1.field(3)().upper() or nk1.field(7)().upper()
    person = (identifiers[0].get("system", ""), identifiers[0]["value"]) if identifiers else (
        relationship, names[0].get("family", ""), " ".join(names[0].get("given", [])))
    key = composite_key(RELATED_PERSON_SYSTEM, patient_key.get("system", ""), patient_key["value"], *person)
    language = codeable_concept(nk1.field(20), "0296")
    body = compact({
        "resourceType": "RelatedPerson",
        "identifier": [key, *identifiers],
        "active": True,
        "patient": reference(patient),
        "relationship": relationships(nk1, context),
        "name": names,
        "telecom": telecom(nk1, {5: None, 6: "work", 31: None, 40: None, 41: None}, context),
        **gender(nk1.field(15), context),
        "birthDate": date_value(nk1.field(16), context),
        "address": [found for field in (4, 32) for xad in nk1.repetitions(field) if (found := address(xad, context))],
        "period": period(date_value(nk1.field(8), context), date_value(nk1.field(9), context)),
        "communication": [{"language": language}] if language else [],
    })
    return upsert_by_identifier(body, key, combine=enriching(RELATED_PERSON_ELEMENTS))


def mother(cx, patient: Upsert, patient_key: dict, shared: SharedUpserts) -> Upsert | None:
    """PID-21: the mother, by her identifier, relationship MTH (IG CX[RelatedPerson-Mother]): one RelatedPerson per
    child, since a RelatedPerson is one patient's relation (siblings share a mother, not a RelatedPerson)."""
    own = identifier(cx, shared.context)
    if own is None:
        return None
    key = composite_key(RELATED_PERSON_SYSTEM, patient_key.get("system", ""), patient_key["value"], own.get("system", ""), own["value"])
    body = {
        "resourceType": "RelatedPerson", "identifier": [key, own], "active": True, "patient": reference(patient),
        "relationship": [{"coding": [{"system": V3 + "RoleCode", "code": "MTH", "display": "mother"}]}],
    }
    return upsert_by_identifier(body, key, combine=enriching(RELATED_PERSON_ELEMENTS))
