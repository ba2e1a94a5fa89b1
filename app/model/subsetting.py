"""_summary and _elements: return part of a resource, marked SUBSETTED as R4 requires.

Which elements are summary or mandatory (min >= 1) comes from the R4 element table (app/model/elements.py).
"""
from app.errors import BadRequest
from app.model.elements import Element, element_of, elements_of

SUMMARY_MODES = ("true", "text", "data", "count", "false")
ALWAYS_KEPT = ("resourceType", "id", "meta")
SUBSETTED_TAG = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def check_summary_mode(mode: str | None) -> None:
    if mode is not None and mode not in SUMMARY_MODES:
        raise BadRequest(f"_summary={mode} is not one of {', '.join(SUMMARY_MODES)}.")


def subset(body: dict, summary: str | None, elements: str | None) -> dict:
    """The body reduced by _summary (true, text, data, false) or _elements; _summary wins when both are given."""
    check_summary_mode(summary)
    if summary in ("true", "text", "data"):
        return mark_subsetted(summarise(body, summary))
    if summary != "false" and elements:
        return mark_subsetted(keep_elements(body, requested_elements(elements, body["resourceType"])))
    return body


def summarise(body: dict, mode: str) -> dict:
    if mode == "data":
        return {key: value for key, value in body.items() if key != "text"}
    type_name = body["resourceType"]
    if mode == "text":  # text, id, meta and the top-level mandatory elements
        return {key: value for key, value in body.items() if key in (*ALWAYS_KEPT, "text") or element_of(type_name, element_name(key)).mandatory}
    return {key: value for key, value in body.items() if key in ALWAYS_KEPT} | summary_elements(body, type_name)


def summary_elements(value: dict, node: str) -> dict:
    """The summary (isSummary or mandatory) elements of `value`; backbone elements are reduced in turn, datatypes kept whole.

    R4 search.html: a summary SHOULD consist solely of the elements marked isSummary,
    so Observation.component stays but Observation.component.interpretation goes.
    """
    elements = elements_of(node)
    kept = {}
    for key, item in value.items():
        element = elements.get(element_name(key))
        if element is not None and (element.summary or element.mandatory):
            kept[key] = summarised(item, element)
    return kept


def summarised(item, element: Element):
    if not element.nested:
        return item
    if isinstance(item, list):
        return [summary_elements(entry, element.node) for entry in item]
    return summary_elements(item, element.node)


def requested_elements(elements: str, type_name: str) -> set[str]:
    """Top-level element names from `name,Type.name,name.child` (a child selects its whole element)."""
    names = set()
    for item in filter(None, (part.strip() for part in elements.split(","))):
        path = item.split(".")
        names.add(path[1] if path[0] == type_name and len(path) > 1 else path[0])
    return names


def keep_elements(body: dict, names: set[str]) -> dict:
    type_name = body["resourceType"]

    def kept(key: str) -> bool:
        element = element_of(type_name, element_name(key))
        return key in ALWAYS_KEPT or element_name(key) in names or element.base in names or element.mandatory

    return {key: value for key, value in body.items() if kept(key)}


def element_name(json_key: str) -> str:
    """`_birthDate` carries the extensions of `birthDate`; both belong to that element."""
    return json_key[1:] if json_key.startswith("_") else json_key


def mark_subsetted(body: dict) -> dict:
    meta = dict(body.get("meta") or {})
    tags = [tag for tag in meta.get("tag", []) if tag.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED_TAG]
    return {**body, "meta": meta}
