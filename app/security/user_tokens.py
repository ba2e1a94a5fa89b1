"""What a user's grant to an app issues: an access token bound to the user and the launch context, with `openid` an
id_token, and with `offline_access` or `online_access` a refresh token. The token endpoint (authorization code and
refresh grants) and `ehr tokens issue` answer with the same response.

A refresh token is used once: refreshing revokes the old access and refresh tokens and issues new ones (rotation), so
a stolen refresh token stops working as soon as either party uses it. `offline_access` refresh tokens last
OFFLINE_REFRESH; `online_access` ones ONLINE_REFRESH, a working day, as this server does not track whether the user
is still signed in elsewhere.
"""
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.common.security import generate_token
from sqlalchemy import Connection

from app.security.accounts import Client, User
from app.security.identity import id_token
from app.security.scopes import ADMIN_SCOPE, Grant, ScopeError, parse_scopes
from app.security.tokens import TokenContext, issue_token

ACCESS_TOKEN_LENGTH = 42  # authlib's own bearer tokens are this long
REFRESH_TOKEN_LENGTH = 48
OFFLINE_REFRESH = timedelta(days=90)
ONLINE_REFRESH = timedelta(hours=12)


class GrantError(ValueError):
    """Nothing can be granted as asked, with why (the token endpoint's invalid_scope)."""


@dataclass(frozen=True)
class UserGrant:
    client: Client
    user: User
    scope: str  # as asked
    expires_in: int
    issuer: str  # this server's FHIR base URL, the id_token's iss
    nonce: str | None = None
    patient: str | None = None  # an EHR launch's context; else a patient user is their own
    encounter: str | None = None
    family_id: int | None = None  # a refresh's: the chain of refresh tokens the new one continues

    def patient_in_context(self) -> str | None:
        return self.patient or self.user.patient_id()


def issue_user_token(connection: Connection, grant: UserGrant, now: datetime) -> dict:
    """Store and return a token response for `grant`: the scopes narrowed to the client's registration."""
    granted = granted_user_scopes(grant.client, grant.user, grant.scope, grant.patient_in_context())
    launched = granted.other & {"launch", "launch/patient"}
    patient = grant.patient_in_context() if "patient" in granted.contexts() or launched else None
    encounter = grant.encounter if "launch" in granted.other else None
    response = {"access_token": generate_token(ACCESS_TOKEN_LENGTH), "token_type": "Bearer", "expires_in": grant.expires_in,
                "scope": " ".join(granted.texts())}
    if patient:
        response["patient"] = patient
    if encounter:
        response["encounter"] = encounter
    if "openid" in granted.other and granted.other & {"fhirUser", "profile"}:
        fhir_user = grant.user.fhir_user if "fhirUser" in granted.other else None
        response["id_token"] = id_token(connection, now, grant.issuer, grant.client.client_id, grant.user.username, fhir_user, grant.nonce)
    refresh_lifetime = OFFLINE_REFRESH if "offline_access" in granted.other else ONLINE_REFRESH if "online_access" in granted.other else None
    if refresh_lifetime:
        response["refresh_token"] = generate_token(REFRESH_TOKEN_LENGTH)
    context = TokenContext(grant.client.client_id, response["scope"], grant.user.username, grant.user.fhir_user, patient, encounter,
                           grant.family_id)
    issue_token(connection, context, response, now, refresh_lifetime)
    return response


def granted_user_scopes(client: Client, user: User, requested: str, patient_in_context: str | None) -> Grant:
    """The scopes asked for that the client is registered for; GrantError when they ask for system/ access, for a
    patient's data with no patient in context, or for nothing the client may have."""
    try:
        wanted = parse_scopes(requested)
    except ScopeError as error:
        raise GrantError(str(error)) from None
    if "system" in wanted.contexts() or ADMIN_SCOPE in wanted.other:
        raise GrantError("system/ scopes and admin are for backend services (client_credentials), not for a user's grant.")
    if "patient" in wanted.contexts() and patient_in_context is None:
        raise GrantError(f"patient/ scopes need a patient in context: an EHR launch's, or the user's own, and the user is "
                         f"{user.fhir_user or 'no patient'}.")
    granted = wanted.within(parse_scopes(client.scope))
    if not granted.resource_scopes and not granted.other:
        raise GrantError(f"None of the scopes asked for is registered for this client ({client.scope}).")
    return granted
