"""Resources in FHIR's element order, as R4 lists the elements of each type (resourceType first, json.html).

The order is that of the R4 element table (app/model/elements.py), which lists the
children of each type and backbone element as the definitions do; `_name` (a primitive's
id and extensions) follows `name`, and keys R4 does not define go last, as they came.
"""
from dataclasses import dataclass
from functools import cache

from app.model.elements import PRIMITIVE_EXTENSIONS, RESOURCE, elements_of


class Positions(dict):
    """JSON name -> place among its siblings; a name R4 does not define goes after all of them."""

    def __missing__(self, name: str) -> float:
        return float("inf")


@dataclass(frozen=True, slots=True)
class NodeOrder:
    positions: Positions
    complex_children: dict[str, str]  # JSON name -> node of its children, for the elements that have any


@cache
def node_order(node: str) -> NodeOrder:
    positions, complex_children = Positions(resourceType=-1.0), {}
    for position, (name, element) in enumerate(elements_of(node).items()):
        positions[name] = position
        if element.node is None:
            positions[f"_{name}"], complex_children[f"_{name}"] = position + 0.5, PRIMITIVE_EXTENSIONS
        else:
            complex_children[name] = element.node
    return NodeOrder(positions, complex_children)


def in_element_order(resource: dict) -> dict:
    """`resource` with its elements, and theirs, in the order R4 defines; the values themselves are untouched."""
    return ordered(resource, resource["resourceType"])


def ordered(value: dict, node: str) -> dict:
    order = node_order(node)
    children = order.complex_children
    return {
        key: ordered_value(value[key], children[key]) if key in children else value[key]
        for key in sorted(value, key=order.positions.__getitem__)
    }


def ordered_value(value, node: str):
    """A complex element's value in order: each item of an array; a resource by its own type."""
    if isinstance(value, list):
        return [ordered_value(item, node) for item in value]
    if not isinstance(value, dict):
        return value
    return ordered(value, value.get("resourceType", RESOURCE) if node == RESOURCE else node)
