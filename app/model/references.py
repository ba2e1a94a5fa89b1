"""Rewriting the references of a resource, e.g. Bundle-local urn:uuid fullUrls to Type/id."""
from app.model.validation import MAX_DEPTH


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


def references_in(value, depth: int = 0):
    """The Reference.reference strings anywhere in `value` (not below the depth validation allows, as above)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from references_in(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from references_in(item, depth + 1)


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
