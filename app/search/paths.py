"""FHIRPath evaluation of search parameter expressions, run at write time to extract index values.

The official R4 expressions use a small part of FHIRPath: paths over objects and
arrays, choice elements (`Observation.value`), `as T` / `as(T)` / `ofType(T)`, `|`,
`where(resolve() is T)`, `where(field = 'literal')`, `exists()`, `!=` and `and`.
Those are parsed here and compiled to closures over the resource JSON, typed by the
element table as they walk it. Any other shape is handed to fhirpathpy, which knows
all of FHIRPath but is about ten times slower.

>>> [node.type for node in compile_expression("Observation", "Observation.effective")(
...     {"resourceType": "Observation", "effectivePeriod": {"start": "2025"}})]
['Period']
"""
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from app.model.elements import RESOURCE, Element, element_of, elements_of
from app.search.parameters import SearchParameter


@dataclass(frozen=True, slots=True)
class Node:
    """A value found in a resource, with its FHIR type code: `Quantity`, `dateTime`, `Age`,
    or the node name of a backbone element (`Observation.component`)."""

    value: object
    type: str


Evaluator = Callable[[list[Node], Node], list[Node]]  # (focus, root resource) -> result


class UnsupportedExpression(Exception):
    """A FHIRPath construct the native compiler does not know; fhirpathpy evaluates it instead."""


TRUE = Node(True, "boolean")
FALSE = Node(False, "boolean")
CONTAINED = "contained"  # contained resources are never indexed: paths do not enter them
SUPERTYPES = {  # FHIRPath `is` and `as` also accept a subtype: an Age is a Quantity, a code is a string
    "Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
    "MoneyQuantity": "Quantity", "SimpleQuantity": "Quantity",
    "code": "string", "id": "string", "markdown": "string",
    "canonical": "uri", "oid": "uri", "url": "uri", "uuid": "uri",
    "positiveInt": "integer", "unsignedInt": "integer",
}
# System type names, which some official expressions use for FHIR primitives: `value.as(DateTime)`.
SYSTEM_TYPES = {"Boolean": "boolean", "String": "string", "Integer": "integer", "Decimal": "decimal",
                "Date": "date", "DateTime": "dateTime", "Time": "time"}
TYPE_FUNCTIONS = ("as", "ofType", "is")  # their argument is a type name, not an expression
TOKEN = re.compile(r"\s*('[^'\\]*'|\d+|%?[A-Za-z_]\w*|!=|[.()\[\]|=])\s*")
REFERENCE_TARGET = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


@cache
def compile_expression(type_name: str, expression: str) -> Callable[[dict], list[Node]]:
    """The function that evaluates `expression` on one resource of type `type_name`."""
    evaluate = evaluator_of(expression)

    def evaluate_on(resource: dict) -> list[Node]:
        root = Node(resource, type_name)
        return evaluate([root], root)

    return evaluate_on


def evaluate_components(parameter: SearchParameter, resource: dict) -> list[tuple[list[Node], ...]]:
    """For each node a composite parameter's expression matches, the nodes of each component within it.

    Components are evaluated inside each node so that a code and a value pair up only when
    they come from the same Observation.component. An empty list means the node lacks that part.
    """
    root = Node(resource, resource["resourceType"])
    parts = [evaluator_of(component.expression) for component in parameter.components]
    return [tuple(part([node], root) for part in parts) for node in evaluator_of(parameter.expression)([root], root)]


@cache
def evaluator_of(expression: str) -> Evaluator:
    try:
        return native_evaluator(expression)
    except UnsupportedExpression:
        return fhirpathpy_evaluator(expression)


def native_evaluator(expression: str) -> Evaluator:
    """The expression compiled to closures; UnsupportedExpression if it leaves the subset we compile."""
    return compiled(Parser(expression).whole())


# Parsing: expression text -> a tree of tuples, ("child", source, name), ("|", left, right)...

def tokens_of(expression: str) -> list[str]:
    tokens, position = [], 0
    while position < len(expression):
        match = TOKEN.match(expression, position)
        if not match:
            raise UnsupportedExpression(f"cannot read {expression[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


class Parser:
    """Recursive descent, loosest operator first: and, = and !=, |, as and is, then invocation chains."""

    def __init__(self, expression: str):
        self.tokens = tokens_of(expression)
        self.position = 0

    def peek(self) -> str:
        return self.tokens[self.position] if self.position < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if not token or expected and token != expected:
            raise UnsupportedExpression(f"expected {expected or 'more'} at {token!r}")
        self.position += 1
        return token

    def whole(self) -> tuple:
        tree = self.conjunction()
        if self.peek():
            raise UnsupportedExpression(f"unexpected {self.peek()!r}")
        return tree

    def conjunction(self) -> tuple:
        tree = self.equality()
        while self.peek() == "and":
            self.take()
            tree = ("and", tree, self.equality())
        return tree

    def equality(self) -> tuple:
        tree = self.union()
        if self.peek() in ("=", "!="):
            tree = (self.take(), tree, self.union())
        return tree

    def union(self) -> tuple:
        tree = self.type_operation()
        while self.peek() == "|":
            self.take()
            tree = ("|", tree, self.type_operation())
        return tree

    def type_operation(self) -> tuple:
        tree = self.chain()
        if self.peek() in ("as", "is"):
            tree = (self.take(), tree, self.type_name())
        return tree

    def chain(self) -> tuple:
        tree = self.term()
        while self.peek() in (".", "["):
            if self.take() == ".":
                tree = self.invocation(tree, self.take())
            else:
                tree = ("index", tree, self.index())
        return tree

    def term(self) -> tuple:
        token = self.take()
        if token == "(":
            tree = self.conjunction()
            self.take(")")
            return tree
        if token.startswith("'"):
            return ("literal", Node(token[1:-1], "string"))
        if token in ("true", "false"):
            return ("literal", Node(token == "true", "boolean"))
        if token == "%resource":
            return ("resource",)
        if token[0].isupper():  # a leading type name filters the focus: the `Observation` of `Observation.code`
            return ("as", ("this",), token)
        return self.invocation(("this",), token)

    def invocation(self, source: tuple, name: str) -> tuple:
        if not name[0].isalpha():
            raise UnsupportedExpression(f"unexpected {name!r}")
        if self.peek() != "(":
            return ("child", source, name)
        self.take("(")
        if name in TYPE_FUNCTIONS:
            arguments = (self.type_name(),)
        else:
            arguments = () if self.peek() == ")" else (self.conjunction(),)
        self.take(")")
        return ("call", source, name, arguments)

    def index(self) -> int:
        token = self.take()
        self.take("]")
        if not token.isdigit():
            raise UnsupportedExpression(f"index {token!r}")
        return int(token)

    def type_name(self) -> str:
        name = self.take()
        while self.peek() == ".":
            self.take()
            name += "." + self.take()
        return fhir_type(name)


def fhir_type(specifier: str) -> str:
    """The FHIR type code a type specifier names: `FHIR.Quantity` -> Quantity, `DateTime` -> dateTime."""
    name = specifier.removeprefix("FHIR.").removeprefix("System.")
    return SYSTEM_TYPES.get(name, name)


# Compiling: tree -> Evaluator.

def compiled(tree: tuple) -> Evaluator:
    match tree:
        case ("this",):
            return lambda focus, root: focus
        case ("resource",):
            return lambda focus, root: [root]
        case ("literal", node):
            return lambda focus, root: [node]
        case ("child", _, _):
            return path_down(*path_of(tree))
        case ("as", source, wanted) | ("call", source, "as" | "ofType", (wanted,)):
            return of_type(compiled(source), wanted)
        case ("is", ("call", source, "resolve", ()), wanted):
            return reference_target_is(compiled(source), wanted)
        case ("call", source, "where", (criterion,)):
            return where(compiled(source), compiled(criterion))
        case ("call", source, "exists", ()):
            return exists(compiled(source))
        case ("call", source, "first", ()):
            return item_at(compiled(source), 0)
        case ("index", source, index):
            return item_at(compiled(source), index)
        case ("|", left, right):
            return union(compiled(left), compiled(right))
        case ("=" | "!=" as operator, left, right):
            return equality(compiled(left), compiled(right), negated=operator == "!=")
        case ("and", left, right):
            return conjunction(compiled(left), compiled(right))
    raise UnsupportedExpression(f"no native form for {tree[0]!r}")


def path_of(tree: tuple) -> tuple[Evaluator, tuple[str, ...]]:
    """The source of a chain of child steps and the names it steps through: `a.b.c` -> (a's focus, (a, b, c))."""
    names = []
    while tree[0] == "child":
        names.insert(0, tree[2])
        tree = tree[1]
    return compiled(tree), tuple(names)


def path_down(source: Evaluator, names: tuple[str, ...]) -> Evaluator:
    """`source.a.b.c`: walks the JSON one name at a time, flattening arrays; a Node is made only for what it finds."""
    def evaluate(focus: list[Node], root: Node) -> list[Node]:
        level = [(node.value, node.type) for node in source(focus, root)]
        for name in names:
            level = children_named(level, name)
        return [Node(value, type_code) for value, type_code in level]

    return evaluate


def children_named(level: list[tuple], name: str) -> list[tuple]:
    found = []
    for value, type_code in level:
        if type(value) is dict:
            candidates = child_elements(type_code, name)
            # a choice has up to 50 candidate keys (Extension.value[x]), of which a resource holds one
            for key in candidates if len(candidates) == 1 else sorted(candidates.keys() & value.keys()):
                item = value.get(key)
                if item is not None:
                    found.extend(typed_items(item, candidates[key]))
    return found


def typed_items(item, type_code: str) -> list[tuple]:
    """An element's value or array of values, each with its type: a resource's is its resourceType."""
    items = item if type(item) is list else (item,)
    if type_code == RESOURCE:
        return [(resource, resource.get("resourceType", RESOURCE)) for resource in items if isinstance(resource, dict)]
    return [(child, type_code) for child in items if child is not None]


@cache
def child_elements(node_type: str, name: str) -> dict[str, str]:
    """The JSON keys holding `name` in a `node_type`, with their types: several for a choice (valueQuantity, valueString...)."""
    return {key: node_type_of(element) for key, element in elements_of(node_type).items() if element.base == name and key != CONTAINED}


def node_type_of(element: Element) -> str:
    """A Node's type for a value of `element`: its node name if it is a backbone element."""
    return element.node if element.nested else element.type


def of_type(source: Evaluator, wanted: str) -> Evaluator:
    """`as T`, `as(T)` and `ofType(T)` alike: each item of T is kept, also from several items,
    which FHIRPath's `as` rejects but the official expressions rely on (`Observation.component.value as Quantity`)."""
    return lambda focus, root: [node for node in source(focus, root) if is_type(node.type, wanted)]


def is_type(type_code: str | None, wanted: str) -> bool:
    while type_code:
        if type_code == wanted:
            return True
        type_code = SUPERTYPES.get(type_code)
    return False


def reference_target_is(source: Evaluator, wanted: str) -> Evaluator:
    """`resolve() is T`, decided from each reference itself: indexing never loads the target."""
    return lambda focus, root: [boolean(is_type(reference_target_type(node.value), wanted)) for node in source(focus, root)]


def reference_target_type(reference) -> str | None:
    """The resource type a Reference points to: the Type of `Type/id` or `.../Type/id[/_history/n]`, else its
    `type` element; None for a contained (`#id`) or `urn:uuid:` target that carries no type."""
    if not isinstance(reference, dict):
        return None
    match = REFERENCE_TARGET.search(reference.get("reference") or "")
    if match:
        return match.group(1)
    declared = reference.get("type")
    return declared.rpartition("/")[2] if isinstance(declared, str) else None


def where(source: Evaluator, criterion: Evaluator) -> Evaluator:
    return lambda focus, root: [node for node in source(focus, root) if truth(criterion([node], root))]


def exists(source: Evaluator) -> Evaluator:
    return lambda focus, root: [boolean(source(focus, root))]


def item_at(source: Evaluator, index: int) -> Evaluator:
    return lambda focus, root: source(focus, root)[index:index + 1]


def union(left: Evaluator, right: Evaluator) -> Evaluator:
    return lambda focus, root: distinct(left(focus, root) + right(focus, root))


def distinct(nodes: list[Node]) -> list[Node]:
    unique = []
    for node in nodes:
        if node not in unique:
            unique.append(node)
    return unique


def equality(left: Evaluator, right: Evaluator, negated: bool) -> Evaluator:
    """`=` and `!=`: empty if either side is empty, else whether the two collections hold the same values in order."""
    def evaluate(focus: list[Node], root: Node) -> list[Node]:
        left_nodes, right_nodes = left(focus, root), right(focus, root)
        if not left_nodes or not right_nodes:
            return []
        return [boolean(same_values(left_nodes, right_nodes) != negated)]

    return evaluate


def same_values(left: list[Node], right: list[Node]) -> bool:
    # isinstance(bool) on both sides: Python's True == 1 is not FHIRPath's
    return len(left) == len(right) and all(
        a.value == b.value and isinstance(a.value, bool) == isinstance(b.value, bool) for a, b in zip(left, right)
    )


def conjunction(left: Evaluator, right: Evaluator) -> Evaluator:
    """FHIRPath's three-valued `and`: false wins over empty, empty over true."""
    def evaluate(focus: list[Node], root: Node) -> list[Node]:
        truths = (truth(left(focus, root)), truth(right(focus, root)))
        if False in truths:
            return [FALSE]
        return [TRUE] if truths == (True, True) else []

    return evaluate


def truth(nodes: list[Node]) -> bool | None:
    """A collection as a boolean: None if empty, a boolean's own value, True for any other item."""
    if not nodes:
        return None
    value = nodes[0].value
    return value if isinstance(value, bool) else True


def boolean(value) -> Node:
    return TRUE if value else FALSE


# The fallback: fhirpathpy, its results typed as well as its answers allow.

def fhirpathpy_evaluator(expression: str) -> Evaluator:
    evaluate_raw = fhirpathpy.compile(expression, model=models["r4"], options={"returnRawData": True})

    def evaluate(focus: list[Node], root: Node) -> list[Node]:
        context = {"resource": root.value}
        return [fhirpathpy_node(item) for node in focus for item in evaluate_raw(fhirpathpy_focus(node), context)]

    return evaluate


def fhirpathpy_focus(node: Node):
    """A resource goes in as its JSON (fhirpathpy matches `Patient.` on resourceType); an element with its type."""
    if isinstance(node.value, dict) and "resourceType" in node.value:
        return node.value
    return ResourceNode.create_node(node.value, node.type)


def fhirpathpy_node(item) -> Node:
    if isinstance(item, ResourceNode):
        return Node(item.data, type_at_path(item.path) or shape_type(item.data))
    return Node(item, shape_type(item))


def type_at_path(path: str | None) -> str | None:
    """The type fhirpathpy gives an item as a FHIR type code: it names a type (`dateTime`, `System.String`) or an element path."""
    if not path:
        return None
    if path.startswith("System."):
        return fhir_type(path)
    if "." not in path or elements_of(path):
        return path
    parent, _, name = path.rpartition(".")
    return node_type_of(element_of(parent, name)) or None


def shape_type(value) -> str:
    if isinstance(value, dict):
        return value.get("resourceType", "Element")
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float | Decimal):
        return "decimal"
    return "string"
