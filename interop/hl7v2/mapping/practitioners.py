"""Practitioners named by XCN fields (PV1-7/8/9/17/52, PD1-4, PV2-13, OBX-16, DG1-16, NTE-5) and by the CNN of an
NDL (OBR-32/34/35): one upsert per identifier, never one per name.

Two doctors can share a name, so a name alone never becomes a business key: an XCN without
an id (XCN.1) is referenced by display name only, and no Practitioner is created for it.
"""
from interop.hl7v2.mapping.datatypes import (MessageContext, authority_system, coding_system, compact, hd_system, human_name,
                                             identifier_type)
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import enriching

PRACTITIONER_ELEMENTS = frozenset({"identifier", "name", "qualification"})  # what the mapping writes; the rest stays


def practitioner_reference(xcn: FieldValue, shared: SharedUpserts) -> dict | None:
    """A reference to the practitioner an XCN names: to its upsert when XCN.1 identifies it, else its name as display."""
    if not xcn.width():
        return None
    context = shared.context
    name = human_name(xcn, context, family_at=2)
    key = practitioner_identifier(xcn(1), hd_system(xcn, context, 9), xcn(13), context)
    degree = xcn(7)
    qualification = [{"code": compact({"coding": [{"system": coding_system("", "0360"), "code": degree}], "text": degree})}] if degree else []
    return referenced(key, name, qualification, shared)


def interpreter_reference(ndl: FieldValue, shared: SharedUpserts) -> dict | None:
    """A reference to the practitioner an NDL names (OBR-32 principal result interpreter, OBR-34 technician, OBR-35
    transcriptionist): its first component is a CNN, in subcomponents (id, family, given, middle, suffix, prefix,
    degree, source table, assigning authority)."""
    context = shared.context
    family, given, middle, suffix, prefix, degree = (ndl(1, part) for part in range(2, 8))
    name = compact({"family": family, "given": [part for part in (given, middle) if part], "prefix": [prefix] if prefix else [],
                    "suffix": [part for part in (suffix, degree) if part]}) or None
    system = authority_system(ndl(1, 9), ndl(1, 10), ndl(1, 11), context)
    return referenced(practitioner_identifier(ndl(1, 1), system, "", context), name, [], shared)


def referenced(key: dict | None, name: dict | None, qualification: list, shared: SharedUpserts) -> dict | None:
    if key is None:
        return {"display": display_name(name)} if name else None
    body = compact({"resourceType": "Practitioner", "identifier": [key], "name": [name] if name else [], "qualification": qualification})
    keep = tuple(element for element, value in (("name", name), ("qualification", qualification)) if not value)
    upsert = shared.upsert(body, key, keep=keep, combine=enriching(PRACTITIONER_ELEMENTS))
    return compact({"reference": upsert.local_ref, "display": display_name(name) if name else None})


def practitioner_identifier(value: str, system: str | None, type_code: str, context: MessageContext) -> dict | None:
    """XCN.1 id, XCN.9 assigning authority as system (else the sender's), XCN.13 identifier type."""
    if not value:
        return None
    return compact({"type": identifier_type(type_code), "system": system or context.authority, "value": value})


def display_name(name: dict) -> str:
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", ""), *name.get("suffix", [])]
    return " ".join(part for part in parts if part)
