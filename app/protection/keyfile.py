"""Key-encryption keys: the AES-256 key that wraps the database's data keys, kept outside the database, in a key file
(written with mode 0600 by `ehr keys init`) or in the environment (EHR_KEY, the same JSON text).

A data key is wrapped with AES-256-GCM under a fresh nonce, its id and purpose as additional data, so that a wrapped
key copied into another row does not unwrap."""
import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "ehr-key-encryption-key"
VERSION = 1
KEY_BYTES = 32
NONCE_BYTES = 12


class KeyFileError(Exception):
    """The key-encryption key cannot be read: the file is missing, unreadable or not a key file."""


@dataclass(frozen=True)
class KeyEncryptionKey:
    id: str
    key: bytes = field(repr=False)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, data_key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes | None:
        """The data key; None when `wrapped` was not wrapped by this key under `context` (or was altered)."""
        try:
            return AESGCM(self.key).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], context)
        except (InvalidTag, ValueError):
            return None


def new_key_file(path: Path) -> KeyEncryptionKey:
    """A new key written to `path`, which must not exist yet, readable by its owner alone."""
    kek = KeyEncryptionKey(f"kek-{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256))
    text = orjson.dumps({"format": FORMAT, "version": VERSION, "id": kek.id, "key": base64.b64encode(kek.key).decode()})
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists already; a key file is never overwritten (its key may wrap a database's keys).") from None
    except OSError as error:
        raise KeyFileError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(text + b"\n")
    return kek


def read_key_file(path: Path) -> KeyEncryptionKey:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"cannot read the key file {path}: {error.strerror}") from None
    return key_from_text(text, str(path))


def key_from_text(text: str | bytes, origin: str) -> KeyEncryptionKey:
    """The key in a key file's JSON text; `origin` names where it came from in the error."""
    try:
        document = orjson.loads(text)
        valid = isinstance(document, dict) and document.get("format") == FORMAT and document.get("version") == VERSION
        key = base64.b64decode(document["key"], validate=True) if valid else b""
        key_id = document.get("id") if valid else None
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        key, key_id = b"", None
    if len(key) != KEY_BYTES or not isinstance(key_id, str) or not key_id:
        raise KeyFileError(f"{origin} is not a key-encryption key written by `ehr keys init` (format {FORMAT} {VERSION}).")
    return KeyEncryptionKey(key_id, key)
