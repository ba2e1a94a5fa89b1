"""Resources that several segments of one message may name (Practitioners, Organizations, Locations): one upsert each."""
from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import MessageContext
from interop.hl7v2.mapping.upserts import identifier_criteria, upsert_by_identifier


class SharedUpserts:
    """The shared upserts of one message, deduplicated by business key, in the order first named: a resource
    they reference (a Location's partOf) is named, and so written, before them."""

    def __init__(self, context: MessageContext):
        self.context = context
        self.by_criteria: dict[str, Upsert] = {}

    @property
    def upserts(self) -> list[Upsert]:
        return list(self.by_criteria.values())

    def upsert(self, body: dict, key: dict, keep: tuple[str, ...] = (), combine=None) -> Upsert:
        """The upsert of `body` by its identifier `key`: the one made when the message first named it, if it did."""
        criteria = identifier_criteria(key)
        if criteria not in self.by_criteria:
            self.by_criteria[criteria] = upsert_by_identifier(body, key, keep, combine)
        return self.by_criteria[criteria]
