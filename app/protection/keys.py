"""The data keys: made, wrapped, promoted and retired in the data_key table, and unwrapped into a KeyRing.

A database with protection on gets its first value key and index key when a process first starts with it. `ehr keys
add` adds a key, `promote` makes it primary for new writes, `rewrap` (app/store/rewrap.py) brings what is stored under
it and records that it did (`covered_at`), and `retire` deletes a key only once that happened (app/protection/commands.py)."""
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, delete, insert, inspect, select, text, update

from app.model.instants import as_utc
from app.protection.keyfile import KeyEncryptionKey
from app.protection.tables import data_key

PURPOSES = ("value", "index")
FIRST_KEYS_LOCK = 0x65687264_6b657973  # "ehrdkeys": the advisory lock of ensure_primary_keys


class KeyUnavailable(Exception):
    """A data key that is needed is not in the database, or cannot be unwrapped with this process's key-encryption key."""


@dataclass(frozen=True)
class DataKey:
    id: str
    purpose: str
    key: bytes = field(repr=False)
    promoted_at: datetime | None
    cipher: AESGCM = field(repr=False, compare=False)


@dataclass(frozen=True)
class KeyRing:
    """The data keys this process can use; `unwrappable`: those of the database it cannot (id -> the KEK they need)."""

    keys: dict[str, DataKey]
    unwrappable: dict[str, str] = field(default_factory=dict)

    def of(self, purpose: str) -> list[DataKey]:
        """The keys of `purpose`, the primary (promoted last) first."""
        return self.by_purpose.get(purpose, [])

    @cached_property
    def by_purpose(self) -> dict[str, list[DataKey]]:
        ordered = sorted(self.keys.values(), key=lambda key: (key.promoted_at is not None, key.promoted_at or datetime.min), reverse=True)
        return {purpose: [key for key in ordered if key.purpose == purpose] for purpose in PURPOSES}

    def primary(self, purpose: str) -> DataKey:
        keys = self.of(purpose)
        if not keys or keys[0].promoted_at is None:
            raise KeyUnavailable(f"no {purpose} key is primary: promote one with `ehr keys promote`.")
        return keys[0]

    def key(self, key_id: str) -> DataKey:
        if key_id in self.keys:
            return self.keys[key_id]
        raise KeyUnavailable(f"data key {key_id} is not in the database (retired, or never made there).")


def wrapping_context(key_id: str, purpose: str) -> bytes:
    return f"ehr-data-key|{key_id}|{purpose}".encode()


def has_key_table(connection: Connection) -> bool:
    """False before the migration that makes it (`ehr db upgrade`)."""
    return inspect(connection).has_table(data_key.name)


def stored_key_ids(connection: Connection) -> list[str]:
    return [row.id for row in connection.execute(select(data_key.c.id).order_by(data_key.c.created_at))]


def load_key_ring(connection: Connection, keks: tuple[KeyEncryptionKey, ...]) -> KeyRing:
    """The data keys, unwrapped by whichever of `keks` wrapped each."""
    keys, unwrappable = {}, {}
    for row in connection.execute(select(data_key)):
        raw = unwrapped(row, keks)
        if raw is None:
            unwrappable[row.id] = row.kek_id
            continue
        promoted = as_utc(row.promoted_at) if row.promoted_at else None
        keys[row.id] = DataKey(row.id, row.purpose, raw, promoted, AESGCM(raw))
    return KeyRing(keys, unwrappable)


def unwrapped(row, keks: tuple[KeyEncryptionKey, ...]) -> bytes | None:
    kek = next((kek for kek in keks if kek.id == row.kek_id), None)
    return kek.unwrap(row.wrapped, wrapping_context(row.id, row.purpose)) if kek else None


def rewrap_data_keys(connection: Connection, keks: tuple[KeyEncryptionKey, ...]) -> list[str]:
    """Wrap every data key that another of `keks` wrapped with the first of them instead (a key-encryption key's
    rotation); KeyUnavailable, changing nothing, when one was wrapped by none of them. The ids of those rewrapped."""
    rows = [row for row in connection.execute(select(data_key).with_for_update()) if row.kek_id != keks[0].id]
    raw_keys = [unwrapped(row, keks) for row in rows]
    lost = [row.id for row, raw in zip(rows, raw_keys) if raw is None]
    if lost:
        raise KeyUnavailable(f"data keys {', '.join(lost)} are wrapped by a key-encryption key that EHR_KEY_FILE does not name.")
    for row, raw in zip(rows, raw_keys):
        wrapped = keks[0].wrap(raw, wrapping_context(row.id, row.purpose))
        connection.execute(update(data_key).where(data_key.c.id == row.id).values(kek_id=keks[0].id, wrapped=wrapped))
    return [row.id for row in rows]


def add_data_key(connection: Connection, kek: KeyEncryptionKey, purpose: str, now: datetime, promote: bool = False) -> str:
    """A new key of `purpose`, wrapped by `kek`: primary at once when `promote`. Returns its id."""
    key_id = secrets.token_hex(4)
    wrapped = kek.wrap(AESGCM.generate_key(bit_length=256), wrapping_context(key_id, purpose))
    connection.execute(insert(data_key).values(
        id=key_id, purpose=purpose, kek_id=kek.id, wrapped=wrapped, created_at=now, promoted_at=now if promote else None,
        covered_at=now if promote else None,
    ))
    return key_id


def ensure_primary_keys(connection: Connection, kek: KeyEncryptionKey, now: datetime) -> None:
    """A primary key of each purpose that has no key at all (a database's first use with protection on). `connection`
    is in a write transaction (on SQLite, BEGIN IMMEDIATE): on PostgreSQL a transaction lock serialises processes
    that start at the same moment, so that one makes the keys and the others find them."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FIRST_KEYS_LOCK})
    present = {row.purpose for row in connection.execute(select(data_key.c.purpose).distinct())}
    for purpose in PURPOSES:
        if purpose not in present:
            add_data_key(connection, kek, purpose, now, promote=True)


def promote_data_key(connection: Connection, key_id: str, now: datetime) -> bool:
    """Make the key primary for its purpose (nothing stored is under it yet); False when there is no such key."""
    return connection.execute(update(data_key).where(data_key.c.id == key_id).values(promoted_at=now, covered_at=None)).rowcount == 1


def mark_covered(connection: Connection, started: datetime) -> None:
    """A rewrap that started at `started` brought everything stored to the keys primary then (and still primary)."""
    primaries = list(primary_key_ids(data_key_rows(connection)))
    connection.execute(update(data_key).where(data_key.c.id.in_(primaries), data_key.c.promoted_at <= started).values(covered_at=started))


def primary_key_ids(rows: list) -> set[str]:
    """The ids of the keys promoted last of each purpose, of rows as data_key_rows lists them (those first)."""
    primaries = {}
    for row in rows:
        if row.promoted_at is not None:
            primaries.setdefault(row.purpose, row.id)
    return set(primaries.values())


def data_key_rows(connection: Connection) -> list:
    order = (data_key.c.purpose, data_key.c.promoted_at.desc().nulls_last(), data_key.c.created_at)
    columns = (data_key.c.id, data_key.c.purpose, data_key.c.kek_id, data_key.c.created_at, data_key.c.promoted_at, data_key.c.covered_at)
    return list(connection.execute(select(*columns).order_by(*order)))


def delete_data_key(connection: Connection, key_id: str) -> None:
    connection.execute(delete(data_key).where(data_key.c.id == key_id))
