"""PID and PD1 to one Patient, upserted by its PID-3 identifier, with NK1 as its contacts (IG PID[Patient],
PD1[Patient], NK1[Patient])."""
from urllib.parse import quote

from interop.hl7v2.mapping import MappingError, Upsert
from interop.hl7v2.mapping.datatypes import (MessageContext, address, codeable_concept, compact, contact_point, date_time,
                                             date_value, human_name, identifier, identifier_type, period)
from interop.hl7v2.mapping.fields import FieldValue, SegmentView, first_segment
from interop.hl7v2.mapping.organizations import organization_reference
from interop.hl7v2.mapping.practitioners import practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import enriching, unsent_elements, upsert_by_identifier
from interop.hl7v2.mapping.vocabulary import (ADMINISTRATIVE_SEX, MARITAL_STATUS, RELATIONSHIP, CONTACT_ROLE, mapped_concept,
                                              required_code, yes_no)
from interop.hl7v2.text import quoted

MAX_INTEGER = 2**31 - 1  # FHIR's integer
KEY_IDENTIFIER_TYPE = "MR"  # the medical record number is the business key when PID-3 repeats
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"  # IG: PID-19; outside the US, send the number in PID-3 with its authority
EXTENSION = "http://hl7.org/fhir/StructureDefinition/"
BIRTH_TIME = EXTENSION + "patient-birthTime"
PID_SOURCES = {  # Patient element -> PID fields it comes from; an update keeps the element when none was sent
    "name": (5, 9), "telecom": (13, 14, 40), "gender": (8,), "_gender": (8,), "birthDate": (7,), "_birthDate": (7,),
    "deceasedBoolean": (29, 30), "_deceasedBoolean": (29, 30), "deceasedDateTime": (29, 30), "address": (11, 12),
    "communication": (15,), "maritalStatus": (16,), "multipleBirthBoolean": (24, 25), "_multipleBirthBoolean": (24, 25),
    "multipleBirthInteger": (24, 25),
}
PID_EXTENSIONS = {  # extension URL -> (PID fields it comes from, how)
    EXTENSION + "patient-mothersMaidenName": (6,), EXTENSION + "patient-religion": (17,), EXTENSION + "patient-birthPlace": (23,),
    EXTENSION + "patient-citizenship": (26, 39), EXTENSION + "patient-nationality": (28,), EXTENSION + "patient-animal": (35, 36),
}
PD1_EXTENSIONS = {EXTENSION + "patient-disability": (6,), EXTENSION + "patient-congregation": (14,)}
PATIENT_ELEMENTS = frozenset({  # what the mapping writes; the rest (photo, managingOrganization, active, link...) stays
    *PID_SOURCES, "identifier", "extension", "generalPractitioner", "contact",
})
TELECOM_FIELDS = {13: "home", 14: "work", 40: None}  # PID field -> ContactPoint.use when XTN.2 is empty
ORGANIZATION_ROLES = ("E", "F", "I", "S")  # NK1-7 contact roles (table 0131) of an organization, not a person


def patient_upsert(segments: list[SegmentView], shared: SharedUpserts, changes: dict | None = None) -> Upsert:
    """The Patient of the PID in `segments` (a message, or one ORU patient group) with its NK1 contacts and PD1 data;
    `changes` are elements an event sets besides (A29 makes the patient inactive)."""
    context = shared.context
    pid = first_segment(segments, "PID")
    if pid is None:
        raise MappingError("The message has no PID segment: there is no patient to apply it to.", 101, "PID", 1)
    key = key_identifier(pid, 3, context)
    pd1 = first_segment(segments, "PD1")
    contacts = [found for nk1 in segments if nk1.id == "NK1" and (found := contact(nk1, shared))]
    extensions = patient_extensions(pid, pd1, context)
    body = compact({
        "resourceType": "Patient",
        "identifier": patient_identifiers(pid, key, context),
        "extension": extensions,
        "name": [found for field in (5, 9) for xpn in pid.repetitions(field) if (found := human_name(xpn, context))],
        "telecom": telecom(pid, TELECOM_FIELDS, context),
        **gender(pid.field(8), context),
        **birth(pid.field(7), context),
        **deceased(pid, context),
        "address": addresses(pid, context),
        "maritalStatus": mapped_concept(pid.field(16), MARITAL_STATUS, context),
        **multiple_birth(pid, context),
        "communication": [{"language": language, "preferred": True}] if (language := codeable_concept(pid.field(15), "0296")) else [],
        "contact": contacts,
        "generalPractitioner": general_practitioners(pd1, shared),
        **(changes or {}),
    })
    keep = unsent_elements(pid, PID_SOURCES) + unsent_elements(pd1, {"generalPractitioner": (3, 4)})
    sent_urls = sent(pid, PID_EXTENSIONS) | sent(pd1, PD1_EXTENSIONS)
    combine = enriching(PATIENT_ELEMENTS, sent_urls, replaced_in(pid, {"name": (5, 9), "address": (11,), "telecom": (13, 14, 40)}))
    return upsert_by_identifier(body, key, keep + (() if contacts else ("contact",)), combine)


def sent(segment: SegmentView | None, sources: dict[str, tuple[int, ...]]) -> frozenset[str]:
    """The elements (extension URLs) of `sources` whose fields the segment sent, valued or as the null value."""
    if segment is None:
        return frozenset()
    return frozenset(element for element, fields in sources.items() if not all(segment.is_unvalued(number) for number in fields))


def replaced_in(segment: SegmentView, sources: dict[str, tuple[int, ...]]) -> frozenset[str]:
    """The elements whose fields send a component as the null value "": the sender deletes a part (a middle name, an
    address line), so the stored value that says more is not kept."""
    return frozenset(element for element, fields in sources.items()
                     if any(value.has_null_component() for number in fields for value in segment.repetitions(number)))


def key_identifier(segment: SegmentView, field: int, context: MessageContext) -> dict:
    """The repetition typed MR, else the first, of a patient identifier list (PID-3, MRG-1): a Patient's business key."""
    candidates = [found for cx in segment.repetitions(field) if (found := identifier(cx, context))]
    if not candidates:
        name = segment.field(field).name
        raise segment.error(f"{name} (patient identifier list) has no identifier: the patient cannot be matched.", 101, field)
    typed = [candidate for candidate in candidates if identifier_type_code(candidate) == KEY_IDENTIFIER_TYPE]
    return (typed or candidates)[0]


def identifier_type_code(found: dict) -> str:
    return found.get("type", {}).get("coding", [{}])[0].get("code", "")


def patient_identifiers(pid: SegmentView, key: dict, context: MessageContext) -> list[dict]:
    """PID-2, every PID-3, PID-4, PID-19 (SSN, type SS) and PID-20 (driver's licence, type DL); only the key takes the
    sender's system when it names no assigning authority."""
    found = [key if identifier(cx, context) == key else own for field in (2, 3, 4) for cx in pid.repetitions(field)
             if (own := identifier(cx, context, senders=False))]
    if ssn := pid.field(19)():
        found.append({"type": identifier_type("SS"), "system": SSN_SYSTEM, "value": ssn})
    licence = pid.field(20)
    if licence():
        issuer = licence(2)
        system = context.systems.get(issuer.upper()) or (f"urn:ehr:hl7v2:driver-licence:{quote(issuer, safe='')}" if issuer else None)
        found.append(compact({"type": identifier_type("DL"), "system": system, "value": licence(), "period": compact({"end": date_value(licence, context, 3)})}))
    return found


def telecom(segment: SegmentView, fields: dict[int, str | None], context: MessageContext) -> list[dict]:
    return [found for field, use in fields.items() for xtn in segment.repetitions(field) if (found := contact_point(xtn, context, use))]


def addresses(pid: SegmentView, context: MessageContext) -> list[dict]:
    """PID-11, with PID-12 (county code) as the district of the first address that has none (IG PID-12 rows)."""
    found = [found for xad in pid.repetitions(11) if (found := address(xad, context))]
    county = pid.field(12)()
    if county and not any(entry.get("district") == county for entry in found):
        if found and "district" not in found[0]:
            found[0] = {**found[0], "district": county}
        else:
            found.append({"district": county})
    return found


def gender(value: FieldValue, context: MessageContext) -> dict:
    """Administrative sex (table 0001) as a FHIR gender; a code outside the table is `unknown`, the code kept."""
    if not value():
        return {}
    code, original = required_code(value, ADMINISTRATIVE_SEX, context, "unknown")
    return compact({"gender": code, "_gender": original})


def birth(value: FieldValue, context: MessageContext) -> dict:
    """PID-7: birthDate, and the time of birth as the patient-birthTime extension when PID-7 has one (IG)."""
    moment = date_time(value, context)
    if not moment:
        return {}
    birth_date = moment.split("T")[0]
    if "T" not in moment:
        return {"birthDate": birth_date}
    return {"birthDate": birth_date, "_birthDate": {"extension": [{"url": BIRTH_TIME, "valueDateTime": moment}]}}


def deceased(pid: SegmentView, context: MessageContext) -> dict:
    """PID-29 death date/time, else PID-30 death indicator (Y/N)."""
    moment = date_time(pid.field(29), context)
    if moment:
        return {"deceasedDateTime": moment}
    indicator, original = yes_no(pid.field(30), context)
    return compact({"deceasedBoolean": indicator, "_deceasedBoolean": original})


def multiple_birth(pid: SegmentView, context: MessageContext) -> dict:
    """PID-25 birth order as multipleBirthInteger, else PID-24 (Y/N) as multipleBirthBoolean."""
    order = pid.field(25)()
    if order.isdigit() and 0 < int(order) <= MAX_INTEGER:
        return {"multipleBirthInteger": int(order)}
    if order:
        context.lenient(pid.field(25).error(f"{quoted(order)} is not a birth order (a whole number from 1)", 102))
    indicator, original = yes_no(pid.field(24), context)
    return compact({"multipleBirthBoolean": indicator, "_multipleBirthBoolean": original})


def patient_extensions(pid: SegmentView, pd1: SegmentView | None, context: MessageContext) -> list[dict]:
    """The IG's PID and PD1 extensions: mother's maiden name, religion, birth place, citizenship, nationality, animal
    species and breed, disability, congregation."""
    found = []
    if maiden := pid.field(6)():  # the family name of the XPN
        found.append({"url": EXTENSION + "patient-mothersMaidenName", "valueString": maiden})
    if religion := codeable_concept(pid.field(17), "0006"):
        found.append({"url": EXTENSION + "patient-religion", "valueCodeableConcept": religion})
    if birth_place := pid.field(23).text():
        found.append({"url": EXTENSION + "patient-birthPlace", "valueAddress": {"text": birth_place}})
    for field, url, code_table in ((26, "patient-citizenship", "0171"), (39, "patient-citizenship", "0171"), (28, "patient-nationality", "0212")):
        for cwe in pid.repetitions(field):
            if concept := codeable_concept(cwe, code_table):
                found.append({"url": EXTENSION + url, "extension": [{"url": "code", "valueCodeableConcept": concept}]})
    animal = [{"url": part, "valueCodeableConcept": concept} for field, part in ((35, "species"), (36, "breed"))
              if (concept := codeable_concept(pid.field(field), "0446" if part == "species" else "0447"))]
    if animal:
        found.append({"url": EXTENSION + "patient-animal", "extension": animal})
    if pd1 is not None:
        if disability := codeable_concept(pd1.field(6), "0295"):
            found.append({"url": EXTENSION + "patient-disability", "valueCodeableConcept": disability})
        if congregation := pd1.field(14)(1):
            found.append({"url": EXTENSION + "patient-congregation", "valueString": congregation})
    return found


def general_practitioners(pd1: SegmentView | None, shared: SharedUpserts) -> list[dict]:
    """PD1-3 primary facility (an Organization) and PD1-4 primary care providers (Practitioners)."""
    if pd1 is None:
        return []
    facilities = [found for xon in pd1.repetitions(3) if (found := organization_reference(xon, shared))]
    return facilities + [found for xcn in pd1.repetitions(4) if (found := practitioner_reference(xcn, shared))]


def contact(nk1: SegmentView, shared: SharedUpserts) -> dict | None:
    """NK1 as Patient.contact: relationship NK1-3 (table 0063) and contact role NK1-7 (0131), name, phones, address,
    organization NK1-13."""
    context = shared.context
    details = compact({
        "name": human_name(nk1.field(2), context),
        "telecom": telecom(nk1, {5: None, 6: "work", 40: None, 41: None}, context),
        "address": next((found for xad in nk1.repetitions(4) if (found := address(xad, context))), None),
        "organization": organization_reference(nk1.field(13), shared),
    })
    if not details:  # FHIR pat-1: a contact has details or an organization
        return None
    return compact({
        "relationship": relationships(nk1, context),
        **details,
        **gender(nk1.field(15), context),
        "period": period(date_value(nk1.field(8), context), date_value(nk1.field(9), context)),
    })


def relationships(nk1: SegmentView, context: MessageContext) -> list[dict]:
    """NK1-3 relationship (IG Relationship ConceptMap) and NK1-7 contact role (table 0131)."""
    return [found for found in (mapped_concept(nk1.field(3), RELATIONSHIP, context), mapped_concept(nk1.field(7), CONTACT_ROLE, context)) if found]


def is_organization(nk1: SegmentView) -> bool:
    """An NK1 about an employer or agency rather than a person: NK1-3 EMR or NK1-7 E, F, I, S (IG), or only NK1-13."""
    return (nk1.field(3)().upper() == "EMR" or nk1.field(7)().upper() in ORGANIZATION_ROLES
            or (not nk1.field(2)() and bool(nk1.field(13)())))
