"""Upserts by business key: a fresh local reference, conditional-update criteria, and what an update keeps."""
from urllib.parse import quote
from uuid import uuid4

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.fields import SegmentView

SEARCH_SPECIAL = str.maketrans({"\\": "\\\\", ",": "\\,", "$": "\\$", "|": "\\|"})  # FHIR search escaping


def upsert_by_identifier(body: dict, key: dict, keep: tuple[str, ...] = (), combine=None) -> Upsert:
    """An Upsert of `body` found by its identifier `key` (one of body's identifiers)."""
    return Upsert(f"urn:uuid:{uuid4()}", body["resourceType"], identifier_criteria(key), body, keep, combine, key)


def identifier_criteria(key: dict) -> str:
    """`identifier=system|value`, escaped for FHIR search and URL-encoded as a conditional update's query."""
    value = key["value"].translate(SEARCH_SPECIAL)
    token = f"{key['system'].translate(SEARCH_SPECIAL)}|{value}" if key.get("system") else value
    return "identifier=" + quote(token, safe=":/|")


def composite_key(system: str, *parts: str) -> dict:
    """A business key made of parts where v2 sends no identifier (*ours*): each part percent-encoded, so that a '/'
    in one cannot join two and no search separator (| , $ \\) needs escaping, and the parts joined by '/'."""
    return {"system": system, "value": "/".join(quote(part, safe=":@") for part in parts)}


def unsent_elements(segment: SegmentView | None, sources: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
    """The elements whose every source field was not sent: v2 says an empty field leaves the receiver's value as it is
    (only the null value "" deletes it), so an update keeps them."""
    if segment is None:
        return tuple(sources)
    return tuple(element for element, fields in sources.items() if all(segment.is_unvalued(field) for field in fields))


def keeping_unmapped(stored: dict, body: dict) -> dict:
    """An Upsert.combine: what the mapping does not write stays as stored: other elements, other identifiers
    (after the mapped ones) and meta (tags, profiles; the mapping's meta.source replaces the stored one)."""
    identifiers = body.get("identifier", [])
    kept_identifiers = [found for found in stored.get("identifier", []) if found not in identifiers]
    combined = {**stored, **body}
    if meta := {**stored.get("meta", {}), **body.get("meta", {})}:
        combined["meta"] = meta
    if identifiers or kept_identifiers:
        combined["identifier"] = identifiers + kept_identifiers
    return combined


def enriching(mapped: frozenset[str], extension_urls: frozenset[str] = frozenset(), replaced: frozenset[str] = frozenset()):
    """The Upsert.combine of resources the feed keeps up to date (people, their allergies, diagnoses, visits): a later
    message never erases what it does not carry. Elements the mapping never writes (not in `mapped`) and extensions
    it does not write now (URLs not in `extension_urls`) stay as stored, set over REST say; identifiers the message
    does not name stay, after its own; a name, address or telecom that says less than a stored one and nothing else
    (`Doe^Jane` after `Doe^Jane^Marie`) keeps the stored one, unless the message deletes a part of it with the null
    value "" (the element is in `replaced`). A field sent as "" is not in the body, and goes."""

    def combine(stored: dict, body: dict) -> dict:
        combined = {**{name: value for name, value in stored.items() if name not in mapped and name != "extension"}, **body}
        if meta := {**stored.get("meta", {}), **body.get("meta", {})}:
            combined["meta"] = meta
        written = extension_urls | {found.get("url") for found in body.get("extension", [])}
        extensions = body.get("extension", []) + [found for found in stored.get("extension", []) if found.get("url") not in written]
        named = {(found.get("system"), found.get("value")) for found in body.get("identifier", [])}
        identifiers = body.get("identifier", []) + [found for found in stored.get("identifier", []) if (found.get("system"), found.get("value")) not in named]
        for name, values in (("extension", extensions), ("identifier", identifiers)):
            combined.pop(name, None)
            if values:
                combined[name] = values
        for name in ("name", "address", "telecom"):
            if name in body and name in stored and name not in replaced:
                combined[name] = [next((old for old in stored[name] if covers(old, new)), new) for new in body[name]]
        return combined

    return combine


def covers(stored, new) -> bool:
    """True when `new` says nothing `stored` does not: every key of an object, a list as a prefix, a value as equal."""
    if isinstance(new, dict):
        return isinstance(stored, dict) and all(key in stored and covers(stored[key], value) for key, value in new.items())
    if isinstance(new, list):
        return isinstance(stored, list) and len(new) <= len(stored) and all(covers(old, value) for old, value in zip(stored, new))
    return stored == new


def reference(upsert: Upsert) -> dict:
    return {"reference": upsert.local_ref}
