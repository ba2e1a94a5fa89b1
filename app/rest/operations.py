"""FHIR operations under /fhir: every URL whose last segment is `$name`, at system, type or instance level.

app/operations/registry.py says which operation is served where and with which methods, and answers it;
this view reads the inputs from the URL and, for a POST, from a Parameters body or a form.
"""
from dataclasses import replace

from flask import Blueprint, current_app, request

from app.operations.parameters import body_inputs
from app.operations.registry import Invocation, Operation, served_operation
from app.rest.negotiation import check_acceptable, fhir_response, read_json_body
from app.rest.responses import fhir_base, prefers_lenient_handling
from app.rest.routes import engine
from app.security.bearer import request_access
from app.store.unit import reading

operations = Blueprint("operations", __name__, url_prefix="/fhir")

# Every method reaches the view, so that one an operation does not take is a 405 naming those it does.
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
FORM = "application/x-www-form-urlencoded"


@operations.before_request
def negotiate_and_authenticate():
    check_acceptable()
    if request.method != "OPTIONS":  # a CORS preflight carries no token
        request_access()


@operations.route("/<operation:name>", methods=METHODS)
def system_operation(name):
    return operation_response(name, None, None)


@operations.route("/<type_name>/<operation:name>", methods=METHODS)
def type_operation(type_name, name):
    return operation_response(name, type_name, None)


@operations.route("/<type_name>/<resource_id>/<operation:name>", methods=METHODS)
def instance_operation(type_name, resource_id, name):
    return operation_response(name, type_name, resource_id)


def operation_response(name: str, type_name: str | None, resource_id: str | None):
    settings = current_app.config["EHR_SETTINGS"]
    where = Invocation(name, type_name, resource_id, base=fhir_base(), lenient=prefers_lenient_handling(), page_sizes=settings.page_sizes)
    operation = served_operation(where, request.method)
    body_pairs, resource = posted_inputs(operation)
    invocation = replace(where, pairs=(*request.args.items(multi=True), *body_pairs), resource=resource)
    with reading(engine(), access=request_access()) as unit:
        return fhir_response(operation.answer(unit, invocation))


def posted_inputs(operation: Operation) -> tuple[list[tuple[str, str]], object]:
    """A POST's inputs besides the URL's: a form's fields, or a JSON body's Parameters (or the resource $validate checks)."""
    if request.method != "POST":
        return [], None
    if request.mimetype == FORM:
        return list(request.form.items(multi=True)), None
    return body_inputs(read_json_body() if request.content_length else None, operation.takes_resource)
