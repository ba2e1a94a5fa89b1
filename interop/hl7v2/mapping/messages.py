"""Dispatch on MSH-9 (message type ^ trigger event ^ message structure) to the mapper of that structure."""
from collections.abc import Callable

import hl7

from interop.hl7v2.mapping import Merge, UnsupportedMessage, Upsert
from interop.hl7v2.mapping.adt import ADT_EVENTS, MERGE_EVENTS, adt_upserts
from interop.hl7v2.mapping.datatypes import MessageDefaults, defaults_of
from interop.hl7v2.mapping.fields import SegmentView, segment_views
from interop.hl7v2.mapping.oru import ORU_EVENTS, oru_upserts

Mapper = Callable[[list[SegmentView], MessageDefaults, str], list[Upsert | Merge]]
MAPPERS: dict[str, tuple[dict[str, str], Mapper]] = {  # MSH-9.1 -> (trigger event -> its message structure, the mapper of those structures)
    "ADT": ({**{event: adt.structure for event, adt in ADT_EVENTS.items()}, **MERGE_EVENTS}, adt_upserts),
    "ORU": (ORU_EVENTS, oru_upserts),
}


def upserts_for(message: hl7.Message) -> list[Upsert | Merge]:
    """What applies `message`: upserts in dependency order (Practitioners, Patient, Encounter, Observations,
    DiagnosticReports), then the merges of an A40, each into a Patient upserted before it.

    >>> text = "MSH|^~\\\\&|ADT|HOSP|EHR|EHR|202401021230+0100||ADT^A28^ADT_A05|1|P|2.5.1\\rPID|1||12345^^^HOSP^MR||Doe^Jane"
    >>> [(upsert.type, upsert.criteria) for upsert in upserts_for(hl7.parse(text))]
    [('Patient', 'identifier=urn:ehr:hl7v2:authority:HOSP|12345')]
    """
    segments = segment_views(message)
    msh = segments[0]
    if msh.id != "MSH":
        raise UnsupportedMessage(f"An HL7 batch ({msh.id}) is not taken: send each message in a frame or request of its own.", 200, msh.id, 1)
    message_type, event, structure = (msh.field(9)(component).upper() for component in (1, 2, 3))
    events, mapper = mapped_events(message_type)
    if event not in events:
        raise UnsupportedMessage(f"Trigger event {message_type}^{event} is not mapped.", 201, "MSH", 1, 9)
    if structure and structure not in events.values():
        raise UnsupportedMessage(f"Message structure {structure} is not mapped for {message_type}.", 200, "MSH", 1, 9)
    return mapper(segments, defaults_of(msh), event)


def mapped_events(message_type: str) -> tuple[dict[str, str], Mapper]:
    """The events mapped for a message type (each with its structure) and their mapper; 200 for other types."""
    if message_type not in MAPPERS:
        raise UnsupportedMessage(f"Message type {message_type or '(empty)'} is not mapped.", 200, "MSH", 1, 9)
    return MAPPERS[message_type]
