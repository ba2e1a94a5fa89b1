"""Media types in and out: which bodies we accept, which responses a client can take, JSON encoding."""
import orjson
from flask import Response, current_app, request

from app.errors import BadRequest, NotAcceptable, TooLarge, UnsupportedMediaType
from app.model.media_types import FHIR_JSON, JSON_TYPES

FORMAT_ALIASES = JSON_TYPES | {"json"}
WILDCARDS = frozenset({"*/*", "application/*"})


def media_type_and_params(value: str) -> tuple[str, dict[str, str]]:
    base, *params = value.split(";")
    pairs = (param.split("=", 1) for param in params if "=" in param)
    return base.strip().lower(), {key.strip().lower(): val.strip().strip('"') for key, val in pairs}


def check_acceptable() -> None:
    """406 unless the client (Accept or _format) can take FHIR JSON, the one format we serve."""
    requested = requested_format()
    if requested is not None:
        if requested.split(";")[0].strip().lower() not in FORMAT_ALIASES:
            raise NotAcceptable(f"_format={requested} is not served; this server answers in FHIR JSON (_format=json).")
        return
    if not request.accept_mimetypes or any(accepts_fhir_json(value, q) for value, q in request.accept_mimetypes):
        return
    raise NotAcceptable(f"Accept: {request.headers.get('Accept')} cannot be met; this server answers in {FHIR_JSON} (FHIR R4).")


def requested_format() -> str | None:
    """_format, forgiving a `+` sent unencoded (which arrives as a space)."""
    value = request.args.get("_format")
    return value.replace(" ", "+") if value is not None else None


def response_media_type() -> str:
    """application/fhir+json, or application/json for a client that asks for exactly that (R4 http.html#mime-type)."""
    if requested_format() is None and request.accept_mimetypes:
        preferred = max(request.accept_mimetypes, key=lambda item: item[1])[0]
        if media_type_and_params(preferred)[0] == "application/json":
            return "application/json"
    return FHIR_JSON


def accepts_fhir_json(value: str, quality: float) -> bool:
    media_type, params = media_type_and_params(value)
    version = params.get("fhirversion", "4.0")
    return quality > 0 and (media_type in JSON_TYPES or media_type in WILDCARDS) and version.startswith("4.0")


def read_json_body(allowed_types: frozenset[str] = JSON_TYPES):
    """The request body parsed as JSON, after checking its media type and size."""
    check_media_type(allowed_types)
    raw = read_raw_body()
    if not raw.strip():
        raise BadRequest("The request has no body; send the FHIR resource as JSON.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}.") from None


def check_media_type(allowed_types: frozenset[str]) -> None:
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        return  # a body without a Content-Type is read as JSON
    media_type, params = media_type_and_params(content_type)
    if media_type not in allowed_types:
        expected = " or ".join(sorted(allowed_types))
        raise UnsupportedMediaType(f"Content-Type {media_type} is not accepted here; send {expected}.")
    charset = params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"charset={charset} is not accepted; FHIR JSON is UTF-8.")


def read_raw_body() -> bytes:
    """The request body; 413 when it is over EHR_MAX_BODY_BYTES, whether its length was declared or it came in chunks.
    werkzeug ends a chunked body at MAX_CONTENT_LENGTH without an error, so that is set one byte over the limit: a
    body that reaches it is too large, never cut."""
    limit = current_app.config["EHR_SETTINGS"].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise TooLarge(f"The body of {request.content_length} bytes is over this server's limit of {limit} bytes (EHR_MAX_BODY_BYTES).")
    body = request.get_data(cache=False)
    if len(body) > limit:
        raise TooLarge(f"The body is over this server's limit of {limit} bytes (EHR_MAX_BODY_BYTES).")
    return body


def wants_pretty() -> bool:
    return request.args.get("_pretty", "false").lower() == "true"


def fhir_response(body: dict | None, status: int = 200, headers: dict | None = None) -> Response:
    options = orjson.OPT_INDENT_2 if wants_pretty() else 0
    payload = b"" if body is None else orjson.dumps(body, option=options)
    response = Response(payload, status=status, headers=headers)
    if body is not None:
        response.content_type = f"{response_media_type()}; charset=utf-8"
    return response
