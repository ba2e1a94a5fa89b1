"""The one exception hierarchy of the services; app/rest/outcome.py maps it to OperationOutcome.

Each error carries the HTTP status a REST client should see, the FHIR issue type
(http://hl7.org/fhir/issue-type) and issues that tell the client what to fix.
"""
from dataclasses import dataclass, field

RETRY_AFTER_SECONDS = 5  # how soon a client may try again when the database is unavailable


@dataclass(frozen=True)
class Issue:
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: str = "error"


@dataclass
class FhirError(Exception):
    """Base of every error a service raises on purpose."""

    diagnostics: str
    issues: list[Issue] = field(default_factory=list)
    status = 400
    code = "invalid"
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        super().__init__(self.diagnostics)
        if not self.issues:
            self.issues = [Issue(self.code, self.diagnostics)]


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(FhirError):
    """The resource does not conform to FHIR R4; issues name each invalid element."""

    status, code = 400, "structure"


class UnprocessableResource(FhirError):
    status, code = 422, "processing"


class Unauthorized(FhirError):
    """No valid bearer token: `headers` carry WWW-Authenticate (RFC 6750), which names the error for a bad token."""

    status, code = 401, "login"


class Forbidden(FhirError):
    """The caller's token does not allow the interaction (its scopes name neither the type nor the permission)."""

    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class Gone(FhirError):
    """The resource was deleted; `headers` carry the deleted version's ETag."""

    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class Conflict(FhirError):
    status, code = 409, "conflict"


class NotSupported(FhirError):
    status, code = 400, "not-supported"


class MethodNotAllowed(FhirError):
    """A known interaction or operation invoked with another method; `headers` carry Allow."""

    status, code = 405, "not-supported"


class UnsupportedOperation(FhirError):
    """A `$name` this server does not serve at the URL: 501 Not Implemented."""

    status, code = 501, "not-supported"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class TooLarge(FhirError):
    status, code = 413, "too-costly"


class KeyUnavailableError(FhirError):
    """Field-level protection is on, but the keys it needs are not available (app/protection/service.py)."""

    status, code = 503, "security"


class ProtectedValueUnreadable(FhirError):
    """A protected value does not decrypt: its key is missing, or its ciphertext was altered or moved. Never answered
    with garbage or a guess: the read fails, and the server's log names the key it needed."""

    status, code = 503, "security"


class DatabaseUnavailable(FhirError):
    """The database cannot be reached or is too busy to answer (app/store/db.py says which errors are such): the
    request may succeed when sent again, as Retry-After suggests."""

    status, code = 503, "transient"

    def __post_init__(self):
        super().__post_init__()
        self.headers = {"Retry-After": str(RETRY_AFTER_SECONDS), **self.headers}
