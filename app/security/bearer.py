"""The FHIR API's side of SMART on FHIR: the bearer token of each request (RFC 6750) becomes the Access its unit of
work enforces (app/store/access.py).

- `patient/` scopes reach the compartment of the token's patient (a patient's own, or the one an EHR launch named);
  without a patient in context they reach nothing.
- `user/` scopes reach what the user may see: all of it for a user who is a Practitioner; a user who is a Patient, only
  their own compartment; a user bound to no FHIR identity, nothing.
- `system/` scopes (backend services) reach every resource of their types.
- A v2 scope's query (`patient/Observation.rs?category=...`) narrows its reach to the resources the query matches.

With EHR_AUTH=off every request is UNRESTRICTED: a development mode, announced at start-up.
"""
from flask import current_app, g, request

from app.errors import Forbidden, Unauthorized
from app.model.instants import utc_now
from app.rest.responses import fhir_base
from app.search.criteria import Query
from app.search.query import Reach
from app.security.scopes import ResourceScope, ScopeError, parse_scopes
from app.security.tokens import TokenRecord, live_access_token
from app.store.access import UNRESTRICTED, Access, Caller, Rule
from app.store.audit import MINOR_FAILURE, Accessed, audit_events

REALM = "ehr"


def request_access() -> Access:
    """The caller's access, from its bearer token (once per request); Unauthorized without a live token."""
    if "ehr_access" not in g:
        g.ehr_access = authenticated_access() if current_app.config["EHR_SETTINGS"].auth else UNRESTRICTED
    return g.ehr_access


def authenticated_access() -> Access:
    token = bearer_token()
    with current_app.extensions["ehr.engine"].connect() as connection:
        record = live_access_token(connection, token, utc_now())
    if record is None:
        raise unauthorized("The access token is unknown, has expired or was revoked; get a new one from the token endpoint.", "invalid_token")
    caller = Caller(record.client_id, current_app.extensions["ehr.audit"], record.username, record.fhir_user, request.remote_addr)
    try:
        return token_access(record, fhir_base(), caller)
    except ScopeError:  # granted by an older release whose scopes this one reads otherwise: get a new token
        raise unauthorized("The access token's scopes are no longer valid here; get a new token.", "invalid_token") from None


def bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not scheme:
        raise unauthorized("This server needs a SMART on FHIR access token: send it as Authorization: Bearer <token> (see "
                           "/fhir/.well-known/smart-configuration for where to get one).")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("The Authorization header must be Bearer <token>.", "invalid_request")
    return token.strip()


def unauthorized(message: str, error: str | None = None) -> Unauthorized:
    """401 with the WWW-Authenticate challenge RFC 6750 (section 3) describes: the error code for a bad token, none
    when the request had no credentials."""
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}", error_description="{message}"' if error else "")
    return Unauthorized(message, headers={"WWW-Authenticate": challenge})


def token_access(record: TokenRecord, base: str, caller: Caller) -> Access:
    """The rules of a token's resource scopes, each with the reach its context gives it; `caller` for the audit trail."""
    rules = []
    for scope in parse_scopes(record.scope).resource_scopes:
        reach = scope_reach(scope, record, base)
        if reach is not None:
            rules.append(Rule(scope.resource_type, scope.permissions, reach))
    patient = next((rule.reach.patient for rule in rules if rule.reach.patient), None)
    return Access(tuple(rules), f"the token's scopes ({record.scope})", patient, caller)


def audit_refusal(error: Forbidden) -> None:
    """The AuditEvent of a request refused for its token's scopes (403), with what was asked and why it was refused."""
    access = g.get("ehr_access")
    if access is not None and access.caller is not None:
        asked = Accessed(queries=[f"{request.method} {request.full_path.rstrip('?')}"])
        access.caller.trail.add(audit_events(access.caller, asked, MINOR_FAILURE, error.diagnostics))


def scope_reach(scope: ResourceScope, record: TokenRecord, base: str) -> Reach | None:
    """Where one scope reaches for this token (see the module's docstring); None for nowhere."""
    criteria = tuple(Query(name, value, base) for name, value in scope.query)
    if scope.context == "system":
        return Reach(None, criteria)
    if scope.context == "patient":
        return Reach(record.patient, criteria) if record.patient else None
    identity_type, _, identity_id = (record.fhir_user or "").partition("/")
    if identity_type == "Practitioner":
        return Reach(None, criteria)
    return Reach(identity_id, criteria) if identity_type == "Patient" else None
