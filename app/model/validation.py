"""Validate a FHIR JSON resource against R4 and report every invalid element by path."""
import re

from pydantic import ValidationError

from app.errors import BadRequest, InvalidResource, Issue, NotFound
from app.model.elements import RESOURCE, CodeSet, Element, binding_table
from app.model.registry import is_served, model_class
from app.model.shapes import fits_model

SERVER_META = ("versionId", "lastUpdated")
MAX_ID_LENGTH = 64
RESOURCE_ID = re.compile(rf"[A-Za-z0-9\-.]{{1,{MAX_ID_LENGTH}}}")  # R4 datatypes.html#id
MAX_DEPTH = 64
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
DIV_START = re.compile(r"\s*<div[\s>/]")
ACTIVE_CONTENT = re.compile(r"<(script|form|iframe|frame|object|embed|applet|base|link|meta|style)\b|<[^>]*\son[a-z]+\s*=", re.IGNORECASE)


def check_resource_type(body, expected: str | None = None) -> str:
    """Return the body's resourceType after checking it is an object of a served type."""
    if not isinstance(body, dict):
        raise InvalidResource("The body must be a JSON object holding one FHIR resource.")
    type_name = body.get("resourceType")
    if not isinstance(type_name, str):
        raise InvalidResource("The resource has no 'resourceType' string.", [Issue("required", "Missing resourceType", ("resourceType",))])
    if expected and type_name != expected:
        raise InvalidResource(f"The body's resourceType '{type_name}' does not match the URL's type '{expected}'.")
    if not is_served(type_name):
        raise NotFound(f"Resource type '{type_name}' is not a FHIR R4 resource type this server serves.")
    return type_name


def check_resource_id(resource_id: str) -> None:
    """A URL's id must be a FHIR id: no resource can have another, and the R4 read TestScript expects 400 for a
    badly formatted one (databases also refuse some characters, such as NUL, that a URL can carry)."""
    if not RESOURCE_ID.fullmatch(resource_id):
        raise BadRequest(f"'{resource_id}' is not a FHIR resource id: an id is 1 to {MAX_ID_LENGTH} letters, digits, '-' and '.'.")


def validate_resource(body: dict) -> None:
    """Raise InvalidResource naming every element of `body` that breaks the R4 rules."""
    type_name = body["resourceType"]
    issues = list(json_value_issues(body, type_name))
    if len(str(body.get("id", ""))) > MAX_ID_LENGTH:
        issues.append(Issue("value", f"An id is at most {MAX_ID_LENGTH} characters.", (f"{type_name}.id",)))
    if not any(issue.code == "too-costly" for issue in issues):  # the models and the binding walk recurse as deep as the input
        issues.extend(model_issues(type_name, body))
        issues.extend(binding_issues(body, type_name))
    if issues:
        summary = "; ".join(f"{issue.expression[0]}: {issue.diagnostics}" for issue in issues[:10])
        raise InvalidResource(f"The {type_name} resource is not valid FHIR R4: {summary}", issues)


def model_issues(type_name: str, body: dict) -> list[Issue]:
    """The issues the fhir.resources model finds. A body that fits the model's shape (shapes.py) has none, known at a
    seventh of the cost of building the model (13 against 94 us for a vital sign); tests show the two agree on bodies
    edited at every element and on every body the HL7 v2 mapping builds (tests/model/test_shapes.py,
    tests/hl7v2/test_built_validation.py). Any other body builds the model, which names the issues."""
    if fits_model(type_name, body):
        return []
    return built_model_issues(type_name, body)


def built_model_issues(type_name: str, body: dict) -> list[Issue]:
    """The issues that the fhir.resources model of `type_name` names when built from `body`."""
    try:
        model_class(type_name).model_validate(body)
    except ValidationError as error:
        return [pydantic_issue(type_name, detail) for detail in error.errors(include_url=False)]
    except (ValueError, TypeError) as error:  # raised by some model validators outside pydantic's wrapper
        return [Issue("structure", str(error), (type_name,))]
    except AttributeError:  # the models' primitive-extension validator reads a '_name' that is no object (named by json_value_issues)
        return [Issue("structure", "The resource's elements cannot be read as FHIR R4 (see the other issues).", (type_name,))]
    return []


def binding_issues(body: dict, type_name: str) -> list[Issue]:
    """An issue for every code outside its required value set: R4 says such a code SHALL be in the set.

    One pass over the JSON, guided by the element table: keys that cannot lead to a
    required-bound code are skipped by a single dict lookup.
    """
    issues = []
    collect_binding_issues(body, type_name, type_name, binding_table(), issues)
    return issues


def collect_binding_issues(value: dict, node: str, path: str, table: dict[str, dict[str, Element]], issues: list[Issue]) -> None:
    elements = table.get(node)
    if elements is None:
        return
    for key, item in value.items():
        element = elements.get(key)
        if element is None:
            continue
        if isinstance(item, list):
            for index, entry in enumerate(item):
                check_binding(entry, element, f"{path}.{key}[{index}]", table, issues)
        else:
            check_binding(item, element, f"{path}.{key}", table, issues)


def check_binding(item, element: Element, path: str, table: dict[str, dict[str, Element]], issues: list[Issue]) -> None:
    if element.codes is not None:
        if isinstance(item, str) and item not in element.codes.members:
            issues.append(code_issue(item, element.codes, path))
    elif isinstance(item, dict):
        # a contained (or Bundle entry) resource is walked as its own type
        node = item.get("resourceType") if element.node == RESOURCE else element.node
        if isinstance(node, str):
            collect_binding_issues(item, node, path, table, issues)


def code_issue(code: str, code_set: CodeSet, path: str) -> Issue:
    allowed = ", ".join(code_set.codes)
    return Issue("code-invalid", f"'{code}' is not a code of the required value set {code_set.url}; use one of: {allowed}.", (path,))


def pydantic_issue(type_name: str, detail: dict) -> Issue:
    path = element_path(type_name, detail["loc"])
    message = detail["msg"].removeprefix("Value error, ")
    code = "structure" if detail["type"] == "extra_forbidden" else "value"
    if detail["type"] == "extra_forbidden":
        message = "Unknown element: it is not defined for this type in FHIR R4."
    elif detail["type"] == "missing" or "is required" in message:
        code = "required"
    return Issue(code, message, (path,))


def element_path(type_name: str, location) -> str:
    """FHIRPath-style location, e.g. ('name', 0, 'family') -> Patient.name[0].family."""
    path = type_name
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def narrative_issues(div: str, path: str):
    """Narrative rules of R4: the div is an XHTML <div> element (txt-3) with no active content (txt-1)."""
    if not DIV_START.match(div):
        yield Issue("value", "The narrative must be an XHTML <div> element, e.g. <div xmlns=\"http://www.w3.org/1999/xhtml\">...</div>.", (path,))
    elif ACTIVE_CONTENT.search(div):
        yield Issue("value", "The narrative may not hold scripts, forms, frames or event handler attributes.", (path,))


def is_primitive_extension(value) -> bool:
    """R4 json.html#primitive: `_name` is an object, or an array of objects and nulls beside a repeating primitive."""
    return isinstance(value, dict) or (isinstance(value, list) and all(item is None or isinstance(item, dict) for item in value))


def json_value_issues(value, path: str, depth: int = 0):
    """FHIR JSON forbids empty objects, arrays and strings, nulls outside arrays, and control characters."""
    if depth > MAX_DEPTH:
        yield Issue("too-costly", f"Elements are nested more than {MAX_DEPTH} levels deep.", (path,))
    elif isinstance(value, dict):
        if not value:
            yield Issue("structure", "Empty objects are not allowed in FHIR JSON.", (path,))
        for key, item in value.items():
            if item is None:
                yield Issue("structure", "null is not allowed as an element value.", (f"{path}.{key}",))
            elif key == "div" and isinstance(item, str):  # Narrative.div, the only element of that name
                yield from narrative_issues(item, f"{path}.div")
            elif key.startswith("_") and not is_primitive_extension(item):
                yield Issue("structure", f"'{key}' holds the id and extensions of the primitive '{key[1:]}': an object, or for a "
                                         "repeating element an array of objects and nulls.", (f"{path}.{key}",))
            else:
                yield from json_value_issues(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        if not value:
            yield Issue("structure", "Empty arrays are not allowed in FHIR JSON.", (path,))
        for index, item in enumerate(value):
            if item is not None:
                yield from json_value_issues(item, f"{path}[{index}]", depth + 1)
    elif value == "":
        yield Issue("value", "Empty strings are not allowed in FHIR JSON.", (path,))
    elif isinstance(value, str) and CONTROL_CHARACTERS.search(value):
        yield Issue("value", "Strings may not contain control characters other than tab, carriage return and line feed.", (path,))
