"""Reading a parsed message through python-hl7: segments with their occurrence number, fields by repetition.

A value is read as python-hl7's `Segment.extract_field` reads it, and unescaped by its `unescape`
(\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\.br\\ \\Xhh\\), but an absent part reads as "" where extract_field raises
IndexError, and without extract_field's per-call bookkeeping: the mappers read some 200 values a message.
"""
import re
import string
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import hl7
from hl7.util import unescape

from interop.hl7v2.mapping import MappingError
from interop.hl7v2.text import FALLBACK_CODEC, codec_for

HL7_NULL = '""'  # "delete this value" in v2; for a full-body upsert it means "no value"


class HexEscapes:
    """\\Xhh..\\ (v2.5.1 2.7.5) as bytes in the message's character set: python-hl7's unescape reads each byte as
    a character of its own, which makes a UTF-8 "\\XC3BC\\" "Ã¼" instead of "ü". Handed to unescape as its
    application map, which it consults before its own rules. Bytes not valid in that set are read as UTF-8,
    then as Windows-1252, as undeclared text is (text.py)."""

    def __init__(self, codec: str):
        self.codec = codec

    def __bool__(self) -> bool:  # unescape skips an empty-looking map
        return True

    def __contains__(self, sequence: str) -> bool:
        digits = sequence[1:]
        return sequence[:1] == "X" and len(digits) % 2 == 0 and bool(digits) and all(digit in string.hexdigits for digit in digits)

    def __getitem__(self, sequence: str) -> str:
        data = bytes.fromhex(sequence[1:])
        for codec in dict.fromkeys((self.codec, "utf-8")):
            try:
                return data.decode(codec)
            except UnicodeDecodeError:
                pass
        return data.decode(FALLBACK_CODEC, errors="replace")


@cache  # by codec, not by what senders write in MSH-18: a few entries at most
def escapes_in(codec: str) -> HexEscapes:
    return HexEscapes(codec)


def joined_hex_runs(value: str, escape: str) -> str:
    """`\\XC3\\\\XBC\\` as `\\XC3BC\\`: a character's bytes may come in escapes of their own."""
    if value.count(f"{escape}X") < 2:
        return value
    adjacent = re.compile(rf"{re.escape(escape)}X([0-9A-Fa-f]+){re.escape(escape * 2)}X([0-9A-Fa-f]+){re.escape(escape)}")
    while (joined := adjacent.sub(lambda match: f"{escape}X{match[1]}{match[2]}{escape}", value)) != value:
        value = joined
    return value


at = list.__getitem__  # python-hl7's containers are lists; their own __getitem__ only adds slicing, at a cost per call


@dataclass(frozen=True)
class SegmentView:
    """One segment and its occurrence among the message's segments of the same id (ERR-2 sequence)."""

    segment: hl7.Segment
    sequence: int
    id: str  # "PID"
    escapes: HexEscapes  # the message's, by its MSH-18

    def unescaped(self, text: str) -> str:
        """Text of this segment with its escape sequences read (python-hl7's unescape, hex as bytes in the character set)."""
        return unescape(self.segment, joined_hex_runs(text, self.segment.esc), self.escapes)

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


class FieldValue(NamedTuple):
    """One repetition of one field; call it with a component (and subcomponent) number for its text. A tuple: the
    mappers make some 200 of them a message, and a frozen dataclass costs several times more to build."""

    owner: SegmentView
    number: int
    repetition: int = 1

    def __call__(self, component: int = 1, subcomponent: int = 1) -> str:
        segment = self.owner.segment
        if self.number >= len(segment):  # most optional fields are not sent: the cheapest answer first
            return ""
        value = leaf(segment, self.number, self.repetition, component, subcomponent)
        if not value:
            return ""
        if segment.esc in value and not (self.number <= 2 and self.owner.id == "MSH"):  # MSH-1 and MSH-2 are the separators
            value = self.owner.unescaped(value)
        return "" if value == HL7_NULL else value.strip()

    def text(self) -> str:
        """The whole repetition unescaped, separators included: for free text a sender forgot to escape."""
        raw = self.raw()
        return "" if raw == HL7_NULL else self.owner.unescaped(raw).strip()

    def has_content(self) -> bool:
        """True when some component holds a value (the null value "" holds none)."""
        raw = self.raw()
        return raw != HL7_NULL and not is_blank(raw, self.owner.segment)

    def has_null_component(self) -> bool:
        """True when a component or subcomponent is sent as the null value "" (v2: delete it)."""
        separators = self.owner.segment.separators[3:5]  # python-hl7's: segment, field, repetition, component, subcomponent
        raw = self.raw()
        for separator in separators:
            raw = raw.replace(separator, "\x00")
        return HL7_NULL in raw.split("\x00")

    def width(self) -> int:
        """How many components the repetition has (0 when absent): readers of wide types (CWE, XPN, XAD, XTN) skip
        the components a short value cannot have."""
        segment = self.owner.segment
        if self.number >= len(segment) or self.repetition > len(at(segment, self.number)):
            return 0
        value = at(at(segment, self.number), self.repetition - 1)
        return 1 if isinstance(value, str) else len(value)

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


def leaf(segment: hl7.Segment, number: int, repetition: int, component: int, subcomponent: int) -> str:
    """The text at a position, "" when absent; below a value without components, only position 1 reaches it."""
    if number >= len(segment) or repetition > len(at(segment, number)):
        return ""
    value = at(at(segment, number), repetition - 1)
    if isinstance(value, str):
        return value if component == subcomponent == 1 else ""
    if component > len(value):
        return ""
    value = at(value, component - 1)
    if isinstance(value, str):
        return value if subcomponent == 1 else ""
    return at(value, subcomponent - 1) if subcomponent <= len(value) else ""


def is_blank(raw: str, segment: hl7.Segment) -> bool:
    """True for field text made of separators (repetition, component, subcomponent) and spaces only."""
    return not raw.strip(segment.separators[2:] + " ")


def segment_views(message: hl7.Message) -> list[SegmentView]:
    """Every segment in message order, numbered per segment id from 1."""
    seen: dict[str, int] = {}
    views = []
    msh = message.segment("MSH")
    escapes = escapes_in(codec_for(leaf(msh, 18, 1, 1, 1)))  # MSH-18's first repetition names the character set
    for segment in message:
        segment_id = str(segment[0])
        seen[segment_id] = seen.get(segment_id, 0) + 1
        views.append(SegmentView(segment, seen[segment_id], segment_id, escapes))
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
