"""Blind index rows for the search parameters that read protected elements, and the values searches look them up by.

A blind value is HMAC-SHA256 over a normalized value, under a key derived with HKDF from an index key for one
parameter of one type, so equal values of one parameter are equal, and nothing else can be told from it. Its first
64 bits go in search_token's hash columns, whatever the parameter's type, with the plaintext columns left empty:
- string parameters (name, family, given...): one search_token row per normalized prefix of at least MIN_PREFIX
  characters (a shorter value: the whole of it), h_code the blind prefix; the whole value's row also holds the blind
  exact value in h_sys_code. Default searches match a prefix, :exact the exact value; :contains cannot work. (Hashes
  in a bigint column, not text: PostgreSQL compares them without a collation.) Those that read whole Addresses
  (`address`) keep the whole values' rows alone: their default searches match a whole normalized line or part
  (ProtectedPaths.whole_value_codes says why).
- token parameters (identifier, telecom...): search_token's hashes, blind: code, system|code, system.
- date parameters (birthdate): search_token rows, one blind value per calendar year, month and day that holds the
  date, and one of the date itself: a search matches a date at its precision or any coarser one, and only equality.
Other parameter types reading protected elements have no rows, and cannot be searched.
"""
from datetime import datetime
from functools import lru_cache

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import BadRequest
from app.model.instants import date_range
from app.search.index import IndexedParameter, hash64
from app.search.values import VALUES_BY_PARAMETER_TYPE, fold, identifier_type_tokens, reference_identifier_tokens

MIN_PREFIX = 2
BLIND_TYPES = frozenset({"string", "token", "date"})
# Where each blind parameter type's rows live (dates as tokens: their blind values are hashes), and the modifiers it
# answers (string_lookup says why :contains cannot be).
BLIND_TABLE_KINDS = {"string": "token", "token": "token", "date": "token"}
BLIND_MODIFIERS = {"string": {"exact", "contains", "missing"}, "token": {"not", "missing", "of-type"}, "date": {"missing"}}


@lru_cache(maxsize=4096)
def parameter_key(index_key: bytes, type_name: str, code: str) -> hmac.HMAC:
    """A keyed HMAC context for one parameter of one type (copied for each value)."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"ehr blind index v1|{type_name}|{code}".encode()).derive(index_key)
    return hmac.HMAC(derived, hashes.SHA256())


def blind64(context: hmac.HMAC, *parts: str) -> int:
    """A blind value as a signed 64-bit integer, for the hash columns of search_token: the first 64 bits of the HMAC
    of the parts joined (one function, not two: a Patient's index rows take about 80 of these)."""
    mac = context.copy()
    mac.update("\x1f".join(parts).encode())
    return int.from_bytes(mac.finalize()[:8], "big", signed=True)


def blind_rows(type_name: str, indexed: IndexedParameter, body: dict, index_key: bytes, prefixes: bool = True,
               shared_parts: frozenset[str] = frozenset()) -> list[tuple[str, dict]]:
    """(table kind, row) of each blind row of `indexed` for `body`: none for a parameter type that cannot be blind; a
    string parameter's prefixes unless not `prefixes`; none for the `shared_parts` of names and addresses
    (ProtectedPaths.shared_parts)."""
    parameter = indexed.parameter
    if parameter.type not in BLIND_TYPES:
        return []
    context, param_hash = parameter_key(index_key, type_name, parameter.code), hash64(type_name, parameter.code)
    nodes = indexed.evaluate(body)
    values = {value for node in nodes for value in VALUES_BY_PARAMETER_TYPE[parameter.type](without_parts(node.value, shared_parts), node.type)}
    keyed = {(modifier, value) for node in nodes for modifier, tokens in keyed_tokens(node) for value in tokens} if parameter.type == "token" else ()
    make_rows = BLIND_ROWS[parameter.type] if parameter.type != "string" or prefixes else blind_whole_string_rows
    return [
        *make_rows(context, param_hash, values),
        *(blind_token_row(context, param_hash, value, modifier) for modifier, value in keyed),
    ]


def without_parts(value, parts: frozenset[str]):
    """A HumanName or Address without the parts other parameters' rows hold (the value itself when there are none)."""
    return {name: part for name, part in value.items() if name not in parts} if parts and isinstance(value, dict) else value


def keyed_tokens(node) -> list[tuple[str, list]]:
    """The tokens `:of-type` (an Identifier's type and value) and `:identifier` (a Reference's identifier) look up."""
    if node.type == "Identifier" and isinstance(node.value, dict):
        return [("of-type", identifier_type_tokens(node.value))]
    if node.type == "Reference" and isinstance(node.value, dict):
        return [("identifier", reference_identifier_tokens(node.value))]
    return []


def blind_string_rows(context: hmac.HMAC, param_hash: int, values: set) -> list[tuple[str, dict]]:
    """A row per value, with its whole normalized and exact forms, and one per shorter prefix that no value is whole."""
    wholes = {value.normalized for value in values}
    prefixes = {value.normalized[:length] for value in values for length in range(MIN_PREFIX, len(value.normalized))} - wholes
    return [
        *(blind_hash_row(param_hash, blind64(context, "p", prefix)) for prefix in prefixes),
        *blind_whole_string_rows(context, param_hash, values),
    ]


def blind_whole_string_rows(context: hmac.HMAC, param_hash: int, values: set) -> list[tuple[str, dict]]:
    """A row per value, with its whole normalized and exact forms, and none for its prefixes."""
    return [blind_hash_row(param_hash, blind64(context, "p", value.normalized), blind64(context, "e", value.exact)) for value in values]


def blind_hash_row(param_hash: int, code_hash: int, exact_hash: int | None = None) -> tuple[str, dict]:
    """A search_token row of blind values: a string's prefix (and exact value), or a date's period."""
    return ("token", {"h_param": param_hash, "h_code": code_hash, "h_sys_code": exact_hash, "h_sys": None, "system": None, "code": None, "text": None})


def blind_token_row(context: hmac.HMAC, param_hash: int, value, modifier: str = "") -> tuple[str, dict]:
    system, code = value.system, value.code
    return ("token", {
        "h_param": param_hash,
        "h_code": blind64(context, modifier, "c", code) if code else None,
        "h_sys_code": blind64(context, modifier, "sc", system or "", code) if code else None,
        "h_sys": blind64(context, modifier, "s", system) if system else None,
        "system": None, "code": None, "text": None,
    })


def blind_date_rows(context: hmac.HMAC, param_hash: int, values: set) -> list[tuple[str, dict]]:
    periods = {period for value in values for period in enclosing_periods(value.low, value.high)}
    return [blind_hash_row(param_hash, blind64(context, "d", period)) for period in periods]


@lru_cache(maxsize=8192)
def enclosing_periods(low: datetime, high: datetime) -> frozenset[str]:
    """The range itself and the calendar year, month and day (UTC) that hold it, each as `low/high` (remembered: dates
    of birth recur, and this was half of a birth date's blind rows)."""
    return frozenset({range_text(low, high), *calendar_periods(low, high)})


def calendar_periods(low: datetime, high: datetime) -> list[str]:
    """The calendar year, month and day (UTC) that hold the range, each as `low/high`."""
    periods = []
    for text in (f"{low:%Y}", f"{low:%Y-%m}", f"{low:%Y-%m-%d}"):
        period_low, period_high = date_range(text)
        if high <= period_high:
            periods.append(range_text(period_low, period_high))
    return periods


def range_text(low: datetime, high: datetime) -> str:
    return f"{low.isoformat()}/{high.isoformat()}"


BLIND_ROWS = {
    "string": blind_string_rows,
    "token": lambda context, param_hash, values: [blind_token_row(context, param_hash, value) for value in values],
    "date": blind_date_rows,
}


# The values a search looks up, under each index key in turn (a key being rotated still finds what it blinded).

def string_lookup(index_keys: list[bytes], type_name: str, code: str, modifier: str, value: str, prefixes: bool = True) -> tuple[str, list[int]]:
    """(search_token column, blind values) that a string search of a protected parameter matches (its default search,
    a whole value when its rows hold no `prefixes`)."""
    if modifier == "contains":
        raise BadRequest(f"{type_name} '{code}' is protected (encrypted, with a blind index): :contains cannot search it; "
                         f"search by the start of a word (the default, at least {MIN_PREFIX} characters) or :exact.")
    if modifier == "exact":
        return "h_sys_code", [blind64(parameter_key(key, type_name, code), "e", value) for key in index_keys]
    folded = fold(value)
    if prefixes and 0 < len(folded) < MIN_PREFIX:
        raise BadRequest(f"{type_name} '{code}' is protected (encrypted, with a blind index): a search by it needs at least "
                         f"{MIN_PREFIX} characters, or :exact.")
    return "h_code", [blind64(parameter_key(key, type_name, code), "p", folded) for key in index_keys]


def token_lookup(index_keys: list[bytes], type_name: str, code: str, value: str, modifier: str = "") -> tuple[str, list[int]]:
    """(search_token column, blind values) that a token search (`code`, `system|code`, `system|`, `|code`) of a
    protected parameter matches; `modifier` for the rows of :of-type and :identifier."""
    if "|" not in value:
        column, parts = "h_code", ("c", value)
    else:
        system, _, token_code = value.partition("|")
        column, parts = ("h_sys", ("s", system)) if not token_code else ("h_sys_code", ("sc", system, token_code))
    return column, [blind64(parameter_key(key, type_name, code), modifier, *parts) for key in index_keys]


def date_lookup(index_keys: list[bytes], type_name: str, code: str, prefix: str, low: datetime, high: datetime) -> list[int]:
    """The blind values a date search of a protected parameter matches: equality alone, with a year, month or day."""
    if prefix != "eq" or range_text(low, high) not in calendar_periods(low, high):
        raise BadRequest(f"{type_name} '{code}' is protected (encrypted, with a blind index): it can be searched for one year, "
                         "month or day (2024, 2024-05, 2024-05-17), with no prefix and no time.")
    return [blind64(parameter_key(key, type_name, code), "d", range_text(low, high)) for key in index_keys]


def of_type_lookup(index_keys: list[bytes], type_name: str, code: str, type_system: str, type_code: str, value: str) -> list[int]:
    """The blind values `identifier:of-type=type-system|type-code|value` matches (search_token's h_sys_code)."""
    return [blind64(parameter_key(key, type_name, code), "of-type", "sc", f"{type_system}|{type_code}", value) for key in index_keys]
