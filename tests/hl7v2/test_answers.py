"""Every complete frame gets exactly one answer, at once, whatever it holds: over MLLP with python-hl7's client, over
HTTP, and from the service, on SQLite and PostgreSQL; a frame's failure is its own, never its batch's."""
import hl7.client
import pytest
from sqlalchemy import select, text

from app.store.db import make_engine
from interop.hl7v2.tables import hl7_message
from interop.hl7v2.mllp import ListenerSettings
from interop.hl7v2.service import NOT_STORED_STATUS, Senders, receive, receive_all
from tests.hl7v2.test_mllp import running_listener
from tests.hl7v2.test_receive import a01, msa

MSH = "MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102030405||{type}|{control}|P|2.5.1|||{accept}|{application}"
PID = "PID|1||{mrn}^^^NORTH^MR||Berg^Anna||19800101|F"
POISON = [b"MSH|\rPID|1||X", b"MSH\r^~\\&\rA|B", b"MSH^^~\\&^A^B\rPID|1"]  # frames python-hl7's parser raises on


def message(control: str, type_: str = "ADT^A01^ADT_A01", accept: str = "", application: str = "", mrn: str = "1001", *more: str) -> bytes:
    segments = [MSH.format(type=type_, control=control, accept=accept, application=application), PID.format(mrn=mrn), *more]
    return ("\r".join(segments) + "\r").encode()


REFUSALS = {  # what a sender may send that is not applied -> MSA-1 it gets
    "unsupported type": (message("R1", "SIU^S12"), "AR"),
    "unsupported event": (message("R2", "ADT^A99"), "AR"),
    "no patient identifier": (message("R3", "ADT^A01", "", "", ""), "AE"),
    "a bad admit date, read past with a warning": (message("R4", "ADT^A01", "", "", "1001", "PV1|1|I|||||||||||||||||V1|||||||||||||||||||||||||2025013"), "AA"),
    "a result value that is not a number": (message("R4B", "ORU^R01", "", "", "1001", "OBR|1||F1|1^X^L|||2025", "OBX|1|NM|2^Y^L||abc||||||F"), "AE"),
    "a batch": (b"BHS|^~\\&|ADT1|NORTH\r" + message("R5") + b"BTS|1\r", "AR"),
    "no MSH at all": (b"\x00\x01 not hl7", "AR"),
    **{f"poison frame {number}": (frame, "AR") for number, frame in enumerate(POISON, 1)},
    "MSH-15 a single space": (message("R6", "ADT^A01", " ", " "), "AA"),
    "MSH-15 outside table 0155": (message("R7", "ADT^A01", "ZZ"), "CA"),
    "MSH-15 ER on a refusal": (message("R8", "SIU^S12", "ER", "NE"), "CR"),
    "MSH-15 ER on a success": (message("R9", "ADT^A01", "ER", "NE"), "CA"),
    "MSH-15 and MSH-16 NE": (message("R10", "ADT^A01", "NE", "NE"), "AA"),
}


@pytest.fixture
def listener(database_url):
    with running_listener(database_url, ListenerSettings(port=0, idle_seconds=30.0, workers=2)) as port:
        yield port


def send_within_a_second(client: hl7.client.MLLPClient, frame: bytes) -> bytes:
    client.socket.settimeout(1.0)  # an answer now, not after an idle timeout
    return client.send_message(frame)


def test_every_kind_of_refusal_is_answered_at_once_on_one_connection(listener):
    with hl7.client.MLLPClient("127.0.0.1", listener) as client:
        client.socket.settimeout(30)
        assert msa(client.send_message(a01("WARM")).decode())[1] == "AA"  # the workers have started
        for name, (frame, expected) in REFUSALS.items():
            answer = send_within_a_second(client, frame).strip(b"\x0b\x1c\r").decode()
            assert msa(answer)[1] == expected, name


def test_a_re_send_of_a_message_with_msh15_outside_the_table_is_answered_too(listener):
    with hl7.client.MLLPClient("127.0.0.1", listener) as client:
        client.socket.settimeout(30)
        first = client.send_message(message("Z1", "ADT^A01", "ZZ"))
        again = client.send_message(message("Z1", "ADT^A01", "ZZ"))
    assert msa(first.strip(b"\x0b\x1c\r").decode())[1:3] == msa(again.strip(b"\x0b\x1c\r").decode())[1:3] == ["CA", "Z1"]


def test_poison_frames_in_a_batch_take_no_other_message_with_them(engine):
    arrivals = []
    for number in range(40):
        arrivals.append((message(f"B{number}", mrn=f"20{number:02d}"), "test"))
        if number % 4 == 0:
            arrivals.append((POISON[number % 3], "test"))
    receipts = receive_all(engine, arrivals)
    assert len(receipts) == len(arrivals)
    answers = [msa(receipt.ack)[1] for receipt in receipts]
    assert answers.count("AA") == 40 and answers.count("AR") == 10
    assert all(receipt.message_id is not None for receipt in receipts)


def test_a_poison_frame_is_stored_as_rejected_with_its_bytes(engine):
    receipt = receive(engine, POISON[0], "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("rejected", "AR")
    with engine.connect() as connection:
        row = connection.execute(select(hl7_message).where(hl7_message.c.id == receipt.message_id)).one()
    assert (row.status, row.raw) == ("rejected", POISON[0])
    assert "no usable separators" in row.error


def test_a_message_whose_msh2_doubles_its_backslash_is_applied_with_a_warning(engine, client):
    receipt = receive(engine, message("DB1", mrn="3001").replace(b"^~\\&", b"^~\\\\&"), "test")
    assert msa(receipt.ack)[1:3] == ["AA", "DB1"]
    assert any(segment.startswith("ERR|") and "|W|" in segment and "MSH-2" in segment for segment in receipt.ack.split("\r"))
    assert len(client.get("/fhir/Patient?identifier=3001").get_json().get("entry", [])) == 1


@pytest.mark.parametrize("frame", POISON)
def test_a_poison_frame_over_http_is_answered_ar_not_500(client, frame):
    response = client.post("/hl7v2", data=frame, content_type="x-application/hl7-v2+er7")
    assert response.status_code == 200
    assert msa(response.get_data(as_text=True))[1] == "AR"


def test_a_frame_that_starts_like_a_message_keeps_what_its_msh_says(engine):
    frame = b"MSH|^~\\&|LAB|NORTH|EHR|CENTRAL|2025||ORU^R01|C77|P|2.5.1\rOBX|1|NM|" + b"\x00" * 3 + b"\r"
    broken = frame.replace(b"^~\\&", b"^^\\&")  # a component separator twice: python-hl7 cannot parse it
    receipt = receive(engine, broken, "test")
    assert msa(receipt.ack)[1] == "AR"


def test_when_the_database_fails_the_message_is_answered_ar_and_not_lost_silently(engine):
    unreachable = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    receipt = receive(unreachable, a01("DOWN1"), "test")
    assert receipt.status == NOT_STORED_STATUS
    assert msa(receipt.ack)[1:3] == ["AR", "DOWN1"]
    assert "send it again" in receipt.ack


def test_when_the_database_fails_enhanced_mode_answers_ce(engine):
    unreachable = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    receipt = receive(unreachable, message("DOWN2", "ADT^A01", "AL", "AL"), "test")
    assert msa(receipt.ack)[1:3] == ["CE", "DOWN2"]


def test_a_listener_whose_database_fails_answers_every_message():
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    with running_listener(url, ListenerSettings(port=0, idle_seconds=30.0, workers=1, deliver=False)) as port:
        with hl7.client.MLLPClient("127.0.0.1", port) as client:
            client.socket.settimeout(60)
            answers = [client.send_message(a01(f"NS{number}")) for number in range(3)]
    assert [msa(answer.strip(b"\x0b\x1c\r").decode())[1] for answer in answers] == ["AR"] * 3


def test_a_sender_not_allowed_is_answered_ar(database_url):
    settings = ListenerSettings(port=0, idle_seconds=30.0, workers=1, senders=Senders(frozenset({"LAB"})))
    with running_listener(database_url, settings) as port, hl7.client.MLLPClient("127.0.0.1", port) as client:
        client.socket.settimeout(30)
        assert msa(client.send_message(a01("NA1")).strip(b"\x0b\x1c\r").decode())[1] == "AR"


def test_after_the_database_dropped_its_connections_the_next_message_is_applied(postgres_url, database_urls):
    """A restart of PostgreSQL leaves the pool's connections dead: the first message after it is still applied."""
    engine = make_engine(postgres_url)
    try:
        assert receive(engine, a01("BEFORE1", mrn="9901"), "test").status == "applied"
        with make_engine(postgres_url).connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        receipt = receive(engine, a01("AFTER1", mrn="9902"), "test")
        assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    finally:
        engine.dispose()


def test_an_unparseable_frame_echoes_what_its_msh_says_when_its_field_separator_can_be_read(engine):
    frame = b"MSH|^^^^|BROKEN|SITE|EHR|HOSP|202605140103||ADT^A01|MRN-DIRTY|P|2.5\rPID|1\r"
    receipt = receive(engine, frame, "test")
    ack = receipt.ack.split("\r")
    assert ack[0].split("|")[2:6] == ["EHR", "HOSP", "BROKEN", "SITE"] and ack[0].split("|")[11] == "2.5"
    assert ack[1] == "MSA|AR|MRN-DIRTY"
    assert receive(engine, frame, "test").message_id == receipt.message_id  # its re-send is recognised


@pytest.mark.parametrize("frame", [b"MSH|^~\\&", b"MSH|^~", b"MSH"])
def test_an_msh_that_ends_at_its_separators_is_answered_ar(engine, frame):
    receipt = receive(engine, frame, "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("rejected", "AR")
    assert receipt.ack.split("\r")[0].split("|")[2:6] == ["", "", "", ""]  # python-hl7 read MSH-3 as 'MSH'
