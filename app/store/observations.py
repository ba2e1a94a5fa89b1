"""The SQL of Observation/$lastn and $stats: the Observations that search criteria match, each with the
moment it took effect (from the `date` index, as a search sorts by it)."""
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, select

from app.protection.service import protection_of
from app.search.criteria import Query
from app.search.query import Reach, SearchRequest, SortKey
from app.store.resources import StoredResource, stored_from_row
from app.store.schema import resource
from app.store.search import search_condition, sort_expression


def latest_dates_and_codes(connection: Connection, criteria: tuple[Query, ...], reach: Callable[[str], tuple[Reach, ...]] | None) -> list[tuple[int, datetime | None, dict | None]]:
    """(pk, latest effective moment, Observation.code) of each Observation the criteria match within the caller's
    `reach` (None: anywhere), in no order."""
    effective = sort_expression("Observation", SortKey("date", descending=True))
    statement = select(resource.c.pk, resource.c.body["code"].label("code"), effective).where(
        search_condition(observations_matching(criteria, reach), protection_of(connection))
    )
    return [(row.pk, row._mapping[effective.name], row.code) for row in connection.execute(statement)]


def resources_in_order(connection: Connection, pks: list[int]) -> list[StoredResource]:
    """The resources of these pks, in the order given."""
    rows = connection.execute(select(resource).where(resource.c.pk.in_(pks))).all()
    by_pk = {row.pk: stored_from_row(row, protection_of(connection)) for row in rows}
    return [by_pk[pk] for pk in pks]


def observations_oldest_first(connection: Connection, criteria: tuple[Query, ...], reach: Callable[[str], tuple[Reach, ...]] | None) -> list[tuple[StoredResource, datetime | None]]:
    """The Observations the criteria match within the caller's `reach` (None: anywhere) with their earliest effective
    moment, oldest first."""
    effective = sort_expression("Observation", SortKey("date", descending=False))
    statement = (
        select(resource, effective)
        .where(search_condition(observations_matching(criteria, reach), protection_of(connection)))
        .order_by(effective.asc().nulls_last(), resource.c.pk)
    )
    rows = connection.execute(statement).all()
    return [(stored_from_row(row, protection_of(connection)), row._mapping[effective.name]) for row in rows]


def observations_matching(criteria: tuple[Query, ...], reach: Callable[[str], tuple[Reach, ...]] | None) -> SearchRequest:
    return SearchRequest("Observation", criteria, reach=reach)
