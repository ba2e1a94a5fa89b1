"""The OAuth 2.0 authorization server (authlib), for SMART on FHIR: client authentication, grants, and issuing tokens.

Grants: the authorization code flow of SMART App Launch and its refresh tokens (rotated on use) (PKCE with S256 required of every client, redirect URIs
matched exactly, `aud` naming this FHIR server, the user's consent given on our page: app/security/views.py), and
`client_credentials` for SMART Backend Services. Clients authenticate with a signed JWT assertion (`private_key_jwt`,
RFC 7523, as SMART profiles it), their secret (`client_secret_basic`), or, for public apps, not at all (PKCE binds
the code to the app). Revocation (RFC 7009) and introspection (RFC 7662) of the tokens a client was issued, by that
client.
"""
import logging
import time
import urllib.request
from urllib.parse import urlsplit, urlunsplit
from datetime import datetime, timedelta, timezone

import orjson
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload
from authlib.oauth2.rfc6749 import ClientMixin, InsecureTransportError, InvalidClientError, InvalidScopeError, OAuth2Request, TokenMixin
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine

from app.model.instants import utc_now
from app.rest.responses import fhir_base
from app.security.bearer import forget_revoked
from app.security.accounts import AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS, Client, find_client, find_user
from app.security.scopes import ADMIN_SCOPE, ScopeError, parse_scopes
from app.security.tokens import (
    AuthorizationCode, Launch, TokenContext, TokenRecord, accept_assertion_once, find_token, live_launch, live_refresh_token, revoke_token,
    family_grant, issue_token, revoke_family, save_code, take_code,
)
from app.security.user_tokens import GrantError, UserGrant, issue_user_token

log = logging.getLogger(__name__)
AUTHORIZE_PATH = "/auth/authorize"
LOGIN_PATH = "/auth/login"
TOKEN_PATH = "/auth/token"
REVOCATION_PATH = "/auth/revoke"
INTROSPECTION_PATH = "/auth/introspect"
JWKS_PATH = "/auth/jwks"
ASSERTION_ALGORITHMS = ["RS384", "ES384", "RS256", "ES256"]  # SMART requires RS384 and ES384; never HS* or none
MAX_ASSERTION_LIFETIME_SECONDS = 300
MAX_JTI_LENGTH = 255  # the column's size
MAX_NONCE_LENGTH = 255  # SMART Backend Services: exp no more than five minutes ahead
BACKEND_TOKEN_SECONDS = 300  # the lifetime SMART Backend Services recommends for its access tokens
USER_TOKEN_SECONDS = 3600
CODE_LIFETIME = timedelta(seconds=120)  # RFC 6749 recommends at most 10 minutes; the app exchanges it at once
JWKS_FETCH_TIMEOUT_SECONDS = 5
MAX_JWKS_BYTES = 64 * 1024  # a few dozen keys; more is no key set
GRANT_TYPES = {
    "none": {"authorization_code", "refresh_token"},
    "client_secret_basic": {"authorization_code", "refresh_token", "client_credentials"},
    "private_key_jwt": {"authorization_code", "refresh_token", "client_credentials"},
}


class OAuthClient(ClientMixin):
    """A registered client as authlib asks about it."""

    def __init__(self, client: Client):
        self.client = client

    def get_client_id(self):
        return self.client.client_id

    def check_endpoint_auth_method(self, method, endpoint):
        return method == self.client.auth_method

    def check_client_secret(self, client_secret):
        return self.client.check_secret(client_secret)

    def check_grant_type(self, grant_type):
        return grant_type in GRANT_TYPES[self.client.auth_method]

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.client.redirect_uris

    def get_default_redirect_uri(self):
        """The one registered redirect URI; with several, the request must name one."""
        uris = self.client.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def check_response_type(self, response_type):
        return response_type == "code"

    def get_allowed_scope(self, scope):
        """`scope` narrowed to what the client is registered for; a malformed scope is invalid_scope."""
        try:
            return " ".join(parse_scopes(scope or "").within(parse_scopes(self.client.scope)).texts())
        except ScopeError as error:
            raise InvalidScopeError(description=str(error)) from None


def token_endpoint_urls() -> list[str]:
    """This server's token endpoint as published (public_auth_url): the one audience client assertions may name. With
    EHR_BASE_URL it never comes from the request's Host, which any client could set to another server's."""
    return [public_auth_url(TOKEN_PATH)]


def public_auth_url(path: str) -> str:
    """The public URL of an authorization server endpoint: beside the FHIR base (EHR_BASE_URL
    `https://ehr.example.org/fhir` gives `https://ehr.example.org/auth/token`), or as the request reached the server."""
    return fhir_base().removesuffix("/fhir") + path


class SmartClientAssertion(JWTBearerClientAssertion):
    """private_key_jwt as SMART Backend Services profiles RFC 7523: RS384 or ES384, the client's keys registered or at
    its jwks_uri, a jti never used before by the client, and an exp at most five minutes ahead."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, engine: Engine):
        super().__init__(validate_jti=True, leeway=0)
        self.engine = engine

    def get_audiences(self):
        return token_endpoint_urls()

    def process_assertion_claims(self, assertion, resolve_key):
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as error:
            raise InvalidClientError(description=f"The client assertion cannot be verified: {error}.") from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims):
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp - time.time() > MAX_ASSERTION_LIFETIME_SECONDS:
            raise InvalidClientError(description="The client assertion's exp is more than five minutes ahead.")
        super().verify_claims(claims)

    def validate_jti(self, claims, jti):
        if len(str(jti)) > MAX_JTI_LENGTH:
            raise InvalidClientError(description=f"The client assertion's jti is longer than {MAX_JTI_LENGTH} characters.")
        expires_at = datetime.fromtimestamp(claims["exp"], timezone.utc)
        with self.engine.begin() as connection:
            return accept_assertion_once(connection, claims["sub"], str(jti), expires_at, utc_now())

    def resolve_client_public_key(self, client):
        registered = client.client
        if registered.auth_method != self.CLIENT_AUTH_METHOD:
            raise InvalidClientError(description="This client does not authenticate with signed assertions (private_key_jwt).")
        key_set = registered.jwks if registered.jwks is not None else fetched_key_set(registered.jwks_uri)
        try:
            return KeySet.import_key_set(key_set)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidClientError(description=f"The client's JWK Set cannot be read: {error}.") from None


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A JWK Set is fetched from the URL registered, never from where a redirect points (which could be anywhere the
    server can reach): a 3xx is an error."""

    def redirect_request(self, *args, **kwargs):
        return None


JWKS_OPENER = urllib.request.build_opener(NoRedirects)


def fetched_key_set(jwks_uri: str) -> dict:
    """The JWK Set at a client's jwks_uri, fetched when its assertion arrives (it may have rotated its keys); at most
    MAX_JWKS_BYTES, and not through redirects."""
    try:
        with JWKS_OPENER.open(jwks_uri, timeout=JWKS_FETCH_TIMEOUT_SECONDS) as response:
            body = response.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"it is larger than {MAX_JWKS_BYTES // 1024} KiB")
        return orjson.loads(body)
    except (OSError, ValueError) as error:
        raise InvalidClientError(description=f"The client's JWK Set at {jwks_uri} cannot be fetched: {error}.") from None


class BackendServicesGrant(ClientCredentialsGrant):
    """client_credentials for a backend service: `system/` scopes, narrowed to those registered for the client."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(CONFIDENTIAL_AUTH_METHODS)

    def validate_token_request(self):
        super().validate_token_request()
        self.granted_scope = granted_system_scope(self.request.client.client, self.request.payload.scope)

    def create_token_response(self):
        token = self.generate_token(scope=self.granted_scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class S256Only(CodeChallenge):
    """PKCE required of every client, public or confidential, with S256: a missing challenge, or the plain method, is
    refused at the authorization endpoint (authlib alone would let a request without one through)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE is required: a code_challenge with code_challenge_method=S256.")
        super().validate_code_challenge(grant, redirect_uri)


class OAuthCode(AuthorizationCodeMixin):
    def __init__(self, code: AuthorizationCode):
        self.code = code
        self.code_challenge, self.code_challenge_method = code.code_challenge, code.code_challenge_method

    def get_redirect_uri(self):
        return self.code.redirect_uri

    def get_scope(self):
        return self.code.scope

    def get_nonce(self):
        return self.code.nonce

    def get_auth_time(self):
        return int(self.code.auth_time.timestamp())


class SmartAuthorizationCodeGrant(AuthorizationCodeGrant):
    """The authorization code grant of SMART App Launch. The consent page sets `approved_scope` (what the user ticked)
    before the code is made; the token response is a user token (app/security/user_tokens.py)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    approved_scope = ""
    launch: Launch | None = None  # an EHR launch's context, from the `launch` parameter

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        check_audience(self.request.payload.data.get("aud"), redirect_uri)
        if len(self.request.payload.data.get("nonce") or "") > MAX_NONCE_LENGTH:
            raise InvalidRequestError(f"'nonce' is longer than {MAX_NONCE_LENGTH} characters.", redirect_uri=redirect_uri)
        self.launch = launch_context(self.request, redirect_uri)
        return redirect_uri

    def patient_in_context(self, user) -> str | None:
        return self.launch.patient if self.launch else user.patient_id()

    def save_authorization_code(self, code, request):
        now, data = utc_now(), request.payload.data
        approved = AuthorizationCode(
            request.client.get_client_id(), request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            self.approved_scope, request.user.username, data.get("nonce"), data["code_challenge"], data["code_challenge_method"],
            now, now + CODE_LIFETIME, self.launch and self.launch.patient, self.launch and self.launch.encounter,
        )
        with self.server.engine.begin() as connection:
            save_code(connection, code, approved)

    def query_authorization_code(self, code, client):
        """Taken (deleted) as it is found: a code is used once, even when the rest of the exchange then fails."""
        with self.server.engine.begin() as connection:
            taken = take_code(connection, code, client.get_client_id(), utc_now())
        return OAuthCode(taken) if taken else None

    def delete_authorization_code(self, authorization_code):
        """Already gone: query_authorization_code took it."""

    def authenticate_user(self, authorization_code):
        with self.server.engine.connect() as connection:
            return find_user(connection, authorization_code.code.username)

    def create_token_response(self):
        code = self.request.authorization_code
        user = self.authenticate_user(code)
        if user is None:
            raise InvalidGrantError("The user who approved this code no longer exists.")
        grant = UserGrant(self.request.client.client, user, code.get_scope(), USER_TOKEN_SECONDS, fhir_base(), code.get_nonce(),
                          code.code.patient, code.code.encounter)
        with self.server.engine.begin() as connection:
            try:
                token = issue_user_token(connection, grant, utc_now())
            except GrantError as error:
                raise InvalidScopeError(description=str(error)) from None
        return 200, token, self.TOKEN_RESPONSE_HEADER


class SmartRefreshTokenGrant(RefreshTokenGrant):
    """A refresh token for a new access token and a new refresh token, with the same or fewer scopes and the same user
    and launch context; the old pair is revoked (rotation)."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def authenticate_refresh_token(self, refresh_token):
        """The live refresh token; a used or revoked one coming back means someone holds a copy: its whole chain
        is revoked (OAuth 2.0 Security BCP), the newest token included, and the user signs in again."""
        with self.server.engine.begin() as connection:
            record = live_refresh_token(connection, refresh_token, utc_now())
            if record is not None:
                return OAuthToken(record, family_grant(connection, record.family_id) if record.family_id else None)
            revoke_reused_family(connection, refresh_token)
        forget_revoked()
        return None

    def authenticate_user(self, refresh_token):
        with self.server.engine.connect() as connection:
            return find_user(connection, refresh_token.record.username) if refresh_token.record.username else None

    def create_token_response(self):
        old, client = self.request.refresh_token, self.request.client.client
        user = self.authenticate_user(old)
        if user is None:
            raise InvalidGrantError("The user of this refresh token no longer exists.")
        scope = self.request.payload.scope or old.get_scope()
        grant = UserGrant(client, user, scope, USER_TOKEN_SECONDS, fhir_base(), patient=old.record.patient, encounter=old.record.encounter,
                          family_id=old.record.family_id)
        with self.server.engine.begin() as connection:
            if not revoke_token(connection, old.record.id, utc_now()):
                raise InvalidGrantError("This refresh token was used already.")  # by a concurrent refresh
            try:
                token = issue_user_token(connection, grant, utc_now())
            except GrantError as error:
                raise InvalidScopeError(description=str(error)) from None
        forget_revoked()
        return 200, token, self.TOKEN_RESPONSE_HEADER


def revoke_reused_family(connection, refresh_token: str) -> None:
    used = find_token(connection, refresh_token)
    if used is not None and used.revoked_at is not None and used.family_id is not None:
        revoked = revoke_family(connection, used.family_id, utc_now())
        log.warning("A used refresh token of client %s came back: its chain's %d live tokens were revoked", used.client_id, revoked)


def launch_context(oauth_request, redirect_uri: str) -> Launch | None:
    """The context of the request's EHR `launch`, which must be live, asked for with the `launch` scope, and made for
    the signed-in user and this app."""
    value = oauth_request.payload.data.get("launch")
    if not value:
        return None
    if "launch" not in (oauth_request.payload.scope or "").split():
        raise InvalidScopeError(description="An EHR launch needs the 'launch' scope.", redirect_uri=redirect_uri)
    with current_app.extensions["ehr.engine"].connect() as connection:
        launch = live_launch(connection, value, utc_now())
    if launch is None:
        raise InvalidRequestError("The 'launch' is unknown or has expired: start the app from the EHR again.", redirect_uri=redirect_uri)
    if oauth_request.user is None or launch.username != oauth_request.user.username:
        raise InvalidRequestError("This launch was made for another user.", redirect_uri=redirect_uri)
    if launch.client_id != oauth_request.client.get_client_id():
        raise InvalidRequestError("This launch was made for another app.", redirect_uri=redirect_uri)
    return launch


def check_audience(aud: str | None, redirect_uri: str) -> None:
    """SMART: the app names the FHIR server it wants a token for (`aud`), so that a token is never sent to another."""
    if not aud or aud.rstrip("/") != fhir_base():
        raise InvalidRequestError(f"'aud' must be this server's FHIR base URL, {fhir_base()}.", redirect_uri=redirect_uri)


def granted_system_scope(client: Client, requested: str | None) -> str:
    """The requested scopes that the client's registration allows (system/ scopes, and admin); InvalidScopeError when
    none, or a malformed one."""
    if not requested:
        raise InvalidScopeError(description="A backend service must ask for scopes, such as system/Observation.rs.")
    try:
        wanted = parse_scopes(requested)
    except ScopeError as error:
        raise InvalidScopeError(description=str(error)) from None
    if wanted.contexts() - {"system"} or wanted.other - {ADMIN_SCOPE}:
        raise InvalidScopeError(description="A backend service can only be granted system/ scopes, and admin.")
    granted = wanted.within(parse_scopes(client.scope))
    if not granted.resource_scopes and not granted.other:
        raise InvalidScopeError(description=f"None of the scopes asked for is registered for this client ({client.scope}).")
    return " ".join(granted.texts())


class OAuthToken(TokenMixin):
    """An issued token as authlib's endpoints ask about it; for a refresh, `granted` is the scope the user granted
    at the start of its chain, which a refresh may ask for again after narrowing (RFC 6749, section 6)."""

    def __init__(self, record: TokenRecord, granted: str | None = None):
        self.record = record
        self.granted = granted or record.scope

    def check_client(self, client):
        return client.get_client_id() == self.record.client_id

    def get_scope(self):
        return self.granted

    def get_expires_in(self):
        return int((self.record.expires_at - self.record.issued_at).total_seconds())

    def is_expired(self):
        return self.record.expires_at <= utc_now()

    def is_revoked(self):
        return self.record.revoked_at is not None


class TokensOfTheEngine:
    """Revocation and introspection find tokens in the engine's database by their value."""

    def __init__(self, server, engine: Engine):
        super().__init__(server)
        self.engine = engine

    def query_token(self, token_string, token_type_hint):
        with self.engine.connect() as connection:
            record = find_token(connection, token_string)
        return OAuthToken(record) if record else None


class SmartRevocationEndpoint(TokensOfTheEngine, RevocationEndpoint):
    """RFC 7009: a client revokes a token it was issued (the access token and its refresh token together)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)  # a public app revokes its own tokens too

    def revoke_token(self, token, request):
        with self.engine.begin() as connection:
            revoke_token(connection, token.record.id, utc_now())
        forget_revoked()


class SmartIntrospectionEndpoint(TokensOfTheEngine, IntrospectionEndpoint):
    """RFC 7662, with SMART's launch context: a client learns whether a token it was issued is active, and what it
    grants; a client registered for the admin scope (a resource server) learns it of any token. Any other token is
    reported inactive."""

    CLIENT_AUTH_METHODS = list(CONFIDENTIAL_AUTH_METHODS)

    def check_permission(self, token, client, request):
        return token.check_client(client) or ADMIN_SCOPE in parse_scopes(client.client.scope).other

    def introspect_token(self, token):
        record = token.record
        payload = {"active": True, "client_id": record.client_id, "scope": record.scope, "token_type": "Bearer",
                   "iat": int(record.issued_at.timestamp()), "exp": int(record.expires_at.timestamp())}
        optional = {"sub": record.username, "fhirUser": record.fhir_user, "patient": record.patient}
        return payload | {name: value for name, value in optional.items() if value}


def public_url() -> str:
    """The request's URL as the client sent it: behind a proxy that ends TLS, EHR_BASE_URL gives the scheme and host
    (authlib refuses plain http on any host but this machine's)."""
    configured = current_app.config["EHR_SETTINGS"].base_url
    if not configured:
        return request.url
    public = urlsplit(configured)
    return urlunsplit((public.scheme, public.netloc, request.path, request.query_string.decode("latin-1"), ""))


class PublicFlaskRequest(OAuth2Request):
    """authlib's view of a Flask request, at its public URL (public_url)."""

    def __init__(self):
        super().__init__(method=request.method, uri=public_url(), headers=request.headers)
        self.payload = FlaskOAuth2Payload(request)

    @property
    def args(self):
        return request.args

    @property
    def form(self):
        return request.form


class SmartAuthorizationServer(AuthorizationServer):
    def create_oauth2_request(self, _request):
        return PublicFlaskRequest()

    def create_token_response(self, request=None):
        """The token endpoint's answer; a request over plain http from another host gets an OAuth error, not a crash."""
        try:
            return super().create_token_response(request)
        except InsecureTransportError as error:
            return self.handle_error_response(None, error)

    def create_endpoint_response(self, name, request=None):
        try:
            return super().create_endpoint_response(name, request)
        except InsecureTransportError as error:
            return self.handle_error_response(None, error)


def authorization_server(app: Flask, engine: Engine) -> AuthorizationServer:
    """The authorization server of `app`, whose clients and tokens are in `engine`'s database."""

    def query_client(client_id):
        with engine.connect() as connection:
            found = find_client(connection, client_id)
        return OAuthClient(found) if found else None

    def store_token(token, oauth_request):
        context = TokenContext(oauth_request.client.get_client_id(), token.get("scope", ""))
        with engine.begin() as connection:
            issue_token(connection, context, token, utc_now())

    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"client_credentials": BACKEND_TOKEN_SECONDS})
    server = SmartAuthorizationServer(app, query_client=query_client, save_token=store_token)
    server.register_client_auth_method(SmartClientAssertion.CLIENT_AUTH_METHOD, SmartClientAssertion(engine))
    server.engine = engine
    server.register_grant(SmartAuthorizationCodeGrant, [S256Only(required=True)])
    server.register_grant(SmartRefreshTokenGrant)
    server.register_grant(BackendServicesGrant)
    server.register_endpoint(SmartRevocationEndpoint(server, engine))
    server.register_endpoint(SmartIntrospectionEndpoint(server, engine))
    return server
