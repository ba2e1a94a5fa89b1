"""Organizations named by XON fields (PD1-3, NK1-13, OBX-23): one upsert per identifier, a display otherwise."""
from interop.hl7v2.mapping.datatypes import address, compact, hd_system, identifier_type
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import keeping_unmapped


def organization_reference(xon: FieldValue, shared: SharedUpserts, xad: FieldValue | None = None) -> dict | None:
    """A reference to the organization an XON names: to its upsert when XON.10 (else XON.3) identifies it, else by
    its name XON.1 as display; `xad` is its address where the segment sends one (OBX-24)."""
    if not xon.width():
        return None
    name = xon(1)
    value = xon(10) or xon(3)
    if not value:
        return {"display": name} if name else None
    key = compact({"type": identifier_type(xon(7)), "system": hd_system(xon, shared.context, 6) or shared.context.authority, "value": value})
    found_address = address(xad, shared.context) if xad else None
    body = compact({"resourceType": "Organization", "identifier": [key], "name": name, "address": [found_address] if found_address else []})
    upsert = shared.upsert(body, key, combine=keeping_unmapped)
    return compact({"reference": upsert.local_ref, "display": name})
