"""The authorization server's accounts: OAuth clients (SMART apps and backend services) and the users who log in.

Client secrets are random (256 bits) and stored as their SHA-256, which is enough for a secret nobody chose; user
passwords are stored as argon2id hashes (argon2-cffi's defaults). A client's registered scopes are the most it can
ever be granted: they are parsed here, so a malformed one is refused at registration, not at the first launch.
"""
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urlsplit

import orjson
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from app.model.instants import as_utc, utc_now
from app.security.scopes import parse_scopes
from app.security.tables import app_user, oauth_client
from app.security.tokens import revoke_client_tokens, token_hash
from app.store.unit import reading

CONFIDENTIAL_AUTH_METHODS = ("client_secret_basic", "private_key_jwt")  # a secret, or assertions signed with the client's keys
AUTH_METHODS = ("none", *CONFIDENTIAL_AUTH_METHODS)  # "none": a public app, which PKCE alone protects
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
FHIR_USER_TYPES = ("Patient", "Practitioner")
PASSWORDS = PasswordHasher()
MAX_NAME_LENGTH = 200  # of a client's name and a username: their columns' size
MAX_URL_LENGTH = 2000  # of a JWK Set URL (its column's size) and of a redirect URI
MIN_PASSWORD_LENGTH, MAX_PASSWORD_LENGTH = 8, 1024
MAX_FAILED_SIGN_INS = 5
LOCKOUT = timedelta(minutes=15)


@cache
def unknown_user_hash() -> str:
    """What a sign-in with an unknown username is checked against, so that it takes as long as one with a known name
    (made once per process, when first needed: an argon2 hash costs a tenth of a second, which every command paid)."""
    return PASSWORDS.hash(secrets.token_urlsafe(16))


class AccountError(ValueError):
    """A registration that cannot be stored, with what to change."""


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    scope: str
    auth_method: str
    jwks: dict | None
    jwks_uri: str | None
    secret_hash: str | None

    def check_secret(self, secret: str) -> bool:
        return self.secret_hash is not None and hmac.compare_digest(self.secret_hash, token_hash(secret))

    def listed(self) -> dict:
        """What `ehr clients list` shows of a client: everything but its secret's hash."""
        return {"client_id": self.client_id, "name": self.name, "auth_method": self.auth_method,
                "redirect_uris": list(self.redirect_uris), "scope": self.scope, "jwks_uri": self.jwks_uri,
                "keys": [key.get("kid") for key in (self.jwks or {}).get("keys", [])]}


@dataclass(frozen=True)
class User:
    username: str
    fhir_user: str | None  # Patient/ID or Practitioner/ID

    def patient_id(self) -> str | None:
        type_name, _, resource_id = (self.fhir_user or "").partition("/")
        return resource_id if type_name == "Patient" else None


@dataclass(frozen=True)
class ClientRegistration:
    name: str
    redirect_uris: tuple[str, ...]
    scope: str
    auth_method: str
    jwks: dict | None = None
    jwks_uri: str | None = None


def register_client(connection: Connection, registration: ClientRegistration) -> dict:
    """Store a new client; returns its `client_id`, and for client_secret_basic its `client_secret` (shown once)."""
    check_registration(registration)
    client_id = secrets.token_hex(16)  # hex: never starts with "-", which a command line would take for an option
    secret = secrets.token_urlsafe(32) if registration.auth_method == "client_secret_basic" else None
    connection.execute(insert(oauth_client).values(
        client_id=client_id, name=registration.name, redirect_uris=orjson.dumps(list(registration.redirect_uris)).decode(),
        scope=registration.scope, auth_method=registration.auth_method, secret_hash=secret and token_hash(secret),
        jwks=registration.jwks and orjson.dumps(registration.jwks).decode(), jwks_uri=registration.jwks_uri,
        created_at=utc_now(),
    ))
    return {"client_id": client_id, **({"client_secret": secret} if secret else {})}


def check_registration(registration: ClientRegistration) -> None:
    if not registration.name.strip() or len(registration.name) > MAX_NAME_LENGTH:
        raise AccountError(f"A client needs a name, of at most {MAX_NAME_LENGTH} characters.")
    if registration.auth_method not in AUTH_METHODS:
        raise AccountError(f"Unknown client authentication '{registration.auth_method}': one of {', '.join(AUTH_METHODS)}.")
    if registration.auth_method == "none" and not registration.redirect_uris:
        raise AccountError("A public client needs at least one redirect URI: it can only use the authorization code flow.")
    if registration.auth_method == "private_key_jwt" and not (registration.jwks or registration.jwks_uri):
        raise AccountError("A private_key_jwt client needs its public keys: a JWK Set, or the https URL of one.")
    for uri in registration.redirect_uris:
        check_client_url(uri, "redirect URI")
    if registration.jwks is not None:
        check_public_key_set(registration.jwks)
    if registration.jwks_uri is not None:
        check_client_url(registration.jwks_uri, "JWK Set URL")
    parse_scopes(registration.scope)  # ScopeError says which scope is malformed


def check_client_url(uri: str, what: str) -> None:
    """An absolute URL without a fragment (RFC 6749, 3.1.2); https, or http on this machine for development."""
    parts = urlsplit(uri)
    if len(uri) > MAX_URL_LENGTH or "\x00" in uri:
        raise AccountError(f"The {what} must be a URL of at most {MAX_URL_LENGTH} characters.")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise AccountError(f"The {what} '{uri}' must be an absolute https URL without a fragment.")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise AccountError(f"The {what} '{uri}' must be https (plain http only on localhost).")


def check_public_key_set(jwks: dict) -> None:
    """A JWK Set of public RSA or EC keys, each with a kid, that the token endpoint can verify assertions with."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not keys or not isinstance(keys, list):
        raise AccountError('A JWK Set is a JSON object {"keys": [...]} with at least one key.')
    for key in keys:
        if not isinstance(key, dict) or "d" in key or key.get("kty") not in ("RSA", "EC") or not key.get("kid"):
            raise AccountError("Each key of the JWK Set must be a public RSA or EC key with a kid (and no private part).")
    try:
        KeySet.import_key_set(jwks)
    except (JoseError, ValueError, TypeError) as error:
        raise AccountError(f"The JWK Set cannot be read: {error}.") from None


def find_client(connection: Connection, client_id: str) -> Client | None:
    row = connection.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
    return client_from_row(row) if row else None


def all_clients(connection: Connection) -> list[Client]:
    return [client_from_row(row) for row in connection.execute(select(oauth_client).order_by(oauth_client.c.id))]


def client_from_row(row) -> Client:
    return Client(row.client_id, row.name, tuple(orjson.loads(row.redirect_uris)), row.scope, row.auth_method,
                  orjson.loads(row.jwks) if row.jwks else None, row.jwks_uri, row.secret_hash)


def remove_client(connection: Connection, client_id: str) -> bool:
    """False when there was no such client."""
    return connection.execute(delete(oauth_client).where(oauth_client.c.client_id == client_id)).rowcount == 1


def retire_client(connection: Connection, client_id: str, now: datetime) -> int | None:
    """Remove a client and revoke every token it holds: how many; None when there was no such client."""
    if not remove_client(connection, client_id):
        return None
    return revoke_client_tokens(connection, client_id, now)


def add_user_of(engine: Engine, username: str, password: str, fhir_user: str | None) -> None:
    """A login bound to `fhir_user`, which must name a live Patient or Practitioner (NotFound or Gone otherwise)."""
    check_fhir_user(fhir_user)
    if fhir_user:
        type_name, _, resource_id = fhir_user.partition("/")
        with reading(engine) as unit:
            unit.read(type_name, resource_id)
    with engine.begin() as connection:
        add_user(connection, username, password, fhir_user)


def add_user(connection: Connection, username: str, password: str, fhir_user: str | None) -> None:
    """Store a login; `fhir_user` (Patient/ID or Practitioner/ID) is the FHIR resource the user is."""
    if not username.strip() or username != username.strip() or len(username) > MAX_NAME_LENGTH:
        raise AccountError(f"A username must be non-empty, without spaces at either end, and at most {MAX_NAME_LENGTH} characters.")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(f"A password must have at least {MIN_PASSWORD_LENGTH} characters, and at most {MAX_PASSWORD_LENGTH}.")
    check_fhir_user(fhir_user)
    try:
        with connection.begin_nested():
            connection.execute(insert(app_user).values(username=username, password_hash=PASSWORDS.hash(password),
                                                       fhir_user=fhir_user, created_at=utc_now()))
    except IntegrityError:
        raise AccountError(f"There is already a user named '{username}'.") from None


def find_user(connection: Connection, username: str) -> User | None:
    row = connection.execute(select(app_user.c.username, app_user.c.fhir_user).where(app_user.c.username == username)).first()
    return User(row.username, row.fhir_user) if row else None


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: the user, or why not (a wrong username or password, or a locked account)."""

    user: User | None
    locked_until: datetime | None = None


def sign_in(connection: Connection, username: str, password: str, now: datetime) -> SignIn:
    """Check a password. MAX_FAILED_SIGN_INS wrong ones in a row lock the account for LOCKOUT, during which even the
    right password is refused; argon2 runs for unknown users too, so the time taken does not tell which names exist."""
    row = connection.execute(select(app_user).where(app_user.c.username == username)).first()
    if row is not None and row.locked_until is not None and as_utc(row.locked_until) > now:
        return SignIn(None, as_utc(row.locked_until))
    try:
        PASSWORDS.verify(row.password_hash if row else unknown_user_hash(), password)
    except VerificationError:
        return SignIn(None, row and count_failed_sign_in(connection, row, now))
    if row.failed_sign_ins:
        connection.execute(update(app_user).where(app_user.c.id == row.id).values(failed_sign_ins=0, locked_until=None))
    return SignIn(User(row.username, row.fhir_user))


def count_failed_sign_in(connection: Connection, row, now: datetime) -> datetime | None:
    """Count a wrong password; when it is the last one allowed, lock the account and return until when."""
    failed = row.failed_sign_ins + 1
    locked_until = now + LOCKOUT if failed >= MAX_FAILED_SIGN_INS else None
    values = {"failed_sign_ins": 0, "locked_until": locked_until} if locked_until else {"failed_sign_ins": failed}
    connection.execute(update(app_user).where(app_user.c.id == row.id).values(**values))
    return locked_until


def check_fhir_user(fhir_user: str | None) -> None:
    if fhir_user is None:
        return
    type_name, slash, resource_id = fhir_user.partition("/")
    if type_name not in FHIR_USER_TYPES or not slash or not resource_id or "/" in resource_id:
        raise AccountError(f"'{fhir_user}' must be Patient/ID or Practitioner/ID.")
