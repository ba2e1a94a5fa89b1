"""Search criteria as R4 defines them: a request's `name[:modifier]=value` pairs, with their escapes,
prefixes, modifiers and value syntax, checked against the parameter registry.

app/store/criteria.py compiles them to SQL over the index tables.
"""
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from app.errors import BadRequest
from app.model.instants import date_range
from app.model.registry import is_served
from app.search.index import ROW_PARAMETERS, is_indexed
from app.search.parameters import SearchParameter, parameters_of, shared_parameters

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
PREFIXED_TYPES = frozenset({"date", "number", "quantity"})
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "missing", "of-type"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing", "identifier"},  # plus :[type], checked separately
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}
MAX_CHAIN_DEPTH = 4
# Indexed numbers come from JSON, so they lie within 1e-324 and 1e309; searches with exponents past this
# bound would only overflow Python's decimal arithmetic or PostgreSQL's numeric, never match differently.
MAX_EXPONENT = 1000
UNESCAPED_COMMA = re.compile(r"(?<!\\),")
SEARCH_ESCAPE = re.compile(r"\\([\\,|$])")


@dataclass(frozen=True)
class Query:
    """One `name[:modifier]=value` pair of a request, as sent."""

    name: str
    value: str
    base: str | None = None  # the server's base URL the request came to: a reference under it names a resource here


def split_values(value: str) -> list[str]:
    """`a,b` is a OR b; `\\,` `\\|` `\\$` `\\\\` are a literal comma, bar, dollar and backslash (R4 search.html#escaping)."""
    return [SEARCH_ESCAPE.sub(r"\1", part) for part in UNESCAPED_COMMA.split(value)]


def check_no_nul(query: Query) -> None:
    """No indexed value holds a NUL character, and PostgreSQL refuses it in text, so a value with one is an error."""
    if "\x00" in query.value:
        raise BadRequest(f"The search parameter '{query.name}' has a NUL character (%00) in its value; no value a resource holds can contain one.")


def types_defining_alike(type_names: tuple[str, ...], code: str) -> list[tuple[str, ...]]:
    """`type_names` grouped by their definition of the parameter `code` (one group for _has and common parameters)."""
    groups: dict[tuple | None, list[str]] = {}
    for type_name in type_names:
        definition = parameters_of(type_name).get(code)
        key = (definition.url, definition.targets, definition.components) if definition else None
        groups.setdefault(key, []).append(type_name)
    return [tuple(group) for group in groups.values()]


def parameter_code(query: Query) -> str:
    """`subject` for `subject:Patient.name`, `_has` for `_has:Observation:patient:code`."""
    return query.name.partition(".")[0].partition(":")[0]


def check_shared_parameter(type_names: tuple[str, ...], query: Query) -> None:
    """Across several types only `_has` and the parameters all of them define with the same type may be used."""
    code = parameter_code(query)
    if code != "_has" and code not in shared_parameters(type_names):
        raise BadRequest(
            f"Unknown search parameter '{code}' for a search across several types: only the parameters that every type "
            f"searched defines with the same type can be used ({', '.join(sorted(shared_parameters(type_names)))}, _has); "
            "name fewer types with _type to use more of theirs."
        )


def is_searchable(type_name: str, parameter: SearchParameter) -> bool:
    """Whether a search by this parameter is answered (from the resource row or from index rows)."""
    return parameter.code in ROW_PARAMETERS or is_indexed(type_name, parameter)


def parameter_or_error(type_name: str, code: str) -> SearchParameter:
    parameter = parameters_of(type_name).get(code)
    if parameter is None:
        raise BadRequest(f"Unknown search parameter '{code}' for {type_name}; GET /fhir/metadata lists the parameters each type supports.")
    return parameter


def check_modifier(parameter: SearchParameter, modifier: str) -> None:
    if not modifier:
        return
    if parameter.type == "reference" and modifier in parameter.targets:
        return
    allowed = MODIFIERS.get(parameter.type, set())
    if modifier not in allowed:
        names = ", ".join(sorted(f":{name}" for name in allowed)) or "none"
        raise BadRequest(f"The modifier :{modifier} is not supported on {parameter.type} parameter '{parameter.code}' (supported: {names}).")


def token_hash_parts(code: str, value: str) -> tuple[str, tuple[str | None, ...]]:
    """The token column a plain token value is looked up in, and the parts hashed with the type into it:
    `code` alone by h_code, `system|` by h_sys, `system|code` and `|code` by h_sys_code."""
    if "|" not in value:
        return "h_code", (code, None, value)
    system, _, token_code = value.partition("|")
    if not token_code:
        return "h_sys", (code, system)
    return "h_sys_code", (code, system or None, token_code)


def reference_target(parameter: SearchParameter, modifier: str, value: str) -> tuple[str | None, str | None]:
    """(type, id) for `Type/id` and `id` (with :Type or a single target type); (None, None) for absolute URLs."""
    if "://" in value or value.startswith("urn:"):
        return None, None
    segments = value.rstrip("/").split("/")
    if len(segments) == 4 and segments[2] == "_history":  # a versioned reference matches the resource it names
        segments = segments[:2]
    if len(segments) >= 2:
        return segments[-2], segments[-1]
    if modifier:
        return modifier, value
    return (parameter.targets[0] if len(parameter.targets) == 1 else None), value


def uri_ancestors(value: str) -> list[str]:
    """`http://a/b/c` is below `http://a/b/c`, `http://a/b` and `http://a`."""
    scheme, _, rest = value.partition("://")
    parts = rest.split("/")
    return [f"{scheme}://{'/'.join(parts[:length])}" for length in range(1, len(parts) + 1)] if rest else [value]


def split_prefix(value: str) -> tuple[str, str]:
    if value[:2] in PREFIXES and len(value) > 2 and not value[2].isalpha():
        return value[:2], value[2:]
    return "eq", value


def search_date_range(text: str) -> tuple[datetime, datetime]:
    """A search date's range; a time without a timezone is read as UTC (the server's zone)."""
    if "T" in text and not re.search(r"(Z|[+-]\d\d:\d\d)$", text):
        text += "Z"
    return date_range(text)


def parse_number(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise BadRequest(f"'{text}' is not a number.") from None
    if not number.is_finite():
        raise BadRequest(f"'{text}' is not a finite number.")
    if max(abs(number.adjusted()), abs(number.as_tuple().exponent)) > MAX_EXPONENT:
        raise BadRequest(f"'{text}' is beyond the numbers this server compares: its powers of ten must lie within 1e-{MAX_EXPONENT} and 1e{MAX_EXPONENT}.")
    return number


def chained_parameter_exists(type_name: str, chain: str) -> bool:
    code = chain.split(".")[0].split(":")[0]
    return is_served(type_name) and (code in parameters_of(type_name) or code.startswith("_has"))
