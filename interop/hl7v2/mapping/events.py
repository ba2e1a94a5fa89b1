"""What the dispatcher knows of a trigger event: the structures the standard gives it and the mapper that maps it."""
from collections.abc import Callable
from dataclasses import dataclass

from interop.hl7v2.mapping import Instruction
from interop.hl7v2.mapping.datatypes import MessageContext
from interop.hl7v2.mapping.fields import SegmentView

Mapper = Callable[[list[SegmentView], MessageContext, str], list[Instruction]]


@dataclass(frozen=True)
class MessageEvent:
    structures: tuple[str, ...]  # MSH-9.3 values the standard gives the trigger (table 0354, v2.3.1 to v2.8), newest first
    needs: tuple[str, ...]  # the segments its mapping cannot do without: what a message under another name must have
    mapper: Mapper
