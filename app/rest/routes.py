"""The FHIR REST interactions under /fhir. Each view parses HTTP, calls one service, shapes the answer."""
from flask import Blueprint, current_app, request

from app.errors import BadRequest, UnsupportedMediaType
from app.model.bundles import bundle, history_entry, search_entry
from app.model.instants import date_range
from app.model.subsetting import check_summary_mode, subset
from app.rest.capability import capability_statement
from app.model.media_types import JSON_PATCH
from app.model.references import rewrite_references
from app.rest.negotiation import check_acceptable, fhir_response, read_json_body
from app.rest.responses import (
    cursor_row_key, fhir_base, outcome_response, page_links, page_size, prefer_return, prefers_lenient_handling,
    read_response, version_headers, write_response,
)
from app.bundles import process_bundle
from app.search.service import search_request
from app.security.bearer import request_access
from app.store.history import HistoryQuery
from app.store.resources import parse_etag
from app.store.unit import reading, writing

fhir = Blueprint("fhir", __name__, url_prefix="/fhir")

HISTORY_PARAMETERS = frozenset({"_since", "_at", "_count", "_cursor", "_format", "_pretty"})


def engine():
    return current_app.extensions["ehr.engine"]


def read_resource_body():
    """The request's resource, its references to this server's own URLs (`{base}/Patient/1`) made relative, as a
    transaction's are: stored alike, they are indexed and searched alike."""
    return rewrite_references(read_json_body(), {}, fhir_base())


@fhir.before_request
def negotiate_and_authenticate():
    """Every interaction but the CapabilityStatement (and CORS preflights) needs a bearer token (unless EHR_AUTH=off); content negotiation
    first, so that a client that cannot read FHIR JSON learns that before anything else."""
    check_acceptable()
    if request.endpoint != "fhir.metadata" and request.method != "OPTIONS":  # a CORS preflight carries no token
        request_access()


@fhir.get("/metadata")
def metadata():
    return fhir_response(capability_statement(fhir_base()))


@fhir.post("", strict_slashes=False)
def transaction_or_batch():
    body = read_json_body()
    page_sizes = current_app.config["EHR_SETTINGS"].page_sizes
    return fhir_response(process_bundle(engine(), body, fhir_base(), bundle_prefer_return(), page_sizes, request_access()))


def bundle_prefer_return() -> str:
    """Bundle responses carry only status, location and ETag unless the client asks for more."""
    return prefer_return() if "return=" in request.headers.get("Prefer", "") else "minimal"


@fhir.post("/<type_name>")
def create(type_name):
    body = read_resource_body()
    criteria = request.headers.get("If-None-Exist")
    with writing(engine(), fhir_base(), access=request_access()) as unit:
        if criteria:
            result = unit.create_unless_matched(body, type_name, criteria)
        else:
            result = unit.create(body, type_name)
    if not result.created:
        return write_response(result.stored, 200, f"{type_name}/{result.stored.id} already matches '{criteria}'; nothing was created.")
    return write_response(result.stored, 201, f"Created {result.stored.type}/{result.stored.id}.")


@fhir.put("/<type_name>")
def update_by_criteria(type_name):
    body = read_resource_body()
    criteria = required_criteria("update")
    with writing(engine(), fhir_base(), access=request_access()) as unit:
        result = unit.update_matched(body, type_name, criteria, request.headers.get("If-Match"))
    message = "Created" if result.created else ("Updated" if result.changed else "No change to")
    return write_response(result.stored, 201 if result.created else 200, f"{message} {type_name}/{result.stored.id}.")


@fhir.delete("/<type_name>")
def delete_by_criteria(type_name):
    criteria = required_criteria("delete")
    with writing(engine(), fhir_base(), access=request_access()) as unit:
        deleted = unit.delete_matched(type_name, criteria)
    if deleted is None:
        return outcome_response(f"No live {type_name} matches '{criteria}'; nothing to delete.")
    return outcome_response(f"Deleted {type_name}/{deleted.id} (version {deleted.version}).", 200, version_headers(deleted))


def required_criteria(interaction: str) -> str:
    criteria = request.query_string.decode()
    if not criteria:
        raise BadRequest(f"A conditional {interaction} needs search criteria in the URL, e.g. ?identifier=http://hospital.example.org/mrn|12345.")
    return criteria


@fhir.get("/<type_name>/<resource_id>")
def read(type_name, resource_id):
    with reading(engine(), access=request_access()) as unit:
        stored = unit.read(type_name, resource_id)
    if not_modified(stored):
        return fhir_response(None, 304, version_headers(stored))
    return read_response(stored)


def not_modified(stored) -> bool:
    """Conditional read: If-None-Match names the current version, or nothing changed since If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match:
        return any(tag.strip() == "*" or parse_etag(tag) == str(stored.version) for tag in if_none_match.split(","))
    since = request.if_modified_since
    return since is not None and stored.last_updated.replace(microsecond=0) <= since


@fhir.get("/<type_name>/<resource_id>/_history/<version_id>")
def vread(type_name, resource_id, version_id):
    with reading(engine(), access=request_access()) as unit:
        stored = unit.read_version(type_name, resource_id, version_id)
    return read_response(stored)


@fhir.put("/<type_name>/<resource_id>")
def update(type_name, resource_id):
    body = read_resource_body()
    with writing(engine(), fhir_base(), alone=True, access=request_access()) as unit:
        result = unit.update(type_name, resource_id, body, request.headers.get("If-Match"))
    message = "Created" if result.created else ("Updated" if result.changed else "No change to")
    return write_response(result.stored, 201 if result.created else 200, f"{message} {type_name}/{resource_id}.")


@fhir.patch("/<type_name>/<resource_id>")
def patch(type_name, resource_id):
    operations = read_json_body(frozenset({JSON_PATCH}))
    with writing(engine(), fhir_base(), access=request_access()) as unit:
        result = unit.patch(type_name, resource_id, operations, request.headers.get("If-Match"))
    message = "Patched" if result.changed else "The patch changed nothing in"
    return write_response(result.stored, 200, f"{message} {type_name}/{resource_id}.")


@fhir.delete("/<type_name>/<resource_id>")
def delete(type_name, resource_id):
    with writing(engine(), fhir_base(), access=request_access()) as unit:
        deleted = unit.delete(type_name, resource_id, request.headers.get("If-Match"))
    if deleted is None:
        return outcome_response(f"{type_name}/{resource_id} does not exist or is already deleted; nothing to delete.")
    return outcome_response(f"Deleted {type_name}/{resource_id} (version {deleted.version}).", 200, version_headers(deleted))


@fhir.get("/<type_name>")
def search(type_name):
    return search_response(type_name, list(request.args.items(multi=True)))


@fhir.post("/<type_name>/_search")
def search_by_post(type_name):
    return search_response(type_name, form_parameters())


@fhir.get("", strict_slashes=False)
def system_search():
    """Search across every type, or the types `_type` names."""
    return search_response(None, list(request.args.items(multi=True)))


@fhir.post("/_search")
def system_search_by_post():
    return search_response(None, form_parameters())


def form_parameters() -> list[tuple[str, str]]:
    """POST _search: the parameters come form-encoded in the body (and may also be in the URL)."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("POST _search takes its parameters as application/x-www-form-urlencoded.")
    return [*request.args.items(multi=True), *request.form.items(multi=True)]


def search_response(type_name: str | None, pairs: list[tuple[str, str]]):
    """A searchset Bundle for a search of `type_name`, or across types (system-level) when it is None."""
    settings = current_app.config["EHR_SETTINGS"]
    search, honoured = search_request(
        type_name, pairs, prefers_lenient_handling(), settings.default_page_size, settings.max_page_size, own_base=fhir_base(),
    )
    summary = dict(pairs).get("_summary")
    check_summary_mode(summary)
    links_params = [(name, value) for name, value in honoured if name != "_cursor"]
    path = f"/{type_name}" if type_name else ""  # links are GETs, also for POST _search
    with reading(engine(), access=request_access()) as unit:
        if summary == "count" or search.count == 0:  # R4: _count=0 is treated as _summary=count
            return fhir_response(bundle("searchset", [], page_links(links_params, None, path), unit.count(search)))
        result = unit.search(search)
    base, elements = fhir_base(), dict(pairs).get("_elements")
    entries = [search_entry(base, stored, subset(stored.body, summary, elements)) for stored in result.matches]
    entries += [search_entry(base, stored, subset(stored.body, summary, elements), mode="include") for stored in result.included]
    return fhir_response(bundle("searchset", entries, page_links(links_params, result.next_cursor, path), result.total))


@fhir.get("/_history")
def system_history():
    return history_response(HistoryQuery())


@fhir.get("/<type_name>/_history")
def type_history(type_name):
    return history_response(HistoryQuery(type=type_name))


@fhir.get("/<type_name>/<resource_id>/_history")
def instance_history(type_name, resource_id):
    return history_response(HistoryQuery(type=type_name, id=resource_id))


def history_response(scope: HistoryQuery):
    check_parameters_in(HISTORY_PARAMETERS)
    query = HistoryQuery(
        type=scope.type, id=scope.id, since=since_parameter(), at=at_parameter(), count=page_size(),
        before_seq=cursor_row_key("before"),
    )
    with reading(engine(), access=request_access()) as unit:
        page = unit.history(query)
    base = fhir_base()
    next_cursor = {"before": page.next_before_seq} if page.next_before_seq is not None else None
    links = page_links(list(request.args.items(multi=True)), next_cursor)
    return fhir_response(bundle("history", [history_entry(base, stored) for stored in page.versions], links))


def check_parameters_in(allowed: frozenset[str]) -> None:
    unknown = sorted(set(request.args.keys()) - allowed)
    if unknown and not prefers_lenient_handling():
        raise BadRequest(f"Unknown parameter(s) for history: {', '.join(unknown)}; history takes {', '.join(sorted(allowed))}.")


def since_parameter():
    text = request.args.get("_since")
    return date_range(text)[0] if text else None


def at_parameter():
    text = request.args.get("_at")
    return date_range(text) if text else None
