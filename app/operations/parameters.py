"""Operation inputs sent as a Parameters resource (POST), read as the (name, value) pairs a GET would carry."""
from app.errors import BadRequest
from app.model.numbers import whole_number

PARAMETERS_ERROR = "The body must be a Parameters resource: {\"resourceType\": \"Parameters\", \"parameter\": [...]}."


def is_parameters(body) -> bool:
    return isinstance(body, dict) and body.get("resourceType") == "Parameters"


def parameter_entries(body) -> list[dict]:
    """The Parameters' `parameter` list, after checking the body is a Parameters resource."""
    entries = body.get("parameter", []) if is_parameters(body) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in entries):
        raise BadRequest(PARAMETERS_ERROR)
    return entries


def parameter_pairs(body) -> list[tuple[str, str]]:
    """Each parameter but a resource as (name, text), as it would appear in a query string.

    >>> parameter_pairs({"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 5}]})
    [('_count', '5')]
    """
    return [(entry["name"], parameter_text(entry)) for entry in parameter_entries(body) if "resource" not in entry]


def body_inputs(body, takes_resource: bool = False) -> tuple[list[tuple[str, str]], object]:
    """The (name, text) pairs and the `resource` parameter of a POSTed Parameters body; an operation that
    `takes_resource` ($validate) may also be sent the resource itself. No body: no inputs."""
    if body is None:
        return [], None
    if is_parameters(body):
        return parameter_pairs(body), parameter_resource(body, "resource")
    if takes_resource:
        return [], body
    raise BadRequest(PARAMETERS_ERROR)


def parameter_resource(body, name: str) -> dict | None:
    """The resource carried by the parameter called `name`, or None."""
    return next((entry["resource"] for entry in parameter_entries(body) if entry["name"] == name and "resource" in entry), None)


def parameter_text(entry: dict) -> str:
    """The value as a URL carries it: a primitive as text, a Coding as system|code, a Period as start/end,
    a Reference as its reference."""
    values = [(key, value) for key, value in entry.items() if key.startswith("value")]
    key, value = values[0] if len(values) == 1 else (None, None)
    if key in COMPLEX_TEXTS and isinstance(value, dict):
        return COMPLEX_TEXTS[key](entry["name"], value)
    if key is None or isinstance(value, (dict, list)):
        raise BadRequest(
            f"Parameter '{entry['name']}' must carry one value[x]: a primitive (valueString, valueCode, valueInteger...), "
            "valueCoding, valuePeriod or valueReference."
        )
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def coding_text(name: str, coding: dict) -> str:
    if not isinstance(coding.get("code"), str):
        raise BadRequest(f"Parameter '{name}': valueCoding needs a code.")
    return f"{coding.get('system') or ''}|{coding['code']}"


def period_text(_name: str, period: dict) -> str:
    return f"{period.get('start') or ''}/{period.get('end') or ''}"


def reference_text(name: str, reference: dict) -> str:
    if not isinstance(reference.get("reference"), str):
        raise BadRequest(f"Parameter '{name}': valueReference needs a reference, e.g. Patient/123.")
    return reference["reference"]


COMPLEX_TEXTS = {"valueCoding": coding_text, "valuePeriod": period_text, "valueReference": reference_text}


def check_known_parameters(pairs: list[tuple[str, str]], allowed: frozenset[str], operation: str, lenient: bool) -> None:
    """BadRequest naming the parameters `operation` does not take, unless the client asked for lenient handling."""
    unknown = sorted({name for name, _ in pairs} - allowed)
    if unknown and not lenient:
        raise BadRequest(f"{operation} does not take {', '.join(unknown)}; it takes {', '.join(sorted(allowed))}.")


def positive_integer(name: str, text: str, maximum: int = 2**31 - 1) -> int:
    """A positive whole number; one above `maximum` counts as `maximum`."""
    number = whole_number(text, maximum)
    if number is None or number < 1:
        raise BadRequest(f"{name}={text} is not a positive whole number.")
    return number


def boolean(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise BadRequest(f"{name}={text} is not true or false.")
    return text == "true"
