"""The security tables, on the store's metadata: the OAuth clients registered with the authorization server and the
users who log in to it. No module outside app/security queries them."""
from sqlalchemy import Column, DateTime, Identity, String, Table, Text

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

# A login: a patient or a practitioner (fhir_user names the FHIR resource they are), with an argon2 password hash.
app_user = Table(
    "app_user",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("username", String(200), nullable=False, unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("fhir_user", String(200)),  # Patient/ID or Practitioner/ID
    Column("created_at", DateTime(timezone=True), nullable=False),
)
