"""Shaping FHIR responses: resource headers, Prefer handling, Bundles and their links."""
from flask import current_app, request

from app.errors import BadRequest
from app.search.cursor import FOREIGN_CURSOR, decode_cursor, is_row_key, paging_links
from app.search.service import page_count
from app.model.subsetting import subset
from app.rest.negotiation import fhir_response
from app.model.outcome import information
from app.store.resources import StoredResource, http_date


def fhir_base() -> str:
    """EHR_BASE_URL, or this request's scheme and host (request.host_url costs three URL round trips)."""
    configured = current_app.config["EHR_SETTINGS"].base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}{request.root_path}/fhir"


def full_url(type_name: str, resource_id: str) -> str:
    return f"{fhir_base()}/{type_name}/{resource_id}"


def version_headers(stored: StoredResource) -> dict:
    return {"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)}


def read_response(stored: StoredResource):
    body = subset(stored.body, request.args.get("_summary"), request.args.get("_elements"))
    headers = {**version_headers(stored), "Content-Location": f"{full_url(stored.type, stored.id)}/_history/{stored.version}"}
    return fhir_response(body, 200, headers)


def write_response(stored: StoredResource, status: int, message: str):
    """Answer a create, update or patch as the client's Prefer: return=... asks."""
    location = f"{full_url(stored.type, stored.id)}/_history/{stored.version}"
    headers = {**version_headers(stored), "Location" if status == 201 else "Content-Location": location}
    preference = prefer_return()
    if preference == "minimal":
        return fhir_response(None, status, headers)
    if preference == "OperationOutcome":
        return fhir_response(information(message), status, headers)
    return fhir_response(stored.body, status, headers)


def prefer_return() -> str:
    """`representation` (the default), `minimal` or `OperationOutcome` from the Prefer header."""
    for token in request.headers.get("Prefer", "").split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() == "return":
            return value.strip().strip('"')
    return "representation"


def prefers_lenient_handling() -> bool:
    return any(token.strip().replace(" ", "") == "handling=lenient" for token in request.headers.get("Prefer", "").split(","))


def page_links(params: list[tuple[str, str]], next_cursor: dict | None, path: str | None = None) -> dict[str, str]:
    """self and, when there is more, next; the cursor is opaque to clients. `path` defaults to the request's."""
    return paging_links(fhir_base() + (request.path.removeprefix("/fhir") if path is None else path), params, next_cursor)


def cursor_row_key(key: str) -> int | None:
    """The row key `key` of the request's _cursor, or None on the first page."""
    text = request.args.get("_cursor")
    if not text:
        return None
    value = decode_cursor(text).get(key)
    if not is_row_key(value):
        raise BadRequest(FOREIGN_CURSOR)
    return value


def page_size() -> int:
    settings = current_app.config["EHR_SETTINGS"]
    return page_count(request.args.get("_count"), settings.default_page_size, settings.max_page_size)


def outcome_response(message: str, status: int = 200, headers: dict | None = None):
    return fhir_response(information(message), status, headers)
