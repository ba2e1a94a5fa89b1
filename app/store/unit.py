"""The one writer and reader of resources: a unit of work, in one transaction, that every entrance uses.

REST interactions, transaction and batch Bundles, `ehr load` and the feeds open a unit with `writing(engine)`
or `reading(engine)` and ask it, never the tables, for what they need: creates, updates (with If-Match),
conditional creates, updates and deletes by criteria, patches and deletes; reads, versions, history, searches
and the resources that refer to one. Each write runs one pipeline: validate, version, extract index rows,
persist (app/store/resources.py). Policy checks, audit records and field encryption belong here, once, for every
entrance. The policy check is the unit's Access (app/store/access.py): every read, search and write asks it where
its caller may act, and confines the caller there.

Creates are validated at once and written together: at the unit's next statement that could see them (a read, a
search, a write of the same resource) or at commit, so that a transaction's thousand POSTs, a feed's batch of
results and a loaded file's new resources each go in one batch per table. On PostgreSQL an update of a version the
unit found without a lock (a feed's key lookup) waits with them and goes in the same statement.
"""
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime

from sqlalchemy import Connection, Engine

from app.config import Integrity
from app.errors import BadRequest, Gone, NotFound, PreconditionFailed
from app.model.validation import check_resource_type
from app.search.conditional import criteria_lock_keys, matching, matching_each, single_match
from app.search.criteria import Query
from app.search.query import SearchRequest
from app.search.service import count_matches, run_search
from app.store.access import UNRESTRICTED, Access, Guard
from app.store.audit import Accessed, audit_events, audit_version, write_audit_events
from app.store.compartment import CompartmentQuery, compartment_page, referenced_resources
from app.store.db import read_unit, write_unit
from app.store.history import HistoryPage, HistoryQuery, read_history
from app.store.integrity import ReferenceCheck
from app.store.observations import latest_dates_and_codes, observations_oldest_first, resources_in_order
from app.store.resources import (
    NextVersion, StoredResource, WriteResult, delete_resource, has_resources, insert_new_resources, live_referrers, missing, missing_version, new_resource,
    patch_resource, read_resource, read_version, stored_keys, update_resource,
)
from app.store.search import SearchResult, locks_wanted


class Unit:
    """One unit of work on `connection`, in its transaction. Its referential-integrity checks are the engine's
    `ehr_integrity` execution option (see app/store/db.py settings_engine), else both on."""

    def __init__(self, connection: Connection, base: str | None = None, alone: bool = False, access: Access = UNRESTRICTED):
        self.connection = connection
        self.access = access
        self.base = base  # this server's FHIR base URL as the entrance knows it: criteria may name its references by it
        self.alone = alone  # the entrance writes one resource with this unit and nothing else (see writing)
        self.waiting: dict[tuple[str, str], StoredResource] = {}  # creates not yet written, by (type, id)
        self.waiting_updates: dict[tuple[str, str], NextVersion] = {}  # updates of found versions not yet written
        self.references = ReferenceCheck(connection.get_execution_options().get("ehr_integrity", Integrity()))
        self.criteria_locked: set[int] = set()  # the advisory locks on conditional criteria that its transaction holds
        self.guard = Guard(access, connection)
        self.accessed = Accessed()  # what an audited caller did (app/store/audit.py)

    # Writes.

    def create(self, body, expected_type: str | None = None, resource_id: str | None = None, method: str = "POST") -> WriteResult:
        """A new resource, under `resource_id` (assigned before writing, so references to it resolve) or a new id.
        A POST's own id is ignored, as R4 says; `ehr load` creates under the file's ids with method PUT."""
        stored = new_resource(body, expected_type, resource_id, method)
        self.guard.after_write(stored, self.guard.before_write(stored.type, stored.id, "c"))
        if (stored.type, stored.id) in self.waiting:
            self.flush()  # the same id twice: the first is written, and the second fails as the database says
        self.waiting[(stored.type, stored.id)] = stored
        self.references.wrote(stored)
        self.note("create", [stored])
        return WriteResult(stored, created=True)

    def update(self, type_name: str, resource_id: str, body, if_match: str | None = None, found: StoredResource | None = None) -> WriteResult:
        """PUT: a new version, or the first one under the client's id; unchanged content writes nothing. `found`: the
        current version as this unit found it (see update_resource)."""
        self.flush_if_waiting(type_name, resource_id)
        reaches = self.guard.before_write(type_name, resource_id, "u")
        alone = self.alone and not self.waiting and not self.references.written and reaches is None and not self.accessed.interactions
        audit = self.audit_versions_of("update") if self.access.caller is not None else None
        result = update_resource(self.connection, type_name, resource_id, body, if_match, self.references.on_write, found, alone, audit)
        self.guard.after_write(result.stored, reaches)
        if result.waiting is not None:
            self.waiting_updates[(type_name, resource_id)] = result.waiting
        if not result.written:
            self.references.refuse(result.stored, result.live_targets)
        if not result.audited:
            self.note("update", [result.stored])
        return self.wrote(result)

    def patch(self, type_name: str, resource_id: str, operations, if_match: str | None = None) -> WriteResult:
        """JSON Patch of the current version; NotFound also when it is outside the caller's reach."""
        self.flush_if_waiting(type_name, resource_id)
        if not self.guard.before_removal(type_name, resource_id, "u"):
            raise missing(type_name, resource_id)
        result = patch_resource(self.connection, type_name, resource_id, operations, if_match, self.references.on_write)
        self.guard.after_write(result.stored, self.guard.confinement(type_name, "u"))
        self.note("patch", [result.stored])
        return self.wrote(result)

    def delete(self, type_name: str, resource_id: str, if_match: str | None = None) -> StoredResource | None:
        """A deletion version; None when there was nothing live to delete (or nothing within the caller's reach)."""
        self.flush_if_waiting(type_name, resource_id)
        if not self.guard.before_removal(type_name, resource_id, "d"):
            return None
        deletion = delete_resource(self.connection, type_name, resource_id, if_match)
        if deletion is None:
            return None
        deleted, before = deletion
        self.references.wrote(deleted)
        self.note("delete", [deleted], before=before)
        return deleted

    def wrote(self, result: WriteResult) -> WriteResult:
        if result.changed:
            self.references.wrote(result.stored, result.live_targets)
        return result

    def create_unless_matched(self, body, type_name: str, criteria: str, resource_id: str | None = None) -> WriteResult:
        """If-None-Exist: create unless one resource matches (then return it unchanged); 412 when several match."""
        existing = self.match_one(type_name, criteria)
        if existing is not None:
            return WriteResult(existing, created=False, changed=False)
        return self.create(body, type_name, resource_id)

    def update_matched(self, body, type_name: str, criteria: str, if_match: str | None = None) -> WriteResult:
        """PUT Type?criteria: update the one match, or create when none matches (under the body's id, if it has one)."""
        target = self.update_target(body, type_name, criteria)
        if target is None:
            return self.create(body, type_name)
        return self.update(type_name, target, {**body, "id": target}, if_match)

    def update_target(self, body, type_name: str, criteria: str) -> str | None:
        """The id a conditional update writes: its one match's, else the body's; None to create under a new id."""
        check_resource_type(body, type_name)
        existing = self.match_one(type_name, criteria)
        if existing is None:
            return body.get("id")
        if body.get("id") not in (None, existing.id):
            raise BadRequest(f"The body's id '{body['id']}' is not the id of the {type_name} that matches '{criteria}' ({existing.id}).")
        return existing.id

    def delete_matched(self, type_name: str, criteria: str) -> StoredResource | None:
        """DELETE Type?criteria: delete the one match; nothing when none matches; 412 when several match."""
        existing = self.match_one(type_name, criteria)
        return self.delete(type_name, existing.id) if existing else None

    def finish(self, last: bool = False) -> None:
        """Write what waits, check that a limited caller wrote only within its reach (Forbidden), and check the
        references of what the unit wrote (DanglingReferences, StillReferenced): run before commit, and by a caller
        that wants those errors while it can still tell whose they are. The waiting creates are written together
        with the check that their targets live. `last` when the unit does nothing more: then a write that is the
        unit's only statement may commit on its own."""
        alone = last and not self.references.checks_deletes() and not self.guard.unchecked
        live = self.flush(last=alone, targets=self.references.targets())
        self.guard.check_written()
        self.references.check(self.connection, live)
        self.references.clear()

    # The audit trail (app/store/audit.py).

    def note(self, interaction: str, resources: list[StoredResource], query: str | None = None, before: StoredResource | None = None) -> None:
        if self.access.caller is not None:
            self.accessed.note(interaction, resources, query, before)

    def audit_events(self) -> list[dict]:
        """The AuditEvents of what an audited caller did with this unit; none for others, or when it did nothing."""
        if self.access.caller is None or not self.accessed.interactions:
            return []
        return audit_events(self.access.caller, self.accessed)

    def audit_versions_of(self, interaction: str) -> Callable[[StoredResource], list[StoredResource]]:
        """The AuditEvents, as versions to write, of this unit's `interaction` with one resource version (a write that
        writes them itself, see update_committed)."""
        def versions(stored: StoredResource) -> list[StoredResource]:
            accessed = Accessed()
            accessed.note(interaction, [stored])
            return [audit_version(event) for event in audit_events(self.access.caller, accessed)]

        return versions

    def record_audit_events(self) -> None:
        """Write the unit's AuditEvents with its writes, in its transaction (not checked against the caller's access)."""
        for event in self.audit_events():
            stored = audit_version(event)
            self.waiting[(stored.type, stored.id)] = stored

    def flush(self, last: bool = False, targets: frozenset = frozenset()) -> set[tuple[str, str]]:
        """Write the waiting creates, batched per table, unless a target of `targets` (but those among them) is not
        live; `last` when the unit does nothing more before commit. Returns the keys known live now: the targets
        found and what was written."""
        if not self.waiting and not self.waiting_updates:
            return set()
        (waiting, self.waiting), (updates, self.waiting_updates) = (self.waiting, {}), (self.waiting_updates, {})
        found = insert_new_resources(self.connection, list(waiting.values()), targets - waiting.keys(), last, list(updates.values()))
        return found | waiting.keys()

    def flush_if_waiting(self, type_name: str, resource_id: str) -> None:
        if (type_name, resource_id) in self.waiting or (type_name, resource_id) in self.waiting_updates:
            self.flush()

    # Reads: each sees the unit's own writes.

    def read(self, type_name: str, resource_id: str) -> StoredResource:
        """The current version; NotFound also when it is outside the caller's reach."""
        self.guard.confinement(type_name, "r")
        self.flush_if_waiting(type_name, resource_id)
        with self.deletions_hidden(lambda: missing(type_name, resource_id)):
            stored = read_resource(self.connection, type_name, resource_id)
        if not self.guard.reached([stored], "r"):
            raise missing(type_name, resource_id)
        self.note("read", [stored])
        return stored

    def read_version(self, type_name: str, resource_id: str, version_id: str) -> StoredResource:
        self.guard.confinement(type_name, "r")
        self.flush_if_waiting(type_name, resource_id)
        with self.deletions_hidden(lambda: missing_version(type_name, resource_id, version_id)):
            stored = read_version(self.connection, type_name, resource_id, version_id)
        if not self.guard.reached_versions([stored], "r"):
            raise missing_version(type_name, resource_id, version_id)
        self.note("vread", [stored])
        return stored

    def history(self, query: HistoryQuery) -> HistoryPage:
        """History at instance, type or system level: of a limited caller's, the versions within its reach."""
        letter = "r" if query.id else "s"
        if query.type:
            self.guard.confinement(query.type, letter)
        self.flush()
        if query.id and self.access.limited and not self.guard.reaches_resource(query.type, query.id, letter):
            raise NotFound(f"{query.type}/{query.id} does not exist, so it has no history.")
        page = read_history(self.connection, query)
        page = replace(page, versions=self.guard.reached_versions(page.versions, letter))
        self.note("history-instance" if query.id else "history-type" if query.type else "history-system", page.versions)
        return page

    @contextmanager
    def deletions_hidden(self, not_found: Callable[[], NotFound]):
        """Gone becomes the `not_found` error for a caller who may not learn of deletions (see Guard.hides_deletions)."""
        try:
            yield
        except Gone:
            if self.guard.hides_deletions():
                raise not_found() from None
            raise

    def search(self, request: SearchRequest) -> SearchResult:
        """One page of matches within the caller's reach, and the included resources it may read."""
        request = self.guard.search_request(request)
        self.flush()
        result = run_search(self.connection, request)
        result.included = self.guard.reached(result.included, "r")
        self.note(search_interaction(request), result.matches + result.included, search_text(request))
        return result

    def count(self, request: SearchRequest) -> int:
        request = self.guard.search_request(request)
        self.flush()
        self.note(search_interaction(request), [], search_text(request))
        return count_matches(self.connection, request)

    def compartment(self, query: CompartmentQuery) -> tuple[list[StoredResource], int | None]:
        """One page of a patient's compartment ($everything) and the key after it: for a caller confined to a
        patient, that patient's (also for Patient/$everything), the resources it may read."""
        if query.patient_id is None and self.access.patient is not None:
            query = replace(query, patient_id=self.access.patient)
        self.flush()
        matches, next_pk = compartment_page(self.connection, query)
        matches = self.guard.reached(matches, "r")
        self.note("operation", matches)
        return matches, next_pk

    def referenced(self, sources: list[StoredResource], types: frozenset[str], query: CompartmentQuery) -> list[StoredResource]:
        """The live resources of `types` that `sources` refer to, within the query's _type and _since, that the caller
        may read."""
        self.flush()
        found = self.guard.reached(referenced_resources(self.connection, sources, types, query), "r")
        self.note("operation", found)
        return found

    def latest_observations(self, criteria: tuple[Query, ...]) -> list[tuple[int, datetime | None, dict | None]]:
        """($lastn) (pk, effective date, code) of the matching Observations within the caller's reach, newest first."""
        reach = self.guard.search_reach("Observation")
        self.flush()
        return latest_dates_and_codes(self.connection, criteria, reach)

    def resources_in_order(self, pks: list[int]) -> list[StoredResource]:
        self.flush()
        found = resources_in_order(self.connection, pks)
        self.note("operation", found)
        return found

    def observations_oldest_first(self, criteria: tuple[Query, ...]) -> list[tuple[StoredResource, datetime | None]]:
        """($stats) the matching Observations within the caller's reach, with their effective dates, oldest first."""
        reach = self.guard.search_reach("Observation")
        self.flush()
        found = observations_oldest_first(self.connection, criteria, reach)
        self.note("operation", [stored for stored, _ in found])
        return found

    def matching(self, type_name: str, criteria: str) -> list[StoredResource]:
        """Up to two live resources matching conditional `criteria`, their lock taken until commit (race-safe); of a
        limited caller's, those within its reach."""
        reach = self.guard.search_reach(type_name)
        self.flush()
        found = self.guard.reached(matching(self.connection, type_name, criteria, self.base, self.criteria_locked, reach), "s")
        self.note("search-type", found, f"{type_name}?{criteria}")
        return found

    def matching_each(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[StoredResource]]:
        """`matching` for many (type, criteria) at once: a feed's business keys, locked and looked up together."""
        self.flush()
        return matching_each(self.connection, keys, self.base, self.criteria_locked)

    def criteria_locks(self, keys: list[tuple[str, str]]) -> list[int]:
        """The advisory locks on these (type, criteria) that the unit does not hold yet, in the order to take them, for
        an entrance whose own statement takes them (with app.store.search.LOCKS_TAKEN) before it asks `matching_each`:
        the HL7 message store's, so that a feed's message costs no statement for its locks. From then on the unit
        counts them as held."""
        return locks_wanted(criteria_lock_keys(keys), self.criteria_locked)

    def match_one(self, type_name: str, criteria: str) -> StoredResource | None:
        """The one live resource matching `criteria`, or None; 412 when several match."""
        return single_match(self.matching(type_name, criteria), type_name, criteria)

    def resolve_reference(self, reference: str) -> str:
        """`Practitioner?identifier=x|y` -> `Practitioner/id` of its one match; 412 for none or several (R4 transaction rules)."""
        type_name, _, criteria = reference.partition("?")
        matches = self.matching(type_name, criteria)
        if len(matches) != 1:
            found = "no" if not matches else "more than one"
            raise PreconditionFailed(f"The conditional reference '{reference}' matches {found} {type_name}; it must match exactly one.")
        return f"{type_name}/{matches[0].id}"

    def referrers(self, type_name: str, resource_id: str, excluding: str | None = None) -> list[StoredResource]:
        """The live resources (but those of type `excluding`) that refer to `type_name/resource_id` and that the caller
        may read."""
        self.flush()
        return self.guard.reached(live_referrers(self.connection, type_name, resource_id, excluding), "r")

    def check_deletable(self, type_name: str, resource_id: str) -> None:
        """StillReferenced when deleting the resource would fail the unit's check on delete."""
        self.flush()
        self.references.check_deletable(self.connection, type_name, resource_id)

    def has_resources(self) -> bool:
        return bool(self.waiting) or has_resources(self.connection)

    def stored_keys(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (type, id) have a row, live or deleted, or wait to be written by this unit."""
        keys = set(keys)
        return stored_keys(self.connection, keys - self.waiting.keys()) | (keys & self.waiting.keys())


@contextmanager
def writing(engine: Engine, base: str | None = None, alone: bool = False, access: Access = UNRESTRICTED) -> Iterator[Unit]:
    """A unit that may write; everything it did is committed together at the end, or nothing on an error. `base`: this
    server's FHIR base URL, when the entrance knows it. `alone`: the entrance writes one resource and nothing else (a
    REST interaction, a batch entry), so that write may be its own transaction: on PostgreSQL an update by id then
    reads without a lock and swaps in the next version by a statement that commits by itself. `access`: what the
    caller may do (app/store/access.py)."""
    with write_unit(engine) as connection:
        unit = Unit(connection, base, alone, access)
        yield unit
        unit.record_audit_events()
        unit.finish(last=True)


@contextmanager
def reading(engine: Engine, base: str | None = None, access: Access = UNRESTRICTED) -> Iterator[Unit]:
    """A unit for reads only (on PostgreSQL each statement sees what is committed, without BEGIN and COMMIT)."""
    with read_unit(engine) as connection:
        unit = Unit(connection, base, access=access)
        yield unit
    events = unit.audit_events()
    if events:
        write_audit_events(engine, events)


def search_interaction(request: SearchRequest) -> str:
    return "search-type" if request.type else "search-system"


def search_text(request: SearchRequest) -> str:
    """The search as the audit trail records it: its type and criteria (`Observation?code=8867-4`)."""
    return f"{request.type or ''}?{'&'.join(f'{query.name}={query.value}' for query in request.criteria)}"
