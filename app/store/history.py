"""History at instance, type and system level, newest first, paged by a keyset on the history sequence."""
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, exists, or_, select

from app.errors import NotFound
from app.model.registry import require_served_type
from app.protection.service import protection_of
from app.store.db import PREPARED
from app.store.resources import StoredResource, require_resource_key, stored_from_row
from app.store.schema import resource, resource_history


@dataclass(frozen=True)
class HistoryQuery:
    type: str | None = None
    id: str | None = None
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None
    count: int = 50
    before_seq: int | None = None


@dataclass(frozen=True)
class HistoryPage:
    versions: list[StoredResource]
    next_before_seq: int | None


def read_history(connection: Connection, query: HistoryQuery) -> HistoryPage:
    if query.id:
        require_resource_key(query.type, query.id)
    elif query.type:
        require_served_type(query.type)
    if query.id and not resource_exists(connection, query.type, query.id):
        raise NotFound(f"{query.type}/{query.id} does not exist, so it has no history.")
    statement = history_statement(query)
    rows = connection.execute(statement.limit(query.count + 1)).all()
    has_more = len(rows) > query.count
    rows = rows[: query.count]
    next_seq = rows[-1]._mapping["seq"] if has_more and rows else None
    return HistoryPage([stored_from_row(row, protection_of(connection)) for row in rows], next_seq)


def history_statement(query: HistoryQuery):
    table = resource_history
    statement = select(table).order_by(table.c.seq.desc())
    if query.type:
        statement = statement.where(table.c.res_type == query.type)
    if query.id:  # one resource's versions, by its index whatever the values: planned once (app/store/db.py)
        statement = statement.where(table.c.res_id == query.id).execution_options(**{PREPARED: True})
    if query.since:
        statement = statement.where(table.c.last_updated >= query.since)
    if query.at:
        low, high = query.at
        statement = statement.where(table.c.last_updated < high, or_(table.c.superseded_at.is_(None), table.c.superseded_at > low))
    if query.before_seq is not None:
        statement = statement.where(table.c.seq < query.before_seq)
    return statement


def resource_exists(connection: Connection, type_name: str, resource_id: str) -> bool:
    condition = (resource.c.res_type == type_name) & (resource.c.res_id == resource_id)
    return connection.execute(select(exists().where(condition)).execution_options(**{PREPARED: True})).scalar()
