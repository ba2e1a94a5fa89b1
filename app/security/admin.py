"""The admin API: OAuth clients and logins managed over HTTP, as `ehr clients` and `ehr users` manage them from the
command line, by a backend service whose token carries the `admin` scope (whatever EHR_AUTH says: these are the
keys to the server).

    GET    /auth/admin/clients           the registered clients, as `ehr clients list` prints them
    POST   /auth/admin/clients           {"name", "scope", "redirect_uris", "type": public|secret|jwks|jwks_uri, "jwks", "jwks_uri"}
                                         -> 201 {"client_id"[, "client_secret"]}
    DELETE /auth/admin/clients/ID        -> {"removed", "revokedTokens"}; 404 for an unknown client
    POST   /auth/admin/users             {"username", "password", "fhirUser"} -> 201 {"username", "fhirUser"}

Answers and errors are JSON: RFC 6750's `invalid_token` (401) and `insufficient_scope` (403), and
{"error": "invalid_request", "error_description": ...} (400) for what cannot be registered.
"""
from flask import Blueprint, current_app, jsonify, request

from app.errors import FhirError, Forbidden, NotFound
from app.model.instants import utc_now
from app.security.accounts import AccountError, ClientRegistration, add_user_of, all_clients, register_client, retire_client
from app.security.bearer import authenticated_access, forget_revoked
from app.security.scopes import ADMIN_SCOPE, ScopeError

admin = Blueprint("admin", __name__, url_prefix="/auth/admin")
CLIENT_TYPES = {"public": "none", "secret": "client_secret_basic", "jwks": "private_key_jwt", "jwks_uri": "private_key_jwt"}
MAX_CLIENT_ID_LENGTH = 64  # the column's size: a longer id names no client
ERROR_CODES = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope", 404: "not_found"}


@admin.before_request
def require_admin():
    if not authenticated_access().admin:
        raise Forbidden(f"The admin API needs a token with the '{ADMIN_SCOPE}' scope (a backend service registered for it).")


@admin.errorhandler(FhirError)
def error_response(error: FhirError):
    body = {"error": ERROR_CODES.get(error.status, "invalid_request"), "error_description": error.diagnostics}
    return jsonify(body), error.status, error.headers


@admin.errorhandler(AccountError)
@admin.errorhandler(ScopeError)
def refused(error: ValueError):
    return jsonify({"error": "invalid_request", "error_description": str(error)}), 400


@admin.get("/clients")
def list_clients():
    with engine().connect() as connection:
        return jsonify([client.listed() for client in all_clients(connection)])


@admin.post("/clients")
def add_client():
    body = json_object()
    auth_method = CLIENT_TYPES.get(body.get("type")) if isinstance(body.get("type"), str) else None
    if auth_method is None:
        raise AccountError(f"'type' must be one of {', '.join(CLIENT_TYPES)}.")
    jwks, jwks_uri = body.get("jwks"), body.get("jwks_uri")
    if not isinstance(jwks, dict | None) or not isinstance(jwks_uri, str | None):
        raise AccountError("'jwks' must be a JWK Set (a JSON object) and 'jwks_uri' a URL.")
    registration = ClientRegistration(text(body, "name"), texts(body, "redirect_uris"), text(body, "scope"), auth_method, jwks, jwks_uri)
    with engine().begin() as connection:
        return jsonify(register_client(connection, registration)), 201


@admin.delete("/clients/<client_id>")
def remove_client(client_id):
    if len(client_id) > MAX_CLIENT_ID_LENGTH or "\x00" in client_id:
        raise NotFound(f"There is no client '{client_id[:MAX_CLIENT_ID_LENGTH]}'.")
    with engine().begin() as connection:
        revoked = retire_client(connection, client_id, utc_now())
    forget_revoked()
    if revoked is None:
        raise NotFound(f"There is no client '{client_id}'.")
    return jsonify({"removed": client_id, "revokedTokens": revoked})


@admin.post("/users")
def add_user():
    body = json_object()
    username, fhir_user = text(body, "username"), body.get("fhirUser")
    if not isinstance(fhir_user, str | None):
        raise AccountError("'fhirUser' must be Patient/ID or Practitioner/ID.")
    add_user_of(engine(), username, text(body, "password"), fhir_user)
    return jsonify({"username": username, "fhirUser": fhir_user}), 201


def json_object() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise AccountError("The body must be a JSON object (Content-Type: application/json).")
    return body


def text(body: dict, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or "\x00" in value:
        raise AccountError(f"'{name}' is required, as a string (without NUL characters).")
    return value


def texts(body: dict, name: str) -> tuple[str, ...]:
    values = body.get(name, [])
    if not isinstance(values, list) or not all(isinstance(value, str) and "\x00" not in value for value in values):
        raise AccountError(f"'{name}' must be a list of strings.")
    return tuple(values)


def engine():
    return current_app.extensions["ehr.engine"]
