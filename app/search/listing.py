"""Type-level search with no criteria: every live resource of a type, paged by a keyset on its id.

Search parameters are not served yet, so any criterion is reported as unknown
(400, or ignored with `Prefer: handling=lenient`); the result parameters below work.
"""
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from app.errors import BadRequest
from app.model.registry import require_served_type
from app.store.resources import StoredResource, stored_from_row
from app.store.schema import resource

RESULT_PARAMETERS = frozenset({"_count", "_summary", "_elements", "_format", "_pretty", "_total", "_cursor"})
TOTAL_MODES = ("none", "estimate", "accurate")


@dataclass(frozen=True)
class ListingPage:
    resources: list[StoredResource]
    next_after_id: str | None


def unknown_parameters(names) -> list[str]:
    return sorted(set(names) - RESULT_PARAMETERS)


def check_parameters(names, lenient: bool) -> None:
    unknown = unknown_parameters(names)
    if unknown and not lenient:
        raise BadRequest(
            f"Unknown search parameter(s): {', '.join(unknown)}. Send 'Prefer: handling=lenient' to have unknown parameters ignored."
        )


def check_total_mode(mode: str | None) -> None:
    if mode is not None and mode not in TOTAL_MODES:
        raise BadRequest(f"_total={mode} is not one of {', '.join(TOTAL_MODES)}.")


def list_resources(connection: Connection, type_name: str, count: int, after_id: str | None) -> ListingPage:
    require_served_type(type_name)
    statement = live_resources(type_name).order_by(resource.c.res_id).limit(count + 1)
    if after_id is not None:
        statement = statement.where(resource.c.res_id > after_id)
    rows = connection.execute(statement).all()
    has_more = len(rows) > count
    page = [stored_from_row(row) for row in rows[:count]]
    return ListingPage(page, page[-1].id if has_more and page else None)


def count_resources(connection: Connection, type_name: str) -> int:
    require_served_type(type_name)
    statement = select(func.count()).select_from(live_resources(type_name).subquery())
    return connection.execute(statement).scalar()


def live_resources(type_name: str):
    return select(resource).where(resource.c.res_type == type_name, resource.c.deleted.is_(False))
