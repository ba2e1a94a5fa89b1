"""HL7 v2 messages to FHIR R4 resources: pure functions, driven by the HL7 v2-to-FHIR IG tables.

The service applies what `map_message` returns (identifier changes, upserts, then merges) in one
database transaction; nothing here touches the database. docs/hl7v2-mapping.md lists the tables
this package implements.
"""
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class Upsert:
    """One resource to create or update by its business key, in the message's transaction."""

    local_ref: str  # "urn:uuid:<uuid4>"; other upserts' references to this resource use it (the service rewrites them)
    type: str  # "Patient"
    criteria: str  # FHIR search criteria of the business key, e.g. "identifier=urn:oid:1.2.3|12345" (URL-encoded values as in a conditional update)
    body: dict  # the full FHIR R4 resource (no id, no meta: the service sets meta.source), as `combine` leaves it
    keep: tuple[str, ...] = ()  # top-level elements an existing resource keeps (A08 never changes Encounter.status)
    # the body written, from the stored body ({} for a create) and the new one (references resolved, `keep` applied)
    combine: Callable[[dict, dict], dict] | None = None
    key: dict | None = None  # the identifier `criteria` searches for


@dataclass(frozen=True)
class Merge:
    """The resource found by `criteria` is merged into the upsert whose local_ref is `survivor_ref` (ADT^A40).

    For Patients: the merged one becomes inactive with a `replaced-by` link, the survivor gains a
    `replaces` link, and every other resource's references move to the survivor. When `criteria`
    finds nothing, or finds the survivor itself, there is nothing to merge."""

    survivor_ref: str  # the local_ref of an Upsert of the same message
    type: str  # "Patient"
    criteria: str  # as Upsert.criteria: the merged resource's business key, e.g. MRG-1's identifier


@dataclass(frozen=True)
class IdentifierChange:
    """The resource `criteria` finds takes the identifier `new_key` in place of the one `criteria` names (ADT^A47): the
    upsert whose local_ref is `upsert_ref` then finds it by `new_key`. When `criteria` finds nothing there is nothing
    to change; when another resource already holds `new_key`, the change is refused (205, duplicate key)."""

    upsert_ref: str  # the local_ref of the Upsert, by the new identifier, that follows
    type: str  # "Patient"
    criteria: str  # the old identifier's criteria (MRG-1)
    old_key: dict  # the old identifier (system, value): removed
    new_key: dict  # the new identifier (PID-3): added


class MappingError(Exception):
    """The message cannot be applied; becomes an AE with ERR (HL7 table 0357 code and location). Kept in
    MessageContext.warnings instead of raised, it is a warning about a value read liberally (ERR severity W)."""

    def __init__(self, text: str, code: int = 207, segment: str | None = None, sequence: int | None = None, field: int | None = None):
        super().__init__(text)
        self.text = text
        self.code = code
        self.segment = segment
        self.sequence = sequence
        self.field = field


class UnsupportedMessage(MappingError):
    """A message type (ERR code 200) or trigger event (201) we do not map: answered AR, kept for replay."""


Instruction = Upsert | Merge | IdentifierChange


class MappedMessage(NamedTuple):
    instructions: tuple[Instruction, ...]  # identifier changes, upserts in dependency order, then merges
    warnings: tuple[MappingError, ...]  # values read liberally: the message is applied, answered with ERR severity W


# The mappers import the contract above, so they come after it.
from interop.hl7v2.mapping.messages import map_message  # noqa: E402

__all__ = ["IdentifierChange", "Instruction", "MappedMessage", "MappingError", "Merge", "UnsupportedMessage", "Upsert", "map_message"]
