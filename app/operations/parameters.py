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
    """Each primitive parameter as (name, text), as it would appear in a query string.

    >>> parameter_pairs({"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 5}]})
    [('_count', '5')]
    """
    return [(entry["name"], primitive_text(entry)) for entry in parameter_entries(body) if "resource" not in entry]


def parameter_resource(body, name: str) -> dict | None:
    """The resource carried by the parameter called `name`, or None."""
    return next((entry["resource"] for entry in parameter_entries(body) if entry["name"] == name and "resource" in entry), None)


def primitive_text(entry: dict) -> str:
    values = [value for key, value in entry.items() if key.startswith("value")]
    if len(values) != 1 or isinstance(values[0], (dict, list)):
        raise BadRequest(f"Parameter '{entry['name']}' must carry one primitive value[x] (valueString, valueCode, valueInteger...).")
    value = values[0]
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


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
