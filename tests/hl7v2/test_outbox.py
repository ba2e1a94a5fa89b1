"""Application ACKs (MSH-16) on the sender's own channel: queued with the outcome, delivered over MLLP to a
real peer (python-hl7's MLLP server), in order, retried, never sent twice at once; on SQLite and PostgreSQL."""
import asyncio
import socket
import ssl
import threading
import time
from contextlib import suppress
from datetime import timedelta

import pytest
from hl7.mllp import start_hl7_server
from sqlalchemy import select, update

from app.model.instants import utc_now
from interop.hl7v2.tables import hl7_outbox
from interop.hl7v2.mllp import ListenerSettings
from interop.hl7v2 import service
from interop.hl7v2.mapping import UnsupportedMessage
from interop.hl7v2.outbox import (Attempt, Claim, Deliverer, Destination, Sender, claim_next, judged, record_attempt, register_destination,
                                  resend, retry_delay)
from interop.hl7v2.service import receive, receive_all, replay
from tests.hl7v2.test_crash import free_port
from tests.hl7v2.test_mllp import framed, msa, running_listener, send
from tests.hl7v2.test_receive import a01

ADT1 = Sender("ADT1", "NORTH")  # MSH-3 and MSH-4 of test_receive's A01


def enhanced(raw: bytes, accept: str = "AL", application: str = "AL") -> bytes:
    """The message with MSH-15 and MSH-16 set."""
    return raw.replace(b"|P|2.5.1\r", f"|P|2.5.1|||{accept}|{application}\r".encode(), 1)


def msa_of(ack: str) -> list[str]:
    return next(line for line in ack.split("\r") if line.startswith("MSA")).split("|")


class Peer:
    """The sender's own MLLP listener, in a thread: keeps each message it receives and answers it with
    MSA-1 `answer` (None: closes the connection without answering)."""

    def __init__(self, port: int = 0, answer: str | None = "CA", ssl_context: ssl.SSLContext | None = None):
        self.answer, self.ssl_context, self.received = answer, ssl_context, []
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = asyncio.run_coroutine_threadsafe(self.start(port), self.loop).result(timeout=10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def start(self, port: int):
        return await start_hl7_server(self.answer_messages, "127.0.0.1", port, ssl=self.ssl_context)

    async def answer_messages(self, reader, writer) -> None:
        try:
            while not reader.at_eof():
                text = (await reader.readblock()).decode()
                self.received.append(text)
                if self.answer is None:
                    return
                control_id = text.split("\r")[0].split("|")[9]
                writer.writeblock(f"MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102||ACK|R{len(self.received)}|P|2.5.1\rMSA|{self.answer}|{control_id}\r".encode())
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    def stop(self) -> None:
        """Close the server on its own loop: asyncio is not thread-safe, and closing it from the test's thread raced
        with a connection ending on the loop's (TypeError in Server._wakeup)."""
        asyncio.run_coroutine_threadsafe(self.close_server(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def close_server(self) -> None:
        self.server.close()


@pytest.fixture
def peer():
    peer = Peer()
    yield peer
    peer.stop()


def deliver(engine) -> list[str]:
    """One delivery pass; the statuses of the attempts made."""
    return [attempt.status for attempt in asyncio.run(Deliverer(engine, timeout=5).deliver_due())]


def outbox(engine) -> list:
    with engine.connect() as connection:
        return connection.execute(select(hl7_outbox).order_by(hl7_outbox.c.id)).all()


def time_passes(engine) -> None:
    """Make every pending ACK due now, as if its retry delay were over."""
    with engine.begin() as connection:
        connection.execute(update(hl7_outbox).values(next_attempt_at=utc_now()))


def test_the_application_ack_is_queued_with_the_outcome_and_delivered_to_the_senders_destination(engine, peer):
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
    receipt = receive(engine, enhanced(a01("E1")), "test")
    assert msa_of(receipt.ack)[1:3] == ["CA", "E1"]
    assert receipt.queued_application_ack
    assert deliver(engine) == ["sent"]
    assert msa_of(peer.received[0])[1:3] == ["AA", "E1"]
    [row] = outbox(engine)
    assert (row.message_id, row.status, row.attempts) == (receipt.message_id, "sent", 1)
    assert msa_of(row.reply)[1] == "CA"
    assert deliver(engine) == []  # sent once only


def test_an_error_outcome_sends_ae_with_its_err_segment(engine, peer):
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
    without_identifier = enhanced(a01("E2")).replace(b"PID|1||55501^^^NORTH&1.2.840.114350&ISO^MR|", b"PID|1|||")
    assert msa_of(receive(engine, without_identifier, "test").ack)[1] == "CA"  # stored: committed, though in error
    deliver(engine)
    assert msa_of(peer.received[0])[1:3] == ["AE", "E2"]
    assert "\rERR||PID^1^3|101^" in peer.received[0]


def test_msh16_on_error_only_queues_nothing_for_a_success(engine):
    receipt = receive(engine, enhanced(a01("E3"), application="ER"), "test")
    assert (msa_of(receipt.ack)[1], receipt.queued_application_ack, outbox(engine)) == ("CA", False, [])


def test_without_an_accept_ack_the_application_ack_answers_on_the_connection(engine):
    receipt = receive(engine, enhanced(a01("E4"), accept="NE"), "test")
    assert msa_of(receipt.ack)[1:3] == ["AA", "E4"]
    assert outbox(engine) == []


def test_a_resent_message_queues_no_second_application_ack(engine):
    first = receive(engine, enhanced(a01("E5")), "test")
    again = receive(engine, enhanced(a01("E5")), "test")
    assert (first.queued_application_ack, again.queued_application_ack) == (True, False)
    assert again.ack == first.ack
    assert len(outbox(engine)) == 1


def test_an_unreachable_destination_keeps_the_ack_pending_until_the_peer_answers(engine):
    port = free_port()
    register_destination(engine, ADT1, Destination("127.0.0.1", port))
    receive(engine, enhanced(a01("E6")), "test")
    assert deliver(engine) == ["pending"]
    [row] = outbox(engine)
    assert (row.status, row.attempts, row.claimed_until) == ("pending", 1, None)
    assert f"127.0.0.1:{port}" in row.last_error
    assert deliver(engine) == []  # not due before its retry delay
    peer = Peer(port)
    try:
        time_passes(engine)
        assert deliver(engine) == ["sent"]
        assert msa_of(peer.received[0])[2] == "E6"
    finally:
        peer.stop()


def test_a_senders_later_acks_wait_behind_one_to_retry_and_then_go_in_order(engine):
    port = free_port()
    register_destination(engine, ADT1, Destination("127.0.0.1", port))
    for control in ("O1", "O2", "O3"):
        receive(engine, enhanced(a01(control)), "test")
    assert deliver(engine) == ["pending"]
    assert [row.attempts for row in outbox(engine)] == [1, 0, 0]
    peer = Peer(port)
    try:
        time_passes(engine)
        assert deliver(engine) == ["sent", "sent", "sent"]
        assert [msa_of(text)[2] for text in peer.received] == ["O1", "O2", "O3"]
    finally:
        peer.stop()


def test_an_ack_the_peer_refuses_is_failed_and_can_be_queued_again(engine):
    peer = Peer(answer="CR")
    try:
        register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
        receive(engine, enhanced(a01("E7")), "test")
        assert deliver(engine) == ["failed"]
        [row] = outbox(engine)
        assert (row.status, row.last_error) == ("failed", "The peer answered CR.")
        peer.answer = "CA"
        assert resend(engine, [row.id]) == 1
        assert deliver(engine) == ["sent"]
        assert len(peer.received) == 2
    finally:
        peer.stop()


def test_a_peer_that_closes_without_answering_gets_the_ack_again_later(engine):
    peer = Peer(answer=None)
    try:
        register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
        receive(engine, enhanced(a01("E8")), "test")
        assert deliver(engine) == ["pending"]
        assert len(peer.received) == 1
    finally:
        peer.stop()


def test_without_a_destination_the_ack_waits_with_the_reason_and_goes_once_one_is_registered(engine, peer):
    receive(engine, enhanced(a01("E9")), "test")
    assert deliver(engine) == ["pending"]
    assert "No destination registered for sender ADT1|NORTH" in outbox(engine)[0].last_error
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
    assert deliver(engine) == ["sent"]  # without waiting for its retry delay


def test_a_destination_for_every_facility_serves_when_none_names_the_senders(engine, peer):
    register_destination(engine, Sender("ADT1", ""), Destination("127.0.0.1", peer.port))
    register_destination(engine, Sender("ADT1", "SOUTH"), Destination("127.0.0.1", free_port()))
    receive(engine, enhanced(a01("E10")), "test")
    assert deliver(engine) == ["sent"]


def test_an_ack_claimed_by_one_deliverer_is_not_claimed_by_another_until_the_claim_expires(engine):
    receive(engine, enhanced(a01("E11")), "test")
    receive(engine, enhanced(a01("E12")), "test")
    now = utc_now()
    first = claim_next(engine, ADT1, now, 30)
    assert msa_of(first.payload)[2] == "E11"
    assert claim_next(engine, ADT1, now, 30) is None  # neither the held one nor the one after it
    later = now + timedelta(seconds=31)
    again = claim_next(engine, ADT1, later, 30)
    assert (again.id, again.attempts) == (first.id, 2)
    assert not record_attempt(engine, first, Attempt("sent"), later)  # the first deliverer's claim is gone
    assert record_attempt(engine, again, Attempt("sent"), later)
    assert [row.status for row in outbox(engine)] == ["sent", "pending"]


def test_claims_from_many_threads_take_each_ack_once_and_in_order(engine):
    for number in range(20):
        receive(engine, enhanced(a01(f"C{number}")), "test")
    taken = []

    def take_all():
        while claim := claim_next(engine, ADT1, utc_now(), 30):
            taken.append(claim.id)
            record_attempt(engine, claim, Attempt("sent"), utc_now())

    threads = [threading.Thread(target=take_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken == sorted(taken) and len(taken) == len(set(taken)) == 20


def test_retry_delays_double_from_5_seconds_to_at_most_10_minutes():
    assert [retry_delay(attempt) for attempt in (1, 2, 3, 7, 8, 20)] == [5, 10, 20, 320, 600, 600]


def test_a_peer_answering_without_mllp_framing_gets_the_ack_again_later(engine):
    peer = RawPeer(b"MSA|CA|whatever\r")
    try:
        register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
        receive(engine, enhanced(a01("E15")), "test")
        assert deliver(engine) == ["pending"]
        assert outbox(engine)[0].attempts == 1
    finally:
        peer.close()


class RawPeer:
    """A TCP server that answers any connection with `answer` as is, unframed."""

    def __init__(self, answer: bytes):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        threading.Thread(target=self.serve, args=(answer,), daemon=True).start()

    def serve(self, answer: bytes) -> None:
        with suppress(OSError):
            while True:
                connection, _ = self.socket.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(answer)

    def close(self) -> None:
        self.socket.close()


def test_a_replay_queues_an_application_ack_only_when_the_outcome_changed(engine, monkeypatch):
    monkeypatch.setattr(service, "map_message", broken_mapper)
    receipt = receive(engine, enhanced(a01("E13")), "test")
    assert not replay(engine, receipt.message_id).queued_application_ack  # still failing: no second AE
    monkeypatch.undo()  # the mapping fixed
    assert replay(engine, receipt.message_id).queued_application_ack
    assert [msa_of(row.payload)[1:3] for row in outbox(engine)] == [["AE", "E13"], ["AA", "E13"]]


def broken_mapper(message, systems):
    raise KeyError("PV1")


def test_a_message_refused_with_cr_queues_no_application_ack_when_replayed_later(engine, monkeypatch):
    monkeypatch.setattr(service, "map_message", refusing_mapper)
    receipt = receive(engine, enhanced(a01("E16")), "test")
    assert (receipt.status, msa_of(receipt.ack)[1]) == ("rejected", "CR")
    monkeypatch.undo()  # a mapper for the type added
    assert replay(engine, receipt.message_id).status == "applied"
    assert outbox(engine) == []


def refusing_mapper(message, systems):
    raise UnsupportedMessage("Trigger event ADT^A01 is not mapped.", 201, "MSH", 1, 9)


def test_an_unsupported_message_is_refused_with_cr_and_no_application_ack_follows(engine):
    receipt = receive(engine, enhanced(a01("E14")).replace(b"ADT^A01^ADT_A01", b"BAR^P01^BAR_P01"), "test")
    assert (receipt.status, msa_of(receipt.ack)[1]) == ("rejected", "CR")
    assert outbox(engine) == []


def test_a_batch_whose_write_fails_queues_one_application_ack_per_message(client, engine):
    for _ in range(2):  # two patients with the same MRN: the second message's business key matches both
        client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.840.114350", "value": "777"}]})
    receipts = receive_all(engine, [(enhanced(a01(f"F{mrn}", mrn=mrn)), "test") for mrn in ("701", "777", "702")])
    assert [receipt.status for receipt in receipts] == ["applied", "error", "applied"]
    assert [msa_of(row.payload)[1:3] for row in outbox(engine)] == [["AA", "F701"], ["AE", "F777"], ["AA", "F702"]]


def test_the_listener_answers_ca_and_delivers_the_application_ack(database_url, engine, peer):
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port))
    with running_listener(database_url, ListenerSettings(port=0, workers=1)) as port:
        ack = send(port, framed(enhanced(a01("L1"))))
        assert msa(ack)[1:3] == ["CA", "L1"]
        deadline = time.monotonic() + 20
        while not peer.received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert msa_of(peer.received[0])[1:3] == ["AA", "L1"]


@pytest.fixture
def tls_peer(tls_certificate):
    """A peer serving MLLP over TLS with a self-signed certificate; yields it and the certificate's file."""
    certificate, key = tls_certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    peer = Peer(ssl_context=context)
    yield peer, str(certificate)
    peer.stop()


def test_an_application_ack_goes_over_tls_to_a_destination_that_asks_for_it(engine, tls_peer):
    peer, certificate = tls_peer
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port, tls=True, ca_file=certificate))
    receive(engine, enhanced(a01("T1")), "test")
    assert deliver(engine) == ["sent"]
    assert msa_of(peer.received[0])[2] == "T1"


def test_a_peer_that_asks_for_a_client_certificate_gets_the_one_registered(engine, tls_certificate, client_certificate):
    certificate, key = tls_certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_certificate[0]))
    context.load_cert_chain(certificate, key)
    context.verify_mode = ssl.CERT_REQUIRED
    peer = Peer(ssl_context=context)
    try:
        register_destination(engine, ADT1, Destination("127.0.0.1", peer.port, tls=True, ca_file=str(certificate)))
        receive(engine, enhanced(a01("T3")), "test")
        assert deliver(engine) == ["pending"]  # no client certificate: the handshake fails
        client_cert, client_key = map(str, client_certificate)
        register_destination(engine, ADT1, Destination("127.0.0.1", peer.port, True, str(certificate), client_cert, client_key))
        assert deliver(engine) == ["sent"]
        assert msa_of(peer.received[0])[2] == "T3"
    finally:
        peer.stop()


def test_a_tls_destination_with_an_untrusted_certificate_is_not_sent_to(engine, tls_peer):
    peer, _ = tls_peer
    register_destination(engine, ADT1, Destination("127.0.0.1", peer.port, tls=True))  # the system's CAs only
    receive(engine, enhanced(a01("T2")), "test")
    assert deliver(engine) == ["pending"]
    assert peer.received == []
    assert "CERTIFICATE_VERIFY_FAILED" in outbox(engine)[0].last_error


def test_over_http_the_response_is_the_accept_ack_and_the_application_ack_is_queued(client, engine):
    response = client.post("/hl7v2", data=enhanced(a01("H1")), content_type="x-application/hl7-v2+er7")
    assert msa_of(response.get_data(as_text=True))[1:3] == ["CA", "H1"]
    assert [msa_of(row.payload)[1:3] for row in outbox(engine)] == [["AA", "H1"]]


def test_over_http_without_an_accept_ack_the_response_is_the_application_ack(client, engine):
    response = client.post("/hl7v2", data=enhanced(a01("H2"), accept="NE"), content_type="x-application/hl7-v2+er7")
    assert msa_of(response.get_data(as_text=True))[1:3] == ["AA", "H2"]
    assert outbox(engine) == []


OUR_ACK = "MSH|^~\\&|EHR|CENTRAL|ADT1|NORTH|20250102||ACK^A01^ACK|ACK42|P|2.5.1|||AL|NE\rMSA|AA|E1\r"


@pytest.mark.parametrize(("answer", "status"), [
    (b"MSA|CA|ACK42", "sent"), (b"MSA|AA|ACK42", "sent"), (b"MSA|CR|ACK42", "failed"), (b"MSA|AR|ACK42", "failed"),
    (b"MSA|CE|ACK42", "pending"), (b"MSA|CA|SOMETHING-ELSE", "pending"), (b"", "pending"),
])
def test_the_peers_answer_decides_what_becomes_of_the_ack(answer, status):
    reply = b"MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102||ACK|R1|P|2.5.1\r" + answer + b"\r"
    assert judged(reply, Claim(1, 1, OUR_ACK, "utf-8", 1, utc_now(), ADT1, None)).status == status


def test_an_answer_that_is_not_hl7_gets_the_ack_sent_again():
    attempt = judged(b"hello", Claim(1, 1, OUR_ACK, "utf-8", 1, utc_now(), ADT1, None))
    assert (attempt.status, attempt.error, attempt.reply) == ("pending", "The answer is not an HL7 acknowledgement.", "hello")
