"""Search criteria compiled to SQL: each parameter becomes an EXISTS over its index table.

`name=a,b` ORs the values inside one EXISTS; a repeated `name` ANDs another
EXISTS. Chains (`subject:Patient.name=x`) and reverse chains
(`_has:Observation:patient:code=x`) become semi-joins on the reference index,
never application-side loops.

Index rows carry hashes of (type, parameter, ...). A criterion is compiled for a
tuple of types that define its parameter alike: one type for a type-level search,
several for a system-level one, whose hashes are then matched with IN, so that
`_tag` across every type is still one EXISTS on one index.

What a criterion means (its escapes, prefixes, modifiers and values) is app/search/criteria.py's;
compiling it is also where a malformed one is found, so these functions raise BadRequest.
"""
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy import and_, exists, false, not_, or_, select
from sqlalchemy.sql import ColumnElement

from app.errors import BadRequest
from app.model.instants import shifted, utc_now
from app.model.references import rewritten_reference
from app.model.registry import is_served
from app.protection.blind import BLIND_MODIFIERS, BLIND_TABLE_KINDS, BLIND_TYPES, date_lookup, of_type_lookup, string_lookup, token_lookup
from app.protection.service import UNPROTECTED
from app.search.criteria import (
    MAX_CHAIN_DEPTH, Query, check_modifier, check_no_nul, check_shared_parameter, chained_parameter_exists, parameter_code,
    parameter_or_error, parse_number, reference_target, search_date_range, split_prefix, split_values, token_hash_parts,
    types_defining_alike, uri_ancestors,
)
from app.search.index import composite_components, hash64
from app.search.parameters import SearchParameter
from app.search.values import fold
from app.store.schema import INDEX_TABLES, resource


# (type, resource table alias) -> the condition that keeps a chain or _has to the resources of that type the caller
# may see (app/store/access.py), or None when it may see them all.
Limit = Callable[[str, object], ColumnElement | None]


def condition_across_types(type_names: tuple[str, ...], query: Query, limit: Limit | None = None, protection=UNPROTECTED) -> ColumnElement:
    """The condition `query` puts on a search over `type_names`: one type, or several (a system-level search); a
    chain or _has in it looks only at what `limit` leaves; a parameter that reads protected elements looks up the
    blind values `protection` makes (app/protection/blind.py).

    Types that define the parameter alike share one condition; when they define it
    differently (Patient's and Practitioner's `name`), each group's condition applies
    to its own types' resources.
    """
    check_no_nul(query)
    if len(type_names) > 1:
        check_shared_parameter(type_names, query)
    groups = types_defining_alike(type_names, parameter_code(query))
    if len(groups) == 1:
        return criterion_condition(type_names, query, limit=limit, protection=protection)
    return or_(*[and_(resource.c.res_type.in_(group), criterion_condition(group, query, limit=limit, protection=protection)) for group in groups])


def criterion_condition(type_names: tuple[str, ...], query: Query, table=resource, depth: int = 0, limit: Limit | None = None,
                        protection=UNPROTECTED) -> ColumnElement:
    """The SQL condition on `table` (a resource table alias) that `query` asks for, for types that define it alike."""
    if query.name.startswith("_has:"):
        return reverse_chain_condition(type_names, query, table, depth, limit, protection)
    name, _, chain = query.name.partition(".")
    code, _, modifier = name.partition(":")
    parameter = parameter_or_error(type_names[0], code)
    if chain:
        return chain_condition(type_names, parameter, modifier, chain, query, table, depth, limit, protection)
    if code == "_id":
        return id_condition(query.value, modifier, table)
    if code == "_lastUpdated":
        return last_updated_condition(query.value, modifier, table)
    protected = tuple(type_name for type_name in type_names if protection.protects(type_name, code))
    if not protected:
        return index_condition(type_names, parameter, modifier, query, table)
    if protected == type_names:
        return blind_condition(type_names, parameter, modifier, query, table, protection)
    plain = tuple(type_name for type_name in type_names if type_name not in protected)
    return or_(
        and_(table.c.res_type.in_(protected), blind_condition(protected, parameter, modifier, query, table, protection)),
        and_(table.c.res_type.in_(plain), index_condition(plain, parameter, modifier, query, table)),
    )


def id_condition(value: str, modifier: str, table) -> ColumnElement:
    if modifier:
        raise BadRequest(f"_id does not take the modifier :{modifier}.")
    return table.c.res_id.in_(split_values(value))


def last_updated_condition(value: str, modifier: str, table) -> ColumnElement:
    if modifier:
        raise BadRequest(f"_lastUpdated does not take the modifier :{modifier}.")
    conditions = []
    for part in split_values(value):
        prefix, text = split_prefix(part)
        low, high = search_date_range(text)
        column = table.c.last_updated
        conditions.append(range_condition(prefix, column, column, low, high))
    return or_(*conditions)


def hash_condition(column, type_names: tuple[str, ...], *parts: str | None) -> ColumnElement:
    """`column` holds the hash of (type, *parts) for one of `type_names`."""
    hashes = [hash64(type_name, *parts) for type_name in type_names]
    return column == hashes[0] if len(hashes) == 1 else column.in_(hashes)


def index_condition(type_names: tuple[str, ...], parameter: SearchParameter, modifier: str, query: Query, table) -> ColumnElement:
    check_modifier(parameter, modifier)
    index = INDEX_TABLES.get(parameter.type)
    if index is None:
        raise BadRequest(f"Searching by {parameter.type} parameters such as '{parameter.code}' is not supported yet.")
    of_parameter = hash_condition(index.c.h_param, type_names, parameter.code)
    if modifier == "missing":
        return missing_condition(index, of_parameter, query.value, table)
    values = split_values(query.value)
    if parameter.type == "reference":
        values = [rewritten_reference(part, {}, query.base) for part in values]
    if modifier in ("identifier", "of-type"):
        return keyed_token_condition(type_names, parameter, modifier, values, table)
    if parameter.type == "composite" and composite_components(type_names[0], parameter) is None:
        raise BadRequest(f"The composite parameter '{parameter.code}' combines component types this server does not search yet.")
    value_conditions = [VALUE_CONDITIONS[parameter.type](index, type_names, parameter, modifier, part) for part in values]
    of_parameter_test = () if hashes_name_parameter(parameter, modifier) else (of_parameter,)
    matched = exists().where(index.c.res_pk == table.c.pk, *of_parameter_test, or_(*value_conditions))
    return not_(matched) if modifier == "not" else matched


def hashes_name_parameter(parameter: SearchParameter, modifier: str) -> bool:
    """Token value hashes include the type and parameter, so an h_param test beside them is redundant,
    and it kept PostgreSQL off the (hash, res_pk) indexes that return matches in pk order."""
    return parameter.type == "token" and modifier != "text"


def keyed_token_condition(type_names: tuple[str, ...], parameter: SearchParameter, modifier: str, values: list[str], table) -> ColumnElement:
    """`subject:identifier=system|value` and `identifier:of-type=system|code|value` match the token rows
    indexed under `<code>:<modifier>` (see app/search/index.py)."""
    tokens = INDEX_TABLES["token"]
    keyed = replace(parameter, code=f"{parameter.code}:{modifier}")
    if modifier == "of-type":
        conditions = [of_type_condition(tokens, type_names, keyed.code, value) for value in values]
    else:
        conditions = [token_value_condition(tokens, type_names, keyed, None, value) for value in values]
    return exists().where(tokens.c.res_pk == table.c.pk, or_(*conditions))  # the hashes name the parameter


def of_type_condition(tokens, type_names: tuple[str, ...], keyed_code: str, value: str) -> ColumnElement:
    """The hash an identifier of that type and value is indexed under: (type system|code, value)."""
    type_system, type_code, identifier = of_type_parts(value)
    return hash_condition(tokens.c.h_sys_code, type_names, keyed_code, f"{type_system}|{type_code}", identifier)


def missing_condition(index, of_parameter: ColumnElement, value: str, table) -> ColumnElement:
    if value not in ("true", "false"):
        raise BadRequest(f":missing takes true or false, not '{value}'.")
    present = exists().where(index.c.res_pk == table.c.pk, of_parameter)
    return not_(present) if value == "true" else present


def string_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    if modifier == "exact":
        return index.c.exact == value
    folded = fold(value)
    if modifier == "contains":
        return index.c.normalized.like(f"%{escape_like(folded)}%", escape="\\")
    return and_(index.c.normalized >= folded, index.c.normalized < folded + "\uffff")  # a prefix, as a B-tree range


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def token_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    if modifier == "text":
        folded = fold(value)
        return and_(index.c.text >= folded, index.c.text < folded + "\uffff")
    column, parts = token_hash_parts(parameter.code, value)
    return hash_condition(getattr(index.c, column), type_names, *parts)


def date_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    prefix, text = split_prefix(value)
    low, high = search_date_range(text)
    return range_condition(prefix, index.c.low, index.c.high, low, high)


def number_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    prefix, text = split_prefix(value)
    return number_condition(prefix, index.c.value, text)


def quantity_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    number, _, unit = value.partition("|")
    prefix, text = split_prefix(number)
    condition = number_condition(prefix, index.c.value, text)
    system, _, code = unit.partition("|")
    if code:
        return and_(condition, hash_condition(index.c.h_sys_code, type_names, parameter.code, system or None, code)) if system else and_(
            condition, hash_condition(index.c.h_code, type_names, parameter.code, None, code)
        )
    if system:  # `5.4||mg`-style units without a system are handled above; `5.4|http://unitsofmeasure.org` alone is not meaningful
        raise BadRequest(f"'{value}': a quantity search names its unit as number|system|code or number||code.")
    return condition


def reference_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    target_type, target_id = reference_target(parameter, modifier, value)
    if target_id is None:
        return index.c.h_url == hash64(value)
    condition = index.c.target_id == target_id
    return and_(condition, index.c.target_type == target_type) if target_type else condition


def uri_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    if modifier == "below":
        return index.c.uri.like(f"{escape_like(value)}%", escape="\\")
    if modifier == "above":
        return and_(index.c.uri.in_(uri_ancestors(value)))
    return index.c.h_uri == hash64(value)


def composite_value_condition(index, type_names, parameter, modifier, value: str) -> ColumnElement:
    """`code$value`, e.g. component-code-value-quantity=http://loinc.org|8480-6$gt140: both from the same element."""
    token_text, dollar, value_text = value.partition("$")
    if not dollar or not token_text or not value_text:
        raise BadRequest(f"'{value}' is not a composite value: send the two parts separated by $, e.g. 8480-6$gt140.")
    left, right = composite_components(type_names[0], parameter)
    token = token_value_condition(component_columns(index, "l_"), type_names, left, None, token_text)
    return and_(token, VALUE_CONDITIONS[right.type](component_columns(index, "r_"), type_names, right, None, value_text))


def component_columns(index, prefix: str) -> SimpleNamespace:
    """search_composite's l_ or r_ columns under the names the component type's own table uses."""
    return SimpleNamespace(c=SimpleNamespace(**{name.removeprefix(prefix): column for name, column in index.c.items() if name.startswith(prefix)}))
VALUE_CONDITIONS = {
    "string": string_value_condition,
    "token": token_value_condition,
    "date": date_value_condition,
    "number": number_value_condition,
    "quantity": quantity_value_condition,
    "reference": reference_value_condition,
    "uri": uri_value_condition,
    "composite": composite_value_condition,
}


def number_condition(prefix: str, column, text: str) -> ColumnElement:
    """eq, ne and ap use the number's implicit precision (100 means [99.5, 100.5)); the order prefixes compare it exactly."""
    number = parse_number(text)
    half_step = Decimal(1).scaleb(number.as_tuple().exponent) / 2
    low, high = number - half_step, number + half_step
    if prefix == "eq":
        return and_(column >= low, column < high)
    if prefix == "ne":
        return or_(column < low, column >= high)
    if prefix in ("gt", "sa"):
        return column > number
    if prefix in ("lt", "eb"):
        return column < number
    if prefix == "ge":
        return column >= number
    if prefix == "le":
        return column <= number
    margin = abs(number) / 10
    return and_(column >= number - margin, column <= number + margin)


def range_condition(prefix: str, low_column, high_column, low: datetime, high: datetime) -> ColumnElement:
    """R4 search.html prefixes over date ranges: the target [low_column, high_column) against the search [low, high)."""
    inside = and_(low_column >= low, high_column <= high)
    if prefix == "eq":
        return inside
    if prefix == "ne":
        return not_(inside)
    if prefix == "gt":
        return high_column > high
    if prefix == "lt":
        return low_column < low
    if prefix == "ge":
        return or_(high_column > high, inside)
    if prefix == "le":
        return or_(low_column < low, inside)
    if prefix == "sa":
        return low_column >= high
    if prefix == "eb":
        return high_column <= low
    return approximately(low_column, high_column, low, high)


def approximately(low_column, high_column, low: datetime, high: datetime) -> ColumnElement:
    """`ap`: within 10% of the distance from now, R4's recommendation (at least a day either way)."""
    margin = max(abs(utc_now() - low), timedelta(days=1)) / 10
    return and_(low_column < shifted(high, margin), high_column > shifted(low, -margin))


def chain_condition(type_names, parameter, modifier, chain, query: Query, table, depth, limit: Limit | None, protection) -> ColumnElement:
    """`subject:Patient.name=x`: a reference whose target matches the rest of the chain."""
    if parameter.type != "reference":
        raise BadRequest(f"'{parameter.code}' is a {parameter.type} parameter; only reference parameters can be chained.")
    if depth >= MAX_CHAIN_DEPTH:
        raise BadRequest(f"Chains may be at most {MAX_CHAIN_DEPTH} links long.")
    target_types = [modifier] if modifier else [t for t in parameter.targets if chained_parameter_exists(t, chain)]
    if not target_types:
        raise BadRequest(f"No target type of '{parameter.code}' has a search parameter '{chain.split('.')[0].split(':')[0]}'; name the type, e.g. {parameter.code}:Patient.{chain}.")
    reference = INDEX_TABLES["reference"].alias()
    targets = [chained_target_condition(target_type, Query(chain, query.value, query.base), reference, depth, limit, protection) for target_type in target_types]
    return exists().where(reference.c.res_pk == table.c.pk, hash_condition(reference.c.h_param, type_names, parameter.code), or_(*targets))


def chained_target_condition(target_type: str, chained: Query, reference, depth: int, limit: Limit | None, protection) -> ColumnElement:
    if not is_served(target_type):
        raise BadRequest(f"'{target_type}' is not a resource type this server serves.")
    target = resource.alias()
    inner = criterion_condition((target_type,), chained, target, depth + 1, limit, protection)
    matches = select(target.c.res_id).where(target.c.res_type == target_type, target.c.deleted == false(), inner, *limited(limit, target_type, target))
    return and_(reference.c.target_type == target_type, reference.c.target_id.in_(matches))


def limited(limit: Limit | None, type_name: str, table) -> list[ColumnElement]:
    condition = limit(type_name, table) if limit else None
    return [] if condition is None else [condition]


def reverse_chain_condition(type_names: tuple[str, ...], query: Query, table, depth: int, limit: Limit | None, protection) -> ColumnElement:
    """`_has:Observation:patient:code=x`: some Observation whose `patient` points here matches code=x."""
    parts = query.name.split(":", 3)
    if len(parts) < 4 or not all(parts[1:]):
        raise BadRequest(f"'{query.name}' is not of the form _has:Type:parameter:criterion (e.g. _has:Observation:patient:code).")
    _, source_type, reference_code, rest = parts
    if not is_served(source_type):
        raise BadRequest(f"_has names '{source_type}', which is not a resource type this server serves.")
    if depth >= MAX_CHAIN_DEPTH:
        raise BadRequest(f"_has may be nested at most {MAX_CHAIN_DEPTH} deep.")
    reference_parameter = parameter_or_error(source_type, reference_code)
    source = resource.alias()
    reference = INDEX_TABLES["reference"].alias()
    inner = criterion_condition((source_type,), Query(rest, query.value, query.base), source, depth + 1, limit, protection)
    return exists().where(
        reference.c.h_param == hash64(source_type, reference_parameter.code),
        reference.c.target_type == searched_type(type_names, table),
        reference.c.target_id == table.c.res_id,
        source.c.pk == reference.c.res_pk,
        source.c.res_type == source_type,
        source.c.deleted == false(),
        inner,
        *limited(limit, source_type, source),
    )


def searched_type(type_names: tuple[str, ...], table) -> str | ColumnElement:
    """The type of the resource searched: the type itself, or across several types the row's own."""
    return type_names[0] if len(type_names) == 1 else table.c.res_type


def blind_condition(type_names: tuple[str, ...], parameter: SearchParameter, modifier: str, query: Query, table, protection) -> ColumnElement:
    """The condition of a search by a parameter that reads protected elements, on its blind rows: what they cannot
    answer (:contains, :text, date ranges, other parameter types) is a BadRequest that says why."""
    check_modifier(parameter, modifier)
    protected = f"{type_names[0]} '{parameter.code}' reads protected (encrypted) elements"
    if parameter.type not in BLIND_TYPES:
        raise BadRequest(f"{protected}, which have no index of a {parameter.type} parameter: it cannot be searched.")
    if modifier not in BLIND_MODIFIERS[parameter.type] | {""}:
        raise BadRequest(f"{protected}, indexed by blind values: the modifier :{modifier} cannot search it.")
    index = INDEX_TABLES[BLIND_TABLE_KINDS[parameter.type]]
    codes = [(type_name, code, whole_only) for type_name in type_names for code, whole_only in protection.searched_codes(type_name, parameter.code)]
    of_parameter = index.c.h_param.in_([hash64(type_name, code) for type_name, code, _ in codes])
    if modifier == "missing":
        return missing_condition(index, of_parameter, query.value, table)
    keys = protection.index_keys()
    matches = [blind_match(protection, keys, codes, parameter, modifier, part, index) for part in split_values(query.value)]
    matched = exists().where(index.c.res_pk == table.c.pk, of_parameter, or_(*matches))
    return not_(matched) if modifier == "not" else matched


def blind_match(protection, keys: list[bytes], codes: list[tuple[str, str, bool]], parameter: SearchParameter, modifier: str, value: str,
                index) -> ColumnElement:
    """The condition on a blind row that one value of the search matches, under every key, type and parameter of
    `codes`: (type, parameter, whether only its whole values' rows match), as Protection.searched_codes gives them."""
    column, any_rows, whole_rows = "h_code", [], []
    for type_name, code, whole_only in codes:
        column, blinds = blind_values(protection, keys, type_name, code, parameter, modifier, value)
        (whole_rows if whole_only else any_rows).extend(blinds)
    conditions = [index.c[column].in_(any_rows)] if any_rows else []
    if whole_rows:  # a whole value's row holds its exact value too; a prefix's does not
        conditions.append(and_(index.c[column].in_(whole_rows), index.c.h_sys_code.is_not(None)))
    return or_(*conditions)


def blind_values(protection, keys: list[bytes], type_name: str, code: str, parameter: SearchParameter, modifier: str, value: str) -> tuple[str, list]:
    """(column, blind values under every key) of the rows of `code` that one value of a search by `parameter` matches
    (a string's shortest value and prefixes as `parameter` is searched, whichever parameter's rows are looked up)."""
    if parameter.type == "string":
        prefixes = protection.prefix_searched(type_name, protection.blind_code(type_name, parameter.code))
        return string_lookup(keys, type_name, code, modifier, value, prefixes)
    if modifier == "of-type":
        return "h_sys_code", of_type_lookup(keys, type_name, code, *of_type_parts(value))
    if parameter.type == "token":
        return token_lookup(keys, type_name, code, value)
    prefix, text = split_prefix(value)
    return "h_code", date_lookup(keys, type_name, code, prefix, *search_date_range(text))


def of_type_parts(value: str) -> tuple[str, str, str]:
    parts = value.split("|")
    if len(parts) != 3 or not all(parts[1:]):
        raise BadRequest(f":of-type takes system|code|value (the identifier's type and its value), not '{value}'.")
    return parts[0], parts[1], parts[2]
