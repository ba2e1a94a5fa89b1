"""The security tables, on the store's metadata: the OAuth clients registered with the authorization server, the
users who log in to it, the EHR launches, authorization codes and tokens it issued, the client assertions it accepted, its own
signing keys and session secret. No module outside app/security queries them."""
from sqlalchemy import Column, DateTime, Identity, Index, Integer, String, Table, Text, UniqueConstraint

from app.store import Sequence, metadata

# A SMART app or backend service. auth_method is how it authenticates at the token endpoint: none (a public app,
# PKCE only), client_secret_basic (secret_hash is the SHA-256 of its secret) or private_key_jwt (its public keys
# in jwks, or fetched from jwks_uri).
oauth_client = Table(
    "oauth_client",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("redirect_uris", Text, nullable=False),  # a JSON array
    Column("scope", Text, nullable=False),  # the most the client may be granted, space-separated
    Column("auth_method", String(32), nullable=False),
    Column("secret_hash", String(64)),
    Column("jwks", Text),  # a JSON Web Key Set
    Column("jwks_uri", String(2000)),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A login: a patient or a practitioner (fhir_user names the FHIR resource they are), with an argon2 password hash;
# locked for a while after too many wrong passwords in a row (app/security/accounts.py).
app_user = Table(
    "app_user",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("fhir_user", String(200)),  # Patient/ID or Practitioner/ID
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_sign_ins", Integer, nullable=False, server_default="0"),  # in a row; reset by a good one
    Column("locked_until", DateTime(timezone=True)),
)

# An issued access token (and its refresh token, if any), kept as SHA-256 hashes: a copy of the table grants nothing.
oauth_token = Table(
    "oauth_token",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("access_token_hash", String(64), nullable=False, unique=True),
    Column("refresh_token_hash", String(64), unique=True),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),  # what was granted
    Column("username", String(200)),  # the user who granted it; none for a backend service
    Column("fhir_user", String(200)),
    Column("patient", String(64)),  # the launch context: the patient's id, and the encounter's
    Column("encounter", String(64)),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("refresh_expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("family_id", Sequence),  # the first token of a refresh chain (its own id); none without a refresh token
    Index("ix_oauth_token_client_id", "client_id"),
    Index("ix_oauth_token_family_id", "family_id"),
)

# The jti of each client assertion accepted (SMART Backend Services, RFC 7523): the same one again is a replay. Kept
# until the assertion expires.
oauth_assertion = Table(
    "oauth_assertion",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("jti", String(255), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("client_id", "jti", name="uq_oauth_assertion_client_jti"),
)

# The authorization server's own RSA keys (app/security/keys.py): the newest signs id_tokens, recent ones are published.
signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# An authorization code, until the app exchanges it (once) or it expires: what the user approved, for which app and
# redirect URI, with the PKCE challenge the exchange must answer. Kept as a SHA-256 like the tokens.
oauth_code = Table(
    "oauth_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    Column("scope", Text, nullable=False),  # what the user approved
    Column("username", String(200), nullable=False),
    Column("nonce", String(255)),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(10), nullable=False),
    Column("auth_time", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("patient", String(64)),  # an EHR launch's context
    Column("encounter", String(64)),
)

# An EHR launch: the opaque `launch` value an EHR hands an app it starts, bound to the patient (and encounter) open in
# the EHR, to the user who may use it and to the app. Kept as a SHA-256 like the tokens.
oauth_launch = Table(
    "oauth_launch",
    metadata,
    Column("launch_hash", String(64), primary_key=True),
    Column("patient", String(64), nullable=False),
    Column("encounter", String(64)),
    Column("username", String(200), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

# Random secrets the server makes once and every worker shares: the key of the login session cookie.
server_secret = Table(
    "server_secret",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(128), nullable=False),
)
