"""Storage: the schema, the database engine and its transactions, and the resource write/read paths.

Feeds declare their own tables on `metadata`, with `Sequence` for keys that are a BIGINT on PostgreSQL and SQLite's rowid."""
from app.store.schema import Sequence, metadata

__all__ = ["Sequence", "metadata"]
