"""The Flask application factory: one engine per process, checked against the schema at start."""
import logging

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import Settings, load_settings
from app.feeds import feed_blueprints
from app.rest.health import health
from app.rest.operations import operations
from app.rest.outcome import register_error_handlers
from app.rest.routes import fhir
from app.rest.urls import configure_urls
from app.security.admin import admin
from app.security.bearer import TokenCache
from app.security.oauth import authorization_server
from app.security.shared_secrets import shared_secret
from app.security.views import auth, csrf, limiter
from app.protection.service import prepare_protection
from app.store.db import open_database
from app.store.migrate import check_schema_current


log = logging.getLogger(__name__)
CORS_PATHS = (r"/fhir/*", "/fhir", r"/auth/token", r"/auth/revoke", r"/auth/introspect", r"/auth/jwks")
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since", "Prefer"]
CORS_RESPONSE_HEADERS = ["Location", "Content-Location", "ETag", "Last-Modified", "WWW-Authenticate"]
LOOPBACK_HOSTS = ("localhost", "127.0.0.1")  # werkzeug 3.1 matches no IPv6 literal such as [::1]


def create_app(settings: Settings | None = None, bind_host: str | None = None) -> Flask:
    """Build the app; raises SchemaNotCurrent, naming the fixing command, if the schema is missing or old. `bind_host` is
    the address the server listens on, when the caller knows it (`ehr serve`)."""
    settings = settings or load_settings()
    if not settings.auth:
        log.warning("EHR_AUTH=off: the FHIR API and /hl7v2 answer anyone who reaches the server, without a token. For development only.")
    engine = open_database(settings.database)
    check_schema_current(engine)
    prepare_protection(engine)
    app = Flask(__name__)
    # An id holding %2F arrives as Patient//1; merging the slashes would redirect a DELETE of it to Patient/1.
    app.url_map.merge_slashes = False
    app.config.update(
        EHR_SETTINGS=settings, MAX_CONTENT_LENGTH=settings.max_body_bytes + 1,  # see read_raw_body
        TRUSTED_HOSTS=trusted_hosts(settings, bind_host),
    )
    app.extensions["ehr.engine"] = engine
    app.extensions["ehr.tokens"] = TokenCache(engine)
    app.extensions["ehr.oauth"] = authorization_server(app, engine)
    configure_sessions(app, engine)
    configure_cors(app, settings)
    configure_urls(app)
    app.register_blueprint(fhir)
    app.register_blueprint(operations)
    app.register_blueprint(health)
    app.register_blueprint(auth)
    app.register_blueprint(admin)
    for blueprint in feed_blueprints():
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    trust_proxies(app, settings.trusted_proxies)
    return app


def trust_proxies(app: Flask, proxies: int) -> None:
    """Behind `proxies` reverse proxies (and reachable only through them), the client's address (which rate limits
    count by, and audit records and feeds name) is the one the outermost proxy, which the client connected to, added
    to X-Forwarded-For: the `proxies`-th entry from the right. Without them the header is ignored: anyone could write
    it."""
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)


def configure_sessions(app: Flask, engine) -> None:
    """The sign-in session cookie of the authorization pages: signed with a key every worker shares, HttpOnly,
    SameSite=Lax, Secure when the public base is https; CSRF tokens on their forms only, and rate limits on sign-in
    and the token endpoint (app/security/views.py)."""
    with engine.begin() as connection:
        secret = shared_secret(connection, "session")
    settings = app.config["EHR_SETTINGS"]
    app.config.update(SECRET_KEY=secret, WTF_CSRF_CHECK_DEFAULT=False, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=(settings.base_url or "").startswith("https://"),
                      RATELIMIT_STORAGE_URI=settings.rate_limit_storage, RATELIMIT_HEADERS_ENABLED=True)
    csrf.init_app(app)
    limiter.init_app(app)
    # Only the sign-in and token endpoints have limits, and their views check them themselves (@limiter.limit); the
    # check flask-limiter runs before every request cost the API's reads a fifth of their time, for nothing.
    # Its after-request hook, which adds the limit headers, likewise runs for the sign-in blueprint only.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    app.before_request_funcs.setdefault(auth.name, []).append(limiter._check_request_limit)
    inject_headers = next(hook for hook in app.after_request_funcs[None] if getattr(hook, "args", None) == (limiter,))
    app.after_request_funcs[None].remove(inject_headers)
    app.after_request_funcs.setdefault(auth.name, []).append(inject_headers)
    app.session_interface = SignInSessions()


class SignInSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, which build their signer for every request: here only for a request that
    carries the cookie (a sign-in in progress). The API's requests, which never do, get an empty session without it."""

    def open_session(self, app: Flask, request):
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)


def configure_cors(app: Flask, settings: Settings) -> None:
    """Browser apps (SMART apps are often single pages on another origin) may call the FHIR API and the token,
    revocation, introspection and key endpoints: CORS for EHR_CORS_ORIGINS, any by default, never with cookies, which
    those endpoints do not read (the API takes bearer tokens). The sign-in and consent pages, which use a cookie, get
    no CORS headers: a browser visits them, no script calls them."""
    shared = {"origins": list(settings.cors_origins), "supports_credentials": False, "max_age": 3600}
    CORS(app, resources={path: shared for path in CORS_PATHS}, allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_RESPONSE_HEADERS)


def trusted_hosts(settings: Settings, bind_host: str | None) -> list[str] | None:
    """The Host header names a request may carry, at any port (werkzeug answers others 400): EHR_ALLOWED_HOSTS; without
    it, any when links are made from EHR_BASE_URL, else only the loopback names and the address the server binds, so
    that no client can have its own Host copied into Location and fullUrl."""
    if settings.allowed_hosts:  # never empty: werkzeug would take an empty list for any host
        return list(settings.allowed_hosts)
    if settings.base_url:
        return None
    return [*LOOPBACK_HOSTS, *filter(None, [bind_host])]
