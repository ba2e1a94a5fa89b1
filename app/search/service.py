"""Type-level and system-level search: a request's parameters parsed into a SearchRequest (criteria, sorting,
paging, totals and _include/_revinclude), checked against the parameter registry, and run by app/store/search.py."""
from dataclasses import replace

from sqlalchemy import Connection

from app.errors import BadRequest
from app.model.numbers import whole_number
from app.model.registry import is_served, require_served_type
from app.search.criteria import Query, parameter_or_error
from app.search.cursor import decode_cursor
from app.search.index import ROW_PARAMETERS
from app.search.query import Include, SearchRequest, SortKey, searched_types
from app.store.criteria import condition_across_types
from app.store.search import SearchResult, count_matching, search_page

RESULT_PARAMETERS = frozenset({
    "_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_cursor", "_format", "_pretty",
})
TOTAL_MODES = ("none", "estimate", "accurate")
SORT_TYPES = frozenset({"string", "token", "date", "number", "quantity", "uri", "reference"})


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
    for query in criteria:  # compiling a criterion to SQL is what checks it: the compiler knows every form it takes
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
    """The search's page, once its type is known to be served (a request parsed here always is; one built by hand may not be)."""
    if request.type is not None:
        require_served_type(request.type)
    return search_page(connection, request)


def count_matches(connection: Connection, request: SearchRequest) -> int:
    """How many resources match the search, every page of it."""
    return count_matching(connection, request)
