"""Conditional entries and conditional references of a Bundle, resolved to the resources they mean (http.html#trules).

A conditional entry finds its target by search before anything refers to it: a create with
ifNoneExist either matches (and does nothing) or gets its id; `PUT/PATCH/DELETE Type?criteria`
becomes the instance interaction on its one match. A conditional reference
(`Practitioner?identifier=...`) resolves to the entry created or updated under the same criteria,
else to the one resource its search finds.
"""
import re
from dataclasses import replace

from app.bundles.entries import EntryRequest
from app.errors import BadRequest, NotFound
from app.model.references import references_in
from app.search.conditional import criteria_pairs
from app.store.resources import new_id
from app.store.turns import let_others_run
from app.store.unit import Unit

CONDITIONAL_REFERENCE = re.compile(r"[A-Z][A-Za-z]*\?")  # `Type?criteria`; a relative reference is `Type/id`
BODY_WRITES = frozenset({"create", "update"})


def resolved_entry(unit: Unit, request: EntryRequest) -> EntryRequest:
    """`request` with its target known: conditional entries searched, creates given their id up front."""
    resolve = RESOLVERS.get(request.interaction)
    return resolve(unit, request) if resolve else request


def resolved_create(unit: Unit, request: EntryRequest) -> EntryRequest:
    match = None if request.criteria is None else unit.match_one(request.type, request.criteria)
    if match is not None:
        return replace(request, interaction="create-matched", match=match)
    return replace(request, assigned_id=new_id())


def resolved_update(unit: Unit, request: EntryRequest) -> EntryRequest:
    """As PUT Type?criteria over REST: update the one match, else create (under the body's id, if it has one)."""
    target = unit.update_target(request.resource, request.type, request.criteria)
    if target is None:
        return replace(request, interaction="create", assigned_id=new_id())
    return replace(request, interaction="update", path=(request.type, target), resource={**request.resource, "id": target})


def resolved_patch(unit: Unit, request: EntryRequest) -> EntryRequest:
    match = unit.match_one(request.type, request.criteria)
    if match is None:
        raise NotFound(f"No live {request.type} matches '{request.criteria}'; there is nothing to patch.")
    return replace(request, interaction="patch", path=(request.type, match.id))


def resolved_delete(unit: Unit, request: EntryRequest) -> EntryRequest:
    match = unit.match_one(request.type, request.criteria)
    if match is None:
        return replace(request, interaction="delete-unmatched")
    return replace(request, interaction="delete", path=(request.type, match.id))


RESOLVERS = {
    "create": resolved_create,
    "conditional-update": resolved_update,
    "conditional-patch": resolved_patch,
    "conditional-delete": resolved_delete,
}


def criteria_key(type_name: str, query: str) -> tuple:
    """Criteria compared as parsed, sorted pairs: `b=2&a=1` and `a=1&b=2` are the same search."""
    return type_name, tuple(criteria_pairs(query))


def criteria_targets(requests: list[EntryRequest]) -> dict[tuple, str]:
    """Criteria of each conditional create or update -> the Type/id it resolved to (existing or new)."""
    targets, owners = {}, {}
    for request in requests:
        target = request.resolved_resource
        if request.criteria is None or target is None:
            continue
        key = criteria_key(request.type, request.criteria)
        if targets.get(key, target) != target:
            raise BadRequest(
                f"{owners[key].label} and {request.label} both create a {request.type} matching '{request.criteria}'; "
                "a transaction may create it once and refer to it from other entries."
            )
        targets[key], owners[key] = target, request
    return targets


def conditional_reference_targets(unit: Unit, resource, known: dict[tuple, str]) -> dict[str, str]:
    """Each conditional reference in `resource` -> Type/id: the one in `known` under the same criteria, else the
    one match of a search (412 for none or several). Searched targets are added to `known`, to search each once."""
    targets = {}
    let_others_run()
    for reference in conditional_references(resource):
        key = criteria_key(*reference.split("?", 1))
        if key not in known:
            known[key] = unit.resolve_reference(reference)
        targets[reference] = known[key]
    return targets


def conditional_references(value) -> list[str]:
    """The `Type?criteria` strings among the Reference.reference values anywhere in `value`."""
    return [reference for reference in references_in(value) if CONDITIONAL_REFERENCE.match(reference)]
