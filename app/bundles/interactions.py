"""Performing one Bundle entry's interaction in a unit of work, the one writer and reader."""
import base64
import binascii
from dataclasses import replace

import orjson
from app.bundles.entries import READ_INTERACTIONS, EntryRequest
from app.bundles.responses import Written, bundle_read_entry, version_entry, write_entry
from app.errors import BadRequest, NotSupported
from app.model.media_types import JSON_PATCH
from app.model.bundles import bundle, history_entry, search_entry
from app.operations.parameters import body_inputs
from app.operations.registry import Invocation, served_operation
from app.search.service import page_count, search_request
from app.store.history import HistoryQuery
from app.store.resources import StoredResource
from app.store.unit import Unit


def perform(unit: Unit, request: EntryRequest, base: str, prefer_return: str) -> dict:
    """The response entry for `request`, once resolved_entry has found its target; raises a failed interaction's FhirError."""
    if request.interaction in READ_INTERACTIONS:
        return read_entry(unit, request, base)
    return write_entry(WRITES[request.interaction](unit, request), base, prefer_return)


def create(unit: Unit, request: EntryRequest) -> Written:
    return created(unit.create(request.resource, request.type, request.assigned_id).stored)


def created(stored: StoredResource) -> Written:
    return Written(stored, 201, f"Created {stored.type}/{stored.id}.")


def create_matched(_unit: Unit, request: EntryRequest) -> Written:
    """A conditional create whose ifNoneExist found the resource: nothing written, 200 and the match."""
    return Written(request.match, 200, f"{request.type}/{request.match.id} already matches '{request.criteria}'; nothing was created.")


def update(unit: Unit, request: EntryRequest) -> Written:
    result = unit.update(request.type, request.id, request.resource, request.if_match)
    if result.created:
        return Written(result.stored, 201, f"Created {request.written_resource}.")
    return Written(result.stored, 200, f"{'Updated' if result.changed else 'No change to'} {request.written_resource}.")


def patch(unit: Unit, request: EntryRequest) -> Written:
    result = unit.patch(request.type, request.id, json_patch_of(request.resource), request.if_match)
    return Written(result.stored, 200, f"{'Patched' if result.changed else 'The patch changed nothing in'} {request.written_resource}.")


def delete(unit: Unit, request: EntryRequest) -> Written:
    deleted = unit.delete(request.type, request.id, request.if_match)
    if deleted is None:
        return Written(None, 204, f"{request.written_resource} does not exist or is already deleted; nothing to delete.")
    return Written(deleted, 204, f"Deleted {request.written_resource} (version {deleted.version}).")


def delete_unmatched(_unit: Unit, request: EntryRequest) -> Written:
    return Written(None, 204, f"No live {request.type} matches '{request.criteria}'; nothing to delete.")


WRITES = {
    "create": create, "create-matched": create_matched, "update": update, "patch": patch,
    "delete": delete, "delete-unmatched": delete_unmatched,
}


def json_patch_of(binary) -> list:
    """A PATCH entry carries its JSON Patch as a Binary resource with base64 data (http.html#transaction)."""
    kind = binary.get("resourceType") if isinstance(binary, dict) else None
    if kind == "Parameters":
        raise NotSupported("FHIRPath Patch is not supported; send a Binary with contentType application/json-patch+json.")
    if kind != "Binary" or str(binary.get("contentType")).split(";")[0].strip() != JSON_PATCH:
        raise BadRequest("A PATCH entry's resource must be a Binary with contentType application/json-patch+json and the patch in data.")
    try:
        return orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
    except (binascii.Error, orjson.JSONDecodeError, TypeError, ValueError):
        raise BadRequest("The PATCH entry's Binary.data is not a base64-encoded JSON Patch document.") from None


def read_entry(unit: Unit, request: EntryRequest, base: str) -> dict:
    with_body = request.method != "HEAD"  # a POST operation answers with its result too
    if request.interaction == "read":
        return version_entry(unit.read(request.type, request.id), base, with_body)
    if request.interaction == "vread":
        return version_entry(unit.read_version(request.type, request.id, request.path[3]), base, with_body)
    if request.interaction == "search-type":
        return bundle_read_entry(search_bundle(unit, request, base), with_body)
    if request.interaction == "operation":
        return bundle_read_entry(operation_result(unit, request, base), with_body)
    return bundle_read_entry(history_bundle(unit, request, base), with_body)


def operation_result(unit: Unit, request: EntryRequest, base: str) -> dict:
    """What `$name` answers, its inputs read as over REST: the URL's query, and a POST entry's Parameters resource."""
    *target, name = request.path
    where = Invocation(name.removeprefix("$"), *target, base=base, page_sizes=request.page_sizes)
    operation = served_operation(where, request.method)
    body_pairs, resource = body_inputs(request.resource if request.method == "POST" else None, operation.takes_resource)
    return operation.answer(unit, replace(where, pairs=(*request.query, *body_pairs), resource=resource))


def search_bundle(unit: Unit, request: EntryRequest, base: str) -> dict:
    """The first page of a search (R4 lets servers ignore _summary and _elements here)."""
    sizes = request.page_sizes
    search, _ = search_request(request.type, list(request.query), False, sizes.default, sizes.maximum, own_base=base)
    result = unit.search(search)
    entries = [search_entry(base, stored) for stored in result.matches]
    entries += [search_entry(base, stored, mode="include") for stored in result.included]
    return bundle("searchset", entries, {"self": request.url_under(base)}, result.total)


def history_bundle(unit: Unit, request: EntryRequest, base: str) -> dict:
    page = unit.history(HistoryQuery(type=request.type, id=request.id, count=page_size(request)))
    return bundle("history", [history_entry(base, stored) for stored in page.versions], {"self": request.url_under(base)})


def page_size(request: EntryRequest) -> int:
    return page_count(dict(request.query).get("_count"), request.page_sizes.default, request.page_sizes.maximum)
