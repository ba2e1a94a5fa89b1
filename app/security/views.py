"""The authorization server's HTTP endpoints (authlib answers them, with RFC 6749 error bodies)."""
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify

from app.security.keys import public_key_set
from app.security.oauth import INTROSPECTION_PATH, REVOCATION_PATH, TOKEN_PATH

JWKS_PATH = "/auth/jwks"
JWKS_MAX_AGE_SECONDS = 300  # a client that meets an unknown kid fetches the set again

auth = Blueprint("auth", __name__)


@auth.post(TOKEN_PATH)
def token():
    return current_app.extensions["ehr.oauth"].create_token_response()


@auth.post(REVOCATION_PATH)
def revoke():
    return current_app.extensions["ehr.oauth"].create_endpoint_response("revocation")


@auth.post(INTROSPECTION_PATH)
def introspect():
    return current_app.extensions["ehr.oauth"].create_endpoint_response("introspection")


@auth.get(JWKS_PATH)
def jwks():
    """This server's public signing keys."""
    with current_app.extensions["ehr.engine"].begin() as connection:
        key_set = public_key_set(connection, datetime.now(timezone.utc))
    response = jsonify(key_set)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response
