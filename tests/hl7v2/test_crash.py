"""Kill the listener (SIGKILL) mid-stream, restart it, re-send what was not acknowledged: every
acknowledged message's resources exist exactly once, and so does every re-sent one's."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.hl7v2.test_mllp import framed, msa, read_frame
from tests.hl7v2.test_receive import a01

MESSAGES = 40
KILL_AFTER = 15  # ACKs received before the kill; the next message is in flight when it lands


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_listener(database_url: str, port: int) -> subprocess.Popen:
    ehr = Path(sys.executable).parent / "ehr"
    process = subprocess.Popen(
        [str(ehr), "mllp", "--port", str(port)], env={**os.environ, "EHR_DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the MLLP listener did not start")


def message(number: int) -> bytes:
    return framed(a01(f"K{number}", mrn=f"8800{number:02d}", family=f"Family{number}"))


def send_until_killed(port: int, listener: subprocess.Popen) -> set[int]:
    """Send messages one by one; SIGKILL the listener right after sending the message that follows the
    KILL_AFTER-th ACK. Returns the numbers of the acknowledged messages."""
    acknowledged = set()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for number in range(MESSAGES):
            connection.sendall(message(number))
            if number == KILL_AFTER:
                os.kill(listener.pid, signal.SIGKILL)
                listener.wait()
                return acknowledged
            assert msa(read_frame(connection))[1] == "AA"
            acknowledged.add(number)
    return acknowledged


def test_acknowledged_messages_survive_a_kill_and_resends_apply_once(database_url, client):
    port = free_port()
    acknowledged = send_until_killed(port, start_listener(database_url, port))
    assert len(acknowledged) == KILL_AFTER
    listener = start_listener(database_url, port)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            for number in range(KILL_AFTER, MESSAGES):  # the sender re-sends everything not acknowledged
                connection.sendall(message(number))
                assert msa(read_frame(connection))[1:3] == ["AA", f"K{number}"]
    finally:
        listener.kill()
        listener.wait()
    for number in range(MESSAGES):
        bundle = client.get(f"/fhir/Patient?identifier=8800{number:02d}").get_json()
        assert len(bundle.get("entry", [])) == 1, f"message K{number}"


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def is_running(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (running := [pid for pid in pids if is_running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return running


def test_workers_end_when_their_listener_is_killed(database_url):
    port = free_port()
    listener = start_listener(database_url, port)
    workers = children_of(listener.pid)
    assert workers, "the listener starts its workers with it"
    os.kill(listener.pid, signal.SIGKILL)
    listener.wait()
    assert wait_until_gone(workers, 15) == []


def test_sigterm_stops_the_listener_and_its_workers(database_url):
    port = free_port()
    listener = start_listener(database_url, port)
    workers = children_of(listener.pid)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(message(90))
        assert msa(read_frame(connection))[1] == "AA"
    listener.send_signal(signal.SIGTERM)
    assert listener.wait(timeout=30) == 0  # a clean exit, not death by the signal (-15)
    assert wait_until_gone(workers, 5) == []
