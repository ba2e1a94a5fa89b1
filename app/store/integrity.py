"""Referential integrity, as HAPI FHIR enforces it by default, checked by each unit of work before it commits.

On write, every local reference (`Patient/123`, also versioned) of a created, updated or patched resource must name
a live resource: one stored before, or written in the same unit (a transaction Bundle, a batch of `ehr load`, an
HL7 v2 message). On delete, no live resource may still refer to the deleted one, unless the same unit deletes
it too. Checking at the end of the unit, not per write, is what lets a Bundle's entries refer to each other in any
order. Both checks can be switched off (EHR_REFERENTIAL_INTEGRITY_ON_WRITE / _ON_DELETE, `ehr load
--no-check-references`), as for bulk loads of data whose files come in no particular order.
"""
from dataclasses import dataclass, field

from sqlalchemy import Connection

from app.config import Integrity
from app.errors import BadRequest, Conflict, Issue
from app.model.references import local_references
from app.store.resources import StoredResource, first_referrer, live_keys
from app.store.turns import let_others_run


@dataclass(frozen=True)
class DanglingReference:
    source: tuple[str, str]  # the written resource (type, id)
    path: str
    target: tuple[str, str]


@dataclass
class DanglingReferences(BadRequest):
    """Written resources refer to resources that do not exist; `dangling` says which, so that a loader can set
    those resources aside and write the others."""

    dangling: list[DanglingReference] = field(default_factory=list)


@dataclass
class StillReferenced(Conflict):
    """A deleted resource is still referred to; `deleted` is its (type, id)."""

    deleted: tuple[str, str] = ("", "")


@dataclass
class ReferenceCheck:
    """What one unit of work wrote, for the checks at its end."""

    integrity: Integrity
    written: dict[tuple[str, str], StoredResource] = field(default_factory=dict)  # the latest version, by (type, id)
    found: list[DanglingReference] | None = None  # the local references of `written`, walked once; None until asked
    known_live: set[tuple[str, str]] = field(default_factory=set)  # targets an update's statement found live and locked

    def wrote(self, stored: StoredResource, live_targets: frozenset = frozenset()) -> None:
        """`live_targets`: targets the write found live and locked; the unit's own deletes cancel earlier findings."""
        key = (stored.type, stored.id)
        self.written[key] = stored
        self.found = None
        self.known_live |= live_targets
        if stored.deleted:
            self.known_live.discard(key)

    def refuse(self, stored: StoredResource, live: frozenset[tuple[str, str]]) -> None:
        """DanglingReferences for `stored`, which was not written because its targets but `live` are not live."""
        dangling = [reference for reference in self.references_of(stored) if reference.target not in live]
        raise dangling_references(dangling)

    def clear(self) -> None:
        self.written.clear()
        self.found = None
        self.known_live.clear()

    @property
    def on_write(self) -> bool:
        return self.integrity.on_write

    def references(self) -> list[DanglingReference]:
        """Each local reference of a live written version, as a DanglingReference until the check finds its target."""
        if self.found is None:
            self.found = [
                reference for stored in self.written.values() if not stored.deleted for reference in self.references_of(stored)
            ] if self.integrity.on_write else []
        return self.found

    @staticmethod
    def references_of(stored: StoredResource) -> list[DanglingReference]:
        let_others_run()
        return [DanglingReference((stored.type, stored.id), path, target) for path, target in local_references(stored.body)]

    def targets(self) -> frozenset[tuple[str, str]]:
        """The (type, id) that the written resources' local references name."""
        return frozenset(reference.target for reference in self.references())

    def check(self, connection: Connection, live: set[tuple[str, str]] = frozenset()) -> None:
        """`live`: targets already known live and locked, as the unit's last write found them or wrote them."""
        check_targets_exist(connection, self.references(), live | self.known_live)
        if self.integrity.on_delete:
            check_not_referenced(connection, [stored for stored in self.written.values() if stored.deleted])

    def checks_deletes(self) -> bool:
        """True when check() will look for referrers of a deleted resource; the check of targets, the unit's last
        write makes (see Unit.finish), so when False that write may commit on its own (one round trip)."""
        return self.integrity.on_delete and any(stored.deleted for stored in self.written.values())

    def check_deletable(self, connection: Connection, type_name: str, resource_id: str) -> None:
        if self.integrity.on_delete:
            check_no_referrer(connection, type_name, resource_id)


def check_targets_exist(connection: Connection, references: list[DanglingReference], known_live: set[tuple[str, str]]) -> None:
    """DanglingReferences naming each of `references` whose target is not live; the targets not `known_live` are
    looked up (no statement when there are none)."""
    unknown = {reference.target for reference in references} - known_live
    live = known_live | live_keys(connection, unknown)
    dangling = [reference for reference in references if reference.target not in live]
    if dangling:
        raise dangling_references(dangling)


def dangling_references(dangling: list[DanglingReference]) -> DanglingReferences:
    issues = [
        Issue("not-found", f"{'/'.join(reference.source)} refers to {'/'.join(reference.target)} at {reference.path}, which does not exist.", (reference.path,))
        for reference in dangling
    ]
    first = dangling[0]
    return DanglingReferences(
        f"{'/'.join(first.target)} does not exist, and {'/'.join(first.source)} refers to it at {first.path}: create it first, or send "
        f"both in one transaction Bundle (this server checks references, as EHR_REFERENTIAL_INTEGRITY_ON_WRITE says).",
        issues, dangling=dangling,
    )


def check_not_referenced(connection: Connection, deleted: list[StoredResource]) -> None:
    for stored in deleted:
        check_no_referrer(connection, stored.type, stored.id)


def check_no_referrer(connection: Connection, type_name: str, resource_id: str) -> None:
    referrer = first_referrer(connection, type_name, resource_id)
    if referrer is not None:
        raise StillReferenced(
            f"{type_name}/{resource_id} cannot be deleted: {'/'.join(referrer)} refers to it. Delete or change the resources that "
            f"refer to it first, or delete them together in one transaction Bundle.",
            deleted=(type_name, resource_id),
        )
