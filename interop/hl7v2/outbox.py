"""Application acknowledgements (MSH-16) on the sender's own channel: a transactional outbox and its deliverer.

An application ACK is queued in the transaction that records the outcome it reports, so it is
never lost, nor sent for an outcome that was rolled back. A deliverer sends each sender's
queued ACKs, oldest first, over MLLP to the destination registered for that sender
(`ehr hl7 destination add`) and waits for the peer's accept ACK: CA or AA marks it `sent`;
CR or AR marks it `failed`, refused for good (`ehr hl7 acks resend` queues it again); no
destination, no connection, no answer, CE or AE leave it `pending`, retried with a growing
delay, and the sender's later ACKs wait behind it, so they arrive in order. A deliverer claims
an ACK before sending it, so that several (every listener, `ehr hl7 deliver`) never send one
at the same time.
"""
import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from hl7.mllp import open_hl7_connection
from sqlalchemy import Engine, Row, delete, or_, select, update

from app.errors import ProtectedValueUnreadable
from app.model.instants import utc_now
from app.protection.service import protection_of
from app.store.db import insert_rows, write_unit
from interop.hl7v2.tables import hl7_destination, hl7_outbox
from interop.hl7v2.text import UnreadableMessage, parse

log = logging.getLogger("ehr.hl7v2.outbox")
DEFAULT_TIMEOUT_SECONDS = 10.0  # to connect, and again for the peer's answer
DEFAULT_INTERVAL_SECONDS = 2.0  # between looks at the outbox when nothing wakes the deliverer
FIRST_RETRY_SECONDS, LAST_RETRY_SECONDS = 5, 600  # doubling from the first to at most the last
DELIVERED, REFUSED = ("CA", "AA"), ("CR", "AR")  # MSA-1 of the peer's answer
MAX_REPLY_BYTES = 1024 * 1024


class QueuedAck(NamedTuple):
    message_id: int
    sending_application: str  # MSH-3 and MSH-4 as sent ('' when empty): the route to the sender's destination
    sending_facility: str
    payload: str
    codec: str


class Sender(NamedTuple):
    application: str
    facility: str  # '' for a destination: every facility of the application

    def __str__(self) -> str:
        return f"{self.application}|{self.facility or '*'}"


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None  # PEM certificates to trust; the system's when None
    cert_file: str | None = None  # our client certificate (PEM, its key in key_file), for peers that ask for one
    key_file: str | None = None

    @classmethod
    def of(cls, row) -> "Destination":
        return cls(row.host, row.port, row.tls, row.ca_file, row.cert_file, row.key_file)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def __str__(self) -> str:
        return f"{'mllps' if self.tls else 'mllp'}://{self.host}:{self.port}"


class Claim(NamedTuple):
    """An ACK a deliverer holds for sending until `until`, and where it goes (None: no destination registered)."""

    id: int
    message_id: int
    payload: str
    codec: str
    attempts: int
    until: datetime
    sender: Sender
    destination: Destination | None


class Attempt(NamedTuple):
    status: str  # sent, failed or pending
    error: str | None = None
    reply: str | None = None


def queue(connection, acks: list[QueuedAck]) -> None:
    """Queue application ACKs, in the caller's transaction, for delivery as soon as a deliverer sees them; each
    sealed (app/protection) when protection is on, as an ACK's ERR segments may quote the message."""
    if not acks:
        return
    now, protection = utc_now(), protection_of(connection)
    insert_rows(connection, hl7_outbox, [
        {**ack._asdict(), "payload": protection.sealed_text(ack.payload, payload_context(ack.message_id)), "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
         "claimed_until": None, "sent_at": None, "last_error": None, "reply": None}
        for ack in acks
    ])


# Destinations


def register_destination(engine: Engine, sender: Sender, destination: Destination) -> None:
    """Send the application ACKs of `sender` (facility '' for each of the application's) to `destination`,
    beginning with those waiting for it now."""
    with write_unit(engine) as connection:
        connection.execute(delete(hl7_destination).where(*sender_is(hl7_destination, sender)))
        connection.execute(hl7_destination.insert().values(
            sending_application=sender.application, sending_facility=sender.facility, host=destination.host,
            port=destination.port, tls=destination.tls, ca_file=destination.ca_file, cert_file=destination.cert_file,
            key_file=destination.key_file,
        ))
        waiting = [hl7_outbox.c.status == "pending", hl7_outbox.c.sending_application == sender.application]
        if sender.facility:
            waiting.append(hl7_outbox.c.sending_facility == sender.facility)
        connection.execute(update(hl7_outbox).where(*waiting).values(next_attempt_at=utc_now()))


def remove_destination(engine: Engine, sender: Sender) -> bool:
    with write_unit(engine) as connection:
        return connection.execute(delete(hl7_destination).where(*sender_is(hl7_destination, sender))).rowcount > 0


def destinations(engine: Engine) -> list[Row]:
    with write_unit(engine) as connection:
        return connection.execute(select(hl7_destination).order_by(hl7_destination.c.sending_application, hl7_destination.c.sending_facility)).all()


def destination_for(connection, sender: Sender) -> Destination | None:
    """The destination registered for the sender's application and facility, else for every facility of it."""
    rows = connection.execute(select(hl7_destination).where(
        hl7_destination.c.sending_application == sender.application,
        hl7_destination.c.sending_facility.in_([sender.facility, ""]),
    )).all()
    row = max(rows, key=lambda row: row.sending_facility != "", default=None)
    return row and Destination.of(row)


def sender_is(table, sender: Sender) -> list:
    return [table.c.sending_application == sender.application, table.c.sending_facility == sender.facility]


# The outbox


def queued_acks(engine: Engine, status: str | None = None, limit: int = 50) -> list[Row]:
    """The newest queued ACKs first, optionally of one status, without their payload."""
    columns = [column for column in hl7_outbox.c if column.name not in ("payload", "reply")]
    query = select(*columns).order_by(hl7_outbox.c.id.desc()).limit(limit)
    with write_unit(engine) as connection:
        return connection.execute(query.where(hl7_outbox.c.status == status) if status else query).all()


def resend(engine: Engine, ack_ids: list[int]) -> int:
    """Queue ACKs again (refused ones after the peer is fixed, sent ones it lost); the number queued."""
    with write_unit(engine) as connection:
        return connection.execute(update(hl7_outbox).where(hl7_outbox.c.id.in_(ack_ids), hl7_outbox.c.status != "pending").values(
            status="pending", attempts=0, next_attempt_at=utc_now(), claimed_until=None, last_error=None, sent_at=None, reply=None,
        )).rowcount


def due_senders(engine: Engine, now: datetime) -> list[Sender]:
    query = select(hl7_outbox.c.sending_application, hl7_outbox.c.sending_facility).where(
        hl7_outbox.c.status == "pending", hl7_outbox.c.next_attempt_at <= now,
    ).distinct()
    with write_unit(engine) as connection:
        return [Sender(*row) for row in connection.execute(query)]


def claim_next(engine: Engine, sender: Sender, now: datetime, hold_seconds: float) -> Claim | None:
    """The sender's oldest pending ACK, claimed until `now` + `hold_seconds`, if it is due and nobody holds it.
    Only the oldest is ever claimed, so one sender's ACKs go one after the other, in order. An ACK whose sealed
    payload does not open (its key missing, or the row altered) cannot be sent: it is marked failed with the reason
    (`ehr hl7 acks resend` once the key is back), and the next one claimed, so that it does not hold up the others."""
    oldest = select(hl7_outbox.c.id).where(hl7_outbox.c.status == "pending", *sender_is(hl7_outbox, sender)).order_by(hl7_outbox.c.id).limit(1)
    until = now + timedelta(seconds=hold_seconds)
    claim = update(hl7_outbox).where(
        hl7_outbox.c.id == oldest.scalar_subquery(), hl7_outbox.c.status == "pending", hl7_outbox.c.next_attempt_at <= now,
        or_(hl7_outbox.c.claimed_until.is_(None), hl7_outbox.c.claimed_until <= now),
    ).values(claimed_until=until, attempts=hl7_outbox.c.attempts + 1)
    while True:
        with write_unit(engine) as connection:
            row = connection.execute(claim.returning(
                hl7_outbox.c.id, hl7_outbox.c.message_id, hl7_outbox.c.payload, hl7_outbox.c.codec, hl7_outbox.c.attempts,
            )).first()
            if row is None:
                return None
            try:
                payload = protection_of(connection).opened_text(row.payload, payload_context(row.message_id))
            except ProtectedValueUnreadable as error:
                connection.execute(update(hl7_outbox).where(hl7_outbox.c.id == row.id).values(
                    status="failed", claimed_until=None, last_error=f"The queued ACK does not open: {error}",
                ))
                continue
            return Claim(*row, until, sender, destination_for(connection, sender))._replace(payload=payload)


def payload_context(message_id: int) -> str:
    """What a queued ACK's sealed payload is bound to: its column and the message it acknowledges."""
    return f"hl7_outbox.payload|{message_id}"


def record_attempt(engine: Engine, claim: Claim, attempt: Attempt, now: datetime) -> bool:
    """Record what became of a claimed ACK; False, recording nothing, when the claim had expired and another
    deliverer may have taken the ACK since."""
    values = {"status": attempt.status, "claimed_until": None, "last_error": attempt.error, "reply": attempt.reply}
    if attempt.status == "sent":
        values["sent_at"] = now
    if attempt.status == "pending":
        values["next_attempt_at"] = now + timedelta(seconds=retry_delay(claim.attempts))
    still_ours = (hl7_outbox.c.id == claim.id, hl7_outbox.c.status == "pending", hl7_outbox.c.claimed_until == claim.until)
    with write_unit(engine) as connection:
        return connection.execute(update(hl7_outbox).where(*still_ours).values(values)).rowcount == 1


def retry_delay(attempts: int) -> float:
    return min(FIRST_RETRY_SECONDS * 2 ** (attempts - 1), LAST_RETRY_SECONDS)


# Delivery


class Deliverer:
    """Sends the outbox's due ACKs: each sender's in order, one task per sender, so that a slow or absent
    destination holds up only its own sender's ACKs."""

    def __init__(self, engine: Engine, timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self.engine, self.timeout = engine, timeout
        self.hold_seconds = 3 * timeout  # a claim outlives the longest attempt: connect, then send and be answered
        self.wake = asyncio.Event()  # set when an ACK was queued, so that it goes without waiting for the interval
        self.sending: dict[Sender, asyncio.Task] = {}

    async def run_forever(self, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        while True:
            self.wake.clear()
            try:
                self.start_due(await asyncio.to_thread(due_senders, self.engine, utc_now()))
            except Exception:  # the database may be away for a while: the outbox keeps, try again later
                log.exception("looking for application acknowledgements to deliver failed")
            try:
                await asyncio.wait_for(self.wake.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def start_due(self, senders: list[Sender]) -> None:
        """A delivery task for each of these senders that has none running."""
        for sender in senders:
            if sender not in self.sending:
                self.sending[sender] = asyncio.create_task(self.deliver_for(sender))
                self.sending[sender].add_done_callback(lambda _, sender=sender: self.sending.pop(sender, None))

    async def deliver_due(self) -> list[Attempt]:
        """Send every due ACK once, and wait for that; the attempts made."""
        senders = await asyncio.to_thread(due_senders, self.engine, utc_now())
        per_sender = await asyncio.gather(*(self.deliver_for(sender) for sender in senders))
        return [attempt for attempts in per_sender for attempt in attempts]

    async def deliver_for(self, sender: Sender) -> list[Attempt]:
        """The sender's due ACKs, oldest first, until one has to wait for a retry."""
        attempts = []
        try:
            while claim := await asyncio.to_thread(claim_next, self.engine, sender, utc_now(), self.hold_seconds):
                attempt = await self.attempt(claim)
                if not await asyncio.to_thread(record_attempt, self.engine, claim, attempt, utc_now()):
                    log.warning("application ACK %s: its claim expired before its outcome (%s) was recorded", claim.id, attempt.status)
                attempts.append(attempt)
                if attempt.status == "pending":
                    log.warning("application ACK %s for message %s not delivered (attempt %d): %s",
                                claim.id, claim.message_id, claim.attempts, attempt.error)
                    break
        except Exception:  # the database went away: what was claimed is taken again once its claim expires
            log.exception("delivering the application acknowledgements of %s|%s failed", *sender)
        return attempts

    async def attempt(self, claim: Claim) -> Attempt:
        if claim.destination is None:
            sender = f"{claim.sender.application}|{claim.sender.facility}"  # as sent: '' is no facility, not every one
            return Attempt("pending", f"No destination registered for sender {sender} (ehr hl7 destination add).")
        try:
            reply = await self.exchange(claim.destination, claim.payload.encode(claim.codec, errors="replace"))
        except Exception as error:  # whatever the peer or the network does, the ACK is tried again later
            return Attempt("pending", f"{claim.destination}: {describe(error)}")
        return judged(reply, claim)

    async def exchange(self, destination: Destination, payload: bytes) -> bytes:
        """Send one framed message and read the one frame answering it: at most `timeout` to connect, and again
        to send and be answered."""
        reader, writer = await asyncio.wait_for(open_hl7_connection(
            destination.host, destination.port, limit=MAX_REPLY_BYTES, ssl=destination.ssl_context(),
        ), self.timeout)
        try:
            return await asyncio.wait_for(sent_and_answered(reader, writer, payload), self.timeout)
        finally:
            writer.close()


async def sent_and_answered(reader, writer, payload: bytes) -> bytes:
    writer.writeblock(payload)
    await writer.drain()
    return await reader.readblock()


def judged(reply: bytes, claim: Claim) -> Attempt:
    """The peer's accept ACK read: delivered, refused, or to be sent again."""
    text = reply.decode(claim.codec, errors="replace")
    try:
        message, _ = parse(reply)
        code, answered = str(message.segment("MSA")[1]), str(message.segment("MSA")[2])
    except (UnreadableMessage, KeyError, IndexError, ValueError):
        return Attempt("pending", "The answer is not an HL7 acknowledgement.", text)
    if answered != control_id(claim.payload):
        return Attempt("pending", f"The answer acknowledges {answered!r}, not this ACK.", text)
    if code in DELIVERED:
        return Attempt("sent", None, text)
    return Attempt("failed" if code in REFUSED else "pending", f"The peer answered {code}.", text)


def control_id(payload: str) -> str:
    """MSH-10 of an ACK we built: its field separator is MSH-1."""
    return payload.split("\r", 1)[0].split(payload[3])[9]


def describe(error: Exception) -> str:
    return str(error) or type(error).__name__
