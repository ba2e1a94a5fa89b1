"""OpenID Connect id_tokens for SMART's `openid fhirUser` (and `profile`): who the user is, signed by this server.

The issuer is this server's FHIR base URL, as SMART servers commonly name themselves; `fhirUser` is the absolute URL
of the user's Patient or Practitioner resource; `sub` is the username.
"""
from datetime import datetime, timedelta

from joserfc import jwt
from sqlalchemy import Connection

from app.security.keys import ALGORITHM, signing_key_for

ID_TOKEN_LIFETIME = timedelta(hours=1)


def id_token(connection: Connection, now: datetime, issuer: str, client_id: str, username: str, fhir_user: str | None,
             nonce: str | None = None) -> str:
    """A signed id_token for `username` (whose FHIR identity is `fhir_user`, `Patient/123`), addressed to `client_id`."""
    key = signing_key_for(connection, now)
    claims = {"iss": issuer, "sub": username, "aud": client_id, "iat": int(now.timestamp()),
              "exp": int((now + ID_TOKEN_LIFETIME).timestamp())}
    if fhir_user:
        claims["fhirUser"] = f"{issuer.rstrip('/')}/{fhir_user}"
    if nonce:
        claims["nonce"] = nonce
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": "JWT"}, claims, key.key, algorithms=[ALGORITHM])
