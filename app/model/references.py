"""Rewriting the references of a resource, e.g. Bundle-local urn:uuid fullUrls to Type/id, and finding its local ones."""
import re

from app.model.registry import is_served
from app.model.validation import MAX_DEPTH

# A relative literal reference (R4 references.html#literal): Type/id, optionally /_history/version.
LOCAL_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?")


def rewrite_references(value, targets: dict[str, str], base: str | None = None, depth: int = 0):
    """A copy of `value` whose Reference.reference strings found in `targets` become their targets.

    With `base`, absolute references to this server (`{base}/Type/id`) become relative. Elements nested deeper than
    validation allows are left as they are: validation refuses them, and they must not exhaust the stack first.
    """
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {key: rewritten_item(key, item, targets, base, depth) for key, item in value.items()}
    if isinstance(value, list):
        return [rewrite_references(item, targets, base, depth + 1) for item in value]
    return value


def references_in(value):
    """The Reference.reference strings anywhere in `value` (not below the depth validation allows, as above)."""
    return (reference for _, reference in reference_elements(value))


def reference_elements(value, path: str = "", depth: int = 0):
    """(path, reference) for each Reference.reference string in `value`, the path as FHIRPath without indexes
    (`Observation.subject` when `value` is an Observation)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        path = path or value.get("resourceType") or ""
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield path, item
            else:
                yield from reference_elements(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from reference_elements(item, path, depth + 1)


def local_references(body: dict):
    """(path, (type, id)) for each reference of `body` to a resource of a type served here."""
    for path, reference in reference_elements(body):
        local = LOCAL_REFERENCE.fullmatch(reference)
        if local and is_served(local[1]):
            yield path, (local[1], local[2])


def local_targets(body: dict) -> frozenset[tuple[str, str]]:
    """The (type, id) that `body`'s local references name."""
    return frozenset(target for _, target in local_references(body))


def rewritten_item(key: str, item, targets: dict[str, str], base: str | None, depth: int):
    if key == "reference" and isinstance(item, str):
        return rewritten_reference(item, targets, base)
    return rewrite_references(item, targets, base, depth + 1)


def rewritten_reference(reference: str, targets: dict[str, str], base: str | None) -> str:
    if reference in targets:
        return targets[reference]
    if base and reference.startswith(base + "/"):
        return reference.removeprefix(base + "/")
    return reference
