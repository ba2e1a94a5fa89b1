"""Rewriting the references of a resource, e.g. Bundle-local urn:uuid fullUrls to Type/id."""


def rewrite_references(value, targets: dict[str, str], base: str | None = None):
    """A copy of `value` whose Reference.reference strings found in `targets` become their targets.

    With `base`, absolute references to this server (`{base}/Type/id`) become relative.
    """
    if isinstance(value, dict):
        return {key: rewritten_item(key, item, targets, base) for key, item in value.items()}
    if isinstance(value, list):
        return [rewrite_references(item, targets, base) for item in value]
    return value


def rewritten_item(key: str, item, targets: dict[str, str], base: str | None):
    if key == "reference" and isinstance(item, str):
        return rewritten_reference(item, targets, base)
    return rewrite_references(item, targets, base)


def rewritten_reference(reference: str, targets: dict[str, str], base: str | None) -> str:
    if reference in targets:
        return targets[reference]
    if base and reference.startswith(base + "/"):
        return reference.removeprefix(base + "/")
    return reference
