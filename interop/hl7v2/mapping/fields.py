"""Reading a parsed message through python-hl7: segments with their occurrence number, fields by repetition.

python-hl7's `extract_field` unescapes each value (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\) but raises
IndexError when a path goes below a value that has no components; here an absent part reads as "".
"""
from dataclasses import dataclass

import hl7
from hl7.util import unescape

from interop.hl7v2.mapping import MappingError

HL7_NULL = '""'  # "delete this value" in v2; for a full-body upsert it means "no value"


@dataclass(frozen=True)
class SegmentView:
    """One segment and its occurrence among the message's segments of the same id (ERR-2 sequence)."""

    segment: hl7.Segment
    sequence: int

    @property
    def id(self) -> str:
        return str(self.segment[0])

    def field(self, number: int, repetition: int = 1) -> "FieldValue":
        return FieldValue(self, number, repetition)

    def repetitions(self, number: int) -> list["FieldValue"]:
        count = len(self.segment[number]) if number < len(self.segment) else 0
        return [FieldValue(self, number, repetition) for repetition in range(1, count + 1)]

    def is_unvalued(self, number: int) -> bool:
        """True when the field was not sent at all (empty), as opposed to sent as the null value ""."""
        return number >= len(self.segment) or is_blank(str(self.segment[number]), self.segment)

    def error(self, text: str, code: int, field: int | None = None) -> MappingError:
        return MappingError(text, code, self.id, self.sequence, field)


@dataclass(frozen=True)
class FieldValue:
    """One repetition of one field; call it with a component (and subcomponent) number for its text."""

    owner: SegmentView
    number: int
    repetition: int = 1

    def __call__(self, component: int = 1, subcomponent: int = 1) -> str:
        try:
            value = self.owner.segment.extract_field(1, self.number, self.repetition, component, subcomponent)
        except IndexError:
            return ""
        return "" if value == HL7_NULL else value.strip()

    def text(self) -> str:
        """The whole repetition unescaped, separators included: for free text a sender forgot to escape."""
        raw = self.raw()
        return "" if raw == HL7_NULL else unescape(self.owner.segment, raw).strip()

    def has_content(self) -> bool:
        """True when some component holds a value (the null value "" holds none)."""
        raw = self.raw()
        return raw != HL7_NULL and not is_blank(raw, self.owner.segment)

    def raw(self) -> str:
        segment = self.owner.segment
        field = segment[self.number] if self.number < len(segment) else []
        return str(field[self.repetition - 1]) if self.repetition <= len(field) else ""

    @property
    def name(self) -> str:
        return f"{self.owner.id}-{self.number}"

    def error(self, text: str, code: int) -> MappingError:
        return self.owner.error(f"{self.name}: {text}", code, self.number)

    def required(self, component: int = 1, what: str = "a value") -> str:
        """The component's text; MappingError 101 (required field missing) when it is empty."""
        value = self(component)
        if not value:
            raise self.error(f"{what} is required", 101)
        return value


def is_blank(raw: str, segment: hl7.Segment) -> bool:
    """True for field text made of separators (repetition, component, subcomponent) and spaces only."""
    return not raw.strip(segment.separators[2:] + " ")


def segment_views(message: hl7.Message) -> list[SegmentView]:
    """Every segment in message order, numbered per segment id from 1."""
    seen: dict[str, int] = {}
    views = []
    for segment in message:
        segment_id = str(segment[0])
        seen[segment_id] = seen.get(segment_id, 0) + 1
        views.append(SegmentView(segment, seen[segment_id]))
    return views


def first_segment(views: list[SegmentView], segment_id: str) -> SegmentView | None:
    return next((view for view in views if view.id == segment_id), None)


def patient_groups(segments: list[SegmentView]) -> list[list[SegmentView]]:
    """Patient groups (ORU PATIENT_RESULT, ADT_A39 PATIENT): each PID with the segments up to the next PID.

    At least one group: without any PID, the whole message, so that the patient mapper reports the missing PID."""
    starts = [index for index, segment in enumerate(segments) if segment.id == "PID"]
    if not starts:
        return [segments]
    return [segments[start:end] for start, end in zip(starts, [*starts[1:], len(segments)])]
