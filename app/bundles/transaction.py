"""Transactions (all or nothing, in one write unit) and batches (each entry on its own); http.html#transaction."""
from contextlib import contextmanager
from dataclasses import replace

from sqlalchemy import Engine

from app.bundles.conditional import BODY_WRITES, conditional_reference_targets, criteria_targets, resolved_entry
from app.bundles.entries import READ_INTERACTIONS, EntryRequest, bundle_entries, entry_label, in_processing_order, parse_entry
from app.bundles.interactions import perform
from app.bundles.responses import failure_entry
from app.config import PageSizes
from app.errors import BadRequest, FhirError, Issue
from app.model.bundles import bundle as response_bundle
from app.model.references import rewrite_references
from app.store.access import UNRESTRICTED, Access
from app.store.integrity import DanglingReferences, StillReferenced
from app.store.turns import let_others_run
from app.store.unit import Unit, reading, writing


def process_bundle(engine: Engine, bundle, base: str, prefer_return: str = "minimal", page_sizes: PageSizes = PageSizes(),
                   access: Access = UNRESTRICTED) -> dict:
    """The transaction-response or batch-response to a transaction or batch Bundle, entries in request order.

    `prefer_return` (minimal, representation or OperationOutcome) shapes the write entries' responses;
    `page_sizes` are those of GET search and history entries; `access`, what the caller may do (each entry is checked
    as the same interaction outside a Bundle would be).
    A transaction that fails raises the failing entry's FhirError, naming the entry, and writes nothing.
    """
    entries = bundle_entries(bundle)
    base = base.rstrip("/")
    if bundle["type"] == "transaction":
        responses = transaction_responses(engine, entries, base, prefer_return, page_sizes, access)
    else:
        responses = batch_responses(engine, entries, base, prefer_return, page_sizes, access)
    return response_bundle(f"{bundle['type']}-response", responses)


def transaction_responses(engine: Engine, entries: list, base: str, prefer_return: str, page_sizes: PageSizes, access: Access) -> list[dict]:
    """DELETEs first, so that conditional creates and references no longer find what they delete; then the other
    entries' targets are searched and their references resolved before POST, PUT/PATCH and GET run (http.html#trules)."""
    requests = parsed_requests(entries, base, page_sizes)
    with writing(engine, base, access=access) as unit:
        deletes = resolved_requests(unit, [request for request in requests if request.method == "DELETE"], entries)
        responses = performed(unit, deletes, entries, base, prefer_return)
        others = resolved_requests(unit, [request for request in requests if request.method != "DELETE"], entries)
        check_each_resource_written_once(sorted(deletes + others, key=lambda request: request.index))
        responses |= performed(unit, with_references_resolved(unit, others, entries, base), entries, base, prefer_return)
        finished(unit, deletes + others, entries)
    return [responses[index] for index in range(len(requests))]


def finished(unit: Unit, requests: list[EntryRequest], entries: list) -> None:
    """The unit's checks of what the transaction wrote, as a whole (so that entries may refer to each other in any
    order); a failure names the entry whose resource fails them."""
    try:
        unit.finish()
    except (DanglingReferences, StillReferenced) as error:
        culprit = "/".join(error.dangling[0].source if isinstance(error, DanglingReferences) else error.deleted)
        request = next((request for request in requests if request.written_resource == culprit), None)
        if request is None:
            raise
        raise named_for_entry(error, request.index, entries[request.index]) from error


def parsed_requests(entries: list, base: str, page_sizes: PageSizes) -> list[EntryRequest]:
    requests = []
    for index, entry in enumerate(entries):
        let_others_run()
        with errors_named_for(index, entry):
            requests.append(parse_entry(index, entry, base, page_sizes))
    return requests


def resolved_requests(unit: Unit, requests: list[EntryRequest], entries: list) -> list[EntryRequest]:
    """The requests with their targets searched and created ids assigned. Each search locks its criteria until
    commit; searching in the order of the criteria makes transactions that share criteria lock them in one order."""
    resolved = {}
    for request in sorted(requests, key=lambda request: (request.type, request.criteria or "")):
        with errors_named_for(request.index, entries[request.index]):
            resolved[request.index] = resolved_entry(unit, request)
    return [resolved[request.index] for request in requests]


def performed(unit: Unit, requests: list[EntryRequest], entries: list, base: str, prefer_return: str) -> dict[int, dict]:
    """The response entry of each request by its index, performed in the spec's order (the unit writes consecutive
    creates in one batch: thousands of POSTs in one request)."""
    responses = {}
    for request in in_processing_order(requests):
        with errors_named_for(request.index, entries[request.index]):
            responses[request.index] = perform(unit, request, base, prefer_return)
    return responses


def check_each_resource_written_once(requests: list[EntryRequest]) -> None:
    writers = {}
    for request in requests:
        target = request.written_resource
        if target is None:
            continue
        if target in writers:
            raise BadRequest(
                f"{writers[target].label} and {request.label} both change {target}; a transaction may change each resource only once."
            )
        writers[target] = request


def with_references_resolved(unit: Unit, requests: list[EntryRequest], entries: list, base: str) -> list[EntryRequest]:
    """The requests with references to other entries' fullUrls, and conditional references, rewritten to Type/id."""
    targets = full_url_targets(requests)
    known_criteria = criteria_targets(requests)
    for request in requests:
        if request.interaction in BODY_WRITES:
            with errors_named_for(request.index, entries[request.index]):
                targets |= conditional_reference_targets(unit, request.resource, known_criteria)
    return [with_rewritten_references(request, targets, base) for request in requests]


def with_rewritten_references(request: EntryRequest, targets: dict[str, str], base: str) -> EntryRequest:
    let_others_run()
    return replace(request, resource=rewrite_references(request.resource, targets, base))


def full_url_targets(requests: list[EntryRequest]) -> dict[str, str]:
    """The fullUrl of each created, matched or updated resource (a urn:uuid placeholder, most often) -> its Type/id."""
    targets = {}
    for request in requests:
        if request.full_url is None or request.resolved_resource is None:
            continue
        if request.full_url in targets:
            raise BadRequest(f"{request.label}: another entry has the same fullUrl {request.full_url}; fullUrls must be unique.")
        targets[request.full_url] = request.resolved_resource
    return targets


@contextmanager
def errors_named_for(index: int, entry):
    try:
        yield
    except FhirError as error:
        raise named_for_entry(error, index, entry) from error


def named_for_entry(error: FhirError, index: int, entry) -> FhirError:
    """The same error (status, issue codes) with every issue naming the entry and pointing into it."""
    label = entry_label(index, entry)
    type_name = resource_type_of(entry)
    issues = [named_issue(issue, label, index, type_name) for issue in error.issues]
    # Headers such as a deleted resource's ETag describe the entry, not the transaction's response.
    return replace(error, diagnostics=f"{label}: {error.diagnostics}", issues=issues, headers={})


def named_issue(issue: Issue, label: str, index: int, type_name: str | None) -> Issue:
    expression = tuple(entry_expression(path, index, type_name) for path in issue.expression)
    return replace(issue, diagnostics=f"{label}: {issue.diagnostics}", expression=expression)


def resource_type_of(entry) -> str | None:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    type_name = resource.get("resourceType") if isinstance(resource, dict) else None
    return type_name if isinstance(type_name, str) else None


def entry_expression(path: str, index: int, type_name: str | None) -> str:
    """`Patient.name[0]` in entry 3's Patient becomes `Bundle.entry[3].resource.name[0]`."""
    rest = path.removeprefix(type_name) if type_name else path
    if rest != path and rest[:1] in ("", ".", "["):
        return f"Bundle.entry[{index}].resource{rest}"
    return path


def batch_responses(engine: Engine, entries: list, base: str, prefer_return: str, page_sizes: PageSizes, access: Access) -> list[dict]:
    """Each entry on its own, so one failure leaves the others done; references between entries are not resolved,
    conditional references only by search."""
    responses = [None] * len(entries)
    requests = []
    for index, entry in enumerate(entries):
        try:
            requests.append(parse_entry(index, entry, base, page_sizes))
        except FhirError as error:
            responses[index] = failure_entry(error)
    for request in in_processing_order(requests):
        responses[request.index] = batch_entry_response(engine, request, base, prefer_return, access)
    return responses


def batch_entry_response(engine: Engine, request: EntryRequest, base: str, prefer_return: str, access: Access) -> dict:
    if request.interaction in READ_INTERACTIONS:
        opened = reading(engine, base, access)
    else:
        opened = writing(engine, base, alone=True, access=access)
    try:
        with opened as unit:
            return perform(unit, resolved_batch_entry(unit, request, base), base, prefer_return)
    except FhirError as error:
        return failure_entry(error)


def resolved_batch_entry(unit: Unit, request: EntryRequest, base: str) -> EntryRequest:
    resolved = resolved_entry(unit, request)
    if resolved.interaction not in BODY_WRITES:
        return resolved
    targets = conditional_reference_targets(unit, resolved.resource, {})
    return replace(resolved, resource=rewrite_references(resolved.resource, targets, base))
