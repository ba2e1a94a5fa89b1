"""The OAuth 2.0 authorization server (authlib), for SMART on FHIR: client authentication, grants, and issuing tokens.

Today it answers the token endpoint for SMART Backend Services: the `client_credentials` grant, with the client
authenticated by a signed JWT assertion (`private_key_jwt`, RFC 7523, as SMART profiles it) or by its secret
(`client_secret_basic`), and `system/` scopes only; and revocation (RFC 7009) and introspection (RFC 7662) of the
tokens a client was issued, by that client.
"""
import time
import urllib.request
from urllib.parse import urlsplit, urlunsplit
from datetime import datetime, timezone

import orjson
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload
from authlib.oauth2.rfc6749 import ClientMixin, InsecureTransportError, InvalidClientError, InvalidScopeError, OAuth2Request, TokenMixin
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, current_app, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Engine

from app.security.accounts import Client, find_client
from app.security.scopes import ScopeError, parse_scopes
from app.security.tokens import TokenContext, TokenRecord, accept_assertion_once, find_token, revoke_token, save_token

TOKEN_PATH = "/auth/token"
REVOCATION_PATH = "/auth/revoke"
INTROSPECTION_PATH = "/auth/introspect"
ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]  # a public app revokes its own tokens too
ASSERTION_ALGORITHMS = ["RS384", "ES384", "RS256", "ES256"]  # SMART requires RS384 and ES384; never HS* or none
MAX_ASSERTION_LIFETIME_SECONDS = 300  # SMART Backend Services: exp no more than five minutes ahead
BACKEND_TOKEN_SECONDS = 300  # the lifetime SMART Backend Services recommends for its access tokens
JWKS_FETCH_TIMEOUT_SECONDS = 5
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

    def get_allowed_scope(self, scope):
        """`scope` narrowed to what the client is registered for (the grants narrow it first, and refuse nothing)."""
        return " ".join(parse_scopes(scope or "").within(parse_scopes(self.client.scope)).texts())


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def token_endpoint_urls() -> list[str]:
    """This server's token endpoint, the audience of client assertions: as the request reached it, and beside the
    public FHIR base (EHR_BASE_URL `https://ehr.example.org/fhir` gives `https://ehr.example.org/auth/token`)."""
    urls = [f"{request.scheme}://{request.host}{request.root_path}{TOKEN_PATH}"]
    configured = current_app.config["EHR_SETTINGS"].base_url
    if configured:
        urls.append(configured.rstrip("/").removesuffix("/fhir") + TOKEN_PATH)
    return urls


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
        expires_at = datetime.fromtimestamp(claims["exp"], timezone.utc)
        with self.engine.begin() as connection:
            return accept_assertion_once(connection, claims["sub"], str(jti), expires_at, now_utc())

    def resolve_client_public_key(self, client):
        registered = client.client
        key_set = registered.jwks if registered.jwks is not None else fetched_key_set(registered.jwks_uri)
        try:
            return KeySet.import_key_set(key_set)
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidClientError(description=f"The client's JWK Set cannot be read: {error}.") from None


def fetched_key_set(jwks_uri: str) -> dict:
    """The JWK Set at a client's jwks_uri, fetched when its assertion arrives (it may have rotated its keys)."""
    try:
        with urllib.request.urlopen(jwks_uri, timeout=JWKS_FETCH_TIMEOUT_SECONDS) as response:
            return orjson.loads(response.read())
    except (OSError, ValueError) as error:
        raise InvalidClientError(description=f"The client's JWK Set at {jwks_uri} cannot be fetched: {error}.") from None


class BackendServicesGrant(ClientCredentialsGrant):
    """client_credentials for a backend service: `system/` scopes, narrowed to those registered for the client."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", SmartClientAssertion.CLIENT_AUTH_METHOD]

    def validate_token_request(self):
        super().validate_token_request()
        self.granted_scope = granted_system_scope(self.request.client.client, self.request.payload.scope)

    def create_token_response(self):
        token = self.generate_token(scope=self.granted_scope, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


def granted_system_scope(client: Client, requested: str | None) -> str:
    """The requested scopes that the client's registration allows; InvalidScopeError when none, or a malformed one."""
    if not requested:
        raise InvalidScopeError(description="A backend service must ask for scopes, such as system/Observation.rs.")
    try:
        wanted = parse_scopes(requested)
    except ScopeError as error:
        raise InvalidScopeError(description=str(error)) from None
    if wanted.contexts() - {"system"}:
        raise InvalidScopeError(description="A backend service can only be granted system/ scopes.")
    granted = wanted.within(parse_scopes(client.scope))
    if not granted.resource_scopes:
        raise InvalidScopeError(description=f"None of the scopes asked for is registered for this client ({client.scope}).")
    return " ".join(granted.texts())


class OAuthToken(TokenMixin):
    """An issued token as authlib's revocation and introspection endpoints ask about it."""

    def __init__(self, record: TokenRecord):
        self.record = record

    def check_client(self, client):
        return client.get_client_id() == self.record.client_id

    def get_scope(self):
        return self.record.scope

    def get_expires_in(self):
        return int((self.record.expires_at - self.record.issued_at).total_seconds())

    def is_expired(self):
        return self.record.expires_at <= now_utc()

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

    CLIENT_AUTH_METHODS = ENDPOINT_AUTH_METHODS

    def revoke_token(self, token, request):
        with self.engine.begin() as connection:
            revoke_token(connection, token.record.id, now_utc())


class SmartIntrospectionEndpoint(TokensOfTheEngine, IntrospectionEndpoint):
    """RFC 7662, with SMART's launch context: a client learns whether a token it was issued is active, and what it
    grants. Any other token is reported inactive."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

    def check_permission(self, token, client, request):
        return token.check_client(client)

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
            save_token(connection, context, token, now_utc())

    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"client_credentials": BACKEND_TOKEN_SECONDS})
    server = SmartAuthorizationServer(app, query_client=query_client, save_token=store_token)
    server.register_client_auth_method(SmartClientAssertion.CLIENT_AUTH_METHOD, SmartClientAssertion(engine))
    server.register_grant(BackendServicesGrant)
    server.register_endpoint(SmartRevocationEndpoint(server, engine))
    server.register_endpoint(SmartIntrospectionEndpoint(server, engine))
    return server
