"""The steps of the one write path and the one read path for resources, which the unit of work (app/store/unit.py)
runs for every entrance: validate, version, extract index rows, persist; read current and past versions.

Versions are assigned under a row lock (SELECT ... FOR UPDATE on PostgreSQL; the
BEGIN IMMEDIATE database lock on SQLite), or from a version read without one (a
feed's key lookup, an update that is its unit's only write), and the UPDATE
repeats the expected version as a compare-and-swap, so two writers can never both win.
"""
import operator
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce

import jsonpatch
from sqlalchemy import Connection, and_, bindparam, false, or_, select

from app.errors import BadRequest, Conflict, Gone, InvalidResource, NotFound, PreconditionFailed, UnprocessableResource
from app.model.instants import as_utc, format_instant, utc_now
from app.model.numbers import whole_number
from app.model.ordering import in_element_order
from app.model.references import local_targets
from app.model.registry import require_served_type
from app.model.validation import SERVER_META, check_resource_id, check_resource_type, validate_resource
from app.protection.service import protection_of
from app.search.index import index_rows
from app.store import batched_writes, postgresql_writes
from app.store.db import PREPARED, autocommitted, column_in, is_postgresql, transaction_not_begun
from app.store.index_rows import index_mask, parameter_types_in
from app.store.schema import resource, resource_history, search_reference
from app.store.turns import let_others_run

MIN_TICK = timedelta(milliseconds=1)
MAX_VERSION = 2**31 - 1  # resource.version is a 32-bit integer column

# Up to this many creates at once go as one statement on PostgreSQL; more go as COPY streams (measured crossover).
ONE_STATEMENT_CREATES = 100
# Statements built once: building a select per read cost a third of a read's CPU.
CURRENT_ROW = select(resource).where(resource.c.res_type == bindparam("type_name"), resource.c.res_id == bindparam("resource_id")).execution_options(**{PREPARED: True})
LOCKED_CURRENT_ROW = CURRENT_ROW.with_for_update()
VERSION_ROW = select(resource_history).where(
    resource_history.c.res_type == bindparam("type_name"), resource_history.c.res_id == bindparam("resource_id"),
    resource_history.c.version == bindparam("version"),
).execution_options(**{PREPARED: True})


@dataclass(frozen=True)
class StoredResource:
    """One version of a resource as stored; `body` is None for a deletion."""

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    body: dict | None
    method: str | None = None
    pk: int | None = None  # the current row's key; None for history versions
    index_mask: int = 0

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def versioned_reference(self) -> str:
        return f"{self.type}/{self.id}/_history/{self.version}"


@dataclass(frozen=True)
class WriteResult:
    stored: StoredResource
    created: bool = False
    changed: bool = True
    live_targets: frozenset[tuple[str, str]] = frozenset()  # what its references name, found live and locked by the write
    written: bool = True  # False: not written, because a target of its references is not live (see update_committed)
    audited: bool = False  # its AuditEvents were written with it (see update_committed)
    waiting: "NextVersion | None" = None  # built from the version the unit found, for the unit to write (update_resource)


@dataclass(frozen=True)
class NextVersion:
    """A next version built from the version a unit found, not written yet: the unit writes it with its creates."""

    stored: StoredResource
    rows: dict[str, list[dict]]
    current_mask: int


def new_resource(body, expected_type: str | None = None, resource_id: str | None = None, method: str = "POST") -> StoredResource:
    """The validated first version of a resource to create, not yet written (see insert_new_resources)."""
    type_name = check_resource_type(body, expected_type)
    let_others_run()
    validate_resource(body)
    return first_version(type_name, resource_id or new_id(), body, method)


def turn_index_rows(stored: StoredResource, protection) -> dict[str, list[dict]]:
    let_others_run()
    return index_rows(stored.type, stored.body, protection)


def creates_of(new_versions: list[StoredResource], protection, targets: frozenset = frozenset()) -> "postgresql_writes.Creates":
    """First versions as the writers take them: each one's stored values and index rows, and the targets they need live."""
    row_sets = [turn_index_rows(stored, protection) for stored in new_versions]
    values = [version_values(stored, rows, protection) for stored, rows in zip(new_versions, row_sets)]
    return postgresql_writes.Creates(values, row_sets, targets)


def insert_new_resources(connection: Connection, new_versions: list[StoredResource], targets: frozenset = frozenset(),
                         last_of_unit: bool = False, updates: list[NextVersion] = ()) -> set[tuple[str, str]]:
    """Write first versions from new_resource together (a transaction's many POSTs at once): on PostgreSQL as one
    statement, or as one COPY per table for a large batch; on SQLite one executemany per table. Nothing is written
    unless the (type, id) `targets` (what they refer to) are all live, and those are locked FOR SHARE (on PostgreSQL's
    one statement, by the statement itself). Returns the targets found live. `last_of_unit`: nothing else follows in
    the unit, so a unit that wrote nothing before may let the one statement commit by itself. `updates` (PostgreSQL):
    next versions of resources the unit found, written in the same statement by compare-and-swap (a Conflict when
    another writer changed one since)."""
    protection = protection_of(connection)
    creates = creates_of(new_versions, protection, targets)
    versions, row_sets = creates.versions, creates.row_sets
    if updates and len(versions) + len(updates) <= ONE_STATEMENT_CREATES:
        return written_with_updates(connection, creates, updates)
    if updates:  # too many for one statement: the creates, then each update
        live = insert_new_resources(connection, new_versions, targets)
        for update in updates:
            if postgresql_writes.write_next_version(connection, version_values(update.stored, update.rows, protection), update.rows, update.stored.pk, update.current_mask) is None:
                raise conflict(update.stored)
        return live
    if not new_versions:
        return set()
    if is_postgresql(connection) and len(versions) <= ONE_STATEMENT_CREATES:
        return postgresql_writes.insert_first_versions(connection, versions, row_sets, targets, last_of_unit)
    live = live_keys(connection, targets)
    if live == targets:
        batched_writes.insert_first_versions(connection, versions, row_sets)
    return live


def written_with_updates(connection: Connection, creates: "postgresql_writes.Creates", updates: list[NextVersion]) -> set[tuple[str, str]]:
    """PostgreSQL: a unit's creates and updates in one statement (see insert_new_resources); the targets found live."""
    old_types = parameter_types_in(reduce(operator.or_, (update.current_mask for update in updates)))
    protection = protection_of(connection)
    live, all_swapped = postgresql_writes.write_unit_versions(
        connection, creates, [version_values(update.stored, update.rows, protection) for update in updates], old_types, [update.rows for update in updates],
    )
    if live == creates.targets and not all_swapped:
        raise conflict(updates[0].stored) if len(updates) == 1 else Conflict(
            f"One of {', '.join(f'{u.stored.type}/{u.stored.id}' for u in updates)} was changed by another writer at the same moment; retry the request.")
    return live


def update_resource(connection: Connection, type_name: str, resource_id: str, body, if_match: str | None = None,
                    lock_targets: bool = False, found: StoredResource | None = None, alone: bool = False,
                    audit: Callable[[StoredResource], list[StoredResource]] | None = None) -> WriteResult:
    """PUT: a new version, or the first one under the client's id. Unchanged content writes nothing. `lock_targets`:
    the write also finds which targets of the body's references are live, and locks them (see write_next_version).
    `found`: the current version as the caller read it in this transaction (a feed's key lookup, under its lock);
    then its row is not locked and read again, and the write's compare-and-swap is a Conflict if another writer
    changed it since; on PostgreSQL that write waits, as `waiting`, for the unit to write it with its creates in
    one statement. A version without its row's key (a create not read back) is read again. `alone`: this is the
    unit's only write (see update_committed), and `audit` gives the AuditEvents to write with it."""
    check_resource_id(resource_id)
    check_resource_type(body, type_name)
    check_id_of_url(body, type_name, resource_id)
    validate_resource(body)
    if alone and is_postgresql(connection) and transaction_not_begun(connection):
        result = update_committed(connection, type_name, resource_id, body, if_match, lock_targets, audit)
        if result is not None:
            return result
    current = found if found is not None and found.pk is not None else lock_current(connection, type_name, resource_id)
    if current is None:
        require_no_precondition(if_match, type_name, resource_id)
        stored = try_insert_first_version(connection, type_name, resource_id, body)
        if stored:
            return WriteResult(stored, created=True)
        current = lock_current(connection, type_name, resource_id)
    check_if_match(current, if_match)
    if not current.deleted and same_content(current.body, body):
        return WriteResult(current, changed=False)
    if current is found and is_postgresql(connection):
        stored, rows = next_version(current, body, "PUT", protection_of(connection))
        return WriteResult(stored, created=current.deleted, waiting=NextVersion(stored, rows, current.index_mask))
    stored, live = write_next_version(connection, current, body, "PUT", lock_targets)
    return WriteResult(stored, created=current.deleted, live_targets=live)


def update_committed(connection: Connection, type_name: str, resource_id: str, body: dict, if_match: str | None,
                     lock_targets: bool, audit: Callable[[StoredResource], list[StoredResource]] | None = None) -> WriteResult | None:
    """An update that is its unit's only write, on PostgreSQL before anything of the unit's transaction was sent: the
    current version is read without a lock and the next one swapped in by a statement that commits by itself, and
    only if the references' targets are all live (2 round trips, against BEGIN, SELECT ... FOR UPDATE, the write and
    COMMIT, and no row lock held between them). None when there is no current version, or when another writer
    swapped first: the caller then writes under the row lock, in the unit's transaction, so that concurrent updates
    all succeed, one after the other. `written` is False, with the live targets, when a target is not live. `audit`:
    the AuditEvents of the next version, written by the same statement, only if it swaps in (`audited`)."""
    with autocommitted(connection):
        row = connection.execute(CURRENT_ROW, {"type_name": type_name, "resource_id": resource_id}).first()
    if row is None:
        return None
    protection = protection_of(connection)
    current = stored_from_row(row, protection)
    check_if_match(current, if_match)
    if not current.deleted and same_content(current.body, body):
        return WriteResult(current, changed=False)
    stored, rows = next_version(current, body, "PUT", protection)
    targets = local_targets(stored.body) if lock_targets else frozenset()
    records = audit(stored) if audit else []
    values = version_values(stored, rows, protection)
    if records:
        swapped, live = postgresql_writes.swap_committed_with_creates(connection, values, rows, current.index_mask, creates_of(records, protection, targets))
    else:
        swapped, live = postgresql_writes.swap_committed(connection, values, rows, current.index_mask, targets)
    if not swapped and live == targets:
        return None
    return WriteResult(stored, created=current.deleted, live_targets=live, written=swapped, audited=swapped and bool(records))


def check_id_of_url(body: dict, type_name: str, resource_id: str) -> None:
    """R4 http.html#update: the body carries the id of the URL; a body without one is a 400 too."""
    if "id" not in body:
        raise InvalidResource(f"The body has no id; a PUT to {type_name}/{resource_id} must carry \"id\": \"{resource_id}\", the id of the URL.")
    if body["id"] != resource_id:
        raise InvalidResource(f"The body's id '{body['id']}' does not match the id '{resource_id}' in the URL; a PUT body must carry the same id.")


def patch_resource(connection: Connection, type_name: str, resource_id: str, operations, if_match: str | None = None,
                   lock_targets: bool = False) -> WriteResult:
    """PATCH with a JSON Patch (RFC 6902) document; the result must still be valid FHIR."""
    current = lock_live(connection, type_name, resource_id)
    check_if_match(current, if_match)
    patched = apply_json_patch(current.body, operations)
    if patched.get("resourceType") != type_name or patched.get("id") != resource_id:
        raise UnprocessableResource("A patch may not change the resource's resourceType or id.")
    validate_resource(patched)
    if same_content(current.body, patched):
        return WriteResult(current, changed=False)
    stored, live = write_next_version(connection, current, patched, "PATCH", lock_targets)
    return WriteResult(stored, live_targets=live)


def delete_resource(connection: Connection, type_name: str, resource_id: str,
                    if_match: str | None = None) -> tuple[StoredResource, StoredResource] | None:
    """Logical delete: the deletion version written, and the version it deleted. None when nothing live was there."""
    require_resource_key(type_name, resource_id)
    current = lock_current(connection, type_name, resource_id)
    if current is None or current.deleted:
        return None
    check_if_match(current, if_match)
    return write_next_version(connection, current, None, "DELETE")[0], current


def read_resource(connection: Connection, type_name: str, resource_id: str) -> StoredResource:
    require_resource_key(type_name, resource_id)
    row = connection.execute(CURRENT_ROW, {"type_name": type_name, "resource_id": resource_id}).first()
    return live_version(row, protection_of(connection), lambda: missing(type_name, resource_id))


def read_version(connection: Connection, type_name: str, resource_id: str, version_id: str) -> StoredResource:
    require_resource_key(type_name, resource_id)
    version = whole_number(version_id, MAX_VERSION + 1)
    if version is None or not 1 <= version <= MAX_VERSION:
        raise NotFound(f"Version '{version_id}' of {type_name}/{resource_id} does not exist: versions are numbered 1, 2, 3...")
    row = connection.execute(VERSION_ROW, {"type_name": type_name, "resource_id": resource_id, "version": version}).first()
    return live_version(row, protection_of(connection), lambda: missing_version(type_name, resource_id, version_id))


def require_resource_key(type_name: str, resource_id: str) -> None:
    """A served type and an id FHIR allows: any other names no resource here."""
    require_served_type(type_name)
    check_resource_id(resource_id)


def missing(type_name: str, resource_id: str) -> NotFound:
    return NotFound(f"{type_name}/{resource_id} does not exist.")


def missing_version(type_name: str, resource_id: str, version_id: str) -> NotFound:
    return NotFound(f"Version {version_id} of {type_name}/{resource_id} does not exist.")


def live_version(row, protection, not_found: Callable[[], NotFound]) -> StoredResource:
    """The stored version in `row`; the `not_found` error when there is none, Gone when it is a deletion."""
    if row is None:
        raise not_found()
    stored = stored_from_row(row, protection)
    if stored.deleted:
        raise gone(stored)
    return stored


AUDIT_RECORD_TYPE = "AuditEvent"


def live_referrers(connection: Connection, type_name: str, resource_id: str, excluding: str | None = None) -> list[StoredResource]:
    """The live resources (but those of type `excluding`) whose references, as indexed, point at `type_name/resource_id`."""
    query = select(resource).where(live_referrer(type_name, resource_id), resource.c.res_type != excluding)
    protection = protection_of(connection)
    return [stored_from_row(row, protection) for row in connection.execute(query.order_by(resource.c.pk))]


def live_referrer(type_name: str, resource_id: str):
    """The condition on `resource` rows: live, with an indexed reference to `type_name/resource_id`, and not an
    AuditEvent: a record of who touched a resource neither holds back its deletion nor moves with a merge."""
    pointing = select(search_reference.c.res_pk).where(
        search_reference.c.target_type == type_name, search_reference.c.target_id == resource_id,
    )
    return and_(resource.c.pk.in_(pointing), resource.c.deleted == false(), resource.c.res_type != AUDIT_RECORD_TYPE)


def stored_keys(connection: Connection, keys) -> set[tuple[str, str]]:
    """Which of these (type, id) already have a row, live or deleted."""
    return keys_found(connection, keys, live_only=False)


def live_keys(connection: Connection, keys) -> set[tuple[str, str]]:
    """Which of these (type, id) name a live resource, each locked FOR SHARE until commit (PostgreSQL): a delete,
    which locks its row FOR UPDATE, waits for this transaction, and then finds the reference that holds it back."""
    return keys_found(connection, keys, live_only=True)


def keys_found(connection: Connection, keys, live_only: bool) -> set[tuple[str, str]]:
    """One statement, a condition per type: a row-value `(res_type, res_id) IN (...)` was planned as a scan of the
    whole table on PostgreSQL."""
    ids_by_type = defaultdict(set)
    for type_name, resource_id in keys:
        ids_by_type[type_name].add(resource_id)
    if not ids_by_type:
        return set()
    query = select(resource.c.res_type, resource.c.res_id).where(or_(*(
        and_(resource.c.res_type == type_name, column_in(connection, resource.c.res_id, ids)) for type_name, ids in ids_by_type.items()
    )))
    if live_only:
        query = query.where(resource.c.deleted == false()).with_for_update(read=True)
    return {(type_name, resource_id) for type_name, resource_id in connection.execute(query)}


def first_referrer(connection: Connection, type_name: str, resource_id: str) -> tuple[str, str] | None:
    """(type, id) of a live resource, other than itself, whose indexed references point at `type_name/resource_id`."""
    query = (
        select(resource.c.res_type, resource.c.res_id)
        .where(live_referrer(type_name, resource_id), ~resource_key(type_name, resource_id))
        .order_by(resource.c.pk).limit(1)
    )
    row = connection.execute(query).first()
    return tuple(row) if row else None


def has_resources(connection: Connection) -> bool:
    return connection.execute(select(resource.c.res_id).limit(1)).first() is not None


def gone(stored: StoredResource) -> Gone:
    return Gone(
        f"{stored.type}/{stored.id} was deleted (version {stored.version}).",
        headers={"ETag": stored.etag, "Last-Modified": http_date(stored.last_updated)},
    )


def http_date(moment: datetime) -> str:
    return as_utc(moment).strftime("%a, %d %b %Y %H:%M:%S GMT")


def new_id() -> str:
    return str(uuid.uuid4())


def resource_key(type_name: str, resource_id: str):
    return and_(resource.c.res_type == type_name, resource.c.res_id == resource_id)


def stored_from_row(row, protection) -> StoredResource:
    """The version in a resource or history row, its body opened by `protection` (protection_of its connection)."""
    mapping = row._mapping
    body = mapping["body"]
    return StoredResource(
        type=mapping["res_type"], id=mapping["res_id"], version=mapping["version"],
        last_updated=as_utc(mapping["last_updated"]), deleted=mapping["deleted"],
        body=protection.opened(mapping["res_type"], mapping["res_id"], body) if body is not None else None,
        method=mapping.get("method"), pk=mapping.get("pk"), index_mask=mapping.get("index_mask", 0),
    )


def lock_current(connection: Connection, type_name: str, resource_id: str) -> StoredResource | None:
    row = connection.execute(LOCKED_CURRENT_ROW, {"type_name": type_name, "resource_id": resource_id}).first()
    return stored_from_row(row, protection_of(connection)) if row else None


def lock_live(connection: Connection, type_name: str, resource_id: str) -> StoredResource:
    require_resource_key(type_name, resource_id)
    current = lock_current(connection, type_name, resource_id)
    if current is None:
        raise missing(type_name, resource_id)
    if current.deleted:
        raise gone(current)
    return current


def require_no_precondition(if_match: str | None, type_name: str, resource_id: str) -> None:
    if if_match:
        raise PreconditionFailed(f"If-Match {if_match} cannot match: {type_name}/{resource_id} does not exist yet.")


def check_if_match(current: StoredResource, if_match: str | None) -> None:
    if if_match and parse_etag(if_match) != str(current.version):
        raise PreconditionFailed(
            f"If-Match {if_match} does not match the current version {current.etag} of {current.type}/{current.id}; read it again and reapply your change."
        )


def parse_etag(value: str) -> str:
    """W/"3", "3" and 3 all name version 3."""
    return value.strip().removeprefix("W/").strip('"')


def same_content(stored_body: dict | None, new_body: dict) -> bool:
    return stored_body is not None and without_server_meta(stored_body) == without_server_meta(new_body)


def without_server_meta(body: dict) -> dict:
    meta = {k: v for k, v in (body.get("meta") or {}).items() if k not in SERVER_META}
    content = {k: v for k, v in body.items() if k != "meta"}
    if meta:
        content["meta"] = meta
    return content


def with_server_meta(body: dict, type_name: str, resource_id: str, version: int, last_updated: datetime) -> dict:
    """The body as stored, in FHIR's element order; meta.versionId and lastUpdated are always ours."""
    client_meta = {k: v for k, v in (body.get("meta") or {}).items() if k not in SERVER_META}
    meta = {"versionId": str(version), "lastUpdated": format_instant(last_updated), **client_meta}
    return in_element_order({**body, "resourceType": type_name, "id": resource_id, "meta": meta})


def apply_json_patch(body: dict, operations) -> dict:
    if not isinstance(operations, list):
        raise BadRequest("A JSON Patch document must be a JSON array of operations (RFC 6902).")
    try:
        return jsonpatch.JsonPatch(operations).apply(body)
    except jsonpatch.JsonPatchTestFailed as error:
        raise PreconditionFailed(f"The patch's test operation failed: {error}") from None
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as error:
        raise UnprocessableResource(f"The JSON Patch cannot be applied to the current version: {error}") from None


def try_insert_first_version(connection: Connection, type_name: str, resource_id: str, body: dict) -> StoredResource | None:
    """Insert unless another writer created the same id first (then the caller updates it instead)."""
    stored, protection = first_version(type_name, resource_id, body, "PUT"), protection_of(connection)
    rows = index_rows(type_name, stored.body, protection)
    inserted = writes_of(connection).try_insert_first_version(connection, version_values(stored, rows, protection), rows)
    return stored if inserted else None


def first_version(type_name: str, resource_id: str, body: dict, method: str) -> StoredResource:
    moment = utc_now()
    return StoredResource(type_name, resource_id, 1, moment, False, with_server_meta(body, type_name, resource_id, 1, moment), method)


def write_next_version(connection: Connection, current: StoredResource, body: dict | None, method: str,
                       lock_targets: bool = False) -> tuple[StoredResource, frozenset[tuple[str, str]]]:
    """The next version, written, and (with `lock_targets`, on PostgreSQL, in the same statement) the targets of its
    references that are live, locked FOR SHARE: the unit's check at its end need not look them up again."""
    protection = protection_of(connection)
    stored, rows = next_version(current, body, method, protection)
    targets = local_targets(stored.body) if lock_targets and stored.body is not None else frozenset()
    values = version_values(stored, rows, protection)
    live = writes_of(connection).write_next_version(connection, values, rows, current.pk, current.index_mask, targets)
    if live is None:
        raise conflict(current)
    return stored, live


def conflict(stored: StoredResource) -> Conflict:
    return Conflict(f"{stored.type}/{stored.id} was changed by another writer at the same moment; retry the request.")


def next_version(current: StoredResource, body: dict | None, method: str, protection) -> tuple[StoredResource, dict[str, list[dict]]]:
    """The version after `current` with `body` (None for a deletion), not yet written, and its index rows (blind where
    `protection` says)."""
    version = current.version + 1
    moment = max(utc_now(), current.last_updated + MIN_TICK)  # lastUpdated never goes backwards
    stored_body = None if body is None else with_server_meta(body, current.type, current.id, version, moment)
    rows = index_rows(current.type, stored_body, protection)
    return StoredResource(current.type, current.id, version, moment, body is None, stored_body, method, current.pk, index_mask(rows)), rows


def writes_of(connection: Connection):
    """The module that writes one resource's version on this database: one statement on PostgreSQL, one per table on SQLite."""
    return postgresql_writes if is_postgresql(connection) else batched_writes


def version_values(stored: StoredResource, rows: dict[str, list[dict]], protection) -> dict:
    """What the writers store of a version: its resource row's and history row's values, its protected values sealed
    by `protection` (after its index rows were extracted from them)."""
    body = stored.body
    if body is not None:
        body = protection.sealed(stored.type, stored.id, body)
    return {
        "res_type": stored.type, "res_id": stored.id, "version": stored.version, "last_updated": stored.last_updated,
        "deleted": stored.deleted, "index_mask": index_mask(rows), "method": stored.method, "body": body,
    }
