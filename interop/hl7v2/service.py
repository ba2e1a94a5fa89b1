"""Receiving HL7 v2 messages, for every entrance (MLLP, HTTP, replay): store, apply, then acknowledge.

1. Each message is read without the database: decoded, parsed, checked against the allowed
   senders and mapped into upserts by business key (interop/hl7v2/mapping), an A40 also into
   merges, an A47 into an identifier change. What cannot be read or mapped already has its
   outcome (AR or AE); whatever a frame holds, it has one, and an answer.
2. In one transaction the raw bytes are stored with that outcome and the mapped messages are
   applied through the same write path as REST, with meta.source and a Provenance naming the
   message. A message with the sending application, facility, control id and content
   (text.content_hash) of a stored one is a re-send: it gets the ACK it got then and is not
   applied again; another message under a stored control id is new, and marked as reusing it.
   Only after the commit does the caller send the ACKs, so an acknowledged message is never
   lost. When the database fails, each message is answered as not stored (AR, CE), and its
   sender re-sends it. An application ACK that MSH-16 asks for is queued in the same
   transaction, for delivery on the sender's own channel (outbox.py).
3. The listener passes the messages waiting for one worker as one batch: their business keys
   are locked and looked up together and their new resources inserted together, in one commit.
   When a write fails, the batch is rolled back and each message recorded again alone, so only
   the failing one is kept with status `error` (AE) and its reason, for `ehr hl7 replay`.
"""
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache, cached_property
from types import SimpleNamespace
from typing import NamedTuple

from sqlalchemy import Engine, TextClause, bindparam, func, literal, null, or_, select, text, tuple_, union_all, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import InterfaceError, OperationalError

from app.errors import DatabaseUnavailable, FhirError, ProtectedValueUnreadable
from app.model.instants import as_utc, format_instant, utc_now
from app.model.references import rewrite_references
from app.protection.service import Protection, protection_of
from app.search.conditional import single_match
from app.search.service import search_request
from app.store.db import conflict_insert, is_disconnect, is_postgresql, read_unit
from app.store.resources import StoredResource, same_content
from app.store.search import LOCKS_TAKEN
from app.store.unit import Unit, writing
from app.store.unit import reading as reading_unit
from interop.hl7v2.authorities import authority_systems
from interop.hl7v2.ack import NOT_STORED, Acknowledgements, ErrorDetail, Header, acknowledgements
from interop.hl7v2.mapping import IdentifierChange, Instruction, MappingError, Merge, UnsupportedMessage, Upsert, map_message
from interop.hl7v2.mapping.upserts import identifier_criteria
from interop.hl7v2.outbox import QueuedAck, queue
from interop.hl7v2.tables import hl7_message
from interop.hl7v2.text import DecodedMessage, MalformedMessage, UnreadableMessage, content_hash, decode, parse

log = logging.getLogger("ehr.hl7v2")
MESSAGE_STATUSES = ("received", "applied", "error", "rejected")  # received: stored, not applied, by an earlier version
FINAL_STATUSES = ("applied", "error", "rejected")
ACCEPTED_STATUSES = ("applied", "error")  # stored from a sender and of a type we take
NEW, RESENT, UNAPPLIED = "new", "re-send", "unapplied"  # how a message arrived, as store() finds it
NOT_STORED_STATUS = "not-stored"  # a receipt's status when the database failed: nothing kept, the sender re-sends
MESSAGE_IDENTIFIER_SYSTEM = "urn:ehr:hl7v2:message"


@dataclass(frozen=True)
class Receipt:
    message_id: int | None
    status: str
    ack: str | None  # the answer on the connection; None only for a message stored, unanswered, by an earlier version
    codec: str = "utf-8"  # the ACK goes back in the message's character set
    unreadable: bool = False  # not an HL7 message at all
    queued_application_ack: bool = False  # an application ACK waits in the outbox
    requested: bool = True  # False: MSH-15 asked for no answer, so the sender may not read it


@dataclass(frozen=True)
class Senders:
    """An allow-list of sending applications and facilities (MSH-3, MSH-4); empty sets allow all."""

    applications: frozenset[str] = frozenset()
    facilities: frozenset[str] = frozenset()

    def allow(self, header: Header) -> bool:
        return (not self.applications or header.sending_application in self.applications) and (
            not self.facilities or header.sending_facility in self.facilities
        )


@dataclass(frozen=True)
class Reading:
    """A received message as read without the database: the outcome it will be stored with (status, error,
    warnings, ACK) and, when it is to be applied, what applies it."""

    raw: bytes
    peer: str
    header: Header | None  # None: not an HL7 message
    codec: str
    status: str
    acks: Acknowledgements
    error: str | None = None
    instructions: tuple[Instruction, ...] | None = None
    content_hash: str | None = None  # text.content_hash: a re-send has the key and this hash of an earlier message
    warnings: tuple[ErrorDetail, ...] = ()  # values read liberally, answered as ERR segments of severity W

    @property
    def ack(self) -> str | None:
        return self.acks.answer

    @cached_property  # read several times per message while it is stored: computed once
    def sender(self) -> tuple[str | None, str | None]:
        """Sending application and facility as stored; None each for bytes that are not a message."""
        if self.header is None:
            return None, None
        return stored_text(self.header.sending_application, 227), stored_text(self.header.sending_facility, 227)

    @property
    def stored_key(self) -> tuple[str | None, str | None, str | None]:
        """Sending application, facility and control id as the message's row keeps them."""
        return self.key or (*self.sender, None)

    @cached_property
    def key(self) -> tuple[str, str, str] | None:
        """Sending application, facility and control id: the same for a re-send. None without a control id."""
        if self.header is None or not self.header.control_id:
            return None
        return *self.sender, stored_text(self.header.control_id, 199)

    def failed(self, code: str, status: str, error: ErrorDetail) -> "Reading":
        return replace(self, status=status, acks=answers(self.header, code, (error, *self.warnings)), error=error.text, instructions=None)

    def receipt(self, row: "MessageRow", queued: bool = False) -> Receipt:
        """The receipt of the message's row: its stored ACK, or this reading's when an earlier version stored none
        (MSH-15 NE then meant no answer, and the sender of a re-send waits for one)."""
        return Receipt(row.id, row.status, row.ack or self.ack, self.codec, self.header is None, queued, self.acks.requested)

    def not_stored(self, error: Exception) -> Receipt:
        """The receipt of a message the store could not take: nothing kept, answered AR (CE in enhanced mode), so
        that the sender sends it again."""
        detail = ErrorDetail(207, f"The message could not be stored ({type(error).__name__}); send it again.")
        return Receipt(None, NOT_STORED_STATUS, answers(self.header, NOT_STORED, (detail,)).answer, self.codec, unreadable=self.header is None)


def answers(header: Header | None, code: str, details: tuple[ErrorDetail, ...] = ()) -> Acknowledgements:
    """The acknowledgements of an outcome; bytes that are no message are answered with the standard separators."""
    return acknowledgements(header or Header.salvaged(""), code, details)


def receive(engine: Engine, raw: bytes, peer: str, senders: Senders = Senders()) -> Receipt:
    return receive_all(engine, [(raw, peer)], senders)[0]


def receive_all(engine: Engine, arrivals: list[tuple[bytes, str]], senders: Senders = Senders(),
                systems: Mapping[str, str] | None = None) -> list[Receipt]:
    """Store, apply and answer messages (raw bytes, peer) in the order given; the receipts in that order. Never
    raises: each message has its own outcome, and a failing one takes no other with it. `systems` are the identifier
    systems set per assigning authority (authorities.py); read from the database when not given."""
    systems = current_systems(engine) if systems is None else systems
    readings = [read(raw, peer, senders, systems) for raw, peer in arrivals]
    try:
        receipts = record(engine, readings)
    except Exception as error:  # a defect of ours: each message is still answered, as not stored, and re-sent
        log.exception("recording %d hl7 messages failed", len(readings))
        receipts = [reading.not_stored(error) for reading in readings]
    for reading, receipt in zip(readings, receipts):
        if receipt.status != "applied" and reading.error:  # a write that failed is logged where it failed
            log.warning("hl7 message %s from %s %s: %s", receipt.message_id, reading.peer, receipt.status, loggable(engine, reading.error))
    return receipts


def loggable(engine: Engine, error_text: str) -> str:
    """An outcome's text as the log may hold it: with protection on, not at all, as it may quote the message's
    protected values (it is kept sealed with the message: `ehr hl7 show`)."""
    return "(the error is kept sealed with the message)" if isinstance(protection_of(engine), Protection) else error_text


def current_systems(engine: Engine) -> Mapping[str, str]:
    """The authority systems now; none when the database cannot say, as then nothing is stored either."""
    try:
        return authority_systems(engine)
    except Exception:  # noqa: BLE001 - the store's own failure is answered per message
        return {}


def read(raw: bytes, peer: str, senders: Senders, systems: Mapping[str, str] = {}) -> Reading:  # noqa: B006 - never mutated
    """The message's reading; never raises, so that whatever a frame holds, it is stored and answered."""
    try:
        return read_message(raw, peer, senders, systems)
    except Exception as error:  # a defect of ours must not lose the frame, nor take its batch with it
        log.exception("reading an hl7 message from %s failed", peer)
        return refused(raw, peer, None, ErrorDetail(207, f"Internal error while reading the message: {error!r}"))


def read_message(raw: bytes, peer: str, senders: Senders, systems: Mapping[str, str]) -> Reading:
    try:
        message, decoded = parse(raw)
    except MalformedMessage as error:
        return refused(raw, peer, error.decoded, ErrorDetail(102, str(error), "MSH", 1, 2))
    except UnreadableMessage as error:
        return refused(raw, peer, None, ErrorDetail(100, str(error)))
    header = Header.of(message)
    warnings = (*(ErrorDetail(102, repair, "MSH", 1, 2, "W") for repair in decoded.repairs), *header.ack_type_warnings())
    reading = Reading(raw, peer, header, decoded.codec, "applied", answers(header, "AA", warnings),
                      content_hash=content_hash(decoded.text), warnings=warnings)
    if not senders.allow(header):
        return reading.failed("AR", "rejected", ErrorDetail(207, f"Sender {header.sending_application}|{header.sending_facility} is not allowed."))
    try:
        mapped = map_message(message, systems)
    except UnsupportedMessage as error:
        return reading.failed("AR", "rejected", error_detail(error))
    except MappingError as error:
        return reading.failed("AE", "error", error_detail(error))
    except Exception as error:  # a mapper's bug must not lose the message: it is kept for replay after the fix
        log.exception("mapping hl7 message %s failed", header.control_id)
        return reading.failed("AE", "error", ErrorDetail(207, f"Internal error while mapping: {error!r}"))
    warnings = reading.warnings + tuple(error_detail(warning, "W") for warning in mapped.warnings)
    return replace(reading, instructions=mapped.instructions, warnings=warnings, acks=answers(header, "AA", warnings))


def unstored_receipt(raw: bytes, peer: str, error: Exception) -> Receipt:
    """The answer to a message whose worker failed before it was stored, read no further than its MSH."""
    try:
        decoded = decode(raw)
    except UnreadableMessage:
        return Reading(raw, peer, None, "utf-8", NOT_STORED_STATUS, Acknowledgements(None, None)).not_stored(error)
    return Reading(raw, peer, Header.salvaged(decoded.text), decoded.codec, NOT_STORED_STATUS, Acknowledgements(None, None)).not_stored(error)


def refused(raw: bytes, peer: str, decoded: DecodedMessage | None, error: ErrorDetail) -> Reading:
    """The reading of a frame that is not a message python-hl7 can parse: rejected, answered AR (CR) from its MSH as far
    as it can be read; bytes without any MSH are answered with an empty one."""
    header = Header.salvaged(decoded.text) if decoded else None
    text_hash = content_hash(decoded.text) if decoded else None
    return Reading(raw, peer, header, decoded.codec if decoded else "utf-8", "rejected", answers(header, "AR", (error,)),
                   error.text, content_hash=text_hash)


def error_detail(error: MappingError, severity: str = "E") -> ErrorDetail:
    return ErrorDetail(error.code, str(error), error.segment, error.sequence, error.field, severity)


def record(engine: Engine, readings: list[Reading]) -> list[Receipt]:
    """Store and apply `readings` in one transaction. When a write fails, each is recorded again alone, so that only
    the failing message is kept in error; when the database fails, what was not stored is answered so (not_stored).
    A pooled connection the database dropped (it restarted) fails once, and the pool is renewed: tried again."""
    if len(readings) > 1:
        try:
            with writing(engine) as unit:
                return store_and_apply(unit, readings)
        except Exception as error:  # noqa: BLE001 - each is recorded alone below
            log.info("a batch of %d hl7 messages failed (%s); recording each alone", len(readings), error)
    return [recorded_alone(engine, reading) for reading in readings]


def recorded_alone(engine: Engine, reading: Reading) -> Receipt:
    for attempt in (1, 2):
        try:
            return written_or_kept(engine, reading, lambda unit, written: store_and_apply(unit, [written])[0])
        except Exception as error:  # noqa: BLE001 - the database failed: answered, not lost
            if attempt == 1 and is_disconnect(error):
                continue
            log.error("hl7 message from %s could not be stored: %s", reading.peer, error)
            return reading.not_stored(error)


def written_or_kept(engine: Engine, reading: Reading, write):
    """`write(unit, reading)` in one unit of work; when that fails, `write` of the message as kept in error."""
    try:
        with writing(engine) as unit:
            return write(unit, reading)
    except Exception as error:
        failed = failed_write(engine, reading, error)
        with writing(engine) as unit:
            return write(unit, failed)


def failed_write(engine: Engine, reading: Reading, error: Exception) -> Reading:
    """The message, to be kept with status `error` (AE), after its write failed. When the database itself is
    unavailable or busy, the error again instead: nothing can be kept."""
    if reading.instructions is None or isinstance(error, (DatabaseUnavailable, OperationalError, InterfaceError)):
        raise error
    log.warning("hl7 message %s from %s could not be applied: %s", reading.header.control_id, reading.peer, loggable(engine, str(error)))
    detail = error_detail(error) if isinstance(error, MappingError) else ErrorDetail(207, failure_text(error))
    return reading.failed("AE", "error", detail)


def failure_text(error: Exception) -> str:
    if isinstance(error, FhirError):
        return error.diagnostics
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"The message's resources could not be stored: {first_line}"


def store_and_apply(unit: Unit, readings: list[Reading]) -> list[Receipt]:
    """Store each message with its outcome; apply those mapped, unless they are re-sends of stored ones."""
    connection = unit.connection  # the message store's tables, in the unit's transaction
    rows = store(unit, readings, business_keys(readings))
    protection = protection_of(connection)
    outcomes = [(row, reading) for reading, (row, arrival) in zip(readings, rows) if arrival != RESENT]
    apply_messages(unit, [(row.id, reading) for row, reading in outcomes if reading.instructions is not None])
    queued = queue_application_acks(connection, [(row.id, reading) for row, reading in outcomes])
    receipts = []
    for reading, (row, arrival) in zip(readings, rows):
        if arrival == RESENT:
            log.info("hl7 message %s from %s is a re-send of message %s", reading.key[2], reading.peer, row.id)
        elif row.reuses_control_id_of:
            log.warning("hl7 message %s from %s reuses the control id %s of message %s with other content: stored and applied as new",
                        row.id, reading.peer, reading.key[2], row.reuses_control_id_of)
        row = opened_ack(protection, row, reading)
        if arrival == UNAPPLIED:  # stored but left unapplied by an earlier version: now it is
            mark(connection, row.id, reading)
            row = row._replace(status=reading.status, ack=reading.ack)
        receipts.append(reading.receipt(row, row.id in queued))
    return receipts


def queue_application_acks(connection, outcomes: list[tuple[int, Reading]]) -> set[int]:
    """Queue the application ACKs that outcomes (message id, reading) call for; the ids of their messages."""
    acks = [QueuedAck(message_id, *reading.sender, stored_text(reading.acks.application), reading.codec)
            for message_id, reading in outcomes if reading.acks.application]
    queue(connection, acks)
    return {ack.message_id for ack in acks}


def business_keys(readings: list[Reading]) -> list[tuple[str, str]]:
    """The (type, criteria) of the upserts of the mapped readings."""
    return [(upsert.type, upsert.criteria) for reading in readings for upsert in reading.instructions or () if isinstance(upsert, Upsert)]


def apply_messages(unit: Unit, messages: list[tuple[int, Reading]]) -> None:
    """Apply mapped messages (message id, reading) in order, their business keys looked up together."""
    writer = UpsertWriter(unit)
    writer.look_up(business_keys([reading for _, reading in messages]))
    for message_id, reading in messages:
        apply(writer, reading.instructions, message_id, reading.header)


def apply(writer: "UpsertWriter", instructions: tuple[Instruction, ...], message_id: int, header: Header) -> None:
    """Make the identifier changes, write each upsert by its business key, references between them resolved, then the
    merges, then one Provenance."""
    source = f"{MESSAGE_IDENTIFIER_SYSTEM}:{message_id}"
    changed = []
    changes = [instruction for instruction in instructions if isinstance(instruction, IdentifierChange)]
    if changes:  # the upserts that follow find the changed resources by their new identifiers
        changed = [reference for change in changes for reference in apply_identifier_change(writer.unit, change, source)]
        writer.forget()
    targets: dict[str, str] = {}  # local_ref -> Type/id
    for upsert in (instruction for instruction in instructions if isinstance(instruction, Upsert)):
        targets[upsert.local_ref] = writer.upsert(upsert, with_source(rewrite_references(upsert.body, targets), source))
    written = changed + list(targets.values())
    merges = [instruction for instruction in instructions if isinstance(instruction, Merge)]
    if merges:  # a merge writes to its survivor and to resources the writer may hold
        written += [reference for merge in merges for reference in apply_merge(writer.unit, merge, targets[merge.survivor_ref], source)]
        writer.forget()
    if written:
        writer.unit.create(provenance(list(dict.fromkeys(written)), message_id, header, source))


class UpsertWriter:
    """Upserts by business key for a run of messages in one unit of work.

    The keys are locked and looked up together, and what they find is remembered, so that the unit can keep
    the new resources (a result message mostly creates) waiting to be written together, under the ids their
    references already use, and update what they found without reading it again (the key's lock keeps other
    messages away; a REST client's change meanwhile makes the update a Conflict, and the message is kept in error
    or, in a batch, recorded again alone). Each message's change stays its own version."""

    def __init__(self, unit: Unit):
        self.unit = unit
        self.current: dict[tuple[str, str], StoredResource | None] = {}  # (type, criteria) -> what they find now

    def look_up(self, keys: list[tuple[str, str]]) -> None:
        for (type_name, criteria), matches in self.unit.matching_each(keys).items():
            self.current[(type_name, criteria)] = single_match(matches, type_name, criteria)

    def upsert(self, upsert: Upsert, body: dict) -> str:
        """Create or update the resource the upsert's key finds; its `Type/id`. A create writes what the mapping built;
        an update combines it with the stored body."""
        key = (upsert.type, upsert.criteria)
        if key not in self.current:
            self.look_up([key])
        existing = self.current[key]
        if existing is None:
            created = upsert.combine({}, body) if upsert.combine else body
            self.current[key] = existing = self.unit.create(created, created["resourceType"]).stored
        elif (changed := changed_body(upsert, existing, body)) is not None:
            self.current[key] = existing = self.unit.update(upsert.type, existing.id, changed, found=existing).stored
        return f"{upsert.type}/{existing.id}"

    def forget(self) -> None:
        """Drop what the keys found: a merge changed resources behind them."""
        self.current.clear()


def changed_body(upsert: Upsert, existing: StoredResource, body: dict) -> dict | None:
    """The update of the resource the business key found, keeping the elements `upsert.keep` names, combined with
    the stored body as `upsert.combine` says; None when the resource already has that content: most results
    repeat their patient's demographics, and a new version for a new meta.source alone would only fill the history."""
    kept = {name: existing.body[name] for name in upsert.keep if name in existing.body}
    updated = {**body, **kept, "id": existing.id}
    if upsert.combine:
        updated = upsert.combine(existing.body, updated)
    return None if same_content(without_source(existing.body), without_source(updated)) else updated


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


# Identifier changes (ADT^A47).

def apply_identifier_change(unit: Unit, change: IdentifierChange, source: str) -> list[str]:
    """Give the resource `change.criteria` finds `change.new_key` in place of `change.old_key`: [Type/id], or [] when
    none is found (the upsert by the new key then creates it). MappingError 205 when another resource has the new key."""
    found = unit.match_one(change.type, change.criteria)
    if found is None:
        return []
    holder = unit.match_one(change.type, identifier_criteria(change.new_key))
    if holder is not None and holder.id != found.id:
        raise MappingError(f"{change.type}/{holder.id} already has the identifier {change.new_key['value']} that {change.type}/{found.id} "
                           f"is to take: two records of one patient are merged with an A40, not an A47.", 205, "PID", 1, 3)
    old = (change.old_key.get("system"), change.old_key["value"])
    kept = [entry for entry in found.body.get("identifier", []) if (entry.get("system"), entry.get("value")) != old]
    body = {**found.body, "identifier": [change.new_key, *[entry for entry in kept if entry != change.new_key]]}
    unit.update(change.type, found.id, with_source(body, source), found.etag)
    return [f"{change.type}/{found.id}"]


# Merges (ADT^A40).

def apply_merge(unit: Unit, merge: Merge, survivor: str, source: str) -> list[str]:
    """Merge the Patient `merge.criteria` finds into `survivor` (`Patient/<id>`): it becomes inactive and `replaced-by`
    the survivor, the survivor `replaces` it, and other resources' references to it move to the survivor.

    Returns the resources written (`Type/id`): none when no other patient is found, and none again on a replay."""
    found = unit.match_one(merge.type, merge.criteria)
    if found is None or f"{merge.type}/{found.id}" == survivor:
        return []
    merged = f"{merge.type}/{found.id}"
    moved = move_references(unit, merged, survivor, source)
    return [
        *add_link(unit, merged, "replaced-by", survivor, {"active": False}, source),
        *add_link(unit, survivor, "replaces", merged, {}, source),
        *moved,
    ]


def add_link(unit: Unit, patient: str, link_type: str, other: str, changes: dict, source: str) -> list[str]:
    """Give `patient` a link of `link_type` to `other` (unless it has one) and `changes`: [patient], or [] if it had both."""
    type_name, resource_id = patient.split("/")
    current = unit.read(type_name, resource_id)
    link = {"other": {"reference": other}, "type": link_type}
    links = current.body.get("link", [])
    body = {**current.body, **changes, "link": links if link in links else [*links, link]}
    if body == current.body:
        return []
    unit.update(type_name, resource_id, with_source(body, source), current.etag)
    return [patient]


def move_references(unit: Unit, merged: str, survivor: str, source: str) -> list[str]:
    """Point every live resource that refers to `merged` (as its search index says) at `survivor` instead.

    A Provenance keeps what it recorded, and a Patient its links: they say who replaced whom."""
    moved = []
    for referrer in unit.referrers(*merged.split("/"), excluding="Provenance"):
        body = rewrite_references(referrer.body, {merged: survivor})
        if referrer.type == "Patient" and "link" in referrer.body:
            body["link"] = referrer.body["link"]
        if body != referrer.body:
            unit.update(referrer.type, referrer.id, with_source(body, source), referrer.etag)
            moved.append(f"{referrer.type}/{referrer.id}")
    return moved


# The message store.

KEY_COLUMNS = (hl7_message.c.sending_application, hl7_message.c.sending_facility, hl7_message.c.control_id)
OUTCOME_COLUMNS = (hl7_message.c.id, hl7_message.c.status, hl7_message.c.ack, hl7_message.c.reuses_control_id_of, hl7_message.c.peer)


class MessageRow(NamedTuple):
    id: int
    status: str
    ack: str | None  # as stored: sealed when protection is on (see opened_ack)
    reuses_control_id_of: int | None = None  # the earlier message, with other content, under this control id
    peer: str | None = None


class EarlierMessages(NamedTuple):
    """What the store holds under the keys of a batch: the rows with the same content (by key and content hash; None
    for rows stored before hashes were kept), and the newest message of each key."""

    same: dict[tuple, MessageRow]
    newest: dict[tuple, int]

    def sent_before(self, reading: Reading) -> MessageRow | None:
        return self.same.get((reading.key, reading.content_hash))

    def add(self, connection, kind: str, key: tuple, text_hash: str | None, outcome: tuple) -> None:
        """A row of the lookup: a stored message of `same` content (a row stored without a hash is hashed now), or
        the `newest` id of a key."""
        if kind == "same":
            self.same[(key, text_hash or hashed_now(connection, outcome[0]))] = MessageRow(*outcome)
        else:
            self.newest[key] = outcome[0]


def store(unit: Unit, readings: list[Reading], keys: list[tuple[str, str]]) -> list[tuple[MessageRow, str]]:
    """Each message's row (id, status, ack, reuse) and how it arrived: NEW, RESENT (the row is the earlier one, with
    its outcome) or UNAPPLIED (the earlier row, which an earlier version stored but never applied).

    A re-send has the sender, control id and content (text.content_hash) of a stored message. Another message under
    a stored control id is new: a sender's counter restarts after an engine restart. On PostgreSQL one statement
    takes the locks on the batch's business `keys` (before the unit looks them up), reads the stored messages of
    the batch's control ids and inserts the new ones, skipping any that another worker stored meanwhile; on SQLite
    (one writer, no locks) the read and the insert are a statement each."""
    connection = unit.connection  # the message store's tables, in the unit's transaction
    keyed = [reading for reading in readings if reading.key]
    earlier, inserted = stored_and_inserted(connection, keyed, unit.criteria_locks(keys) if keyed else [])
    left = [reading for reading in keyed if earlier.sent_before(reading) is None and (reading.key, reading.content_hash) not in inserted]
    inserted.update(insert_keyed(connection, left, earlier.newest))
    first_in_batch: dict[tuple, int] = {}
    rows = []
    for reading in readings:
        if reading.key is None:
            values = row_values(reading, protection_of(connection))
            rows.append((MessageRow(*connection.execute(hl7_message.insert().values(values).returning(*OUTCOME_COLUMNS)).one()), NEW))
        elif (found := earlier.sent_before(reading)) is not None:
            rows.append((found, RESENT if found.status in FINAL_STATUSES else UNAPPLIED))
        elif (identity := (reading.key, reading.content_hash)) in inserted:
            row = reused_in_batch(connection, inserted.pop(identity), first_in_batch.get(reading.key))
            earlier.same[identity] = row  # the same message later in the batch is its re-send
            first_in_batch.setdefault(reading.key, row.id)
            rows.append((row, NEW))
        else:  # stored by another worker since the batch's messages were read
            row = MessageRow(*connection.execute(select(*OUTCOME_COLUMNS).where(*same_message(reading))).one())
            rows.append((row, RESENT if row.status in FINAL_STATUSES else UNAPPLIED))
    return rows


def stored_and_inserted(connection, keyed: list[Reading], locks: list[int]) -> tuple["EarlierMessages", dict[tuple, MessageRow]]:
    """What the store holds under the keys of `keyed`, and the rows of those inserted now by (key, content hash). On
    PostgreSQL the `locks` are taken first and every message is inserted that has neither its content stored under
    its key nor a row stored before hashes were kept (whose content is hashed now, below); on SQLite none is inserted
    yet."""
    if not keyed:
        return EarlierMessages({}, {}), {}
    if not is_postgresql(connection):
        return earlier_messages(connection, keyed), {}
    found, inserted = EarlierMessages({}, {}), {}
    for row in connection.execute(store_messages_statement(), {"lock_keys": locks, **message_arrays(keyed, protection_of(connection))}):
        kind, key, text_hash, outcome = row[0], tuple(row[1:4]), row[4], row[5:]
        if kind == "inserted":
            inserted[(key, text_hash)] = MessageRow(*outcome)
        else:
            found.add(connection, kind, key, text_hash, outcome)
    return found, inserted


# What row_values gives: every column but the key and the reuse, which the store's statement finds itself.
STORED_COLUMNS = tuple(column.name for column in hl7_message.columns if column.name not in ("id", "reuses_control_id_of"))


def message_arrays(readings: list[Reading], protection) -> dict[str, list]:
    """The readings' row values, one array per column, as store_messages_statement unnests them."""
    rows = [row_values(reading, protection) for reading in readings]
    return {name: [row[name] for row in rows] for name in STORED_COLUMNS}


@cache
def store_messages_statement() -> TextClause:
    """The locks, the stored messages under the batch's keys (`same` content or stored without a hash, and the `newest`
    of each key), and the insert of the new ones, each marked as reusing the newest of its key: one statement. The
    insert waits for the locks (its one-time filter reads them), so that every transaction takes locks before rows."""
    arrays = ", ".join(f"CAST(:{name} AS {hl7_message.c[name].type.compile(dialect=postgresql.dialect())}[])" for name in STORED_COLUMNS)
    key = "m.sending_application = i.sending_application AND m.sending_facility = i.sending_facility AND m.control_id = i.control_id"
    names = ", ".join(STORED_COLUMNS)
    keys = "(SELECT sending_application, sending_facility, control_id FROM incoming)"
    outcome = "id, status, ack, reuses_control_id_of, peer"
    return text(f"""WITH locks AS ({LOCKS_TAKEN}),
incoming AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS i({names}, ord)),
inserted AS (
  INSERT INTO hl7_message ({names}, reuses_control_id_of)
  SELECT {", ".join(f"i.{name}" for name in STORED_COLUMNS)}, (SELECT max(m.id) FROM hl7_message m WHERE {key})
  FROM incoming i
  WHERE (SELECT taken FROM locks) IS NOT NULL
    AND NOT EXISTS (SELECT FROM hl7_message m WHERE {key} AND (m.content_hash = i.content_hash OR m.content_hash IS NULL))
  ORDER BY i.ord
  ON CONFLICT DO NOTHING
  RETURNING sending_application, sending_facility, control_id, content_hash, {outcome})
SELECT 'inserted', sending_application, sending_facility, control_id, content_hash, {outcome} FROM inserted
UNION ALL
SELECT 'same', sending_application, sending_facility, control_id, content_hash, {outcome} FROM hl7_message
  WHERE (sending_application, sending_facility, control_id) IN {keys}
    AND (content_hash IN (SELECT content_hash FROM incoming) OR content_hash IS NULL)
UNION ALL
SELECT 'newest', sending_application, sending_facility, control_id, NULL, max(id), NULL, NULL, NULL, NULL FROM hl7_message
  WHERE (sending_application, sending_facility, control_id) IN {keys}
  GROUP BY sending_application, sending_facility, control_id""")


def earlier_messages(connection, keyed: list[Reading]) -> EarlierMessages:
    keys, hashes = list({reading.key for reading in keyed}), list({reading.content_hash for reading in keyed})
    found = EarlierMessages({}, {})
    for row in connection.execute(earlier_messages_statement(), {"keys": keys, "hashes": hashes}):
        found.add(connection, row[0], tuple(row[1:4]), row[4], row[5:])
    return found


@cache  # built once: building it cost more than running it
def earlier_messages_statement():
    """The stored messages under the batch's keys (`keys`) with its content (`hashes`) or stored without a hash, and the
    newest message of each key: one statement."""
    of_keys = tuple_(*KEY_COLUMNS).in_(bindparam("keys", expanding=True))
    same = select(literal("same"), *KEY_COLUMNS, hl7_message.c.content_hash, *OUTCOME_COLUMNS).where(
        of_keys, or_(hl7_message.c.content_hash.in_(bindparam("hashes", expanding=True)), hl7_message.c.content_hash.is_(None)),
    )
    newest = select(literal("newest"), *KEY_COLUMNS, null(), func.max(hl7_message.c.id), null(), null(), null(), null()).where(of_keys).group_by(*KEY_COLUMNS)
    return union_all(same, newest)


def hashed_now(connection, message_id: int) -> str | None:
    """The content hash of a message stored before hashes were kept, computed from its bytes and stored: then a message
    under its control id is its re-send only if it has its content, as for every other. None for bytes not HL7."""
    row = connection.execute(select(hl7_message).where(hl7_message.c.id == message_id)).one()
    raw = protection_of(connection).opened_blob(row.raw, sealed_context("raw", row._mapping))
    try:
        text_hash = content_hash(decode(raw).text)
    except UnreadableMessage:
        return None
    connection.execute(update(hl7_message).where(hl7_message.c.id == message_id).values(content_hash=text_hash))
    return text_hash


def insert_keyed(connection, readings: list[Reading], newest: dict[tuple, int]) -> dict[tuple, MessageRow]:
    """Insert messages with a control id, each marked as reusing the newest stored message of its key if there is one;
    their rows by (key, content hash), without those another worker stored meanwhile."""
    if not readings:
        return {}
    protection = protection_of(connection)
    values = [{**row_values(reading, protection), "reuses_control_id_of": newest.get(reading.key)} for reading in readings]
    returned = connection.execute(insert_new_messages(connection.dialect.name), values)
    return {(tuple(row[:3]), row[3]): MessageRow(*row[4:]) for row in returned}


def reused_in_batch(connection, row: MessageRow, first_id: int | None) -> MessageRow:
    """The row of a message whose control id an earlier message of the same batch, with other content, has."""
    if first_id is None or row.reuses_control_id_of is not None:
        return row
    connection.execute(update(hl7_message).where(hl7_message.c.id == row.id).values(reuses_control_id_of=first_id))
    return row._replace(reuses_control_id_of=first_id)


def same_message(reading: Reading) -> tuple:
    return (*(column == value for column, value in zip(KEY_COLUMNS, reading.key)), hl7_message.c.content_hash == reading.content_hash)


@cache  # built once: compiling it costs more than running it
def insert_new_messages(dialect_name: str):
    """INSERT of messages that skips those whose key is stored, returning the key and outcome of those inserted."""
    return conflict_insert(dialect_name, hl7_message).on_conflict_do_nothing().returning(*KEY_COLUMNS, hl7_message.c.content_hash, *OUTCOME_COLUMNS)


def row_values(reading: Reading, protection) -> dict:
    """The message's row, the message as received and its outcome sealed by `protection` (app/protection) when it is
    on."""
    moment = utc_now()
    header = reading.header
    application, facility, control_id = reading.stored_key
    place = {"peer": stored_text(reading.peer, 200), "sending_application": application, "sending_facility": facility, "control_id": control_id}
    values = {
        **place, "received_at": moment, "updated_at": moment,
        "message_type": stored_text(header.type_name, 50) if header else None,
        "version": stored_text(header.version, 60) if header else None, "codec": reading.codec if header else None,
        "content_hash": reading.content_hash, "raw": reading.raw, **outcome_values(reading),
    }
    return sealed_values(protection, values, place)


def outcome_values(reading: Reading) -> dict:
    """The columns of a message's outcome, in the clear."""
    return {"status": reading.status, "error": stored_text(reading.error), "ack": stored_text(reading.ack), "warnings": warnings_text(reading.warnings)}


# Where a message is stored: what its sealed values are bound to (its peer, sender and control id never change).
PLACE_COLUMNS = ("peer", "sending_application", "sending_facility", "control_id")
SEALED_TEXTS = ("error", "ack", "warnings")  # the outcome's texts, which may quote the message's values
SEALED_COLUMNS = ("raw", *SEALED_TEXTS)  # raw: the message's bytes


def sealed_values(protection, values: Mapping, place: Mapping) -> dict:
    """`values` of a message's row with its bytes and outcome texts sealed by `protection`, bound to `place`."""
    return with_sealed_columns_replaced(values, place, protection.sealed_blob, protection.sealed_text)


def opened_values(protection, row: Mapping) -> dict:
    """A message's row, with whichever of its sealed columns it holds opened."""
    return with_sealed_columns_replaced(row, row, protection.opened_blob, protection.opened_text)


def with_sealed_columns_replaced(values: Mapping, place: Mapping, replace_bytes, replace_text) -> dict:
    replaced = dict(values)
    for column in SEALED_COLUMNS:
        if column in values:
            replace = replace_bytes if column == "raw" else replace_text
            replaced[column] = replace(values[column], sealed_context(column, place))
    return replaced


def sealed_context(column: str, place: Mapping) -> str:
    """What a sealed column of a message's row is bound to: its table and column, and the message's place, so that a
    value copied to another column, or to the row of a message from another peer, sender or control id, does not
    open (messages of one place, a control id reused by one connection, share it)."""
    return "|".join((f"hl7_message.{column}", *(str(place[name]) for name in PLACE_COLUMNS)))


def opened_ack(protection, row: MessageRow, reading: Reading) -> MessageRow:
    """The row with its ACK opened: a stored message of the reading's key (or the reading's own row)."""
    place = dict(zip(PLACE_COLUMNS, (row.peer, *reading.stored_key)))
    return row._replace(ack=protection.opened_text(row.ack, sealed_context("ack", place)))


def warnings_text(warnings: tuple[ErrorDetail, ...]) -> str | None:
    return stored_text("\n".join(warning.text for warning in warnings)) if warnings else None


def stored_text(value: str | None, limit: int | None = None) -> str | None:
    """Text as its column keeps it: cut to the column's size, and without NUL characters, which PostgreSQL's
    text cannot hold (one sent in MSH, and echoed in the ACK, would otherwise refuse the message for good)."""
    return None if value is None else value.replace("\x00", "")[:limit]


def locked_status(connection, message_id: int) -> str:
    return connection.execute(select(hl7_message.c.status).where(hl7_message.c.id == message_id).with_for_update()).scalar_one()


def stored_ack(connection, message_id: int) -> str | None:
    row = connection.execute(select(hl7_message.c.ack, *place_columns()).where(hl7_message.c.id == message_id)).one()
    return opened_values(protection_of(connection), row._mapping)["ack"]


def mark(connection, message_id: int, reading: Reading) -> None:
    """Record a stored message's new outcome (a replay, or the apply of one an earlier version left unapplied)."""
    place = connection.execute(select(*place_columns()).where(hl7_message.c.id == message_id)).one()._mapping
    values = sealed_values(protection_of(connection), outcome_values(reading), place)
    connection.execute(update(hl7_message).where(hl7_message.c.id == message_id).values(**values, updated_at=utc_now()))


def place_columns() -> list:
    return [hl7_message.c[name] for name in PLACE_COLUMNS]


@dataclass(frozen=True)
class MessageQuery:
    """Which stored messages to list, newest first: each filter given must hold."""

    status: str | None = None
    application: str | None = None  # MSH-3 as sent, or its first component
    facility: str | None = None  # MSH-4 likewise
    message_type: str | None = None  # MSH-9 as sent, or its first components: ADT, ADT^A01
    control_id: str | None = None
    since: datetime | None = None  # received at or after
    until: datetime | None = None  # received before
    before_id: int | None = None  # the next page: messages older than this one
    limit: int = 50

    def conditions(self) -> list:
        column = hl7_message.c
        given = [
            (self.status, lambda: column.status == self.status),
            (self.application, lambda: named(column.sending_application, self.application)),
            (self.facility, lambda: named(column.sending_facility, self.facility)),
            (self.message_type, lambda: named(column.message_type, self.message_type)),
            (self.control_id, lambda: column.control_id == self.control_id),
            (self.since, lambda: column.received_at >= as_utc(self.since)),  # SQLite compares the UTC text
            (self.until, lambda: column.received_at < as_utc(self.until)),
            (self.before_id, lambda: column.id < self.before_id),
        ]
        return [condition() for value, condition in given if value is not None]


def named(column, value: str):
    """A field as sent, or its first components: `LAB` finds `LAB` and `LAB^1.2.3^ISO`."""
    return or_(column == value, column.startswith(value + "^", autoescape=True))


def stored_messages(engine: Engine, query: MessageQuery = MessageQuery()) -> list[SimpleNamespace]:
    """The stored messages `query` asks for, newest first, their error and warnings opened (app/protection); without
    their raw bytes and ACKs."""
    columns = [column for column in hl7_message.c if column.name not in ("raw", "ack")]
    statement = select(*columns).where(*query.conditions()).order_by(hl7_message.c.id.desc()).limit(query.limit)
    with read_unit(engine) as connection:
        protection = protection_of(connection)
        return [SimpleNamespace(**listed_values(protection, row._mapping)) for row in connection.execute(statement)]


def listed_values(protection, row: Mapping) -> dict:
    """A listed message's row opened; one whose texts do not open is listed with that said in place of its error (the
    others are still listed)."""
    try:
        return opened_values(protection, row)
    except ProtectedValueUnreadable as error:
        return {**row, "error": f"(its sealed texts do not open: {error})", "warnings": None}


def stored_message_ids(engine: Engine, query: MessageQuery) -> list[int]:
    """The ids of the stored messages `query` asks for, oldest first."""
    statement = select(hl7_message.c.id).where(*query.conditions()).order_by(hl7_message.c.id).limit(query.limit)
    with read_unit(engine) as connection:
        return list(connection.execute(statement).scalars())


def stored_message(engine: Engine, message_id: int) -> SimpleNamespace | None:
    """The message's row, with the message as received and its outcome opened (app/protection)."""
    with read_unit(engine) as connection:
        row = connection.execute(select(hl7_message).where(hl7_message.c.id == message_id)).first()
        return None if row is None else SimpleNamespace(**opened_values(protection_of(connection), row._mapping))


def written_resources(engine: Engine, message_id: int) -> list[str]:
    """`Type/id` of each resource a message wrote (or found already as it says), as its Provenances record them:
    one per apply, a replay's included."""
    request, _ = search_request("Provenance", [("_source", f"{MESSAGE_IDENTIFIER_SYSTEM}:{message_id}")], False, 100, 100)
    with reading_unit(engine) as unit:
        provenances = unit.search(request).matches
    return list(dict.fromkeys(target["reference"] for provenance in provenances for target in provenance.body["target"]))


def replay(engine: Engine, message_id: int) -> Receipt:
    """Map and apply a stored message again (after a mapping fix); an applied one is left as it is."""
    row = stored_message(engine, message_id)
    reading = read(row.raw, row.peer, Senders(), authority_systems(engine))
    if reading.header is None:
        return Receipt(message_id, row.status, row.ack, unreadable=True)  # not a message: nothing to apply
    return written_or_kept(engine, reading, lambda unit, again: replayed(unit, message_id, again))


def replayed(unit: Unit, message_id: int, reading: Reading) -> Receipt:
    """The replay's outcome; a new application ACK only when the outcome changed, so that replaying what still
    fails does not send its sender the same AE again, and never for a message refused at first (CR)."""
    connection = unit.connection  # the message store's tables, in the unit's transaction
    earlier = locked_status(connection, message_id)
    if earlier == "applied":
        return Receipt(message_id, "applied", stored_ack(connection, message_id), reading.codec)
    if reading.instructions is not None:
        apply_messages(unit, [(message_id, reading)])
    mark(connection, message_id, reading)
    changed = reading.status != earlier and earlier != "rejected"  # no application ACK follows a CR, even later
    queued = queue_application_acks(connection, [(message_id, reading)]) if changed else set()
    return Receipt(message_id, reading.status, reading.ack, reading.codec, queued_application_ack=bool(queued))
