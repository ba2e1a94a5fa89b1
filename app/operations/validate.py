"""$validate: would the server accept this resource (generally, as a create, an update, or a delete)? Never writes.

The answer is an OperationOutcome with an error per invalid element (with its
FHIRPath expression), or one information issue when there is nothing wrong. A 4xx
means the validation itself could not be done (bad mode, unknown profile).
"""
from dataclasses import dataclass

from app.errors import BadRequest, Gone, InvalidResource, Issue, NotFound, NotSupported
from app.model.outcome import information, operation_outcome
from app.model.registry import require_served_type
from app.model.validation import check_resource_id, check_resource_type, validate_resource
from app.store.unit import Unit

MODES = ("create", "update", "delete")
INSTANCE_MODES = frozenset({"update", "delete"})
BASE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class ValidateRequest:
    type: str
    id: str | None  # set when invoked on an instance, Type/id/$validate
    resource: dict | None
    mode: str | None = None
    profile: str | None = None


def validate_request(type_name: str, resource_id: str | None, resource, pairs: list[tuple[str, str]]) -> ValidateRequest:
    """The request to check `resource` (POSTed as the body, or as a Parameters' `resource`) with `mode` and `profile`."""
    require_served_type(type_name)
    if resource_id is not None:
        check_resource_id(resource_id)
    values = dict(pairs)
    request = ValidateRequest(type_name, resource_id, resource, values.get("mode"), values.get("profile"))
    check_mode(request)
    check_profile(request)
    return request


def check_mode(request: ValidateRequest) -> None:
    if request.mode is not None and request.mode not in MODES:
        raise BadRequest(f"mode={request.mode} is not one of {', '.join(MODES)}.")
    if request.mode in INSTANCE_MODES and request.id is None:
        raise BadRequest(f"mode={request.mode} validates against an existing resource: POST to {request.type}/[id]/$validate.")
    if request.mode != "delete" and request.resource is None:
        raise BadRequest("$validate needs the resource to check: send it as the body, or as the Parameters' `resource`.")


def check_profile(request: ValidateRequest) -> None:
    if request.profile is not None and request.profile != BASE_PROFILE + request.type:
        raise NotSupported(f"This server validates against the base FHIR R4 definition only ({BASE_PROFILE}{request.type}), not {request.profile}.")


def validation_outcome(unit: Unit, request: ValidateRequest) -> dict:
    issues = deletion_issues(unit, request) if request.mode == "delete" else content_issues(request)
    return operation_outcome(issues) if issues else information(f"No errors: the {request.type} would be accepted{mode_phrase(request.mode)}.")


def mode_phrase(mode: str | None) -> str:
    return f" as a {mode}" if mode else ""


def deletion_issues(unit: Unit, request: ValidateRequest) -> list[Issue]:
    try:
        unit.read(request.type, request.id)
    except (NotFound, Gone) as error:
        return error.issues
    return []


def content_issues(request: ValidateRequest) -> list[Issue]:
    """Every invalid element of the resource; for an update, also an id that differs from the URL's."""
    try:
        check_resource_type(request.resource, request.type)
        validate_resource(request.resource)
    except InvalidResource as error:
        issues = list(error.issues)
    else:
        issues = []
    if request.mode == "update" and isinstance(request.resource, dict) and request.resource.get("id") != request.id:
        issues.append(Issue("value", f"An update's id must be the URL's id '{request.id}', not '{request.resource.get('id')}'.", (f"{request.type}.id",)))
    return issues
