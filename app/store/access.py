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
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, case, false, or_, select, true
from sqlalchemy.sql import ColumnElement

from app.errors import Forbidden
from app.search.index import referenced_patients
from app.search.parameters import patient_compartment_parameters
from app.search.query import EVERYWHERE, Reach
from app.store.compartment import CompartmentQuery, in_compartment
from app.store.criteria import condition_across_types
from app.store.resources import StoredResource
from app.store.schema import resource

if TYPE_CHECKING:  # app/store/audit.py imports this module
    from app.store.audit import AuditWriter

PERMISSION_WORDS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True)
class Rule:
    """The caller may use `permissions` (letters of "cruds") on `resource_type` ("*": every type) within `reach`."""

    resource_type: str
    permissions: str
    reach: Reach


@dataclass(frozen=True)
class Caller:
    """Who acts, for the audit trail (app/store/audit.py): the app (OAuth client), the user it acts for, if any, and
    where from; `trail` is the process's AuditWriter."""

    client_id: str
    trail: "AuditWriter"
    username: str | None = None
    fhir_user: str | None = None  # Patient/ID or Practitioner/ID
    address: str | None = None


@dataclass(frozen=True)
class Access:
    """The rules of one caller; `rules` None: anything. `grant` names the caller's grant in refusals ("the token's
    scopes (patient/Observation.rs)"); `patient`, the patient its reaches confine it to, if any; `caller`, who it is,
    for an audited caller."""

    rules: tuple[Rule, ...] | None
    grant: str = ""
    patient: str | None = None
    caller: Caller | None = None

    @property
    def limited(self) -> bool:
        """Whether some rule reaches only part of a type (a patient's compartment, or a scope's query)."""
        return self.rules is not None and any(rule.reach != Reach() for rule in self.rules)

    def reaches(self, type_name: str, letter: str) -> tuple[Reach, ...]:
        """Where the caller may use `letter` on `type_name`: EVERYWHERE, some reaches, or () for nowhere."""
        return EVERYWHERE if self.rules is None else reaches_of(self.rules, type_name, letter)

    def confinement(self, type_name: str, letter: str) -> tuple[Reach, ...] | None:
        """None when the caller may use `letter` on every `type_name`; else its reaches. Forbidden when it has none."""
        reaches = self.reaches(type_name, letter)
        if not reaches:
            raise Forbidden(f"{self.grant} do not allow {PERMISSION_WORDS[letter]} of {type_name}.")
        return None if reaches == EVERYWHERE else reaches

    def require_everywhere(self, letters: str, purpose: str) -> None:
        """Forbidden unless the caller may use each of `letters` on every resource of every type (a `*` scope that
        no patient or query narrows)."""
        for letter in letters:
            if self.reaches("*", letter) != EVERYWHERE:
                raise Forbidden(f"{purpose} needs a token that may {PERMISSION_WORDS[letter]} every resource of every type "
                                f"(such as system/*.cruds); {self.grant} do not allow that.")


UNRESTRICTED = Access(None)


@lru_cache(maxsize=4096)
def reaches_of(rules: tuple[Rule, ...], type_name: str, letter: str) -> tuple[Reach, ...]:
    found = tuple(dict.fromkeys(rule.reach for rule in rules if rule.resource_type in ("*", type_name) and letter in rule.permissions))
    return EVERYWHERE if Reach() in found else found


def reach_condition(type_name: str, reaches: tuple[Reach, ...]) -> ColumnElement:
    """The resources of `type_name` (rows of the resource table) that one of `reaches` holds."""
    return or_(false(), *[
        and_(compartment_condition(type_name, reach.patient), *[condition_across_types((type_name,), query) for query in reach.criteria])
        for reach in reaches
    ])


def compartment_condition(type_name: str, patient: str | None) -> ColumnElement:
    return true() if patient is None else in_compartment(CompartmentQuery(patient, frozenset({type_name})))


def reached_live(connection: Connection, keys: Iterable[tuple[str, str]], reaches: dict[str, tuple[Reach, ...]]) -> dict[tuple[str, str], bool]:
    """For each (type, id) of `keys` that is live: whether one of its type's `reaches` holds it. One statement."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for type_name, resource_id in keys:
        by_type[type_name].append(resource_id)
    if not by_type:
        return {}
    reached = case(*[(resource.c.res_type == type_name, reach_condition(type_name, reaches[type_name])) for type_name in by_type], else_=false())
    keyed = or_(*[and_(resource.c.res_type == type_name, resource.c.res_id.in_(ids)) for type_name, ids in by_type.items()])
    rows = connection.execute(select(resource.c.res_type, resource.c.res_id, reached.label("reached")).where(keyed, resource.c.deleted == false()))
    return {(row.res_type, row.res_id): bool(row.reached) for row in rows}


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
