"""Protected values in a stored body: each sealed with AES-256-GCM under the primary value key and a fresh nonce, as
`enc:v1:<key id>:<base64 of nonce and ciphertext>`, with additional data binding it to the format, the key, the
resource's type and id and the element's path, so that a ciphertext copied to another resource, field or key fails.

A sealed body lists the paths it sealed under SEALED (a name no FHIR element can have); a body without it was stored
in plaintext (before protection was on, or with nothing to seal).
"""
import binascii
import os
from collections.abc import Callable

import orjson
from cryptography.exceptions import InvalidTag

from app.protection.keys import DataKey, KeyRing, KeyUnavailable
from app.protection.paths import PathError, ProtectedPath, resolved_path

FORMAT = "enc:v1:"
SEALED = "ehr:sealed"
NONCE_BYTES = 12
PathsOf = Callable[[str], tuple[ProtectedPath, ...]]  # a resource type's protected paths


class ValueUnreadable(Exception):
    """A protected value does not decrypt: its key is unavailable, or the ciphertext was altered or moved."""

    def __init__(self, message: str, key_id: str | None):
        super().__init__(message)
        self.key_id = key_id

    def __reduce__(self):
        return ValueUnreadable, (str(self), self.key_id)


def sealed_body(body: dict, type_name: str, resource_id: str, paths_of: PathsOf, key: DataKey) -> dict:
    """`body` with the values at its type's protected paths sealed under `key`, and those of the resources inside it
    (see with_nested_replaced), each that sealed one listing its paths under SEALED; `body` itself when it has none."""
    sealed = with_nested_replaced(body, type_name, resource_id, lambda nested, nested_type, nested_id: sealed_body(nested, nested_type, nested_id, paths_of, key))
    seal = value_sealer(key, type_name, resource_id)
    for path in paths_of(type_name):
        sealed = with_values_replaced(sealed, path.steps, path.text, seal)
    if sealed is body:
        return body
    return {**sealed, SEALED: {"paths": [path.text for path in paths_of(type_name)]}}


def opened_body(body: dict, type_name: str, resource_id: str, ring: KeyRing, paths_of: PathsOf) -> dict:
    """`body` with the values it sealed decrypted (and those of the resources inside it), without SEALED;
    ValueUnreadable when one does not decrypt, when a path it sealed holds a value that is not a ciphertext, or when a
    body without SEALED holds one at its type's paths (those configured now)."""
    if SEALED not in body:
        if sealed_key_ids(body, type_name, resource_id, paths_of(type_name)):
            raise ValueUnreadable(f"{type_name}/{resource_id} holds encrypted values but does not say which: it was altered.", None)
        opened = body
    else:
        opened = {name: value for name, value in body.items() if name != SEALED}
        open_value = value_opener(ring, type_name, resource_id)
        for path in paths_sealed(body, type_name, resource_id):
            opened = with_values_replaced(opened, path.steps, path.text, open_value)
    return with_nested_replaced(opened, type_name, resource_id, lambda nested, nested_type, nested_id: opened_body(nested, nested_type, nested_id, ring, paths_of))


def with_nested_replaced(body: dict, type_name: str, resource_id: str, replace: Callable[[dict, str, str], dict]) -> dict:
    """`body` with each resource inside it (its contained resources; a Bundle's entries) replaced by
    `replace(resource, its type, its place)`: `Observation/o1` holds `Observation/o1/contained/0`, whose values are
    bound to that place (the holder's type and id, and where in it). Unchanged parts are shared."""
    if not holds_resources(body, type_name):
        return body
    changed, place = {}, f"{type_name}/{resource_id}"
    if isinstance(body.get("contained"), list):
        contained = [replace(item, item["resourceType"], f"{place}/contained/{index}") if is_resource(item) else item
                     for index, item in enumerate(body["contained"])]
        if any(new is not old for new, old in zip(contained, body["contained"])):
            changed["contained"] = contained
    if type_name == "Bundle" and isinstance(body.get("entry"), list):
        entries = [{**entry, "resource": replace(entry["resource"], entry["resource"]["resourceType"], f"{place}/entry/{index}")}
                   if isinstance(entry, dict) and is_resource(entry.get("resource")) else entry for index, entry in enumerate(body["entry"])]
        if any(new.get("resource") is not old.get("resource") for new, old in zip(entries, body["entry"]) if isinstance(old, dict)):
            changed["entry"] = entries
    return {**body, **changed} if changed else body


def nested_resources(body: dict, type_name: str, resource_id: str) -> list[tuple[dict, str, str]]:
    """(resource, its type, its place) of each resource inside the body, as with_nested_replaced finds them."""
    found: list[tuple[dict, str, str]] = []
    with_nested_replaced(body, type_name, resource_id, lambda *nested: found.append(nested) or nested[0])
    return found


def holds_resources(body: dict, type_name: str) -> bool:
    """Whether resources may be inside the body: it has contained resources, or it is a Bundle with entries."""
    return "contained" in body or (type_name == "Bundle" and "entry" in body)


def sealed_as_configured(body: dict, type_name: str, resource_id: str, paths_of: PathsOf) -> bool:
    """Whether the body, and each resource inside it, lists under SEALED the paths configured for its type, or holds
    no value at them and lists none: told from the markers, without decrypting anything."""
    configured = paths_of(type_name)
    if SEALED in body:
        as_configured = isinstance(body[SEALED], dict) and body[SEALED].get("paths") == [path.text for path in configured]
    else:
        as_configured = not any(values_at(body, path) for path in configured)
    return as_configured and all(sealed_as_configured(*nested, paths_of) for nested in nested_resources(body, type_name, resource_id))


def values_at(body: dict, path: ProtectedPath) -> list:
    """The values the body holds at `path` (and the primitive extensions beside them)."""
    found: list = []
    with_values_replaced(body, path.steps, path.text, lambda _text, value: found.append(value) or value)
    return found


def sealings(body: dict, type_name: str, resource_id: str) -> dict[str, list]:
    """The paths listed under SEALED by the body and by each resource inside it that has them, by place."""
    found = {resource_id: body[SEALED].get("paths")} if isinstance(body.get(SEALED), dict) else {}
    for nested in nested_resources(body, type_name, resource_id):
        found.update(sealings(*nested))
    return found


def is_resource(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def paths_sealed(body: dict, type_name: str, resource_id: str) -> list[ProtectedPath]:
    """The paths a sealed body lists; ValueUnreadable when its list is not one this server writes."""
    sealing = body[SEALED]
    try:
        return [resolved_path(f"{type_name}.{text}") for text in sealing["paths"]]
    except (PathError, TypeError, KeyError) as error:
        raise ValueUnreadable(f"{type_name}/{resource_id} does not say which of its values are encrypted in a form this server "
                              f"writes ({error}): it was altered.", None) from None


def sealed_key_ids(body: dict, type_name: str, resource_id: str, paths: tuple[ProtectedPath, ...] | None = None) -> set[str]:
    """The value keys whose ciphertexts the body holds at the paths it sealed (or at `paths`), and those of the
    resources inside it at the paths each sealed."""
    found = {
        value[len(FORMAT):].partition(":")[0]
        for path in (paths if paths is not None else paths_sealed(body, type_name, resource_id))
        for value in values_at(body, path) if isinstance(value, str) and value.startswith(FORMAT)
    }
    for nested in nested_resources(body, type_name, resource_id):
        found.update(sealed_key_ids(*nested) if SEALED in nested[0] else ())
    return found


def with_values_replaced(node, steps: tuple[tuple[str, ...], ...], text: str, replace: Callable[[str, object], object]):
    """`node` with each value at `steps` (and the primitive extensions beside the last step's) replaced by
    `replace(path text, value)`; lists along the way are walked item by item. Unchanged parts are shared."""
    if isinstance(node, list):
        return [with_values_replaced(item, steps, text, replace) for item in node]
    if not isinstance(node, dict):
        return node
    keys, rest = steps[0], steps[1:]
    changed = {}
    for key in keys:
        if key in node:
            changed[key] = replace(text, node[key]) if not rest else with_values_replaced(node[key], rest, text, replace)
        if not rest and f"_{key}" in node:
            changed[f"_{key}"] = replace(f"{text}._", node[f"_{key}"])
    return {**node, **changed} if changed else node


def additional_data(key_id: str, type_name: str, resource_id: str, path: str) -> bytes:
    return f"{FORMAT}{key_id}|{type_name}|{resource_id}|{path}".encode()


def value_sealer(key: DataKey, type_name: str, resource_id: str) -> Callable[[str, object], str]:
    def seal(path: str, value) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = key.cipher.encrypt(nonce, orjson.dumps(value), additional_data(key.id, type_name, resource_id, path))
        return f"{FORMAT}{key.id}:{binascii.b2a_base64(nonce + sealed, newline=False).decode()}"

    return seal


def value_opener(ring: KeyRing, type_name: str, resource_id: str) -> Callable[[str, object], object]:
    def open_value(path: str, value):
        if not isinstance(value, str) or not value.startswith(FORMAT):
            raise ValueUnreadable(f"{type_name}/{resource_id} {path}: the value is not encrypted although the resource says it is: "
                                  "it was altered.", None)
        key_id, _, text = value[len(FORMAT):].partition(":")
        try:
            key = ring.key(key_id)
            raw = binascii.a2b_base64(text)
            return orjson.loads(key.cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], additional_data(key_id, type_name, resource_id, path)))
        except KeyUnavailable as error:
            raise ValueUnreadable(f"{type_name}/{resource_id} {path}: {error}", key_id) from None
        except (InvalidTag, ValueError, orjson.JSONDecodeError):
            raise ValueUnreadable(
                f"{type_name}/{resource_id} {path}: the value sealed with data key {key_id} does not decrypt: it was altered, or "
                "copied from another resource or element.", key_id,
            ) from None

    return open_value


def sealed_blob(data: bytes, context: str, key: DataKey) -> bytes:
    """Bytes stored outside a resource (an HL7 message as received), sealed as `enc:v1:<key id>:` and the nonce and
    ciphertext, with `context` (what the bytes are, and of which row) as additional data."""
    nonce = os.urandom(NONCE_BYTES)
    prefix = f"{FORMAT}{key.id}:".encode()
    return prefix + nonce + key.cipher.encrypt(nonce, data, prefix + context.encode())


def opened_blob(data: bytes, context: str, ring: KeyRing) -> bytes:
    """The bytes of sealed_blob; bytes stored before protection was on as they are; ValueUnreadable when they do not
    decrypt."""
    if not data.startswith(FORMAT.encode()):
        return data
    key_id, _, sealed = data[len(FORMAT):].partition(b":")
    key_id = key_id.decode(errors="replace")
    try:
        key = ring.key(key_id)
        return key.cipher.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], f"{FORMAT}{key_id}:{context}".encode())
    except KeyUnavailable as error:
        raise ValueUnreadable(f"{context}: {error}", key_id) from None
    except (InvalidTag, ValueError):
        raise ValueUnreadable(f"{context}: the bytes sealed with data key {key_id} do not decrypt: they were altered, or copied "
                              "from another row.", key_id) from None


def blob_as_text(data: bytes) -> str:
    """sealed_blob's bytes as text, the nonce and ciphertext in base64 (`enc:v1:<key id>:<base64>`), for a text
    column; bytes stored in the clear as the text they encode."""
    key_id = blob_key_id(data)
    if key_id is None:
        return data.decode()
    start = len(FORMAT) + len(key_id.encode()) + 1
    return data[:start].decode() + binascii.b2a_base64(data[start:], newline=False).decode()


def text_as_blob(text: str) -> bytes:
    """The bytes of blob_as_text's text; a text whose base64 does not read gives bytes that do not open."""
    if not text.startswith(FORMAT):
        return text.encode()
    key_id, _, encoded = text[len(FORMAT):].partition(":")
    try:
        sealed = binascii.a2b_base64(encoded)
    except binascii.Error:
        sealed = b""
    return f"{FORMAT}{key_id}:".encode() + sealed


def sealed_under(value: bytes | str | None, key_id: str) -> bool:
    """Whether a value kept beside resources (sealed_blob's bytes, or blob_as_text's text) is sealed under the key;
    an absent one is (there is nothing to seal)."""
    return value is None or blob_key_id(value.encode() if isinstance(value, str) else value) == key_id


def blob_key_id(data: bytes) -> str | None:
    """The value key that sealed `data`, or None for bytes stored in the clear."""
    return data[len(FORMAT):].partition(b":")[0].decode(errors="replace") if data.startswith(FORMAT.encode()) else None


