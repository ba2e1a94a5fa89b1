"""What the caller of a unit of work may act on, and the SQL that keeps it there.

An entrance gives each unit an Access: app/security/bearer.py builds one from a SMART token's scopes; UNRESTRICTED
is for callers trusted otherwise (EHR_AUTH=off, the MLLP listener, `ehr load`). For every interaction the unit
(app/store/unit.py) asks it where the caller may use a permission (SMART's letters: c create, r read, u update,
d delete, s search) on a resource type:

- nowhere: the interaction is refused (Forbidden, 403);
- EVERYWHERE: no limit;
- some reaches: a resource is the caller's when one of them holds it, i.e. it is in the reach's patient's compartment
  (the official Patient CompartmentDefinition) and matches the reach's criteria. Reads of other resources are
  NotFound, as if they did not exist; searches, included resources and $everything leave them out; a write that
  would change one, or leave a resource outside, is Forbidden and writes nothing.

The checks run on the live rows and their index, in SQL; a history version, which has no index of its own, must
also be in the compartment by its own content (`version_in_compartment`).
"""
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

from sqlalchemy import Connection, and_, case, false, or_, select, true
from sqlalchemy.sql import ColumnElement

from app.errors import Forbidden
from app.protection.service import protection_of
from app.search.index import referenced_patients
from app.search.parameters import patient_compartment_parameters
from app.search.query import EVERYWHERE, Reach, SearchRequest, searched_types
from app.store.compartment import CompartmentQuery, in_compartment
from app.store.criteria import Limit, criterion_condition
from app.store.resources import AUDIT_RECORD_TYPE, StoredResource
from app.store.schema import resource

PERMISSION_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class Rule:
    """The caller may use `permissions` (letters of "cruds") on `resource_type` ("*": every type) within `reach`;
    `system`: granted to a backend service (a `system/` scope), not to a user."""

    resource_type: str
    permissions: str
    reach: Reach
    system: bool = False


@dataclass(frozen=True)
class Caller:
    """Who acts, for the audit trail (app/store/audit.py): the app (OAuth client), the user it acts for, if any, and
    where from."""

    client_id: str
    username: str | None = None
    fhir_user: str | None = None  # Patient/ID or Practitioner/ID
    address: str | None = None


@dataclass(frozen=True)
class Access:
    """The rules of one caller; `rules` None: anything. `grant` names the caller's grant within refusals ("the token's
    scopes (patient/Observation.rs)"); `patient`, the patient its reaches confine it to, if any; `caller`, who it is,
    for an audited caller."""

    rules: tuple[Rule, ...] | None
    grant: str = ""
    patient: str | None = None
    caller: Caller | None = None
    admin: bool = False  # may read and search the whole audit trail

    @property
    def limited(self) -> bool:
        """Whether some rule reaches only part of a type (a patient's compartment, or a scope's query)."""
        return self.rules is not None and any(rule.reach != Reach() for rule in self.rules)

    def reaches(self, type_name: str, letter: str) -> tuple[Reach, ...]:
        """Where the caller may use `letter` on `type_name`: EVERYWHERE, some reaches, or () for nowhere."""
        if self.rules is None:
            return EVERYWHERE
        if type_name == AUDIT_RECORD_TYPE:
            return audit_reaches(self.rules, self.admin, letter)
        return reaches_of(self.rules, type_name, letter)

    def confinement(self, type_name: str, letter: str) -> tuple[Reach, ...] | None:
        """None when the caller may use `letter` on every `type_name`; else its reaches. Forbidden when it has none."""
        reaches = self.reaches(type_name, letter)
        if not reaches:
            raise Forbidden(f"{PERMISSION_WORDS[letter].capitalize()} of {type_name} is not allowed by {self.grant}.")
        return None if reaches == EVERYWHERE else reaches

    def require_system(self, letters: str, purpose: str) -> None:
        """Forbidden unless the caller is unrestricted, or a backend service that may use each of `letters` on every
        resource of every type (a `system/*` scope that no query narrows): the feeds' HTTP entrances write and read
        every patient's data."""
        if self.rules is None:
            return
        system_rules = tuple(rule for rule in self.rules if rule.system)
        for letter in letters:
            if reaches_of(system_rules, "*", letter) != EVERYWHERE:
                raise Forbidden(f"{purpose} needs a backend service's token that may {PERMISSION_WORDS[letter]} every resource of every "
                                f"type (such as system/*.cruds); {self.grant} do not allow that.")

    def reaches_every(self, type_names: tuple[str, ...], letters: str) -> bool:
        """Whether the caller may use each of `letters` on every resource of each of `type_names` (unrestricted, or
        user/ or system/ scopes that no query narrows; not one patient's)."""
        return all(self.reaches(type_name, letter) == EVERYWHERE for type_name in type_names for letter in letters)


UNRESTRICTED = Access(None)


@lru_cache(maxsize=4096)
def reaches_of(rules: tuple[Rule, ...], type_name: str, letter: str) -> tuple[Reach, ...]:
    found = tuple(dict.fromkeys(rule.reach for rule in rules if rule.resource_type in ("*", type_name) and letter in rule.permissions))
    return EVERYWHERE if Reach() in found else found


def audit_reaches(rules: tuple[Rule, ...], admin: bool, letter: str) -> tuple[Reach, ...]:
    """The audit trail is read whole only with the admin scope; a patient's token may read the AuditEvents about her
    (each names one patient); nobody writes one through the API."""
    if letter not in "rs":
        return ()
    if admin:
        return EVERYWHERE
    covering = [rule.reach for rule in rules if rule.resource_type in ("*", AUDIT_RECORD_TYPE) and letter in rule.permissions]
    return tuple(dict.fromkeys(reach for reach in covering if reach.patient))


def reach_condition(type_name: str, reaches: tuple[Reach, ...], protection, table=resource) -> ColumnElement:
    """The resources of `type_name` (rows of `table`, a resource table alias) that one of `reaches` holds; `protection`
    blinds what a query-restricted scope asks of protected elements."""
    return or_(false(), *[
        and_(compartment_condition(type_name, reach.patient, table),
             *[criterion_condition((type_name,), query, table, protection=protection) for query in reach.criteria])
        for reach in reaches
    ])


def compartment_condition(type_name: str, patient: str | None, table=resource) -> ColumnElement:
    return true() if patient is None else in_compartment(CompartmentQuery(patient, frozenset({type_name})), table)


def chain_limit(reaches: Callable[[str], tuple[Reach, ...]], protection) -> Limit:
    """What keeps a chain or _has within the caller's reach of each type it looks at (app/store/criteria.py)."""
    def limit(type_name: str, table) -> ColumnElement | None:
        found = reaches(type_name)
        return None if found == EVERYWHERE else reach_condition(type_name, found, protection, table)
    return limit


@dataclass(frozen=True)
class Stored:
    """A resource's current row as a reach check sees it: its version, and whether one of the reaches holds it (never
    when it is deleted: a deletion names no patient)."""

    version: int
    reached: bool


def reached_rows(connection: Connection, keys: Iterable[tuple[str, str]], reaches: dict[str, tuple[Reach, ...]]) -> dict[tuple[str, str], Stored]:
    """For each (type, id) of `keys` that has a row: its version and whether one of its type's `reaches` holds it. One
    statement."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for type_name, resource_id in keys:
        by_type[type_name].append(resource_id)
    if not by_type:
        return {}
    protection = protection_of(connection)
    reached = case(*[(resource.c.res_type == type_name, reach_condition(type_name, reaches[type_name], protection)) for type_name in by_type], else_=false())
    keyed = or_(*[and_(resource.c.res_type == type_name, resource.c.res_id.in_(ids)) for type_name, ids in by_type.items()])
    statement = select(resource.c.res_type, resource.c.res_id, resource.c.version, and_(resource.c.deleted == false(), reached).label("reached"))
    return {(row.res_type, row.res_id): Stored(row.version, bool(row.reached)) for row in connection.execute(statement.where(keyed))}


def other_patients(stored: StoredResource, reaches: tuple[Reach, ...]) -> set[str]:
    """The patients, besides those of `reaches`, in whose compartments a written version lies: a caller confined to
    its patient may not write into another patient's record (an Observation about Bob that names Ana as performer)."""
    patients = {reach.patient for reach in reaches}
    return set() if None in patients else patients_of(stored) - patients


def version_in_compartment(stored: StoredResource, patients: Iterable[str | None]) -> bool:
    """Whether this version's own content puts it in one of `patients`' compartments (None: any patient's)."""
    patients = set(patients)
    return None in patients or not patients.isdisjoint(patients_of(stored))


def patients_of(stored: StoredResource) -> set[str]:
    """The ids of the patients in whose compartments this version's content puts it (a Patient is in its own)."""
    if stored.body is None:
        return set()
    own = {stored.id} if stored.type == "Patient" else set()
    return own | referenced_patients(stored.type, stored.body, frozenset(patient_compartment_parameters(stored.type)))


class Guard:
    """The checks one unit of work makes against its caller's Access, on its connection; every one is free for an
    unrestricted caller."""

    def __init__(self, access: Access, connection: Connection):
        self.access = access
        self.connection = connection
        self.unchecked: dict[tuple[str, str], tuple[Reach, ...]] = {}  # writes of a limited caller, checked before commit

    def confinement(self, type_name: str, letter: str) -> tuple[Reach, ...] | None:
        return self.access.confinement(type_name, letter)

    def before_write(self, type_name: str, resource_id: str, letter: str) -> tuple[Reach, ...] | None:
        """Forbidden unless the caller may use `letter` on the type and, when limited, on the resource as stored now
        (a deleted one included: a deletion names no patient to check). The caller's reaches, None when unlimited."""
        self.check_append_only(type_name)
        reaches = self.confinement(type_name, letter)
        if reaches is not None and not self.stored_within(type_name, resource_id, reaches):
            raise Forbidden(f"{type_name}/{resource_id} is outside what {self.access.grant} allow to {PERMISSION_WORDS[letter]}.")
        return reaches

    def before_removal(self, type_name: str, resource_id: str, letter: str) -> bool:
        """For a patch or delete: whether the resource may be touched; one outside a limited caller's reach is, for
        that caller, one that does not exist (Forbidden only when the type or permission is not granted at all)."""
        self.check_append_only(type_name)
        reaches = self.confinement(type_name, letter)
        return reaches is None or self.stored_within(type_name, resource_id, reaches)

    def check_append_only(self, type_name: str) -> None:
        """The audit trail is the server's own record: no token holder creates, changes or deletes an AuditEvent."""
        if type_name == AUDIT_RECORD_TYPE and self.access.rules is not None:
            raise Forbidden("AuditEvents are never written through the API: the server records them itself, and they are never "
                            "changed or deleted.")

    def stored_within(self, type_name: str, resource_id: str, reaches: tuple[Reach, ...]) -> bool:
        """Whether the resource's current row is within `reaches`, or there is none (a create under a new id)."""
        stored = reached_rows(self.connection, [(type_name, resource_id)], {type_name: reaches}).get((type_name, resource_id))
        return stored is None or stored.reached

    def after_write(self, stored: StoredResource, reaches: tuple[Reach, ...] | None) -> None:
        """A limited caller's written version: Forbidden at once in another patient's compartment; its reach (the
        queries of v2 scopes) is checked in SQL before commit."""
        if reaches is None:
            return
        others = other_patients(stored, reaches)
        if others:
            raise Forbidden(f"As written, {stored.type}/{stored.id} would be in the record of Patient/{sorted(others)[0]}, which "
                            f"{self.access.grant} do not reach; nothing was written.")
        self.unchecked[stored.type, stored.id] = reaches

    def check_written(self) -> None:
        """Forbidden when a limited caller's writes, as written, lie outside its reach (run before commit)."""
        if not self.unchecked:
            return
        unchecked, self.unchecked = self.unchecked, {}
        reached = reached_rows(self.connection, unchecked, {type_name: reaches for (type_name, _), reaches in unchecked.items()})
        outside = sorted(f"{type_name}/{resource_id}" for (type_name, resource_id) in unchecked if not reached[type_name, resource_id].reached)
        if outside:
            raise Forbidden(f"As written, {', '.join(outside)} would be outside what {self.access.grant} allow; nothing was written.")

    def reached(self, found: list[StoredResource], letter: str) -> list[StoredResource]:
        """Those of `found` (live resources) that the caller may use `letter` on: one statement for a limited caller."""
        if self.access.rules is None or not found:
            return found
        reaches, rows = self.current_rows(found, letter)
        return [stored for stored in found if reaches[stored.type] == EVERYWHERE or (stored.type, stored.id) in rows and rows[stored.type, stored.id].reached]

    def reached_versions(self, versions: list[StoredResource], letter: str) -> list[StoredResource]:
        """History versions the caller may see: the resource is within reach now, and the version's own content is in
        the reach's patient's compartment (so a resource moved between patients does not show one the other's). A
        v2 scope's query can only be judged on the current version: under one, older versions are not shown."""
        if self.access.rules is None or not versions:
            return versions
        reaches, rows = self.current_rows(versions, letter)
        return [stored for stored in versions if reaches[stored.type] == EVERYWHERE or version_within(stored, reaches[stored.type], rows.get((stored.type, stored.id)))]

    def reaches_resource(self, type_name: str, resource_id: str, letter: str) -> bool:
        """Whether the resource is live and within the caller's reach."""
        reaches = self.access.reaches(type_name, letter)
        if reaches == EVERYWHERE:
            return True
        stored = reached_rows(self.connection, [(type_name, resource_id)], {type_name: reaches}).get((type_name, resource_id))
        return stored is not None and stored.reached

    def current_rows(self, found: list[StoredResource], letter: str) -> tuple[dict[str, tuple[Reach, ...]], dict[tuple[str, str], Stored]]:
        """The caller's reaches of each type among `found`, and the current rows of those it does not reach everywhere."""
        reaches = {stored.type: self.access.reaches(stored.type, letter) for stored in found}
        limited = {type_name: reach for type_name, reach in reaches.items() if reach != EVERYWHERE}
        return reaches, reached_rows(self.connection, [(s.type, s.id) for s in found if s.type in limited], limited)

    def search_request(self, request: SearchRequest) -> SearchRequest:
        """The request confined to where the caller may search, its chains and _has too: Forbidden for a type it may
        not search, or for a system-level search when it may search none; a system-level search leaves out the types
        it may not search."""
        if self.access.rules is None:
            return request
        if request.type is not None:
            self.confinement(request.type, "s")
            return replace(request, reach=self.searchable)
        types = [type_name for type_name in searched_types(request) if self.access.reaches(type_name, "s")]
        if not types:
            raise Forbidden(f"Searching is not allowed for any resource type by {self.access.grant}.")
        return replace(request, types=tuple(types), reach=self.searchable)

    def searchable(self, type_name: str) -> tuple[Reach, ...]:
        """Where the caller may search `type_name` (also through a chain or _has)."""
        return self.access.reaches(type_name, "s")

    def search_reach(self, type_name: str) -> Callable[[str], tuple[Reach, ...]] | None:
        """For a search of `type_name` that is not a search interaction ($lastn, $stats, a conditional request's
        match): Forbidden when the caller may not search it; the caller's reach of each type, for it and for the
        types its chains and _has look at; None for an unrestricted caller."""
        self.confinement(type_name, "s")
        return None if self.access.rules is None else self.searchable

    def hides_deletions(self) -> bool:
        """A deletion names no patient, so a limited caller cannot be shown whether it was within reach: for that
        caller, a deleted resource is one that does not exist (404, not 410)."""
        return self.access.limited


def version_within(stored: StoredResource, reaches: tuple[Reach, ...], current: Stored | None) -> bool:
    if current is None or not current.reached:
        return False
    if any(reach.criteria for reach in reaches) and stored.version != current.version:
        return False
    return version_in_compartment(stored, [reach.patient for reach in reaches])
