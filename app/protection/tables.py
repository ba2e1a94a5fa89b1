"""The data keys table, on the store's metadata. No module outside app/protection queries it.

Each row is a data key wrapped by a key-encryption key (app/protection/keyfile.py). `purpose` is `value` (encrypts
protected values) or `index` (derives the blind-index keys). Of each purpose the key promoted last is primary: it
encrypts new values, or blinds new index rows; the others still decrypt, or are still searched, until they are
retired (their row deleted) once nothing uses them."""
from sqlalchemy import Column, DateTime, LargeBinary, String, Table

from app.store import metadata

data_key = Table(
    "data_key",
    metadata,
    Column("id", String(16), primary_key=True),  # named in every ciphertext: enc:v1:<id>:...
    Column("purpose", String(8), nullable=False),
    Column("kek_id", String(64), nullable=False),  # the key-encryption key that wrapped it
    Column("wrapped", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("promoted_at", DateTime(timezone=True)),  # None: added, not promoted yet
    # when the last complete `ehr keys rewrap` that found it primary started: everything stored before then is under it
    Column("covered_at", DateTime(timezone=True)),
)
