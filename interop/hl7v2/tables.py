"""The HL7 v2 feed's own tables, on the store's metadata: the message store, where application ACKs go, the ACKs
waiting to go, and the identifier systems of assigning authorities. No module outside interop/hl7v2 queries them."""
from sqlalchemy import Boolean, Column, DateTime, Identity, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from app.store import Sequence, metadata

# HL7 v2 messages as received (interop/hl7v2/service.py): stored before any ACK, with their outcome.
# status: applied, error (AE, replayable), rejected (AR); received (stored but not applied) only from earlier versions,
# which committed the bytes before applying them: a re-send or `ehr hl7 replay --status received` applies those.
hl7_message = Table(
    "hl7_message",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("peer", String(200), nullable=False),  # mllp:host:port or http:host
    Column("sending_application", String(227)),  # MSH-3, MSH-4, MSH-10 as sent: a re-send has the same three
    Column("sending_facility", String(227)),
    Column("control_id", String(199)),
    Column("message_type", String(50)),
    Column("version", String(60)),
    Column("codec", String(20)),  # the character set the bytes were read with
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("ack", Text),
    Column("raw", LargeBinary, nullable=False),  # the bytes exactly as framed, for replay
    # SHA-256 of the text without MSH-7 and MSH-10: a re-send has the same sender, control id and content.
    # NULL for messages stored before it was kept; one of those is the re-send of any message with its control id.
    Column("content_hash", String(64)),
    Column("reuses_control_id_of", Sequence),  # the earlier message, with other content, of this sender and control id
    Column("warnings", Text),  # what was read liberally (a value outside its table, a structure name), one per line
    UniqueConstraint("sending_application", "sending_facility", "control_id", "content_hash",
                     name="uq_hl7_message_sender_control_id_content"),
    Index("ix_hl7_message_status_id", "status", "id"),
)

hl7_destination = Table(  # where a sender's application acknowledgements go: its own MLLP listener
    "hl7_destination",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("sending_application", String(227), nullable=False),  # MSH-3 of the messages it sends us
    Column("sending_facility", String(227), nullable=False),  # MSH-4; '' for every facility of the application
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("tls", Boolean, nullable=False),
    Column("ca_file", String(1000)),  # PEM certificates to trust for TLS; the system's when empty
    Column("cert_file", String(1000)),  # a client certificate and its key (PEM), for peers that ask for one
    Column("key_file", String(1000)),
    UniqueConstraint("sending_application", "sending_facility", name="uq_hl7_destination_sender"),
)

hl7_authority = Table(  # assigning authorities (HD.1) and the identifier system a hospital uses for each
    "hl7_authority",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("name", String(227), nullable=False),
    Column("system", String(1000), nullable=False),
    UniqueConstraint("name", name="uq_hl7_authority_name"),
)

hl7_outbox = Table(  # application acknowledgements, queued in the transaction that records the outcome they report
    "hl7_outbox",
    metadata,
    Column("id", Sequence, Identity(), primary_key=True),
    Column("message_id", Sequence, nullable=False),  # the hl7_message acknowledged
    Column("sending_application", String(227)),  # the message's MSH-3 and MSH-4: the route to its destination
    Column("sending_facility", String(227)),
    Column("payload", Text, nullable=False),
    Column("codec", String(20), nullable=False),
    Column("status", String(16), nullable=False),  # pending, sent, failed (refused by the peer)
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("claimed_until", DateTime(timezone=True)),  # a deliverer is sending it until then
    Column("sent_at", DateTime(timezone=True)),
    Column("last_error", Text),
    Column("reply", Text),  # the peer's accept acknowledgement
    Index("ix_hl7_outbox_status_sender_id", "status", "sending_application", "sending_facility", "id"),
)
