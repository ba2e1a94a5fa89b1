"""Searches over the resource and index tables: the criteria's condition, sorting, keyset paging, totals
and _include/_revinclude, as one SQL query per step; and the token lookups and advisory locks of
conditional writes.

Paging never uses OFFSET: the cursor holds the last row's sort keys and pk, and the
next page starts after them, so page 1,000 costs what page 1 costs. The pk is global
to the resource table, so the same cursor pages a search across several types.
"""
from dataclasses import dataclass, field
from functools import cache
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ARRAY, BigInteger, Connection, DateTime, Numeric, String, and_, bindparam, false, func, literal, or_, select, text, true
from sqlalchemy.sql import ColumnElement

from app.errors import BadRequest
from app.model.instants import EARLIEST, LATEST, as_utc
from app.protection.service import protection_of
from app.search.criteria import parameter_or_error, parse_number
from app.search.cursor import FOREIGN_CURSOR, is_row_key
from app.search.index import hash64
from app.search.parameters import reference_codes
from app.search.query import EVERYWHERE, Include, SearchRequest, SortKey, searched_types
from app.store.access import chain_limit, reach_condition
from app.store.criteria import condition_across_types
from app.store.db import column_in, is_postgresql
from app.store.resources import StoredResource, stored_from_row
from app.store.schema import INDEX_TABLES, resource, search_token

MAX_INCLUDED = 1000  # included resources per page, so one page cannot pull in the whole database
# Advisory locks on criteria hashes (`lock_keys`, ascending: unnest keeps the array's order, so they are taken in it);
# a statement that takes them beside its own work uses it as a CTE and reads `taken`.
LOCKS_TAKEN = "SELECT count(pg_advisory_xact_lock(key)) AS taken FROM unnest(CAST(:lock_keys AS bigint[])) AS key"
LOCK_KEYS = text(LOCKS_TAKEN)


@dataclass
class SearchResult:
    matches: list[StoredResource]
    included: list[StoredResource] = field(default_factory=list)
    next_cursor: dict | None = None
    total: int | None = None


def search_page(connection: Connection, request: SearchRequest) -> SearchResult:
    """One page of the search's matches, the cursor of the next, the total when asked, and the included resources."""
    protection = protection_of(connection)
    keys = sort_columns(request, protection)
    page = page_keys(request, keys, protection).subquery("page")
    page_columns = [page.c[sort_key_label(position)] for position in range(len(keys))]
    statement = (
        select(resource, *page_columns).join(page, resource.c.pk == page.c[sort_key_label(len(keys) - 1)])
        .order_by(*[column.desc() if descending else column.asc() for column, (_, descending) in zip(page_columns, keys)])
    )
    rows = connection.execute(statement).all()
    matches = rows[: request.count]
    result = SearchResult([stored_from_row(row, protection) for row in matches])
    if len(rows) > request.count and matches:
        result.next_cursor = cursor_of(matches[-1], len(keys))
    if request.total in ("accurate", "estimate"):  # a first page that holds every match needs no count
        result.total = len(matches) if request.cursor is None and len(rows) <= request.count else matches_total(connection, request)
    result.included = included_resources(connection, result.matches, request)
    return result


def page_keys(request: SearchRequest, keys: list[tuple[ColumnElement, bool]], protection):
    """The page's sort keys alone (the last is pk): one row more than the page, to tell whether another follows.

    Selecting keys and not whole rows lets PostgreSQL find matches in index-only scans, and fetch
    the rows of one page only, never those of every match it sorts."""
    statement = select(*[column.label(sort_key_label(position)) for position, (column, _) in enumerate(keys)])
    statement = statement.where(search_condition(request, protection))
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
    return count_matching(connection, request)


def count_matching(connection: Connection, request: SearchRequest) -> int:
    condition = search_condition(request, protection_of(connection))
    return connection.execute(select(func.count()).select_from(resource).where(condition)).scalar()


def estimated_matches(connection: Connection, request: SearchRequest) -> int:
    """PostgreSQL's row estimate for the search: the top plan's "Plan Rows" of EXPLAIN, which plans without
    running the query, so costs the same for ten matches or ten million. Not exact, and at least 1."""
    statement = select(resource.c.pk).where(search_condition(request, protection_of(connection)))
    compiled = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    plan = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params).scalar()
    return round(plan[0]["Plan"]["Plan Rows"])


def search_condition(request: SearchRequest, protection) -> ColumnElement:
    """The condition on resource rows that the request's criteria and the caller's reach put; `protection` blinds the
    values of parameters that read protected elements (app/store/criteria.py)."""
    types = searched_types(request)
    limit = chain_limit(request.reach, protection) if request.reach else None
    conditions = [condition_across_types(types, query, limit, protection) for query in request.criteria]
    return and_(type_condition(request), resource.c.deleted == false(), *conditions, *reach_conditions(request, types, protection))


def reach_conditions(request: SearchRequest, types: tuple[str, ...], protection) -> list[ColumnElement]:
    """The caller's limits (app/store/access.py): each limited type's resources only where the caller may search."""
    if request.reach is None:
        return []
    limited = {type_name: reaches for type_name in types if (reaches := request.reach(type_name)) != EVERYWHERE}
    if not limited:
        return []
    return [or_(
        resource.c.res_type.not_in(list(limited)),
        *[and_(resource.c.res_type == type_name, reach_condition(type_name, reaches, protection)) for type_name, reaches in limited.items()],
    )]


def type_condition(request: SearchRequest) -> ColumnElement:
    """The search's one type; for a system-level search the types _type names, or any type."""
    if request.type is not None:
        return resource.c.res_type == request.type
    return resource.c.res_type.in_(request.types) if request.types else true()


def sort_columns(request: SearchRequest, protection) -> list[tuple[ColumnElement, bool]]:
    """(SQL expression, descending) per sort key, then pk as the tie-breaker that makes the order total. A parameter
    that reads protected elements has only blind values, which sort nothing: BadRequest."""
    for key in request.sort:
        if protection.protects(request.type, key.code):
            raise BadRequest(f"_sort={key.code}: {request.type} '{key.code}' reads protected (encrypted) elements, whose blind "
                             "index keeps no order; sort by another parameter, or sort the results yourself.")
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
    return [stored_from_row(row, protection_of(connection)) for row in connection.execute(statement).all()]


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
    return [stored_from_row(row, protection_of(connection)) for row in connection.execute(statement).all()]


def pks_of(stored: list[StoredResource]):
    return select(resource.c.pk).where(or_(*[and_(resource.c.res_type == s.type, resource.c.res_id == s.id) for s in stored]))


def include_condition(include: Include, references) -> ColumnElement:
    codes = reference_codes(include.source_type, include.code)
    condition = references.c.h_param.in_([hash64(include.source_type, code) for code in codes])
    return and_(condition, references.c.target_type == include.target_type) if include.target_type else condition


def token_matches(connection: Connection, column: str, hashes: list[int]) -> list[tuple[int, StoredResource]]:
    """(hash, resource) for each live resource with a token row whose `column` holds one of `hashes` (see
    token_hash_parts), in pk order. A hash names its type and parameter, so one statement serves all."""
    statement = token_lookups(column) if is_postgresql(connection) else token_join(connection, column, hashes)
    return [(row.matched_hash, stored_from_row(row, protection_of(connection))) for row in connection.execute(statement, {"hashes": hashes})]


@cache
def token_lookups(column: str):
    """PostgreSQL: one index lookup per hash, then one per match, whatever the statistics say. As a join, the planner
    of a table not analyzed yet (the first minute of a feed into a new database) guessed hundreds of rows per hash and
    hashed the whole resource table: 25 ms instead of 1 ms for a batch's 90 business keys."""
    hashes = func.unnest(bindparam("hashes", type_=ARRAY(BigInteger))).table_valued("hash", name="h").render_derived()
    tokens = select(search_token.c.res_pk).where(search_token.c[column] == hashes.c.hash).offset(0).lateral("t")  # OFFSET 0: kept apart
    live = select(resource).where(resource.c.pk == tokens.c.res_pk, resource.c.deleted == false()).offset(0).lateral("r")
    return (
        select(hashes.c.hash.label("matched_hash"), live)
        .select_from(hashes).join(tokens, true()).join(live, true())
        .order_by(live.c.pk)
    )


def token_join(connection: Connection, column: str, hashes: list[int]):
    hashed = search_token.c[column]
    return (
        select(hashed.label("matched_hash"), resource)
        .join(resource, resource.c.pk == search_token.c.res_pk)
        .where(column_in(connection, hashed, hashes), resource.c.deleted == false())
        .order_by(resource.c.pk)
    )


def lock_criteria(connection: Connection, keys: list[int], held: set[int]) -> None:
    """Transaction-scoped advisory locks on criteria hashes, taken in ascending order, but those the transaction
    already `held` (which then holds them all)."""
    wanted = locks_wanted(keys, held)
    if is_postgresql(connection) and wanted:
        connection.execute(LOCK_KEYS, {"lock_keys": wanted})


def locks_wanted(keys: list[int], held: set[int]) -> list[int]:
    """The locks of `keys` not yet `held`, in the order to take them; from now on `held` counts them."""
    wanted = sorted(set(keys) - held)
    held.update(wanted)
    return wanted
