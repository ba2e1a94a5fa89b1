"""Conditional create, update and delete: writes whose target is found by search criteria.

Every major FHIR server has shipped duplicates from two conditional creates racing.
We serialise on the criteria, not on the table: on PostgreSQL a transaction-scoped
advisory lock keyed by a hash of (type, normalised criteria) is taken before the
search, so a second writer with the same criteria waits until the first commits and
then finds its resource; SQLite's single writer (BEGIN IMMEDIATE) does the same.
"""
from collections import defaultdict
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from app.errors import BadRequest, PreconditionFailed
from app.model.validation import check_resource_type
from app.search.index import hash64, is_indexed
from app.search.criteria import token_hash_parts
from app.search.parameters import SearchParameter, parameters_of
from app.search.query import SearchRequest
from app.search.service import is_result_parameter, run_search, search_request
from app.store.resources import StoredResource, WriteResult, create_resource, delete_resource, update_resource
from app.store.search import lock_criteria, token_matches

MATCH_LIMIT = 2  # enough to tell one match from many


def criteria_pairs(query: str) -> list[tuple[str, str]]:
    """`identifier=a|b&active=true` as sorted (name, value) pairs; result parameters are not criteria."""
    pairs = sorted(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    if not pairs:
        raise BadRequest("A conditional interaction needs search criteria, e.g. identifier=http://hospital.example.org/mrn|12345.")
    if any(is_result_parameter(name) for name, _ in pairs):
        raise BadRequest(f"Conditional criteria may not hold result parameters such as _count or _sort: '{query}'.")
    return pairs


def matching(connection: Connection, type_name: str, query: str) -> list[StoredResource]:
    """Up to two live resources of `type_name` matching `query`, after taking the lock on these criteria."""
    return matching_each(connection, [(type_name, query)])[(type_name, query)]


def matching_each(connection: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[StoredResource]]:
    """`matching` for many (type, criteria) at once, as a feed's batch of messages needs: every lock in one
    statement, in one order (so two such batches cannot deadlock), and the criteria that are one plain
    token looked up together, one statement per token column."""
    pairs = {key: criteria_pairs(key[1]) for key in dict.fromkeys(keys)}
    lock_criteria(connection, [hash64(type_name, *(f"{name}={value}" for name, value in key_pairs)) for (type_name, _), key_pairs in pairs.items()])
    found: dict[tuple[str, str], list[StoredResource]] = {}
    by_hash: dict[str, dict[int, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))  # column -> hash -> keys
    for key, key_pairs in pairs.items():
        token = single_token_criterion(key[0], key_pairs)
        if token is None:
            found[key] = searched(connection, key[0], key_pairs)
            continue
        column, parts = token_hash_parts(token[0].code, token[1])
        by_hash[column][hash64(key[0], *parts)].append(key)
        found[key] = []
    for column, keys_by_hash in by_hash.items():
        for matched_hash, stored in token_matches(connection, column, list(keys_by_hash)):
            for key in keys_by_hash[matched_hash]:
                found[key].append(stored)
    return found


def searched(connection: Connection, type_name: str, pairs: list[tuple[str, str]]) -> list[StoredResource]:
    search, _ = search_request(type_name, pairs, lenient=False, default_count=MATCH_LIMIT, max_count=MATCH_LIMIT)
    return run_search(connection, SearchRequest(search.type, search.criteria, count=MATCH_LIMIT)).matches


def single_token_criterion(type_name: str, pairs: list[tuple[str, str]]) -> tuple[SearchParameter, str] | None:
    """(parameter, value) when the criteria are one plain indexed token (no modifier, escape or OR), such as
    `identifier=system|value`, the business key of nearly every conditional write (feeds, Synthea bundles):
    then one index lookup serves instead of a whole search."""
    if len(pairs) != 1:
        return None
    (name, value), = pairs
    parameter = parameters_of(type_name).get(name)
    if parameter is None or parameter.type != "token" or not is_indexed(type_name, parameter) or "\\" in value or "," in value:
        return None
    return parameter, value


def single_match(matches: list[StoredResource], type_name: str, query: str) -> StoredResource | None:
    if len(matches) > 1:
        raise PreconditionFailed(f"More than one {type_name} matches '{query}'; make the criteria selective enough to match one.")
    return matches[0] if matches else None


def conditional_create(connection: Connection, body, type_name: str, query: str, resource_id: str | None = None) -> WriteResult:
    """If-None-Exist: create unless one resource matches (then return it unchanged); 412 when several match."""
    existing = single_match(matching(connection, type_name, query), type_name, query)
    if existing is not None:
        return WriteResult(existing, created=False, changed=False)
    return create_resource(connection, body, type_name, resource_id)


def conditional_update(connection: Connection, body, type_name: str, query: str, if_match: str | None = None) -> WriteResult:
    """PUT Type?criteria: update the one match, or create when none matches (under the body's id, if it has one)."""
    target = update_target(connection, body, type_name, query)
    if target is None:
        return create_resource(connection, body, type_name)
    return update_resource(connection, type_name, target, {**body, "id": target}, if_match)


def update_target(connection: Connection, body, type_name: str, query: str) -> str | None:
    """The id a conditional update writes: its one match's, else the body's; None to create under a new id."""
    check_resource_type(body, type_name)
    existing = single_match(matching(connection, type_name, query), type_name, query)
    if existing is None:
        return body.get("id")
    if body.get("id") not in (None, existing.id):
        raise BadRequest(f"The body's id '{body['id']}' is not the id of the {type_name} that matches '{query}' ({existing.id}).")
    return existing.id


def conditional_delete(connection: Connection, type_name: str, query: str) -> StoredResource | None:
    """DELETE Type?criteria: delete the one match; nothing when none matches; 412 when several match."""
    existing = single_match(matching(connection, type_name, query), type_name, query)
    return delete_resource(connection, type_name, existing.id) if existing else None


def resolve_conditional_reference(connection: Connection, reference: str) -> str:
    """`Practitioner?identifier=x|y` -> `Practitioner/id` of its one match; 412 for none or several (R4 transaction rules)."""
    type_name, _, query = reference.partition("?")
    matches = matching(connection, type_name, query)
    if len(matches) != 1:
        found = "no" if not matches else "more than one"
        raise PreconditionFailed(f"The conditional reference '{reference}' matches {found} {type_name}; it must match exactly one.")
    return f"{type_name}/{matches[0].id}"
