"""Practitioners named by XCN fields (PV1-7/8/9/17, PD1-4): one upsert per identifier, never one per name.

Two doctors can share a name, so a name alone never becomes a business key: an XCN without
an id (XCN.1) is referenced by display name only, and no Practitioner is created for it.
"""
from interop.hl7v2.mapping.datatypes import MessageDefaults, compact, hd_system, human_name, identifier_type
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.mapping.shared import SharedUpserts


def practitioner_reference(xcn: FieldValue, shared: SharedUpserts) -> dict | None:
    """A reference to the practitioner an XCN names: to its upsert when XCN.1 identifies it, else its name as display."""
    name = human_name(xcn, family_at=2)
    key = practitioner_identifier(xcn, shared.defaults)
    if key is None:
        return {"display": display_name(name)} if name else None
    body = compact({"resourceType": "Practitioner", "identifier": [key], "name": [name] if name else []})
    upsert = shared.upsert(body, key, keep=() if name else ("name",))
    return compact({"reference": upsert.local_ref, "display": display_name(name) if name else None})


def practitioner_identifier(xcn: FieldValue, defaults: MessageDefaults) -> dict | None:
    """XCN.1 id, XCN.9 assigning authority as system (else the sender's), XCN.13 identifier type."""
    value = xcn(1)
    if not value:
        return None
    return compact({"type": identifier_type(xcn(13)), "system": hd_system(xcn, 9) or defaults.authority, "value": value})


def display_name(name: dict) -> str:
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", ""), *name.get("suffix", [])]
    return " ".join(part for part in parts if part)
