"""The R4 element table: type, summary flag, cardinality and required codes of every element we serve.

The table is data (fhir/elements.json, extracted from the R4 definitions by fhir/extract.py).
Its keys are *nodes*: a resource or datatype name (`Observation`, `HumanName`) or the
path of a backbone element inside one (`Observation.component`). A node maps each
child's JSON name (choices expanded: `valueQuantity`) to an Element, whose `node`
says where that child's own children are listed; so walking a resource costs one
dict lookup per key.
"""
import json
from dataclasses import dataclass
from functools import cache

from app.config import CONFORMANCE_DIR

RESOURCE = "Resource"  # contained and Bundle entry resources: their children are those of their resourceType
NESTED_TYPES = ("BackboneElement", "Element")  # children listed under the element's own path
PRIMITIVE_EXTENSIONS = "Element"  # `_birthDate` holds the id and extensions of birthDate


@dataclass(frozen=True)
class CodeSet:
    """The expansion of a required value set."""

    url: str
    codes: tuple[str, ...]  # in definition order, to tell a client what it may send
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class Element:
    node: str | None = None  # where this element's children are listed; None for primitives
    nested: bool = False  # a backbone element, whose children belong to its type rather than to a shared datatype
    summary: bool = False
    min: int = 0
    base: str = ""  # a choice element's name without its type: valueQuantity -> value
    codes: CodeSet | None = None  # the codes a required binding allows
    type: str = ""  # the FHIR type code: dateTime, Quantity, Age, BackboneElement, Resource...

    @property
    def mandatory(self) -> bool:
        return self.min >= 1


UNKNOWN = Element()


@cache
def element_table() -> dict[str, dict[str, Element]]:
    """Node -> JSON name -> Element, for every served resource type and every complex datatype."""
    document = json.loads((CONFORMANCE_DIR / "elements.json").read_text())
    code_sets = {url: CodeSet(url, tuple(codes), frozenset(codes)) for url, codes in document["valueSets"].items()}
    types = document["types"]
    table = {}
    for type_name, entries in types.items():
        for path, entry in entries.items():
            parent, _, name = path.rpartition(".")
            node = f"{type_name}.{parent}" if parent else type_name
            table.setdefault(node, {})[name] = table_element(type_name, path, entry, code_sets, types)
    return table


def table_element(type_name: str, path: str, entry: dict, code_sets: dict[str, CodeSet], types: dict) -> Element:
    nested = "r" in entry or entry["t"] in NESTED_TYPES
    if nested:
        node = f"{type_name}.{entry.get('r', path)}"
    else:
        node = entry["t"] if entry["t"] == RESOURCE or entry["t"] in types else None
    name = path.rpartition(".")[2]
    type_code = entry.get("t") or types[type_name][entry["r"]]["t"]  # a contentReference has the type of the element it names
    return Element(node, nested, bool(entry.get("s")), entry.get("n", 0), entry.get("b", name), code_sets.get(entry.get("v")), type_code)


def elements_of(node: str) -> dict[str, Element]:
    """The children of a type or backbone element by JSON name; empty for a node we do not know."""
    return element_table().get(node, {})


def element_of(node: str, name: str) -> Element:
    """The child `name` of `node`, or UNKNOWN (no flags) if R4 defines no such element."""
    return elements_of(node).get(name, UNKNOWN)


@cache
def binding_table() -> dict[str, dict[str, Element]]:
    """The element table cut down to the elements a required-binding check must visit.

    It keeps the nodes that hold a required-bound code somewhere below them, and in
    each only the elements that lead there, plus `_name` keys of primitives (their
    extensions may hold, say, an Identifier). A check walks nothing else.
    """
    table = element_table()
    holding = nodes_holding_codes(table)
    return {node: elements_to_check(table[node], holding) for node in holding}


def nodes_holding_codes(table: dict[str, dict[str, Element]]) -> set[str]:
    holding: set[str] = set()
    grown = True
    while grown:  # grow to a fixpoint: types refer to each other (Identifier.assigner is a Reference, which has an identifier)
        found = {node for node, elements in table.items() if node not in holding and any(leads_to_codes(e, holding) for e in elements.values())}
        holding |= found
        grown = bool(found)
    return holding


def leads_to_codes(element: Element, holding: set[str]) -> bool:
    return element.codes is not None or element.node == RESOURCE or element.node in holding


def elements_to_check(elements: dict[str, Element], holding: set[str]) -> dict[str, Element]:
    checked = {name: element for name, element in elements.items() if leads_to_codes(element, holding)}
    extensions = Element(PRIMITIVE_EXTENSIONS)
    checked.update({f"_{name}": extensions for name, element in elements.items() if element.node is None})
    return checked
