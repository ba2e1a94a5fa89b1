"""The authorization server's HTTP endpoints: the token, revocation and introspection endpoints (authlib answers them,
with RFC 6749 error bodies), the user's sign-in and consent pages, and the published signing keys."""
from datetime import datetime
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidScopeError
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from app.model.instants import utc_now
from app.security.accounts import User, find_user, sign_in, unknown_user_hash
from app.security.keys import public_key_set
from app.security.discovery import openid_configuration, smart_configuration
from app.security.oauth import AUTHORIZE_PATH, INTROSPECTION_PATH, JWKS_PATH, LOGIN_PATH, REVOCATION_PATH, TOKEN_PATH
from app.security.scopes import described, described_other, parse_scopes
from app.security.user_tokens import GrantError, granted_user_scopes

DISCOVERY_MAX_AGE_SECONDS = 3600
JWKS_MAX_AGE_SECONDS = 300  # a client that meets an unknown kid fetches the set again
# Our pages may not be framed (clickjacking) nor load anything from elsewhere. No form-action: browsers apply it to
# the redirect to the app after the consent form, which is on another origin.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
}

# Per client address (behind a proxy, the proxy's: see docs/security.md); counted per worker unless
# EHR_RATE_LIMIT_STORAGE names a shared store such as redis://.
SIGN_IN_RATE = "10 per minute"
TOKEN_RATE = "300 per minute"

auth = Blueprint("auth", __name__, template_folder="templates")
auth.record_once(lambda _state: unknown_user_hash())  # made with the app, so that the first unknown name takes no longer
csrf = CSRFProtect()  # checked only where a view asks (csrf.protect()): the FHIR API takes bearer tokens, not cookies
limiter = Limiter(key_func=get_remote_address)


def oauth_server():
    return current_app.extensions["ehr.oauth"]


def engine():
    return current_app.extensions["ehr.engine"]


@auth.post(TOKEN_PATH)
@limiter.limit(TOKEN_RATE)
def token():
    return oauth_server().create_token_response()


@auth.post(REVOCATION_PATH)
def revoke():
    return oauth_server().create_endpoint_response("revocation")


@auth.post(INTROSPECTION_PATH)
def introspect():
    return oauth_server().create_endpoint_response("introspection")


@auth.get("/fhir/.well-known/smart-configuration")
def smart_configuration_document():
    return discovery_response(smart_configuration())


@auth.get("/fhir/.well-known/openid-configuration")
def openid_configuration_document():
    return discovery_response(openid_configuration())


def discovery_response(document: dict):
    response = jsonify(document)
    response.headers["Cache-Control"] = f"public, max-age={DISCOVERY_MAX_AGE_SECONDS}"
    return response


@auth.get(JWKS_PATH)
def jwks():
    """This server's public signing keys."""
    with engine().begin() as connection:
        key_set = public_key_set(connection, utc_now())
    response = jsonify(key_set)
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return response


@auth.route(LOGIN_PATH, methods=["GET", "POST"])
@limiter.limit(SIGN_IN_RATE, methods=["POST"])
def login():
    next_url = local_authorize_url(request.values.get("next", ""))
    if request.method == "GET":
        return page("login.html", next_url=next_url, username="")
    csrf.protect()
    username = request.form.get("username", "")
    now = utc_now()
    with engine().begin() as connection:
        outcome = sign_in(connection, username, request.form.get("password", ""), now)
    if outcome.user is None:
        return page("login.html", 401, next_url=next_url, username=username, error=sign_in_refusal(outcome.locked_until, now))
    session.clear()  # a new session at sign-in: no one can plant a session id beforehand
    session["username"] = outcome.user.username
    return redirect(next_url)


def sign_in_refusal(locked_until: datetime | None, now: datetime) -> str:
    if locked_until is None:
        return "Wrong username or password."
    minutes = max(1, round((locked_until - now).total_seconds() / 60))
    return f"Too many wrong passwords: this account is locked for {minutes} more minute{'s' if minutes > 1 else ''}."


def local_authorize_url(candidate: str) -> str:
    """Where to go after signing in: back to an authorization request on this server, never elsewhere."""
    parts = urlsplit(candidate)
    return candidate if not parts.scheme and not parts.netloc and parts.path == AUTHORIZE_PATH else AUTHORIZE_PATH


@auth.route(AUTHORIZE_PATH, methods=["GET", "POST"])
def authorize():
    """SMART's authorization endpoint: sign in if needed, then the consent page; its answer redirects to the app."""
    user = signed_in_user()
    if user is None:
        return redirect(url_for("auth.login", next=request.full_path))
    server = oauth_server()
    try:
        grant = server.get_consent_grant(end_user=user)
    except OAuth2Error as error:
        return server.handle_error_response(None, error) if error.redirect_uri else error_page(error)
    if request.method == "GET":
        return consent_page(grant, user)
    csrf.protect()
    approved = [scope for scope in request.form.getlist("approved_scope") if scope in grant.request.scope.split()]
    if request.form.get("decision") != "approve" or not approved:
        return server.create_authorization_response(grant=grant, grant_user=None)  # access_denied, to the app
    try:
        granted_user_scopes(grant.client.client, user, " ".join(approved), grant.patient_in_context(user))
    except GrantError as error:
        refusal = InvalidScopeError(description=str(error), redirect_uri=grant.redirect_uri, state=grant.request.payload.state)
        return server.handle_error_response(None, refusal)
    grant.approved_scope = " ".join(approved)
    return server.create_authorization_response(grant=grant, grant_user=user)


def signed_in_user() -> User | None:
    username = session.get("username")
    if not username:
        return None
    with engine().connect() as connection:
        return find_user(connection, username)


def consent_page(grant, user: User):
    """The app's name and each scope it asks for, in plain words, ticked; the form posts back to this URL."""
    asked = parse_scopes(grant.request.scope)
    scopes = [(scope.text, described(scope)) for scope in asked.resource_scopes]
    scopes += [(scope, described_other(scope)) for scope in sorted(asked.other)]
    return page("consent.html", client_name=grant.client.client.name, username=user.username, scopes=scopes, action=request.full_path,
                launch=grant.launch)


def error_page(error: OAuth2Error):
    """An error that cannot go back to the app (an unknown client, a redirect URI not registered): shown here."""
    return page("error.html", 400, message=error.description or error.error)


def page(template: str, status: int = 200, **values):
    return render_template(template, **values), status, PAGE_HEADERS
