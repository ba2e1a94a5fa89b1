"""Conditional matching: the target of a conditional create, update or delete, found by search criteria
(the writes themselves are the unit of work's, app/store/unit.py).

Every major FHIR server has shipped duplicates from two conditional creates racing.
We serialise on the criteria, not on the table: on PostgreSQL a transaction-scoped
advisory lock keyed by a hash of (type, normalised criteria) is taken before the
search, so a second writer with the same criteria waits until the first commits and
then finds its resource; SQLite's single writer (BEGIN IMMEDIATE) does the same.
"""
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import parse_qsl

from sqlalchemy import Connection

from app.errors import BadRequest, PreconditionFailed
from app.protection.blind import token_lookup
from app.protection.service import protection_of
from app.search.index import hash64, is_indexed
from app.search.criteria import token_hash_parts
from app.search.parameters import SearchParameter, parameters_of
from app.search.query import Reach, SearchRequest
from app.search.service import is_result_parameter, run_search, search_request
from app.store.resources import StoredResource
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


def matching(connection: Connection, type_name: str, query: str, own_base: str | None, held: set[int],
             reach: Callable[[str], tuple[Reach, ...]] | None = None) -> list[StoredResource]:
    """Up to two live resources of `type_name` matching `query`, after taking the lock on these criteria unless the
    transaction `held` it; a reference value under `own_base` (this server's URL) matches as the relative reference
    it is stored as. `reach`: where the caller may search each type, chains and _has included (None: anywhere)."""
    return matching_each(connection, [(type_name, query)], own_base, held, reach)[(type_name, query)]


def matching_each(connection: Connection, keys: list[tuple[str, str]], own_base: str | None,
                  held: set[int], reach: Callable[[str], tuple[Reach, ...]] | None = None) -> dict[tuple[str, str], list[StoredResource]]:
    """`matching` for many (type, criteria) at once, as a feed's batch of messages needs: every lock in one
    statement, in one order (so two such batches cannot deadlock), and the criteria that are one plain
    token looked up together, one statement per token column."""
    pairs = {key: criteria_pairs(key[1]) for key in dict.fromkeys(keys)}
    lock_criteria(connection, [lock_key(type_name, key_pairs) for (type_name, _), key_pairs in pairs.items()], held)
    found: dict[tuple[str, str], list[StoredResource]] = {}
    by_hash: dict[str, dict[int, list[tuple[str, str]]]] = defaultdict(lambda: defaultdict(list))  # column -> hash -> keys
    for key, key_pairs in pairs.items():
        token = single_token_criterion(key[0], key_pairs)
        if token is None:
            found[key] = searched(connection, key[0], key_pairs, own_base, reach)
            continue
        column, hashes = token_hashes(connection, key[0], *token)
        for token_hash in hashes:
            by_hash[column][token_hash].append(key)
        found[key] = []
    for column, keys_by_hash in by_hash.items():
        for matched_hash, stored in token_matches(connection, column, list(keys_by_hash)):
            for key in keys_by_hash[matched_hash]:
                found[key].append(stored)
    return found


def token_hashes(connection: Connection, type_name: str, parameter: SearchParameter, value: str) -> tuple[str, list[int]]:
    """The token column and the hashes a plain token criterion is looked up by: blind ones (under every index key) for
    a parameter that reads protected elements (app/protection/blind.py)."""
    protection = protection_of(connection)
    if protection.protects(type_name, parameter.code):
        return token_lookup(protection.index_keys(), type_name, protection.blind_code(type_name, parameter.code), value)
    column, parts = token_hash_parts(parameter.code, value)
    return column, [hash64(type_name, *parts)]


def criteria_lock_keys(keys: list[tuple[str, str]]) -> list[int]:
    """The advisory lock keys of (type, criteria), as matching_each takes them."""
    return [lock_key(type_name, criteria_pairs(criteria)) for type_name, criteria in dict.fromkeys(keys)]


def lock_key(type_name: str, pairs: list[tuple[str, str]]) -> int:
    return hash64(type_name, *(f"{name}={value}" for name, value in pairs))


def searched(connection: Connection, type_name: str, pairs: list[tuple[str, str]], own_base: str | None,
             reach: Callable[[str], tuple[Reach, ...]] | None) -> list[StoredResource]:
    search, _ = search_request(type_name, pairs, lenient=False, default_count=MATCH_LIMIT, max_count=MATCH_LIMIT, own_base=own_base)
    return run_search(connection, SearchRequest(search.type, search.criteria, count=MATCH_LIMIT, reach=reach)).matches


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
