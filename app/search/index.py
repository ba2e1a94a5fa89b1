"""Index rows, extracted at write time from each search parameter's expression, in the write's transaction.

One table per parameter type (string, token, date, number, quantity, reference,
uri). Rows carry 64-bit hashes of (type, parameter[, system][, code]) beside the
values, so most lookups hit one narrow B-tree, as HAPI FHIR does. The store
writes them (app/store/index_rows.py).
"""
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache

import orjson

from app.model.elements import elements_of
from app.search.parameters import SearchParameter, parameters_of
from app.search.paths import compile_expression, evaluate_components, fhir_type, is_type
from app.search.values import VALUES_BY_PARAMETER_TYPE, identifier_type_tokens, reference_identifier_tokens, token_values

# Answered from the resource row itself, never from index rows.
ROW_PARAMETERS = frozenset({"_id", "_lastUpdated"})


@lru_cache(maxsize=65536)  # the same codes, systems and parameters recur in almost every write
def hash64(*parts: str | None) -> int:
    """A stable signed 64-bit hash (the same in every process, unlike hash())."""
    text = "\x1f".join(part or "" for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class IndexedParameter:
    parameter: SearchParameter
    evaluate: Callable[[dict], list]
    keys: frozenset[str] | None  # the top-level keys without which it has no value; None when that cannot be told
    meta_keys: frozenset[str] | None  # for _tag, _profile...: the keys of meta it reads (every stored resource has meta)
    row_keys: frozenset[str] | None  # the top-level keys whose values decide its rows (a composite's: all its parts')

    @cached_property
    def reads(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The keys of the resource, and of its meta, whose values decide its rows (when row_keys is not None): meta's
        alone for an expression that reads only meta, whose versionId and lastUpdated change with every version."""
        if self.meta_keys is not None:
            return (), tuple(sorted(self.meta_keys))
        return tuple(sorted(self.row_keys)), ()

    def may_have_values(self, body: dict) -> bool:
        """False when the resource lacks every element the expression reads, so evaluating it would find nothing."""
        if self.keys is not None and self.keys.isdisjoint(body):
            return False
        return self.meta_keys is None or not self.meta_keys.isdisjoint(body.get("meta") or ())


@cache
def indexed_parameters(type_name: str) -> tuple[IndexedParameter, ...]:
    """The type's parameters that have index rows, each with its compiled expression and the keys it reads."""
    return tuple(
        IndexedParameter(
            parameter, compile_expression(type_name, parameter.expression), keys_read(type_name, parameter),
            meta_keys_read(type_name, parameter.expression), keys_read(type_name, parameter, every_component=True),
        )
        for parameter in parameters_of(type_name).values()
        if is_indexed(type_name, parameter)
    )


def meta_keys_read(type_name: str, expression: str) -> frozenset[str] | None:
    """`Observation.meta.tag` reads meta's `tag`; None unless every step of the expression is such a path."""
    steps = re.findall(rf"(?<![\w.%]){type_name}\.", expression)
    names = re.findall(rf"(?<![\w.%]){type_name}\.meta\.(\w+)", expression)
    return frozenset(names) if names and len(names) == len(steps) else None


def keys_read(type_name: str, parameter: SearchParameter, every_component: bool = False) -> frozenset[str] | None:
    """top_level_keys; a composite over the resource itself (`Observation | Observation.component`) has no value there
    without the keys of its value component, and reads those of `every_component` (its code's too)."""
    if parameter.type != "composite":
        return top_level_keys(type_name, parameter.expression)
    components = parameter.components if every_component else parameter.components[-1:]
    branches = [branch.strip() for branch in parameter.expression.split("|")]
    keys = [
        *(component_keys(type_name, component.expression) for component in components if type_name in branches),
        *(top_level_keys(type_name, branch) for branch in branches if branch != type_name),
    ]
    return None if None in keys else frozenset().union(*keys)


def component_keys(type_name: str, expression: str) -> frozenset[str] | None:
    """The keys a component's expression reads when its focus is the resource itself."""
    branches = expression.split("|")  # value.as(DateTime) | value.as(Period)
    return top_level_keys(type_name, " | ".join(f"{type_name}.{branch.strip()}" for branch in branches))


def is_indexed(type_name: str, parameter: SearchParameter) -> bool:
    if not parameter.expression or parameter.code in ROW_PARAMETERS or parameter.type not in INDEXED_TYPES:
        return False
    return parameter.type != "composite" or composite_components(type_name, parameter) is not None


@cache
def composite_components(type_name: str, parameter: SearchParameter) -> tuple[SearchParameter, SearchParameter] | None:
    """The (token, value) component parameters of a composite we index; None for other shapes (e.g. number$number)."""
    if len(parameter.components) != 2:
        return None
    parameters = parameters_of(type_name)
    left, right = (parameters.get(component.code) for component in parameter.components)
    if left is None or right is None or left.type != "token" or right.type not in COMPOSITE_VALUE_COLUMNS:
        return None
    return left, right


def top_level_keys(type_name: str, expression: str) -> frozenset[str] | None:
    """The JSON keys of the resource an expression can read (choices expanded: value -> valueQuantity...,
    but `value as CodeableConcept` reads only valueCodeableConcept).

    A resource has few of its type's parameters' elements, so checking for these keys
    first skips most evaluations, and their values alone decide its rows (parameter_rows). None when the expression
    reads the resource otherwise.
    """
    steps = re.findall(rf"(?<![\w.%]){type_name}\.(\w+)(?:\s+as\s+|\.as\(|\.ofType\()?([\w.]*)", expression)
    reads_absence = re.search(r"exists\(|empty\(|not\(|!=", expression)  # yields a value when the element is absent
    reads_root = "%" in expression or re.search(rf"(?<![\w.]){type_name}(?!\.\w)", expression)  # %resource...
    if not steps or reads_absence or reads_root:
        return None
    return frozenset(key for name, wanted in steps for key in keys_of_step(type_name, name, wanted))


def keys_of_step(type_name: str, name: str, wanted: str) -> set[str]:
    """The keys holding element `name`, only those of type `wanted` when the step is typed (and some are)."""
    keys = {key: element for key, element in elements_of(type_name).items() if key == name or element.base == name}
    typed = {key for key, element in keys.items() if wanted and is_type(element.type, fhir_type(wanted))}
    return typed or set(keys)


def index_rows(type_name: str, body: dict | None, protection, codes: frozenset[str] | None = None) -> dict[str, list[dict]]:
    """Table kind -> the resource's rows in that kind's table (res_pk is set when they are written), of every parameter
    or of those `codes`: a parameter that reads a protected element has the blind rows `protection` makes
    (app/protection/blind.py). Each row is the caller's own: the store completes rows in place."""
    rows = defaultdict(list)
    if body is None:
        return rows
    for indexed in indexed_parameters(type_name):
        if indexed.may_have_values(body) and (codes is None or indexed.parameter.code in codes):
            protected = protection.protects(type_name, indexed.parameter.code)
            found = protection.blind_rows(type_name, indexed, body) if protected else parameter_rows(type_name, indexed, body)
            for table_kind, row in found:
                rows[table_kind].append(dict(row))
    return rows


# (type, parameter, JSON of the elements it reads) -> its rows. A resource's rows for one parameter depend on those
# elements alone, and most writes repeat them (an Observation's code, category, status and subject; an AuditEvent's
# type, agent and source): remembered, extraction took 152 instead of 215 us of bench/crud.py's Observations' 1.3 ms
# creates. Elements of more than SEEN_ROWS_KEY_MAX bytes of JSON (a DocumentReference's content with its attachment)
# are not remembered: they seldom recur, and the cache holds at most SEEN_ROWS_MAX keys of at most that size. Emptied
# when full (a dict's get and set are each atomic under the GIL: threads share it without a lock).
SEEN_ROWS: dict[tuple, tuple] = {}
SEEN_ROWS_MAX = 4096
SEEN_ROWS_KEY_MAX = 1024
# Rows are remembered the second time their key is looked up: most of an Observation's parameters read elements that
# seldom recur (its value, its time, a blood pressure's components). Remembered on first sight, bench/crud.py's creates
# filled 8,192 keys (~7 KB each, 30 MiB of a worker after 3,000 creates), and emptying the cache lost the rows that
# do recur; now 4,096 keys extract as often (4.9 of 12.4 parameters per Observation). SEEN_ONCE holds the hashes of
# keys looked up once (a colliding hash only remembers a key one lookup early); full, it holds about 4 MiB.
SEEN_ONCE: set[int] = set()
SEEN_ONCE_MAX = 65536


def parameter_rows(type_name: str, indexed: IndexedParameter, body: dict) -> tuple[tuple[str, dict], ...]:
    """(parameter type, row) of each row `indexed` has for `body`; rows are shared between calls, never to be changed."""
    elements = read_elements_json(body, *indexed.reads) if indexed.row_keys is not None else None
    if elements is None or len(elements) > SEEN_ROWS_KEY_MAX:
        return extracted_rows(type_name, indexed, body)
    key = (type_name, indexed.parameter.code, elements)
    rows = SEEN_ROWS.get(key)
    if rows is None:
        rows = extracted_rows(type_name, indexed, body)
        if seen_before(key):
            if len(SEEN_ROWS) >= SEEN_ROWS_MAX:
                SEEN_ROWS.clear()
            SEEN_ROWS[key] = rows
    return rows


def seen_before(key: tuple) -> bool:
    """Whether `key` was looked up before (since SEEN_ONCE was last emptied); notes that it was, if not."""
    fingerprint = hash(key)
    if fingerprint in SEEN_ONCE:
        return True
    if len(SEEN_ONCE) >= SEEN_ONCE_MAX:
        SEEN_ONCE.clear()
    SEEN_ONCE.add(fingerprint)
    return False


def read_elements_json(body: dict, keys: tuple[str, ...], meta_keys: tuple[str, ...]) -> bytes:
    """The elements `keys` of `body` and `meta_keys` of its meta, as JSON: equal elements give equal text. A value
    JSON has no form for (a Decimal) is written as a text no FHIR string can be (FHIR strings hold no NUL)."""
    meta = body.get("meta") or {}
    values = [body.get(key) for key in keys] + [meta.get(key) for key in meta_keys]
    return orjson.dumps(values, default=lambda value: f"\x00{type(value).__name__}:{value}")


def extracted_rows(type_name: str, indexed: IndexedParameter, body: dict) -> tuple[tuple[str, dict], ...]:
    parameter = indexed.parameter
    if parameter.type == "composite":
        return tuple(("composite", row) for row in composite_rows(type_name, parameter, body))
    convert, build = VALUES_BY_PARAMETER_TYPE[parameter.type], ROW_BUILDERS[parameter.type]
    param_hash = hash64(type_name, parameter.code)
    rows, seen = [], set()
    for node in indexed.evaluate(body):
        for value in convert(node.value, node.type):
            if value not in seen:
                seen.add(value)
                rows.append((parameter.type, build(type_name, parameter.code, param_hash, value)))
        rows += (("token", row) for row in keyed_token_rows(type_name, parameter.code, param_hash, node))
    return tuple(rows)


def referenced_patients(type_name: str, body: dict, codes: frozenset[str]) -> set[str]:
    """The ids of the Patients that the resource's reference parameters `codes` point at (its Patient compartment,
    when `codes` are the type's compartment parameters): the same values the reference index holds."""
    patients = set()
    for indexed in indexed_parameters(type_name):
        if indexed.parameter.code in codes and indexed.parameter.type == "reference" and indexed.may_have_values(body):
            for node in indexed.evaluate(body):
                patients.update(value.target_id for value in VALUES_BY_PARAMETER_TYPE["reference"](node.value, node.type) if value.target_type == "Patient")
    return patients


def keyed_token_rows(type_name: str, code: str, param_hash: int, node) -> list[dict]:
    """Token rows under `<code>:of-type` (an Identifier's type and value) and `<code>:identifier` (a Reference's identifier)."""
    if node.type == "Identifier" and isinstance(node.value, dict):
        return [token_row(type_name, f"{code}:of-type", param_hash, value) for value in identifier_type_tokens(node.value)]
    if node.type == "Reference" and isinstance(node.value, dict):
        return [token_row(type_name, f"{code}:identifier", param_hash, value) for value in reference_identifier_tokens(node.value)]
    return []


def composite_rows(type_name: str, parameter: SearchParameter, body: dict) -> list[dict]:
    """One row per (token, value) pair found in the same element of the resource."""
    left, right = composite_components(type_name, parameter)
    param_hash = hash64(type_name, parameter.code)
    rows = []
    for left_nodes, right_nodes in evaluate_components(parameter, body):
        tokens = [token_row(type_name, left.code, param_hash, value) for node in left_nodes for value in token_values(node.value, node.type)]
        values = [
            ROW_BUILDERS[right.type](type_name, right.code, param_hash, value)
            for node in right_nodes
            for value in VALUES_BY_PARAMETER_TYPE[right.type](node.value, node.type)
        ]
        rows += [composite_row(param_hash, token, value, right.type) for token in tokens for value in values]
    return rows


def composite_row(param_hash: int, token: dict, value: dict, value_type: str) -> dict:
    row = dict.fromkeys(COMPOSITE_COLUMNS)
    row.update({"h_param": param_hash, "l_h_code": token["h_code"], "l_h_sys_code": token["h_sys_code"], "l_h_sys": token["h_sys"]})
    row.update({f"r_{name}": value[name] for name in COMPOSITE_VALUE_COLUMNS[value_type]})
    return row


def string_row(type_name, code, param_hash, value) -> dict:
    return {"h_param": param_hash, "normalized": value.normalized, "exact": value.exact}


def token_row(type_name, code, param_hash, value) -> dict:
    return {
        "h_param": param_hash,
        "h_code": hash64(type_name, code, None, value.code) if value.code else None,
        "h_sys_code": hash64(type_name, code, value.system, value.code) if value.code else None,
        "h_sys": hash64(type_name, code, value.system) if value.system else None,
        "system": value.system, "code": value.code, "text": value.text,
    }


def date_row(type_name, code, param_hash, value) -> dict:
    return {"h_param": param_hash, "low": value.low, "high": value.high}


def number_row(type_name, code, param_hash, value) -> dict:
    return {"h_param": param_hash, "value": value.value}


def quantity_row(type_name, code, param_hash, value) -> dict:
    return {
        "h_param": param_hash,
        "h_sys_code": hash64(type_name, code, value.system, value.code) if value.code else None,
        "h_code": hash64(type_name, code, None, value.code) if value.code else None,
        "value": value.value, "system": value.system, "code": value.code, "unit": value.unit,
    }


def reference_row(type_name, code, param_hash, value) -> dict:
    return {
        "h_param": param_hash, "target_type": value.target_type, "target_id": value.target_id,
        "target_version": value.version, "url": value.url, "h_url": hash64(value.url) if value.url else None,
    }


def uri_row(type_name, code, param_hash, value) -> dict:
    return {"h_param": param_hash, "uri": value.uri, "h_uri": hash64(value.uri)}


# The value columns each component type keeps in search_composite (as r_<name>).
COMPOSITE_VALUE_COLUMNS = {
    "token": ("h_code", "h_sys_code", "h_sys", "text"),
    "quantity": ("h_code", "h_sys_code", "value"),
    "date": ("low", "high"),
    "string": ("normalized", "exact"),
}
COMPOSITE_COLUMNS = ("h_param", "l_h_code", "l_h_sys_code", "l_h_sys", *(f"r_{name}" for name in (
    "h_code", "h_sys_code", "h_sys", "text", "value", "low", "high", "normalized", "exact",
)))

ROW_BUILDERS = {
    "string": string_row, "token": token_row, "date": date_row, "number": number_row,
    "quantity": quantity_row, "reference": reference_row, "uri": uri_row,
}
INDEXED_TYPES = frozenset({*ROW_BUILDERS, "composite"})  # the parameter types with index rows (a table each in the store)
