"""The MLLP listener with a real MLLP client (python-hl7's), against SQLite and PostgreSQL."""
import asyncio
import socket
import sqlite3
import ssl
import threading
import time
from contextlib import contextmanager

import hl7.client
import pytest

from app.config import Database
from app.store import migrate
from app.store.db import make_engine
from interop.hl7v2.mllp import Listener, ListenerSettings
from tests.hl7v2.test_receive import a01

START, END = b"\x0b", b"\x1c\r"


@pytest.fixture
def listener(database_url):
    """A listener on a free port; yields its port."""
    with running_listener(database_url, ListenerSettings(port=0, max_bytes=256 * 1024, idle_seconds=2.0, workers=2)) as port:
        yield port


@contextmanager
def running_listener(database: str | Database, settings: ListenerSettings):
    """The listener of a database (its URL, or the Database with its protection) run on its own event loop in a thread;
    yields its port."""
    server = Listener(database if isinstance(database, Database) else Database(database), settings)
    loop = asyncio.new_event_loop()
    started = asyncio.run_coroutine_threadsafe(server.start(), loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio_server = started.result(timeout=10)
    try:
        yield asyncio_server.sockets[0].getsockname()[1]
    finally:
        asyncio.run_coroutine_threadsafe(shut_down(asyncio_server), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        server.close()


async def shut_down(asyncio_server: asyncio.Server) -> None:
    """Stop listening and end the connections still open, as the process would on exit."""
    asyncio_server.close()
    connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in connections:
        task.cancel()
    await asyncio.gather(*connections, return_exceptions=True)


def send(port: int, payload: bytes) -> bytes:
    with hl7.client.MLLPClient("127.0.0.1", port) as client:
        return client.send(payload)


def framed(message: bytes) -> bytes:
    return START + message + END


def msa(ack: bytes, encoding: str = "utf-8") -> list[str]:
    text = ack.strip(START + END).decode(encoding)
    return next(line for line in text.split("\r") if line.startswith("MSA")).split("|")


def test_a_utf8_message_is_acknowledged(listener):
    ack = send(listener, framed(a01("U1", family="Müller")))
    assert msa(ack)[1:3] == ["AA", "U1"]


def test_a_message_over_64_kib_is_acknowledged(listener):
    big = a01("BIG1") + b"NTE|1||" + b"x" * 100_000 + b"\r"
    ack = send(listener, framed(big))
    assert msa(ack)[1:3] == ["AA", "BIG1"]


def test_many_messages_on_one_connection_each_get_their_ack(listener):
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as connection:
        for number in range(5):
            connection.sendall(framed(a01(f"M{number}", mrn=f"7000{number}")))
            assert msa(read_frame(connection))[2] == f"M{number}"


def test_a_frame_over_the_limit_closes_the_connection_and_the_listener_keeps_serving(listener):
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as connection:
        connection.sendall(framed(a01("HUGE") + b"NTE|1||" + b"x" * 300_000 + b"\r"))
        assert is_closed(connection)
    assert msa(send(listener, framed(a01("AFTER"))))[2] == "AFTER"


def test_garbage_closes_the_connection(listener):
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\n\r\n" + END)
        assert is_closed(connection)
    assert msa(send(listener, framed(a01("OK1"))))[2] == "OK1"


def test_an_idle_connection_is_closed(listener):
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as connection:
        assert is_closed(connection)  # idle_seconds=2: the listener hangs up


def is_closed(connection: socket.socket) -> bool:
    """True when the listener closed the connection: an orderly close, or a reset when it left bytes unread."""
    try:
        return connection.recv(1024) == b""
    except ConnectionResetError:
        return True


def read_frame(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END):
        chunk = connection.recv(65536)
        assert chunk, "connection closed before the ACK"
        data += chunk
    return data


def test_messages_about_one_patient_are_applied_in_the_order_received(database_url, client):
    """An A08 sent on another connection right after its A01 always wins, for many patients at once. The idle timeout
    is long: on a loaded machine the last of 24 connections can wait more than the module listener's 2 s for its turn."""
    patients = range(12)
    with running_listener(database_url, ListenerSettings(port=0, idle_seconds=120.0, workers=2)) as port:
        first = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in patients]
        second = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in patients]
        send_in_order_on_two_connections(patients, first, second)
    for number in patients:
        entry = client.get(f"/fhir/Patient?identifier=6600{number:02d}").get_json()["entry"]
        assert [item["resource"]["name"][0]["family"] for item in entry] == ["After"]


def send_in_order_on_two_connections(patients, first: list, second: list) -> None:
    """Each connection is put in use first, as an engine's are; then each patient's A01 goes on its first connection
    and its A08 right after on its second."""
    try:
        for number, connection in enumerate(first + second):
            connection.sendall(framed(a01(f"W-{number}", mrn=f"6700{number:02d}")))
            assert msa(read_frame(connection))[1] == "AA"
        for number in patients:
            first[number].sendall(framed(a01(f"O1-{number}", mrn=f"6600{number:02d}", family="Before")))
            second[number].sendall(framed(a08(f"O2-{number}", mrn=f"6600{number:02d}", family="After")))
        for connection in first + second:
            assert msa(read_frame(connection))[1] == "AA"
    finally:
        for connection in first + second:
            connection.close()


def a08(control: str, mrn: str, family: str) -> bytes:
    return a01(control, mrn, family).replace(b"ADT^A01^ADT_A01", b"ADT^A08^ADT_A01").replace(b"EVN|A01", b"EVN|A08")


@pytest.mark.parametrize("limit", [
    dict(max_connections=2),  # the listener's cap
    dict(max_connections_per_peer=2),  # one peer address's cap
])
def test_connections_over_a_cap_are_closed_and_the_others_served(database_url, limit):
    with running_listener(database_url, ListenerSettings(port=0, idle_seconds=30.0, workers=1, **limit)) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as refused:
            assert is_closed(refused)
        held[0].sendall(framed(a01("CAP1")))
        assert msa(read_frame(held[0]))[2] == "CAP1"
        for connection in held:
            connection.close()


def test_the_listener_serves_mllp_over_tls(database_url, tls_certificate):
    certificate, key = tls_certificate
    settings = ListenerSettings(port=0, idle_seconds=5.0, workers=1, tls_certificate=str(certificate), tls_key=str(key))
    with running_listener(database_url, settings) as port:
        context = ssl.create_default_context(cafile=str(certificate))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain, context.wrap_socket(plain, server_hostname="127.0.0.1") as connection:
            connection.sendall(framed(a01("TLS1")))
            assert msa(read_frame(connection))[1:3] == ["AA", "TLS1"]


def test_a_frame_that_never_ends_is_cut_off_long_before_the_idle_timeout(database_url):
    with running_listener(database_url, ListenerSettings(port=0, idle_seconds=60.0, frame_seconds=1.0, workers=1)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as held, \
                socket.create_connection(("127.0.0.1", port), timeout=20) as idle:
            held.sendall(START + a01("HELD")[:40])  # a frame begun, never ended
            started = time.monotonic()
            assert is_closed(held)
            assert time.monotonic() - started < 15  # cut off by the frame limit, not the 60 s idle limit
            idle.sendall(framed(a01("IDLE1")))  # a connection that only waited is still served
            assert msa(read_frame(idle))[2] == "IDLE1"


def test_the_last_connections_are_kept_for_senders_whose_messages_were_accepted(database_url):
    settings = ListenerSettings(port=0, idle_seconds=30.0, max_connections=3, reserved_connections=1, workers=1)
    with running_listener(database_url, settings) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as unknown:
            assert is_closed(unknown)  # 127.0.0.1 has sent nothing yet
        held[0].sendall(framed(a01("KNOWN1")))
        assert msa(read_frame(held[0]))[1] == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as known:
            known.sendall(framed(a01("KNOWN2")))
            assert msa(read_frame(known))[2] == "KNOWN2"
        for connection in held:
            connection.close()


def test_a_trusted_network_is_known_from_its_first_connection(database_url):
    settings = ListenerSettings(port=0, idle_seconds=30.0, max_connections=2, reserved_connections=1,
                                max_connections_per_peer=1, trusted_networks=("127.0.0.0/8",), workers=1)
    with running_listener(database_url, settings) as port:
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as trusted:
            trusted.sendall(framed(a01("TRUST1")))
            assert msa(read_frame(trusted))[2] == "TRUST1"
        held.close()


def test_line_breaks_after_each_frame_are_read_past(listener):
    """Some senders end a frame with <FS><CR><LF>, or put a line break before the next start block."""
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as connection:
        connection.sendall(framed(a01("LF1")) + b"\n")
        assert msa(read_frame(connection))[2] == "LF1"
        connection.sendall(b"\r\n" + framed(a01("LF2", mrn="70010")) + b"\r\n")
        assert msa(read_frame(connection))[2] == "LF2"
        connection.sendall(framed(a01("LF3", mrn="70011")))
        assert msa(read_frame(connection))[2] == "LF3"


def test_a_complete_frame_that_arrived_while_the_one_before_was_applied_is_answered(tmp_path):
    """The frame clock runs from when the listener waits for a frame: applying the one before is not the sender's time."""
    path = tmp_path / "busy.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    with running_listener(f"sqlite:///{path}", ListenerSettings(port=0, idle_seconds=60.0, frame_seconds=1.0, workers=1)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(framed(a01("WARM")))
            assert msa(read_frame(connection))[1] == "AA"
            other_writer = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
            other_writer.execute("BEGIN IMMEDIATE")  # the database is busy for longer than frame_seconds
            threading.Timer(2.5, lambda: other_writer.execute("COMMIT")).start()
            connection.sendall(framed(a01("P1")) + framed(a01("P2", mrn="70020")))
            answers = b""
            while answers.count(END) < 2:
                chunk = connection.recv(65536)
                assert chunk, "connection closed before both answers"
                answers += chunk
    assert [msa(frame + END)[2] for frame in answers.split(END)[:2]] == ["P1", "P2"]
