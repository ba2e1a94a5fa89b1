"""The operations this server serves, where and how each is invoked, and its answer: one path for REST and Bundle entries.

R4 (operations.html): every operation may be invoked by POST, its inputs in a Parameters body; one without side
effects whose inputs fit in a URL may also be invoked by GET. A `$name` the server does not serve at a URL is a
501 Not Implemented; a served one invoked with another method is a 405 whose Allow names the methods it takes,
as HAPI answers it.
"""
from collections.abc import Callable
from dataclasses import dataclass

from app.config import PageSizes
from app.errors import MethodNotAllowed, UnsupportedOperation
from app.model.bundles import bundle, search_entry
from app.model.registry import require_served_type
from app.operations.everything import everything_request, patient_everything
from app.operations.lastn import last_observations, lastn_request
from app.operations.stats import observation_statistics, stats_request
from app.operations.validate import validate_request, validation_outcome
from app.search.cursor import paging_links
from app.store.unit import Unit

OPERATION_DEFINITION = "http://hl7.org/fhir/OperationDefinition/"
GET_OR_POST = ("GET", "POST")
TYPE, INSTANCE = "type", "instance"


@dataclass(frozen=True)
class Invocation:
    """One call of `$name` on [type[/id]]: its inputs as (name, text) pairs, as a URL carries them, and a resource input."""

    name: str
    type: str | None = None
    id: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    resource: object = None  # a resource input: a Parameters' `resource`, or the body $validate checks
    base: str = ""
    lenient: bool = False
    page_sizes: PageSizes = PageSizes()

    @property
    def url(self) -> str:
        """The operation's URL under `base`, e.g. {base}/Patient/123/$everything: what self and next links extend."""
        return "/".join(part for part in (self.base, self.type, self.id, f"${self.name}") if part)

    @property
    def level(self) -> str:
        return INSTANCE if self.id is not None else TYPE


@dataclass(frozen=True)
class Operation:
    name: str
    definition: str  # the id of its official OperationDefinition, e.g. Patient-everything
    types: frozenset[str] | None  # the types it runs on; None: every served type
    levels: tuple[str, ...]
    methods: tuple[str, ...]  # GET only for an operation without side effects whose inputs fit in a URL
    answer: Callable[[Unit, Invocation], dict]  # answered from what the unit of work reads
    takes_resource: bool = False  # a POST body may be the resource itself rather than a Parameters ($validate)

    @property
    def canonical(self) -> str:
        return OPERATION_DEFINITION + self.definition

    def runs_on(self, type_name: str) -> bool:
        return self.types is None or type_name in self.types

    def urls(self) -> list[str]:
        types = sorted(self.types) if self.types is not None else ["[type]"]
        return [f"{type_name}{'/[id]' if level == INSTANCE else ''}/${self.name}" for level in self.levels for type_name in types]


def everything_answer(unit: Unit, invocation: Invocation) -> dict:
    sizes = invocation.page_sizes
    request = everything_request(invocation.id, list(invocation.pairs), invocation.lenient, sizes.default, sizes.maximum)
    page = patient_everything(unit, request)
    entries = [search_entry(invocation.base, stored) for stored in page.matches]
    entries += [search_entry(invocation.base, stored, mode="include") for stored in page.included]
    next_cursor = {"after_pk": page.next_after_pk} if page.next_after_pk is not None else None
    return bundle("searchset", entries, paging_links(invocation.url, list(invocation.pairs), next_cursor))


def lastn_answer(unit: Unit, invocation: Invocation) -> dict:
    observations = last_observations(unit, lastn_request(list(invocation.pairs), invocation.lenient, invocation.base))
    entries = [search_entry(invocation.base, stored) for stored in observations]
    return bundle("searchset", entries, paging_links(invocation.url, list(invocation.pairs), None), len(observations))


def stats_answer(unit: Unit, invocation: Invocation) -> dict:
    return observation_statistics(unit, stats_request(list(invocation.pairs), invocation.lenient, invocation.base))


def validate_answer(unit: Unit, invocation: Invocation) -> dict:
    return validation_outcome(unit, validate_request(invocation.type, invocation.id, invocation.resource, list(invocation.pairs)))


OPERATIONS = {
    operation.name: operation
    for operation in (
        Operation("everything", "Patient-everything", frozenset({"Patient"}), (TYPE, INSTANCE), GET_OR_POST, everything_answer),
        Operation("lastn", "Observation-lastn", frozenset({"Observation"}), (TYPE,), GET_OR_POST, lastn_answer),
        Operation("stats", "Observation-stats", frozenset({"Observation"}), (TYPE,), GET_OR_POST, stats_answer),
        # Its input is a resource, which no URL carries: POST only.
        Operation("validate", "Resource-validate", None, (TYPE, INSTANCE), ("POST",), validate_answer, takes_resource=True),
    )
}


def operations_of(type_name: str) -> list[Operation]:
    return [operation for operation in OPERATIONS.values() if operation.runs_on(type_name)]


def served_operation(invocation: Invocation, method: str) -> Operation:
    """The operation `invocation` names, checked against where and how it was invoked: NotFound for an unknown type,
    UnsupportedOperation (501) for a `$name` not served at that URL, MethodNotAllowed (405, Allow) for another method."""
    if invocation.type is not None:
        require_served_type(invocation.type)
    operation = OPERATIONS.get(invocation.name)
    if operation is None:
        served = ", ".join(f"${name}" for name in OPERATIONS)
        raise UnsupportedOperation(f"${invocation.name} is not an operation this server supports; it serves {served} (see GET /fhir/metadata).")
    if invocation.type is None or not operation.runs_on(invocation.type) or invocation.level not in operation.levels:
        raise UnsupportedOperation(f"${invocation.name} is not served at {invocation.url.removeprefix(invocation.base + '/')}; invoke it as {' or '.join(operation.urls())}.")
    if ("GET" if method == "HEAD" else method) not in operation.methods:
        allowed = ", ".join(operation.methods)
        raise MethodNotAllowed(f"${invocation.name} cannot be invoked with {method}; use {' or '.join(operation.methods)}.", headers={"Allow": allowed})
    return operation
