"""Type-level and system-level search: criteria, sorting, keyset paging, totals and _include/_revinclude,
as one SQL query per step.

Paging never uses OFFSET: the cursor holds the last row's sort keys and pk, and the
next page starts after them, so page 1,000 costs what page 1 costs. The pk is global
to the resource table, so the same cursor pages a search across several types.
"""
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from sqlalchemy import Connection, DateTime, Numeric, String, and_, false, func, literal, or_, select, true
from sqlalchemy.sql import ColumnElement

from app.errors import BadRequest
from app.model.instants import EARLIEST, LATEST, as_utc
from app.model.numbers import whole_number
from app.model.registry import is_served, require_served_type, resource_types
from app.search.criteria import Query, condition_across_types, parameter_or_error, parse_number
from app.search.cursor import FOREIGN_CURSOR, decode_cursor, is_row_key
from app.search.index import ROW_PARAMETERS, hash64
from app.search.parameters import reference_codes
from app.store.db import is_postgresql
from app.store.resources import StoredResource, stored_from_row
from app.store.schema import INDEX_TABLES, resource

RESULT_PARAMETERS = frozenset({
    "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor", "_format", "_pretty",
})
TOTAL_MODES = ("none", "estimate", "accurate")
MAX_INCLUDED = 1000  # included resources per page, so one page cannot pull in the whole database
SORT_TYPES = frozenset({"string", "token", "date", "number", "quantity", "uri", "reference"})


@dataclass(frozen=True)
class SortKey:
    code: str
    descending: bool


@dataclass(frozen=True)
class Include:
    source_type: str
    code: str  # "*" for every reference parameter of source_type
    target_type: str | None
    iterate: bool = False


@dataclass(frozen=True)
class SearchRequest:
    type: str | None  # None: a system-level search, over `types`
    criteria: tuple[Query, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    total: str | None = None
    cursor: dict | None = None
    types: tuple[str, ...] = ()  # a system-level search's _type list; () for every type


@dataclass
class SearchResult:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    next_cursor: dict | None = None
    total: int | None = None


def search_request(type_name: str | None, pairs: list[tuple[str, str]], lenient: bool, default_count: int, max_count: int,
                   own_base: str | None = None):
    """The SearchRequest that the query's (name, value) pairs ask for, and the pairs honoured (for the self link).

    `type_name` None asks for a system-level search: over the types `_type` names, or every type.
    Unknown or malformed criteria are a 400, or with lenient handling are dropped. A reference value under `own_base`,
    the base URL the request came to, names a resource here.
    """
    scope_pairs = [(name, value) for name, value in pairs if type_name is None and name == "_type"]
    scope = search_scope(type_name, [value for _, value in scope_pairs])
    results = [(name, value) for name, value in pairs if is_result_parameter(name)]
    criteria = [Query(name, value, own_base) for name, value in pairs if not is_result_parameter(name) and (name, value) not in scope_pairs]
    types = searched_types(scope)
    criteria = known_criteria(types, criteria) if lenient else checked_criteria(types, criteria)
    single = dict(results)
    check_total_mode(single.get("_total"))
    request = replace(
        scope,
        criteria=tuple(criteria),
        sort=parse_sort(scope.type, single.get("_sort")),
        count=page_count(single.get("_count"), default_count, max_count),
        includes=parse_includes(types, [(n, v) for n, v in results if n.startswith("_include")], reverse=False),
        revincludes=parse_includes(types, [(n, v) for n, v in results if n.startswith("_revinclude")], reverse=True),
        total=single.get("_total"),
        cursor=decode_cursor(single["_cursor"]) if single.get("_cursor") else None,
    )
    return request, [*results, *scope_pairs, *((query.name, query.value) for query in criteria)]


def search_scope(type_name: str | None, type_lists: list[str]) -> SearchRequest:
    """The types a search covers, as a SearchRequest without criteria. A system-level search whose
    _type names one type is that type's search; one that names several covers just those."""
    if type_name is not None:
        require_served_type(type_name)
        return SearchRequest(type_name)
    types = parse_type_list(type_lists)
    return SearchRequest(types[0]) if len(types) == 1 else SearchRequest(None, types=types)


def parse_type_list(values: list[str]) -> tuple[str, ...]:
    """The served types that `_type=Patient,Observation` names, in order and without repeats; () without _type."""
    if len(values) > 1:
        raise BadRequest("Give _type once, with the types separated by commas (_type=Patient,Observation).")
    types = tuple(dict.fromkeys(part.strip() for part in values[0].split(",") if part.strip())) if values else ()
    for name in types:
        if not is_served(name):
            raise BadRequest(f"_type names '{name}', which is not a resource type this server serves.")
    return types


def searched_types(request: SearchRequest) -> tuple[str, ...]:
    """The search's one type, a system-level search's _type list, or every served type."""
    if request.type is not None:
        return (request.type,)
    return request.types or tuple(sorted(resource_types()))


def page_count(text: str | None, default: int, maximum: int) -> int:
    if text is None:
        return default
    count = whole_number(text, maximum)
    if count is None:
        raise BadRequest(f"_count={text} is not a whole number.")
    return count


def is_result_parameter(name: str) -> bool:
    return name.split(":")[0] in RESULT_PARAMETERS


def checked_criteria(types: tuple[str, ...], criteria: list[Query]) -> list[Query]:
    """The criteria, after raising BadRequest for the first one that is unknown or malformed."""
    for query in criteria:
        condition_across_types(types, query)
    return criteria


def known_criteria(types: tuple[str, ...], criteria: list[Query]) -> list[Query]:
    """Lenient handling: the criteria the server understands; the others are dropped (and left out of links)."""
    kept = []
    for query in criteria:
        try:
            condition_across_types(types, query)
        except BadRequest:
            continue
        kept.append(query)
    return kept


def parse_sort(type_name: str | None, text: str | None) -> tuple[SortKey, ...]:
    keys = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        code = item.removeprefix("-")
        check_sortable(type_name, code)
        keys.append(SortKey(code, item.startswith("-")))
    return tuple(keys)


def check_sortable(type_name: str | None, code: str) -> None:
    """_id and _lastUpdated sort any search; a type's own parameters sort only a search of that type."""
    if code in ROW_PARAMETERS:
        return
    if type_name is None:
        raise BadRequest(f"_sort={code}: a search across several types sorts only by _id or _lastUpdated.")
    if parameter_or_error(type_name, code).type not in SORT_TYPES:
        raise BadRequest(f"_sort={code}: {parameter_or_error(type_name, code).type} parameters cannot be sorted on.")


def parse_includes(types: tuple[str, ...], values: list[str], reverse: bool) -> tuple[Include, ...]:
    includes = []
    for name, value in values:
        iterate = name.endswith(":iterate") or name.endswith(":recurse")
        source_type, _, rest = value.partition(":")
        code, _, target_type = rest.partition(":")
        if not source_type or not code:
            raise BadRequest(f"{name}={value} is not of the form Type:parameter[:targetType] (or Type:*).")
        if not reverse and not iterate and source_type not in types:
            raise BadRequest(f"_include={value}: {source_type} is not a type searched (or use _include:iterate).")
        if code != "*" and parameter_or_error(source_type, code).type != "reference":
            raise BadRequest(f"{name}={value}: '{code}' is not a reference parameter of {source_type}.")
        includes.append(Include(source_type, code, target_type or None, iterate))
    return tuple(includes)


def check_total_mode(mode: str | None) -> None:
    if mode is not None and mode not in TOTAL_MODES:
        raise BadRequest(f"_total={mode} is not one of {', '.join(TOTAL_MODES)}.")


def run_search(connection: Connection, request: SearchRequest) -> SearchResult:
    if request.type is not None:
        require_served_type(request.type)
    keys = sort_columns(request)
    page = page_keys(request, keys).subquery("page")
    page_columns = [page.c[sort_key_label(position)] for position in range(len(keys))]
    statement = (
        select(resource, *page_columns).join(page, resource.c.pk == page.c[sort_key_label(len(keys) - 1)])
        .order_by(*[column.desc() if descending else column.asc() for column, (_, descending) in zip(page_columns, keys)])
    )
    rows = connection.execute(statement).all()
    matches = rows[: request.count]
    result = SearchResult([stored_from_row(row) for row in matches])
    if len(rows) > request.count and matches:
        result.next_cursor = cursor_of(matches[-1], len(keys))
    if request.total in ("accurate", "estimate"):  # a first page that holds every match needs no count
        result.total = len(matches) if request.cursor is None and len(rows) <= request.count else matches_total(connection, request)
    result.included = included_resources(connection, result.matches, request)
    return result


def page_keys(request: SearchRequest, keys: list[tuple[ColumnElement, bool]]):
    """The page's sort keys alone (the last is pk): one row more than the page, to tell whether another follows.

    Selecting keys and not whole rows lets PostgreSQL find matches in index-only scans, and fetch
    the rows of one page only, never those of every match it sorts."""
    statement = select(*[column.label(sort_key_label(position)) for position, (column, _) in enumerate(keys)])
    statement = statement.where(search_condition(request))
    if request.cursor:
        statement = statement.where(after_cursor(keys, request.cursor))
    ordered = [column.desc() if descending else column.asc() for column, descending in keys]
    return statement.order_by(*ordered).limit(request.count + 1)


def sort_key_label(position: int) -> str:
    return f"sort_key_{position}"


def matches_total(connection: Connection, request: SearchRequest) -> int:
    """The number of matches, or for _total=estimate on PostgreSQL the planner's estimate of it (SQLite has none)."""
    if request.total == "estimate" and is_postgresql(connection):
        return estimated_matches(connection, request)
    return count_matches(connection, request)


def count_matches(connection: Connection, request: SearchRequest) -> int:
    return connection.execute(select(func.count()).select_from(resource).where(search_condition(request))).scalar()


def estimated_matches(connection: Connection, request: SearchRequest) -> int:
    """PostgreSQL's row estimate for the search: the top plan's "Plan Rows" of EXPLAIN, which plans without
    running the query, so costs the same for ten matches or ten million. Not exact, and at least 1."""
    statement = select(resource.c.pk).where(search_condition(request))
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    return round(plan[0]["Plan"]["Plan Rows"])


def search_condition(request: SearchRequest) -> ColumnElement:
    types = searched_types(request)
    conditions = [condition_across_types(types, query) for query in request.criteria]
    return and_(type_condition(request), resource.c.deleted == false(), *conditions)


def type_condition(request: SearchRequest) -> ColumnElement:
    """The search's one type; for a system-level search the types _type names, or any type."""
    if request.type is not None:
        return resource.c.res_type == request.type
    return resource.c.res_type.in_(request.types) if request.types else true()


def sort_columns(request: SearchRequest) -> list[tuple[ColumnElement, bool]]:
    """(SQL expression, descending) per sort key, then pk as the tie-breaker that makes the order total."""
    keys = [(sort_expression(request.type, key), key.descending) for key in request.sort]
    tie_breaker_descending = request.sort[-1].descending if request.sort else False
    return [*keys, (resource.c.pk, tie_breaker_descending)]


def sort_expression(type_name: str, key: SortKey) -> ColumnElement:
    """The value a resource sorts by: its smallest (ascending) or largest (descending) indexed value."""
    if key.code == "_id":
        return resource.c.res_id
    if key.code == "_lastUpdated":
        return resource.c.last_updated
    parameter = parameter_or_error(type_name, key.code)
    index = INDEX_TABLES[parameter.type]
    column = SORT_COLUMNS[parameter.type](index, key.descending)
    pick = func.max if key.descending else func.min
    value = select(pick(column)).where(index.c.res_pk == resource.c.pk, index.c.h_param == hash64(type_name, parameter.code))
    missing = literal(MISSING_SORT_VALUE[parameter.type][key.descending], SORT_VALUE_TYPES[parameter.type])
    return func.coalesce(value.scalar_subquery(), missing)


SORT_COLUMNS = {
    "string": lambda index, descending: index.c.normalized,
    "token": lambda index, descending: index.c.code,
    "date": lambda index, descending: index.c.high if descending else index.c.low,
    "number": lambda index, descending: index.c.value,
    "quantity": lambda index, descending: index.c.value,
    "uri": lambda index, descending: index.c.uri,
    "reference": lambda index, descending: index.c.target_id,
}
# Resources without a value sort last, ascending or descending: (ascending, descending) stand-ins.
# Never NULL, whose place in the order differs between databases and which no cursor can step past.
HIGHEST_TEXT, LOWEST_TEXT = "\uffff", ""
MISSING_SORT_VALUE = {
    "string": (HIGHEST_TEXT, LOWEST_TEXT), "token": (HIGHEST_TEXT, LOWEST_TEXT), "uri": (HIGHEST_TEXT, LOWEST_TEXT),
    "reference": (HIGHEST_TEXT, LOWEST_TEXT), "date": (LATEST, EARLIEST),
    "number": (Decimal("1e30"), Decimal("-1e30")), "quantity": (Decimal("1e30"), Decimal("-1e30")),
}
SORT_VALUE_TYPES = {
    "string": String(), "token": String(), "uri": String(), "reference": String(),
    "date": DateTime(timezone=True), "number": Numeric(), "quantity": Numeric(),
}


def cursor_of(row, key_count: int) -> dict:
    return {"after": [encode_sort_value(row._mapping[sort_key_label(position)]) for position in range(key_count)]}


def encode_sort_value(value) -> list:
    """A sort key value for the JSON cursor, tagged so decode_sort_value gives back the same type."""
    if isinstance(value, datetime):
        return ["t", as_utc(value).isoformat()]
    if isinstance(value, (Decimal, float)):
        return ["n", str(value)]
    return ["v", value]


def decode_sort_value(item, column: ColumnElement):
    """A cursor's sort key value, after checking that it is of the key's type and one the database can compare."""
    if not (isinstance(item, list) and len(item) == 2 and item[0] in ("t", "n", "v")):
        raise BadRequest(FOREIGN_CURSOR)
    tag, value = item
    try:
        value = datetime.fromisoformat(value) if tag == "t" else parse_number(value) if tag == "n" else value
    except (TypeError, ValueError, BadRequest):
        raise BadRequest(FOREIGN_CURSOR) from None
    if not comparable_to(column, value):
        raise BadRequest(FOREIGN_CURSOR)
    return value


def comparable_to(column: ColumnElement, value) -> bool:
    """A value of the column's Python type: a row key, text without NUL, a datetime or a number parse_number takes."""
    if isinstance(value, bool) or not isinstance(value, column.type.python_type):
        return False
    if isinstance(value, int):
        return is_row_key(value)
    return not (isinstance(value, str) and "\x00" in value)


def after_cursor(keys: list[tuple[ColumnElement, bool]], cursor: dict) -> ColumnElement:
    """Rows after the cursor in the sort order: (k1 > v1) or (k1 = v1 and k2 > v2) or ..., with > as < for descending keys."""
    values = cursor.get("after")
    if not isinstance(values, list) or len(values) != len(keys):
        raise BadRequest(FOREIGN_CURSOR)
    values = [decode_sort_value(item, column) for item, (column, _) in zip(values, keys)]
    alternatives = []
    for position, ((column, descending), value) in enumerate(zip(keys, values)):
        earlier_equal = [keys[index][0] == values[index] for index in range(position)]
        step = column < value if descending else column > value
        alternatives.append(and_(*earlier_equal, step))
    return or_(*alternatives)


def included_resources(connection: Connection, matches: list[StoredResource], request: SearchRequest) -> list[StoredResource]:
    if not matches or not (request.includes or request.revincludes):
        return []
    seen = {(stored.type, stored.id) for stored in matches}
    included: list[StoredResource] = []
    frontier = matches
    while frontier and len(included) < MAX_INCLUDED:
        found = [
            stored for stored in referenced(connection, frontier, request.includes) + referencing(connection, frontier, request.revincludes)
            if (stored.type, stored.id) not in seen
        ]
        for stored in found:
            seen.add((stored.type, stored.id))
        included += found
        frontier = found if any(include.iterate for include in request.includes + request.revincludes) else []
    return included[:MAX_INCLUDED]


def referenced(connection: Connection, sources: list[StoredResource], includes: tuple[Include, ...]) -> list[StoredResource]:
    """_include: the resources that `sources` point at through the named reference parameters."""
    references = INDEX_TABLES["reference"]
    conditions = [include_condition(include, references) for include in includes if any(s.type == include.source_type for s in sources)]
    if not conditions:
        return []
    statement = (
        select(resource)
        .join(references, and_(resource.c.res_type == references.c.target_type, resource.c.res_id == references.c.target_id))
        .where(references.c.res_pk.in_(pks_of(sources)), or_(*conditions), resource.c.deleted == false())
        .distinct()
        .limit(MAX_INCLUDED)
    )
    return [stored_from_row(row) for row in connection.execute(statement).all()]


def referencing(connection: Connection, targets: list[StoredResource], revincludes: tuple[Include, ...]) -> list[StoredResource]:
    """_revinclude: the resources of each named type whose reference parameter points at one of `targets`."""
    if not revincludes:
        return []
    references = INDEX_TABLES["reference"]
    pointed_at = or_(*[and_(references.c.target_type == t.type, references.c.target_id == t.id) for t in targets])
    conditions = [and_(include_condition(include, references), resource.c.res_type == include.source_type) for include in revincludes]
    statement = (
        select(resource)
        .join(references, references.c.res_pk == resource.c.pk)
        .where(pointed_at, or_(*conditions), resource.c.deleted == false())
        .distinct()
        .limit(MAX_INCLUDED)
    )
    return [stored_from_row(row) for row in connection.execute(statement).all()]


def pks_of(stored: list[StoredResource]):
    return select(resource.c.pk).where(or_(*[and_(resource.c.res_type == s.type, resource.c.res_id == s.id) for s in stored]))


def include_condition(include: Include, references) -> ColumnElement:
    codes = reference_codes(include.source_type, include.code)
    condition = references.c.h_param.in_([hash64(include.source_type, code) for code in codes])
    return and_(condition, references.c.target_type == include.target_type) if include.target_type else condition
