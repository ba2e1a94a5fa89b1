"""Protection: what the store asks of field-level protection on its write and read paths, for one engine.

The store seals a version's body after extracting its index rows (sealed), opens bodies as it reads rows (opened),
makes blind rows for the parameters that read protected elements (blind_rows), and looks searches of those up under
every index key (index_keys). Its key ring is read from the database when first needed (prepare_protection makes a
database's first keys when a process starts), and again every RING_REFRESH_SECONDS, so that a key promoted by `ehr keys promote` in another
process is used within that time; a ciphertext naming a key the ring lacks makes it look again at once.
"""
import logging
import os
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, Engine

from app.config import ProtectionSettings
from app.errors import KeyUnavailableError, ProtectedValueUnreadable
from app.model.instants import utc_now
from app.protection.blind import blind_rows
from app.protection.fields import (
    SEALED, ValueUnreadable, blob_as_text, blob_key_id, holds_resources, opened_blob, opened_body, sealed_as_configured, sealed_blob, sealed_body,
    sealed_key_ids, text_as_blob,
)
from app.protection.keyfile import KeyEncryptionKey, key_from_text, read_key_file
from app.protection.keys import KeyRing, KeyUnavailable, ensure_primary_keys, has_key_table, load_key_ring, stored_key_ids
from app.protection.paths import ProtectedPaths, protected_paths
from app.search.index import IndexedParameter

RING_REFRESH_SECONDS = 10
PROTECTION = "ehr_protection"  # the engine's execution option that holds its Protection
log = logging.getLogger(__name__)


class SealsText:
    """Text kept beside resources (an HL7 ACK or error that may quote a message's values), sealed as bytes are by
    sealed_blob, in base64 to fit a text column."""

    def sealed_text(self, text: str | None, context: str) -> str | None:
        return None if text is None else blob_as_text(self.sealed_blob(text.encode(), context))

    def opened_text(self, text: str | None, context: str) -> str | None:
        return None if text is None else self.opened_blob(text_as_blob(text), context).decode()


class Unprotected(SealsText):
    """No key configured: nothing is sealed or blind. A body sealed by a server that had a key does not open."""

    def sealed(self, type_name: str, resource_id: str, body: dict) -> dict:
        return body

    def protects(self, type_name: str, code: str) -> bool:
        return False

    def opened(self, type_name: str, resource_id: str, body: dict) -> dict:
        if SEALED in body:
            raise ProtectedValueUnreadable(f"{type_name}/{resource_id} holds protected values, and this server has no key "
                                           "(EHR_KEY_FILE) to decrypt them.")
        return body

    def sealed_blob(self, data: bytes, context: str) -> bytes:
        return data

    def sealed_key_ids(self, type_name: str, resource_id: str, body: dict) -> set[str]:
        return set()

    def opened_blob(self, data: bytes, context: str) -> bytes:
        if blob_key_id(data) is not None:
            raise ProtectedValueUnreadable(f"{context} is encrypted, and this server has no key (EHR_KEY_FILE) to decrypt it.")
        return data


UNPROTECTED = Unprotected()


class Protection(SealsText):
    """`keks`: the key-encryption keys configured, the first wrapping new data keys (the others only unwrap, while a
    key-encryption key is rotated: see `ehr keys rekey`)."""

    def __init__(self, engine: Engine, keks: tuple[KeyEncryptionKey, ...], paths: ProtectedPaths):
        self.engine, self.keks, self.paths = engine, keks, paths
        self.ring_cache: tuple[float, KeyRing] | None = None
        self.ring_lock = threading.Lock()

    def protects(self, type_name: str, code: str) -> bool:
        """Whether the parameter reads a protected element: its rows are blind, and only some searches work."""
        return (type_name, code) in self.paths.parameters

    def sealed(self, type_name: str, resource_id: str, body: dict) -> dict:
        ring = self.ring()
        return sealed_body(body, type_name, resource_id, self.paths.of, ring.primary("value"))

    def opened(self, type_name: str, resource_id: str, body: dict) -> dict:
        """The body with its sealed values decrypted; ProtectedValueUnreadable (and a log line naming the key) when one
        does not decrypt."""
        if SEALED not in body and not self.paths.of(type_name) and not holds_resources(body, type_name):
            return body  # nothing sealed in it, nor inside it
        try:
            return opened_body(body, type_name, resource_id, self.ring(), self.paths.of)
        except ValueUnreadable as error:
            if error.key_id is None or error.key_id in self.ring().keys:
                return self.unreadable(error)
        try:  # a key this process has not seen yet (just added by another)
            return opened_body(body, type_name, resource_id, self.ring(refresh=True), self.paths.of)
        except ValueUnreadable as error:
            return self.unreadable(error)

    def sealed_blob(self, data: bytes, context: str) -> bytes:
        """Bytes kept beside resources (an HL7 message as received), sealed under the primary value key."""
        return sealed_blob(data, context, self.ring().primary("value"))

    def opened_blob(self, data: bytes, context: str) -> bytes:
        try:
            return opened_blob(data, context, self.ring(refresh=blob_key_id(data) not in (None, *self.ring().keys)))
        except ValueUnreadable as error:
            return self.unreadable(error)

    def unreadable(self, error: ValueUnreadable):
        if error.key_id is None:
            log.error("protected value unreadable: %s", error)
        else:
            log.error("protected value unreadable, data key %s needed: %s", error.key_id, error)
        raise ProtectedValueUnreadable(str(error))

    def sealed_as_now(self, type_name: str, resource_id: str, body: dict) -> bool:
        """Whether a stored body is sealed as this protection would seal it now: its paths (and those of the resources
        inside it) those configured, each value under the primary value key; told without decrypting."""
        return (sealed_as_configured(body, type_name, resource_id, self.paths.of)
                and self.sealed_key_ids(type_name, resource_id, body) <= {self.ring().primary("value").id})

    def sealed_key_ids(self, type_name: str, resource_id: str, body: dict) -> set[str]:
        """The value keys of the ciphertexts a stored body holds where it says it sealed values."""
        try:
            return sealed_key_ids(body, type_name, resource_id) if SEALED in body else set()
        except ValueUnreadable as error:
            return self.unreadable(error)

    def blind_code(self, type_name: str, code: str) -> str:
        """The parameter whose blind rows a protected one uses (see ProtectedPaths.blind_codes)."""
        return self.paths.blind_codes.get((type_name, code), code)

    def searched_codes(self, type_name: str, code: str) -> list[tuple[str, bool]]:
        """(parameter, whether only its whole values' rows match) of the blind rows a search by a protected parameter
        looks up: those of the one whose rows it uses, and of the parts that one shares (ProtectedPaths.shared_parts;
        Patient `name`: `name`, `family`, `given`), only their whole values for one that matches whole values."""
        blind_code = self.blind_code(type_name, code)
        whole_only = not self.prefix_searched(type_name, blind_code)
        return [(blind_code, False), *((part_code, whole_only) for part_code in self.paths.shared_parts.get((type_name, blind_code), {}).values())]

    def blind_rows(self, type_name: str, indexed: IndexedParameter, body: dict) -> list[tuple[str, dict]]:
        """The blind rows of a protected parameter; none for one that shares another's."""
        code = indexed.parameter.code
        if self.blind_code(type_name, code) != code:
            return []
        shared_parts = frozenset(self.paths.shared_parts.get((type_name, code), ()))
        return blind_rows(type_name, indexed, body, self.ring().primary("index").key, self.prefix_searched(type_name, code), shared_parts)

    def prefix_searched(self, type_name: str, code: str) -> bool:
        """Whether a protected string parameter's blind rows hold prefixes (not those of an Address: see
        ProtectedPaths.whole_value_codes)."""
        return (type_name, code) not in self.paths.whole_value_codes

    def index_keys(self) -> list[bytes]:
        """Every index key, the primary first: a search finds rows blinded by any of them."""
        return [key.key for key in self.ring().of("index")]

    def ring(self, refresh: bool = False) -> KeyRing:
        """The key ring, read again when `refresh` or when it is RING_REFRESH_SECONDS old: by one thread, while the
        others go on with the ring they have (each would hold a pooled connection while it waited)."""
        cached = self.ring_cache
        if cached is not None and not refresh and time.monotonic() - cached[0] < RING_REFRESH_SECONDS:
            return cached[1]
        if not self.ring_lock.acquire(blocking=cached is None or refresh):
            return cached[1]
        try:
            if self.ring_cache is cached or refresh:
                self.ring_cache = (time.monotonic(), self.loaded_ring())
            return self.ring_cache[1]
        finally:
            self.ring_lock.release()

    def loaded_ring(self) -> KeyRing:
        """The data keys as the database holds them now (read on a connection of its own: a unit's transaction may be
        under way on this thread's)."""
        try:
            with self.engine.connect() as connection:
                ring = load_key_ring(connection, self.keks)
            if ring.unwrappable:
                raise KeyUnavailable(f"data keys {', '.join(sorted(ring.unwrappable))} are wrapped by key-encryption key "
                                     f"{', '.join(sorted(set(ring.unwrappable.values())))}, which EHR_KEY_FILE does not name ({', '.join(kek.id for kek in self.keks)}).")
            ring.primary("value"), ring.primary("index")
        except KeyUnavailable as error:
            raise KeyUnavailableError(str(error)) from None
        return ring


def protection_of(connectable: Connection | Engine):
    """The Protection of an engine, or of a connection's (see open_protection), or UNPROTECTED."""
    return connectable.get_execution_options().get(PROTECTION, UNPROTECTED)


def open_protection(engine: Engine, settings: ProtectionSettings) -> "Protection | Unprotected":
    """The protection of `engine` as `settings` say: KeyFileError, PathError when they are wrong."""
    if not settings.on:
        return UNPROTECTED
    if settings.key_text:
        keks = (key_from_text(settings.key_text, "EHR_KEY"),)
    else:
        keks = tuple(read_key_file(Path(path)) for path in settings.key_file.split(os.pathsep) if path)
    return Protection(engine, keks, protected_paths(settings.paths))


def prepare_protection(engine: Engine) -> None:
    """At the start of a server, a listener or a command: make a database's first data keys when protection is on, and
    raise KeyUnavailableError when they cannot be unwrapped with the configured key-encryption key, or when protection
    is off on a database that has keys (its protected values would not open). Nothing to check before the schema has
    the data_key table (`ehr db upgrade` makes it)."""
    protection = protection_of(engine)
    with engine.connect() as connection, connection.execution_options(ehr_write=True).begin():  # BEGIN IMMEDIATE on SQLite
        if not has_key_table(connection):
            return
        if isinstance(protection, Protection):
            ensure_primary_keys(connection, protection.keks[0], utc_now())
            keys = []
        else:
            keys = stored_key_ids(connection)
    if keys:
        raise KeyUnavailableError(f"the database holds data keys ({', '.join(keys)}) and protected values, but no key-encryption key "
                                  "is configured: set EHR_KEY_FILE (or EHR_KEY).")
    if isinstance(protection, Protection):
        protection.ring(refresh=True)
