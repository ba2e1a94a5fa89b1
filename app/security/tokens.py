"""EHR launches, authorization codes, issued tokens and accepted client assertions, as the authorization server stores
them.

Access and refresh tokens are random strings handed to the client once; the table keeps their SHA-256, so reading
the database does not give anyone a usable token. A token is live until it expires or is revoked.
"""
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from app.model.instants import as_utc
from app.security.tables import oauth_assertion, oauth_code, oauth_launch, oauth_token
from app.store.access import Caller
from app.store.audit import grant_event, record_audit_events


@dataclass(frozen=True)
class TokenContext:
    """Who a token is issued to and for: the user and the launch context (none for a backend service)."""

    client_id: str
    scope: str
    username: str | None = None
    fhir_user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    family_id: int | None = None  # the refresh chain a refresh continues


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def save_token(connection: Connection, context: TokenContext, token: dict, now: datetime, refresh_lifetime: timedelta | None = None) -> None:
    """Store a token response's access token, and its refresh token (usable for `refresh_lifetime`), for `context`."""
    refresh = token.get("refresh_token")
    token_id = connection.execute(insert(oauth_token).values(
        access_token_hash=token_hash(token["access_token"]), refresh_token_hash=token_hash(refresh) if refresh else None,
        client_id=context.client_id, scope=context.scope, username=context.username, fhir_user=context.fhir_user,
        patient=context.patient, encounter=context.encounter, issued_at=now,
        expires_at=now + timedelta(seconds=token["expires_in"]), refresh_expires_at=now + refresh_lifetime if refresh else None,
        family_id=context.family_id,
    ).returning(oauth_token.c.id)).scalar_one()
    if refresh and context.family_id is None:  # the first of a refresh chain
        connection.execute(update(oauth_token).where(oauth_token.c.id == token_id).values(family_id=token_id))


def issue_token(connection: Connection, context: TokenContext, token: dict, now: datetime, refresh_lifetime: timedelta | None = None) -> None:
    """Store an issued token (see save_token) and, in the same transaction, the AuditEvent of the grant."""
    save_token(connection, context, token, now, refresh_lifetime)
    caller = Caller(context.client_id, context.username, context.fhir_user)
    record_audit_events(connection, [grant_event(caller, context.patient, context.scope)])


@dataclass(frozen=True)
class TokenRecord:
    """An issued token as revocation and introspection see it, live or not."""

    id: int
    client_id: str
    scope: str
    username: str | None
    fhir_user: str | None
    patient: str | None
    encounter: str | None
    issued_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    family_id: int | None = None


def find_token(connection: Connection, token: str) -> TokenRecord | None:
    """The token whose access token or refresh token is `token`, whatever its state."""
    digest = token_hash(token)
    row = connection.execute(select(oauth_token).where(or_(oauth_token.c.access_token_hash == digest, oauth_token.c.refresh_token_hash == digest))).first()
    if row is None:
        return None
    return token_record(row)


def token_record(row) -> TokenRecord:
    return TokenRecord(row.id, row.client_id, row.scope, row.username, row.fhir_user, row.patient, row.encounter, as_utc(row.issued_at),
                       as_utc(row.expires_at), row.revoked_at and as_utc(row.revoked_at), row.family_id)


def live_refresh_token(connection: Connection, token: str, now: datetime) -> TokenRecord | None:
    """The token whose refresh token is `token`, if it is neither revoked (nor used already: rotation revokes it) nor
    expired."""
    return live_token(connection, oauth_token.c.refresh_token_hash, oauth_token.c.refresh_expires_at, token, now)


def revoke_token(connection: Connection, token_id: int, now: datetime) -> bool:
    """Revoke an access token and its refresh token together; False if it was revoked already (a revoked token stays
    revoked, at its first revocation time)."""
    statement = update(oauth_token).where(oauth_token.c.id == token_id, oauth_token.c.revoked_at.is_(None)).values(revoked_at=now)
    return connection.execute(statement).rowcount == 1


def family_grant(connection: Connection, family_id: int) -> str:
    """The scope granted at the start of a refresh chain (its first token's)."""
    return connection.execute(select(oauth_token.c.scope).where(oauth_token.c.id == family_id)).scalar_one()


def revoke_family(connection: Connection, family_id: int, now: datetime) -> int:
    """Revoke every live token of a refresh chain (one of its used refresh tokens came back); how many there were."""
    statement = update(oauth_token).where(oauth_token.c.family_id == family_id, oauth_token.c.revoked_at.is_(None)).values(revoked_at=now)
    return connection.execute(statement).rowcount


def revoke_client_tokens(connection: Connection, client_id: str, now: datetime) -> int:
    """Revoke every live token of a client (one that is removed); how many there were."""
    statement = update(oauth_token).where(oauth_token.c.client_id == client_id, oauth_token.c.revoked_at.is_(None)).values(revoked_at=now)
    return connection.execute(statement).rowcount


def live_access_token(connection: Connection, token: str, now: datetime) -> TokenRecord | None:
    """What `token` grants, or None if it was never issued, has expired or was revoked."""
    return live_token(connection, oauth_token.c.access_token_hash, oauth_token.c.expires_at, token, now)


def live_token(connection: Connection, hash_column, expires_column, token: str, now: datetime) -> TokenRecord | None:
    """The row whose `hash_column` holds `token`'s hash, unless it is revoked or its `expires_column` has passed."""
    row = connection.execute(select(oauth_token).where(hash_column == token_hash(token))).first()
    if row is None or row.revoked_at is not None or as_utc(row._mapping[expires_column]) <= now:
        return None
    return token_record(row)


def accept_assertion_once(connection: Connection, client_id: str, jti: str, expires_at: datetime, now: datetime) -> bool:
    """Record a client assertion's jti; False when the client used it before (a replay). Forgets expired ones."""
    connection.execute(delete(oauth_assertion).where(oauth_assertion.c.expires_at < now))
    try:
        with connection.begin_nested():
            connection.execute(insert(oauth_assertion).values(client_id=client_id, jti=jti, expires_at=expires_at))
    except IntegrityError:
        return False
    return True



@dataclass(frozen=True)
class AuthorizationCode:
    """What the user approved for an app, until the app exchanges the code for a token."""

    client_id: str
    redirect_uri: str
    scope: str
    username: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: datetime
    expires_at: datetime
    patient: str | None = None  # an EHR launch's context
    encounter: str | None = None


def save_code(connection: Connection, code: str, approved: AuthorizationCode) -> None:
    connection.execute(insert(oauth_code).values(code_hash=token_hash(code), **approved.__dict__))


def take_code(connection: Connection, code: str, client_id: str, now: datetime) -> AuthorizationCode | None:
    """The live code issued to `client_id`, deleted as it is taken so that it is used once; None otherwise."""
    connection.execute(delete(oauth_code).where(oauth_code.c.expires_at < now))
    row = connection.execute(
        delete(oauth_code).where(oauth_code.c.code_hash == token_hash(code), oauth_code.c.client_id == client_id)
        .returning(*(oauth_code.c[name] for name in AuthorizationCode.__dataclass_fields__))
    ).first()
    if row is None:
        return None
    return AuthorizationCode(**{**row._asdict(), "auth_time": as_utc(row.auth_time), "expires_at": as_utc(row.expires_at)})


@dataclass(frozen=True)
class Launch:
    """An EHR launch's context: the patient (and encounter) open in the EHR, for one user and one app."""

    patient: str
    encounter: str | None
    username: str
    client_id: str
    expires_at: datetime


def save_launch(connection: Connection, launch: str, context: Launch) -> None:
    connection.execute(insert(oauth_launch).values(launch_hash=token_hash(launch), **context.__dict__))


def live_launch(connection: Connection, launch: str, now: datetime) -> Launch | None:
    """The context of a launch value not yet expired (an app may need several tries to complete its launch)."""
    row = connection.execute(select(oauth_launch).where(oauth_launch.c.launch_hash == token_hash(launch))).first()
    if row is None or as_utc(row.expires_at) <= now:
        return None
    return Launch(row.patient, row.encounter, row.username, row.client_id, as_utc(row.expires_at))
