"""Receiving one HL7 v2 message, for every entrance (MLLP, HTTP, replay): store, then apply, then acknowledge.

1. The raw bytes are stored (status `received`) and committed before anything else.
   A message whose sending application, facility and control id were seen before is a
   re-send: it gets the ACK it got then and is not applied again.
2. The mapper turns the message into upserts by business key (interop/hl7v2/mapping),
   and an A40 also into merges; they are written in one transaction through the same
   write path as REST, with meta.source and a Provenance naming the message, and the
   message becomes `applied` in that same transaction. Only then is AA sent.
3. A message that cannot be mapped or applied is kept with status `error` (AE) or
   `rejected` (AR, e.g. an unsupported type) and its reason, for `ehr hl7 replay`.
"""
import logging
from dataclasses import dataclass

import hl7
from sqlalchemy import Engine, Row, false, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.errors import FhirError
from app.model.instants import format_instant, utc_now
from app.model.references import rewrite_references
from app.search.conditional import matching, single_match
from app.store.db import write_unit
from app.store.resources import (StoredResource, insert_new_resources, new_resource, read_resource, same_content,
                                 stored_from_row, update_resource)
from app.store.schema import hl7_message, resource, search_reference
from interop.hl7v2.ack import ErrorDetail, Header, acknowledgement
from interop.hl7v2.mapping import MappingError, Merge, UnsupportedMessage, Upsert, upserts_for
from interop.hl7v2.text import UnreadableMessage, parse

log = logging.getLogger("ehr.hl7v2")
FINAL_STATUSES = ("applied", "error", "rejected")
MESSAGE_IDENTIFIER_SYSTEM = "urn:ehr:hl7v2:message"


@dataclass(frozen=True)
class Receipt:
    message_id: int | None
    status: str
    ack: str | None  # None: nothing to send (no MSH to answer, or MSH-15 asks for no accept ACK)
    codec: str = "utf-8"  # the ACK goes back in the message's character set
    unreadable: bool = False  # not an HL7 message at all


@dataclass(frozen=True)
class Senders:
    """An allow-list of sending applications and facilities (MSH-3, MSH-4); empty sets allow all."""

    applications: frozenset[str] = frozenset()
    facilities: frozenset[str] = frozenset()

    def allow(self, header: Header) -> bool:
        return (not self.applications or header.sending_application in self.applications) and (
            not self.facilities or header.sending_facility in self.facilities
        )


def receive(engine: Engine, raw: bytes, peer: str, senders: Senders = Senders()) -> Receipt:
    try:
        message, decoded = parse(raw)
        header = Header.of(message)
    except UnreadableMessage as error:
        message_id = store_unreadable(engine, raw, peer, str(error))
        log.warning("hl7 message %s from %s rejected: %s", message_id, peer, error)
        return Receipt(message_id, "rejected", None, unreadable=True)
    stored = store_or_find(engine, raw, peer, header, decoded.codec)
    if stored.status in FINAL_STATUSES:
        log.info("hl7 message %s from %s is a re-send of %s; answered with its first ACK", header.control_id, peer, stored.id)
        return Receipt(stored.id, stored.status, stored.ack, decoded.codec)
    if not senders.allow(header):
        return finish(engine, stored.id, header, "rejected", "AR", ErrorDetail(207, f"Sender {header.sending_application}|{header.sending_facility} is not allowed."), decoded.codec)
    return process(engine, stored.id, message, header, decoded.codec)


def process(engine: Engine, message_id: int, message: hl7.Message, header: Header, codec: str) -> Receipt:
    """Map and apply a stored message; its outcome and ACK are stored with it."""
    try:
        instructions = upserts_for(message)
        with write_unit(engine) as connection:
            if locked_status(connection, message_id) == "applied":
                return Receipt(message_id, "applied", stored_ack(connection, message_id), codec)
            apply(connection, instructions, message_id, header)
            ack = acknowledgement(header, "AA")
            mark(connection, message_id, "applied", None, ack)
        return Receipt(message_id, "applied", ack, codec)
    except UnsupportedMessage as error:
        return finish(engine, message_id, header, "rejected", "AR", error_detail(error), codec)
    except MappingError as error:
        return finish(engine, message_id, header, "error", "AE", error_detail(error), codec)
    except FhirError as error:
        return finish(engine, message_id, header, "error", "AE", ErrorDetail(207, error.diagnostics), codec)


def finish(engine: Engine, message_id: int, header: Header, status: str, code: str, error: ErrorDetail, codec: str) -> Receipt:
    ack = acknowledgement(header, code, error)
    with write_unit(engine) as connection:
        mark(connection, message_id, status, error.text, ack)
    log.warning("hl7 message %s (%s %s) %s: %s", message_id, header.message_type, header.control_id, status, error.text)
    return Receipt(message_id, status, ack, codec)


def error_detail(error: MappingError) -> ErrorDetail:
    return ErrorDetail(error.code, str(error), error.segment, error.sequence, error.field)


def apply(connection, instructions: list[Upsert | Merge], message_id: int, header: Header) -> None:
    """Write each upsert by its business key, references between them resolved, then the merges, then one Provenance.

    Updates are written one by one; new resources are validated one by one and inserted together
    (a result message mostly creates), under the ids their references already use."""
    source = f"{MESSAGE_IDENTIFIER_SYSTEM}:{message_id}"
    upserts = [instruction for instruction in instructions if isinstance(instruction, Upsert)]
    merges = [instruction for instruction in instructions if isinstance(instruction, Merge)]
    targets, pending = write_upserts(connection, upserts, source)
    written = list(targets.values())
    if merges:  # a merge writes to its survivor, which must exist by then
        insert_new_resources(connection, pending)
        pending = []
        written += [reference for merge in merges for reference in apply_merge(connection, merge, targets[merge.survivor_ref], source)]
    if written:
        pending.append(new_resource(provenance(list(dict.fromkeys(written)), message_id, header, source), "Provenance"))
    insert_new_resources(connection, pending)


def write_upserts(connection, upserts: list[Upsert], source: str) -> tuple[dict[str, str], list[StoredResource]]:
    """Update what the business keys find; the new resources, not yet inserted. Returns local_ref -> `Type/id` and those."""
    targets: dict[str, str] = {}
    created: dict[tuple[str, str], StoredResource] = {}  # (type, criteria) of the new ones: a key may recur
    for upsert in upserts:
        body = with_source(rewrite_references(upsert.body, targets), source)
        key = (upsert.type, upsert.criteria)
        if key in created:
            targets[upsert.local_ref] = f"{upsert.type}/{created[key].id}"
            continue
        existing = single_match(matching(connection, upsert.type, upsert.criteria), upsert.type, upsert.criteria)
        if existing is None:
            created[key] = new_resource(body, upsert.type)
            targets[upsert.local_ref] = f"{upsert.type}/{created[key].id}"
        else:
            targets[upsert.local_ref] = f"{upsert.type}/{update_keeping(connection, upsert, existing, body)}"
    return targets, list(created.values())


def update_keeping(connection, upsert: Upsert, existing: StoredResource, body: dict) -> str:
    """Update the resource the business key found, keeping the elements `upsert.keep` names.

    Content the resource already has writes no version: most results repeat their patient's
    demographics, and a new version for a new meta.source alone would only fill the history."""
    kept = {name: existing.body[name] for name in upsert.keep if name in existing.body}
    updated = {**body, **kept, "id": existing.id}
    if same_content(without_source(existing.body), without_source(updated)):
        return existing.id
    return update_resource(connection, upsert.type, existing.id, updated).stored.id


def without_source(body: dict) -> dict:
    return {**body, "meta": {name: value for name, value in (body.get("meta") or {}).items() if name != "source"}}


def with_source(body: dict, source: str) -> dict:
    return {**body, "meta": {**(body.get("meta") or {}), "source": source}}


def provenance(targets: list[str], message_id: int, header: Header, source: str) -> dict:
    return {
        "resourceType": "Provenance",
        "meta": {"source": source},
        "target": [{"reference": target} for target in targets],
        "recorded": format_instant(utc_now()),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]},
        "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
            "who": {"display": f"{header.sending_application} at {header.sending_facility}".strip()},
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": MESSAGE_IDENTIFIER_SYSTEM, "value": str(message_id)},
                "display": f"HL7 v2 {header.message_type} {header.control_id}",
            },
        }],
    }


# Merges (ADT^A40).

def apply_merge(connection, merge: Merge, survivor: str, source: str) -> list[str]:
    """Merge the Patient `merge.criteria` finds into `survivor` (`Patient/<id>`): it becomes inactive and `replaced-by`
    the survivor, the survivor `replaces` it, and other resources' references to it move to the survivor.

    Returns the resources written (`Type/id`): none when no other patient is found, and none again on a replay."""
    found = single_match(matching(connection, merge.type, merge.criteria), merge.type, merge.criteria)
    if found is None or f"{merge.type}/{found.id}" == survivor:
        return []
    merged = f"{merge.type}/{found.id}"
    moved = move_references(connection, merged, survivor, source)
    return [
        *add_link(connection, merged, "replaced-by", survivor, {"active": False}, source),
        *add_link(connection, survivor, "replaces", merged, {}, source),
        *moved,
    ]


def add_link(connection, patient: str, link_type: str, other: str, changes: dict, source: str) -> list[str]:
    """Give `patient` a link of `link_type` to `other` (unless it has one) and `changes`: [patient], or [] if it had both."""
    type_name, resource_id = patient.split("/")
    current = read_resource(connection, type_name, resource_id)
    link = {"other": {"reference": other}, "type": link_type}
    links = current.body.get("link", [])
    body = {**current.body, **changes, "link": links if link in links else [*links, link]}
    if body == current.body:
        return []
    update_resource(connection, type_name, resource_id, with_source(body, source), current.etag)
    return [patient]


def move_references(connection, merged: str, survivor: str, source: str) -> list[str]:
    """Point every live resource that refers to `merged` (as its search index says) at `survivor` instead.

    A Provenance keeps what it recorded, and a Patient its links: they say who replaced whom."""
    moved = []
    for referrer in referring_resources(connection, *merged.split("/")):
        body = rewrite_references(referrer.body, {merged: survivor})
        if referrer.type == "Patient" and "link" in referrer.body:
            body["link"] = referrer.body["link"]
        if body != referrer.body:
            update_resource(connection, referrer.type, referrer.id, with_source(body, source), referrer.etag)
            moved.append(f"{referrer.type}/{referrer.id}")
    return moved


def referring_resources(connection, type_name: str, resource_id: str) -> list[StoredResource]:
    """The live resources, Provenance aside, with a reference index row pointing at `type_name/resource_id`."""
    pointing = select(search_reference.c.res_pk).where(
        search_reference.c.target_type == type_name, search_reference.c.target_id == resource_id,
    )
    query = select(resource).where(
        resource.c.pk.in_(pointing), resource.c.deleted == false(), resource.c.res_type != "Provenance",
    ).order_by(resource.c.pk)
    return [stored_from_row(row) for row in connection.execute(query)]


# The message store.

def store_or_find(engine: Engine, raw: bytes, peer: str, header: Header, codec: str) -> Row:
    """The message's row (id, status, ack): new with status `received`, or the earlier row of the same sender and
    control id. One statement for a new message: the insert returns its row unless the key was there."""
    values = {
        **new_row(raw, peer, "received"), "sending_application": header.sending_application,
        "sending_facility": header.sending_facility, "control_id": header.control_id,
        "message_type": header.message_type, "version": header.version, "codec": codec,
    }
    outcome = (hl7_message.c.id, hl7_message.c.status, hl7_message.c.ack)
    with write_unit(engine) as connection:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        inserted = connection.execute(dialect.insert(hl7_message).values(values).on_conflict_do_nothing().returning(*outcome)).first()
        if inserted is not None:
            return inserted
        key = (hl7_message.c.sending_application == header.sending_application) & (
            hl7_message.c.sending_facility == header.sending_facility) & (hl7_message.c.control_id == header.control_id)
        return connection.execute(select(*outcome).where(key)).one()


def store_unreadable(engine: Engine, raw: bytes, peer: str, reason: str) -> int:
    with write_unit(engine) as connection:
        return connection.execute(hl7_message.insert().values({**new_row(raw, peer, "rejected"), "error": reason}).returning(hl7_message.c.id)).scalar()


def new_row(raw: bytes, peer: str, status: str) -> dict:
    moment = utc_now()
    return {"received_at": moment, "updated_at": moment, "peer": peer[:200], "status": status, "raw": raw}


def locked_status(connection, message_id: int) -> str:
    return connection.execute(select(hl7_message.c.status).where(hl7_message.c.id == message_id).with_for_update()).scalar_one()


def stored_ack(connection, message_id: int) -> str | None:
    return connection.execute(select(hl7_message.c.ack).where(hl7_message.c.id == message_id)).scalar()


def mark(connection, message_id: int, status: str, error: str | None, ack: str | None) -> None:
    connection.execute(
        update(hl7_message).where(hl7_message.c.id == message_id).values(status=status, error=error, ack=ack, updated_at=utc_now())
    )


def stored_messages(engine: Engine, status: str | None = None, limit: int = 50) -> list[Row]:
    """The newest stored messages first, optionally of one status; without their raw bytes."""
    columns = [column for column in hl7_message.c if column.name not in ("raw", "ack")]
    query = select(*columns).order_by(hl7_message.c.id.desc()).limit(limit)
    with write_unit(engine) as connection:
        return connection.execute(query.where(hl7_message.c.status == status) if status else query).all()


def stored_message(engine: Engine, message_id: int) -> Row | None:
    with write_unit(engine) as connection:
        return connection.execute(select(hl7_message).where(hl7_message.c.id == message_id)).first()


def replay(engine: Engine, message_id: int) -> Receipt:
    """Map and apply a stored message again (after a mapping fix); an applied one is left as it is."""
    row = stored_message(engine, message_id)
    try:
        message, decoded = parse(row.raw)
    except UnreadableMessage:
        return Receipt(message_id, row.status, row.ack)  # not a message: nothing to apply
    return process(engine, message_id, message, Header.of(message), decoded.codec)
