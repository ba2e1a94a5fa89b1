"""Table definitions. The database schema itself comes only from the Alembic migrations."""
from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Body = JSON().with_variant(JSONB(), "postgresql")
Sequence = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(64), primary_key=True),
    Column("res_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("body", Body, nullable=True),
)

resource_history = Table(
    "resource_history",
    metadata,
    Column("seq", Sequence, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=True), nullable=False),
    Column("superseded_at", DateTime(timezone=True), nullable=True),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False),
    Column("body", Body, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_resource_history_version"),
    Index("ix_resource_history_type_seq", "res_type", "seq"),
    Index("ix_resource_history_last_updated", "last_updated"),
)
