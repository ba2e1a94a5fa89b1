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
import logging
import threading
from datetime import datetime
from functools import lru_cache

from cachetools import TTLCache
from flask import current_app, g, request
from sqlalchemy import Engine

from app.errors import FhirError, Unauthorized
from app.model.instants import utc_now
from app.rest.responses import fhir_base
from app.search.criteria import Query
from app.search.query import Reach
from app.security.scopes import ADMIN_SCOPE, ResourceScope, ScopeError, parse_scopes
from app.security.tokens import TokenRecord, live_access_token, token_hash
from app.store.access import UNRESTRICTED, Access, Caller, Rule
from app.store.audit import Accessed, audit_events, write_audit_events

log = logging.getLogger(__name__)

REALM = "ehr"
TOKEN_CACHE_SECONDS = 10
TOKEN_CACHE_SIZE = 10_000


def request_access() -> Access:
    """The caller's access, from its bearer token (once per request); Unauthorized without a live token."""
    if "ehr_access" not in g:
        g.ehr_access = authenticated_access() if current_app.config["EHR_SETTINGS"].auth else UNRESTRICTED
    return g.ehr_access


def authenticated_access() -> Access:
    record = current_app.extensions["ehr.tokens"].live_record(bearer_token(), utc_now())
    if record is None:
        raise unauthorized("The access token is unknown, has expired or was revoked; get a new one from the token endpoint.", "invalid_token")
    caller = Caller(record.client_id, record.username, record.fhir_user, request.remote_addr)
    try:
        return token_access(record, fhir_base(), caller)
    except ScopeError:  # granted by an older release whose scopes this one reads otherwise: get a new token
        raise unauthorized("The access token's scopes are no longer valid here; get a new token.", "invalid_token") from None


class TokenCache:
    """Live access tokens as looked up in the last TOKEN_CACHE_SECONDS, so that a client's burst of requests costs one
    lookup, not one each (one per worker process). Expiry is checked at every use; a revocation in this worker empties
    its cache (forget_revoked), and a token revoked through another worker, or by `ehr clients remove`, keeps working
    here for at most TOKEN_CACHE_SECONDS."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.records = TTLCache(maxsize=TOKEN_CACHE_SIZE, ttl=TOKEN_CACHE_SECONDS)
        self.lock = threading.Lock()  # TTLCache is not thread-safe, and a gthread worker serves several requests at once

    def live_record(self, token: str, now: datetime) -> TokenRecord | None:
        key = token_hash(token)
        with self.lock:
            record = self.records.get(key)
        if record is None:
            with self.engine.connect() as connection:
                record = live_access_token(connection, token, now)
            if record is None:
                return None
            with self.lock:
                self.records[key] = record
        return record if record.expires_at > now else None

    def clear(self) -> None:
        with self.lock:
            self.records.clear()


def forget_revoked() -> None:
    """After a revocation in this worker: no token it had looked up works without being looked up again."""
    current_app.extensions["ehr.tokens"].clear()


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
    rules = scope_rules(record.scope, record.patient, record.fhir_user, base)
    patient = next((rule.reach.patient for rule in rules if rule.reach.patient), None)
    return Access(rules, f"the token's scopes ({record.scope})", patient, caller, ADMIN_SCOPE in record.scope.split())


@lru_cache(maxsize=4096)  # the same few grants arrive with every request of a client
def scope_rules(scope_string: str, patient: str | None, fhir_user: str | None, base: str) -> tuple[Rule, ...]:
    rules = []
    for scope in parse_scopes(scope_string).resource_scopes:
        reach = scope_reach(scope, patient, fhir_user, base)
        if reach is not None:
            rules.append(Rule(scope.resource_type, scope.permissions, reach, scope.context == "system"))
    return tuple(rules)


def audit_failure(error: FhirError, outcome: str) -> None:
    """The AuditEvent of a request that failed: refused for its token's scopes (403, MINOR_FAILURE), or stopped by a
    protected value that does not decrypt (SERIOUS_FAILURE), with what was asked and why it failed. When even that
    cannot be written (the keys it would be sealed with are unavailable), the log says so."""
    access = g.get("ehr_access")
    if access is not None and access.caller is not None:
        asked = Accessed(queries=[f"{request.method} {request.full_path.rstrip('?')}"])
        try:
            write_audit_events(current_app.extensions["ehr.engine"], audit_events(access.caller, asked, outcome, error.diagnostics))
        except FhirError as failure:
            log.error("the AuditEvent of a failed request was not written: %s", failure.diagnostics)


def scope_reach(scope: ResourceScope, patient: str | None, fhir_user: str | None, base: str) -> Reach | None:
    """Where one scope reaches for a token of `patient` (in context) and `fhir_user` (see the module's docstring);
    None for nowhere."""
    criteria = tuple(Query(name, value, base) for name, value in scope.query)
    if scope.context == "system":
        return Reach(None, criteria)
    if scope.context == "patient":
        return Reach(patient, criteria) if patient else None
    identity_type, _, identity_id = (fhir_user or "").partition("/")
    if identity_type == "Practitioner":
        return Reach(None, criteria)
    return Reach(identity_id, criteria) if identity_type == "Patient" else None
