"""The authorization server's own signing keys: made on first use, rotated, and published as a JWK Set.

The newest key signs (id_tokens today). A new key is made once the newest is ROTATE_AFTER old; a key stays published
for PUBLISHED_FOR after it was made, so that what it signed can still be checked after the next key took over. Two
workers that rotate at the same moment each make a key; both are published, and the newer signs.
"""
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import Connection, insert, select

from app.model.instants import as_utc
from app.security.tables import signing_key

ALGORITHM = "RS256"  # what OpenID Connect clients must accept for id_tokens
KEY_BITS = 2048
ROTATE_AFTER = timedelta(days=90)
PUBLISHED_FOR = 2 * ROTATE_AFTER


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: RSAKey
    created_at: datetime


def signing_key_for(connection: Connection, now: datetime) -> SigningKey:
    """The key to sign with now: the newest, or a new one when there is none or it is due for rotation."""
    newest = next(iter(published_keys(connection, now)), None)
    if newest is not None and now - newest.created_at < ROTATE_AFTER:
        return newest
    return new_signing_key(connection, now)


def new_signing_key(connection: Connection, now: datetime) -> SigningKey:
    kid = secrets.token_urlsafe(12)
    key = RSAKey.generate_key(KEY_BITS, parameters={"kid": kid, "alg": ALGORITHM, "use": "sig"})
    connection.execute(insert(signing_key).values(kid=kid, private_jwk=orjson.dumps(key.as_dict(private=True)).decode(), created_at=now))
    return SigningKey(kid, key, now)


def published_keys(connection: Connection, now: datetime) -> list[SigningKey]:
    """The keys made within PUBLISHED_FOR, newest first."""
    rows = connection.execute(
        select(signing_key).where(signing_key.c.created_at > now - PUBLISHED_FOR).order_by(signing_key.c.created_at.desc(), signing_key.c.kid)
    )
    return [SigningKey(row.kid, RSAKey.import_key(orjson.loads(row.private_jwk)), as_utc(row.created_at)) for row in rows]


def public_key_set(connection: Connection, now: datetime) -> dict:
    """The JWK Set published at the jwks_uri: the public halves of the published keys, the one due to sign included
    (made now if there is none, or rotated if the newest is old)."""
    signing_key_for(connection, now)
    return KeySet([key.key for key in published_keys(connection, now)]).as_dict(private=False)
