"""The one place where errors become OperationOutcome responses."""
import logging

from flask import Flask
from werkzeug.exceptions import HTTPException, SecurityError

from app.errors import FhirError, Forbidden, Issue, KeyUnavailableError, ProtectedValueUnreadable
from app.model.outcome import operation_outcome
from app.rest.negotiation import fhir_response
from app.security.bearer import audit_failure
from app.store.audit import MINOR_FAILURE, SERIOUS_FAILURE

log = logging.getLogger(__name__)

HTTP_ISSUE_CODES = {404: "not-found", 405: "not-supported", 406: "not-supported", 413: "too-costly", 415: "not-supported"}


def fhir_error_response(error: FhirError):
    if error.status >= 500:  # the server's trouble, not the client's: the operator wants its cause
        log.warning("%s (%s)", error.diagnostics, error.__cause__)
    if isinstance(error, Forbidden):
        audit_failure(error, MINOR_FAILURE)
    elif isinstance(error, (ProtectedValueUnreadable, KeyUnavailableError)):
        audit_failure(error, SERIOUS_FAILURE)
    return fhir_response(operation_outcome(error.issues), error.status, error.headers)


def http_error_response(error: HTTPException):
    code = HTTP_ISSUE_CODES.get(error.code, "processing" if error.code >= 500 else "invalid")
    headers = dict(error.get_headers())
    headers.pop("Content-Type", None)
    return fhir_response(operation_outcome([Issue(code, http_error_message(error))]), error.code, headers)


def http_error_message(error: HTTPException) -> str:
    if error.code == 404:
        return "No FHIR interaction exists at this URL; see GET /fhir/metadata for what the server supports."
    if error.code == 405:
        allowed = ", ".join(error.valid_methods or [])
        return f"This URL does not support the HTTP method used; allowed methods: {allowed}."
    if isinstance(error, SecurityError):  # werkzeug's refusal of a Host outside TRUSTED_HOSTS (app/web.py)
        return f"{error.description} Send the request to one of this server's own host names (EHR_ALLOWED_HOSTS)."
    return error.description or error.name


def unexpected_error_response(error: Exception):
    log.exception("unexpected error", exc_info=error)
    return fhir_response(operation_outcome([Issue("exception", "The server failed unexpectedly; the error was logged.")]), 500)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(FhirError, fhir_error_response)
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, unexpected_error_response)
