"""HL7 v2 messages with protection on: the message as received, what its outcome quotes of it (a warning, the ACK's
ERR segments) and the application ACK queued for its sender are sealed like a resource's protected values. The sender,
`ehr hl7 show` and `list` and GET /hl7v2/messages read them back; keys rotate over them; protection turned on seals
those stored before; a value moved to another message's row does not open. On SQLite and PostgreSQL."""
import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import app.protection.commands
import app.protection.service
from app.store.rewrap import key_uses
from interop.hl7v2.mllp import ListenerSettings
from interop.hl7v2.outbox import Deliverer, Destination, Sender, register_destination
from interop.hl7v2.tables import hl7_message, hl7_outbox
from tests.hl7v2.test_mllp import framed, msa, running_listener, send
from tests.hl7v2.test_outbox import Peer
from tests.protection.conftest import json_output, protected_settings, raw_database_text, run_ehr, running_app

HL7 = {"Content-Type": "x-application/hl7-v2+er7"}
BAD_BIRTH_DATE = "1980134599"  # PID-7 that is no date: the warning, the ACK and the application ACK quote it
PROTECTED_VALUES = ("Quuxleyworth", "MRN-QX-4411", BAD_BIRTH_DATE, "Zorbington")
SENDER = Sender("ADT1", "NORTH")


def a01(control_id: str, enhanced: bool = False) -> bytes:
    """An A01 whose patient has protected values, one of which (the birth date) the outcome quotes; `enhanced`: MSH-15
    and MSH-16 ask for an accept ACK and an application ACK, which is queued for the sender's own listener."""
    acknowledgements = "|||AL|AL" if enhanced else ""
    return "\r".join([
        f"MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102030405||ADT^A01^ADT_A01|{control_id}|P|2.5.1{acknowledgements}",
        "EVN|A01|20250102030405",
        "PID|1||MRN-QX-4411^^^NORTH^MR||Quuxleyworth^Anna||" + BAD_BIRTH_DATE + "|F|||12 Zorbington Rd^^Oxbury",
        "PV1|1|I|W1^101^1||||||||||||||||V-QX-1|||||||||||||||||||||||||20250102030000",
    ]).encode() + b"\r"


def readable(database_url: str) -> list[str]:
    raw = raw_database_text(database_url).casefold()
    return [value for value in PROTECTED_VALUES if value.casefold() in raw]


def posted(client, message: bytes) -> str:
    response = client.post("/hl7v2", data=message, headers=HL7)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def message_ids(client) -> list[int]:
    return [message["id"] for message in client.get("/hl7v2/messages").get_json()["messages"]]


def stored_columns(protection_engine) -> list:
    with protection_engine.connect() as connection:
        return [*connection.execute(select(hl7_message.c.raw, hl7_message.c.error, hl7_message.c.ack, hl7_message.c.warnings)),
                *connection.execute(select(hl7_outbox.c.payload))]


def sealed_under(values, key_id: str) -> bool:
    prefix = f"enc:v1:{key_id}:"
    return all(value is None or (value.startswith(prefix.encode()) if isinstance(value, bytes) else value.startswith(prefix)) for value in values)


# `client` in a test that does not use it: the server has made the database's first keys (as `ehr mllp` does).


@pytest.fixture(autouse=True)
def quick_rotation(monkeypatch):
    monkeypatch.setattr(app.protection.service, "RING_REFRESH_SECONDS", 0.2)
    monkeypatch.setattr(app.protection.commands, "SEEN_EVERYWHERE", timedelta(seconds=0.4))


def test_nothing_a_message_holds_or_its_outcome_quotes_is_readable_in_the_database(settings, client, database_url):
    with running_listener(settings.database, ListenerSettings(port=0, idle_seconds=5.0, workers=1, deliver=False)) as port:
        accepted = send(port, framed(a01("Q1", enhanced=True)))
        ack = send(port, framed(a01("Q2")))
    assert msa(accepted)[1:3] == ["CA", "Q1"]
    assert msa(ack)[1:3] == ["AA", "Q2"] and BAD_BIRTH_DATE.encode() in ack  # the sender reads the warning in the clear
    assert readable(database_url) == []
    with running_app(settings) as server:
        engine = server.extensions["ehr.engine"]
        values = [value for row in stored_columns(engine) for value in row]
    assert len(values) == 9 and values.count(None) == 2  # raw, ack and warnings of each message (no error); an ACK queued
    primary = json_output(run_ehr(database_url, "keys", "list", key_file=settings.protection.key_file))
    assert sealed_under(values, next(key["id"] for key in primary if key["purpose"] == "value" and key["primary"]))


def test_a_resent_message_is_answered_with_its_stored_ack(settings, client):
    with running_listener(settings.database, ListenerSettings(port=0, idle_seconds=5.0, workers=1, deliver=False)) as port:
        first = send(port, framed(a01("Q3")))
        again = send(port, framed(a01("Q3")))  # another connection: another peer port, the same message
    assert msa(first)[1:3] == ["AA", "Q3"] and again == first


def test_the_message_views_read_back_the_message_and_its_outcome(client, database_url, key_file):
    ack = posted(client, a01("Q3"))
    [message_id] = message_ids(client)
    shown = client.get(f"/hl7v2/messages/{message_id}").get_json()
    assert "Quuxleyworth^Anna" in shown["message"] and shown["ack"] == ack
    assert any(BAD_BIRTH_DATE in warning for warning in shown["warnings"])
    listed = client.get("/hl7v2/messages").get_json()["messages"][0]
    assert listed["warnings"] == shown["warnings"]
    command = run_ehr(database_url, "hl7", "show", str(message_id), key_file=key_file)
    assert command.exit_code == 0, command.output
    assert "Quuxleyworth^Anna" in command.output and BAD_BIRTH_DATE in command.output and "MSA|AA|Q3" in command.output
    listing = run_ehr(database_url, "hl7", "list", key_file=key_file)
    assert listing.exit_code == 0 and f"warning: PID-7: '{BAD_BIRTH_DATE}'" in listing.output


def test_a_replayed_message_keeps_its_new_outcome_sealed(client, database_url, key_file):
    posted(client, a01("Q4"))
    [message_id] = message_ids(client)
    result = run_ehr(database_url, "hl7", "replay", str(message_id), key_file=key_file)
    assert result.exit_code == 0, result.output
    assert readable(database_url) == []
    assert any(BAD_BIRTH_DATE in warning for warning in client.get(f"/hl7v2/messages/{message_id}").get_json()["warnings"])


def test_the_application_ack_reaches_its_sender_in_the_clear(app, client, database_url):
    posted(client, a01("Q5", enhanced=True))
    peer = Peer()
    try:
        engine = app.extensions["ehr.engine"]
        register_destination(engine, SENDER, Destination("127.0.0.1", peer.port))
        assert [attempt.status for attempt in asyncio.run(Deliverer(engine, timeout=5).deliver_due())] == ["sent"]
    finally:
        peer.stop()
    [delivered] = peer.received
    assert "MSA|AA|Q5" in delivered and BAD_BIRTH_DATE in delivered
    assert readable(database_url) == []


def test_an_outcome_moved_to_another_message_does_not_open(app, client):
    posted(client, a01("Q6"))
    posted(client, a01("Q7"))
    second, first = message_ids(client)
    engine = app.extensions["ehr.engine"]
    with engine.begin() as connection:
        moved = connection.execute(select(hl7_message.c.warnings).where(hl7_message.c.id == first)).scalar()
        connection.execute(update(hl7_message).where(hl7_message.c.id == second).values(warnings=moved))
    refused = client.get(f"/hl7v2/messages/{second}")
    assert refused.status_code == 503 and refused.get_json()["resourceType"] == "OperationOutcome"
    assert BAD_BIRTH_DATE not in refused.get_data(as_text=True)
    assert client.get(f"/hl7v2/messages/{first}").status_code == 200


def test_rewrap_seals_messages_and_queued_acks_again_and_retire_counts_them(app, client, database_url, key_file):
    posted(client, a01("Q8", enhanced=True))
    [message_id] = message_ids(client)
    before = client.get(f"/hl7v2/messages/{message_id}").get_json()
    old = next(key["id"] for key in json_output(run_ehr(database_url, "keys", "list", key_file=key_file)) if key["purpose"] == "value")
    new = json_output(run_ehr(database_url, "keys", "add", "--purpose", "value", key_file=key_file))["id"]
    json_output(run_ehr(database_url, "keys", "promote", new, key_file=key_file))
    refused = run_ehr(database_url, "keys", "retire", old, key_file=key_file)
    in_resources = key_uses(app.extensions["ehr.engine"], old)  # the patient's and the encounter's rows
    assert refused.exit_code != 0 and f"{in_resources + 2} stored rows still use" in refused.output  # + the message, its ACK
    assert json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file))["rewrapped"] >= 2
    assert json_output(run_ehr(database_url, "keys", "retire", old, key_file=key_file)) == {"retired": old}
    assert client.get(f"/hl7v2/messages/{message_id}").get_json() == before
    with running_app(protected_settings(database_url, key_file)) as server:
        assert sealed_under([value for row in stored_columns(server.extensions["ehr.engine"]) for value in row], new)


def test_turning_protection_on_seals_messages_stored_in_the_clear(database_url, key_file):
    with running_app(protected_settings(database_url, None)) as server:
        client = server.test_client()
        posted(client, a01("Q9", enhanced=True))
        before = client.get(f"/hl7v2/messages/{message_ids(client)[0]}").get_json()
    assert readable(database_url) == list(PROTECTED_VALUES)
    json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file))
    assert readable(database_url) == []
    with running_app(protected_settings(database_url, key_file)) as server:
        assert server.test_client().get(f"/hl7v2/messages/{before['id']}").get_json() == before


def test_a_queued_ack_that_does_not_open_is_marked_failed_and_the_next_one_is_sent(app, client):
    posted(client, a01("QA", enhanced=True))
    posted(client, a01("QB", enhanced=True))
    engine = app.extensions["ehr.engine"]
    with engine.begin() as connection:
        first, second = connection.execute(select(hl7_outbox.c.id, hl7_outbox.c.payload).order_by(hl7_outbox.c.id)).all()
        connection.execute(update(hl7_outbox).where(hl7_outbox.c.id == first.id).values(payload=second.payload))  # moved
    peer = Peer()
    try:
        register_destination(engine, SENDER, Destination("127.0.0.1", peer.port))
        assert [attempt.status for attempt in asyncio.run(Deliverer(engine, timeout=5).deliver_due())] == ["sent"]
    finally:
        peer.stop()
    assert ["MSA|AA|QB" in text for text in peer.received] == [True]
    with engine.connect() as connection:
        failed = connection.execute(select(hl7_outbox).where(hl7_outbox.c.id == first.id)).one()
    assert failed.status == "failed" and "does not open" in failed.last_error
