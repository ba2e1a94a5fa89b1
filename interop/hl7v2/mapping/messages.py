"""Dispatch on MSH-9 (message type ^ trigger event ^ message structure) to the mapper of the trigger event.

Liberal in what is accepted: a message is mapped by its type and trigger event. MSH-9.3 may
name a structure the standard does not use for that trigger (ADT_A04, ADT_A08, ADT_A40...):
as HAPI's and Mirth's parsers do, the message is read as the structure the standard assigns
(ADT_A01, ADT_A39...) when its segments fit it, and refused only when they do not.
"""
from collections.abc import Mapping

import hl7

from interop.hl7v2.mapping import MappedMessage, UnsupportedMessage
from interop.hl7v2.mapping.adt import ADT_EVENTS
from interop.hl7v2.mapping.datatypes import context_of
from interop.hl7v2.mapping.events import MessageEvent
from interop.hl7v2.mapping.fields import SegmentView, first_segment, segment_views
from interop.hl7v2.mapping.oru import ORU_EVENTS

EVENTS: dict[str, dict[str, MessageEvent]] = {"ADT": ADT_EVENTS, "ORU": ORU_EVENTS}  # MSH-9.1 -> trigger event -> how it maps


def map_message(message: hl7.Message, systems: Mapping[str, str] = {}) -> MappedMessage:  # noqa: B006 - never mutated
    """What applies `message`: identifier changes, then upserts in dependency order (Practitioners, Organizations,
    Locations, Patient, RelatedPersons, AllergyIntolerances, Conditions, Encounter, Observations, DiagnosticReports),
    then the merges of an A40; with the warnings about values read liberally. `systems` maps assigning authority
    names (upper case) to the identifier systems an operator set.

    >>> text = "MSH|^~\\\\&|ADT|HOSP|EHR|EHR|202401021230+0100||ADT^A28^ADT_A05|1|P|2.5.1\\rPID|1||12345^^^HOSP^MR||Doe^Jane"
    >>> [(upsert.type, upsert.criteria) for upsert in map_message(hl7.parse(text)).instructions]
    [('Patient', 'identifier=urn:ehr:hl7v2:authority:HOSP|12345')]
    """
    segments = segment_views(message)
    msh = segments[0]
    if msh.id != "MSH":
        raise UnsupportedMessage(f"An HL7 batch ({msh.id}) is not taken: send each message in a frame or request of its own.", 200, msh.id, 1)
    message_type, event_code, structure = (msh.field(9)(component).upper() for component in (1, 2, 3))
    event_code = event_code or event_type_of(segments)
    event = mapped_event(message_type, event_code, structure, segments)
    context = context_of(msh, systems)
    instructions = event.mapper(segments, context, event_code)
    return MappedMessage(tuple(instructions), tuple(context.warnings))


def event_type_of(segments: list[SegmentView]) -> str:
    """EVN-1, the trigger event before v2.5 moved it to MSH-9.2, for senders that still put it only there."""
    evn = first_segment(segments, "EVN")
    return evn.field(1)().upper() if evn else ""


def mapped_event(message_type: str, event_code: str, structure: str, segments: list[SegmentView]) -> MessageEvent:
    """How the message maps; 200 for a type we do not map, 201 for an event, 200 for a structure its segments do not fit."""
    if message_type not in EVENTS:
        raise UnsupportedMessage(f"Message type {message_type or '(empty)'} is not mapped.", 200, "MSH", 1, 9)
    event = EVENTS[message_type].get(event_code)
    if event is None:
        raise UnsupportedMessage(f"Trigger event {message_type}^{event_code or '(empty)'} is not mapped.", 201, "MSH", 1, 9)
    missing = [needed for needed in event.needs if first_segment(segments, needed) is None]
    if structure and structure not in event.structures and missing:
        raise UnsupportedMessage(
            f"Message structure {structure} is not that of {message_type}^{event_code} ({event.structures[0]}), "
            f"and the segments do not fit {event.structures[0]} either: no {', '.join(missing)}.", 200, "MSH", 1, 9,
        )
    return event
