"""The production server as gunicorn.conf.py runs it: gevent workers on PostgreSQL, threaded workers on SQLite, each
serving a client while another client's request waits on the database, and many clients at once."""
import http.client
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import libpq_url

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "gunicorn"
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
CLIENTS = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def exchange(port: int, method: str, path: str, body=None, timeout: float = 60) -> tuple[int, dict | None]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, orjson.dumps(body) if body is not None else None, FHIR_JSON)
        response = connection.getresponse()
        payload = response.read()
        return response.status, orjson.loads(payload) if payload else None
    finally:
        connection.close()


@pytest.fixture
def served(database_url, tmp_path):
    """gunicorn with the repository's gunicorn.conf.py and one worker on `database_url`: (port, log path)."""
    port, log = free_port(), tmp_path / "gunicorn.log"
    env = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_ALLOWED_HOSTS": "127.0.0.1", "EHR_AUTH": "off"}
    with open(log, "wb") as out:
        server = subprocess.Popen([str(GUNICORN), "-w", "1", "-b", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(server, port, log)
        yield port, log
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0, log.read_text()


def wait_until_ready(server: subprocess.Popen, port: int, log: Path) -> None:
    for _ in range(300):
        assert server.poll() is None, log.read_text()
        try:
            if exchange(port, "GET", "/readyz", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn never became ready:\n{log.read_text()}")


def observation(subject: str, value: float) -> dict:
    return {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": subject}, "effectiveDateTime": "2025-03-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def test_the_worker_is_an_event_loop_on_postgresql_and_threads_on_sqlite(database_url, served):
    _, log = served
    expected = "gthread" if database_url.startswith("sqlite") else "gevent"
    assert f"Using worker: {expected}" in log.read_text()


def test_many_clients_at_once_each_get_their_own_answer(served):
    port, _ = served
    assert exchange(port, "PUT", "/fhir/Patient/crowd", {"resourceType": "Patient", "id": "crowd"})[0] == 201

    def create_then_read(value: int) -> tuple[int, int, float]:
        created_status, created = exchange(port, "POST", "/fhir/Observation", observation("Patient/crowd", value))
        read_status, read = exchange(port, "GET", f"/fhir/Observation/{created['id']}")
        return created_status, read_status, read["valueQuantity"]["value"]

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(create_then_read, range(CLIENTS * 8)))
    assert answers == [(201, 200, value) for value in range(CLIENTS * 8)]
    status, found = exchange(port, "GET", "/fhir/Observation?subject=Patient/crowd&_summary=count")
    assert (status, found["total"]) == (200, CLIENTS * 8)


def test_a_large_transaction_and_other_clients_are_all_served(served):
    port, _ = served
    assert exchange(port, "PUT", "/fhir/Patient/bulk", {"resourceType": "Patient", "id": "bulk"})[0] == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("Patient/bulk", value), "request": {"method": "POST", "url": "Observation"}} for value in range(1500)
    ]}
    with ThreadPoolExecutor(4) as pool:
        transaction = pool.submit(exchange, port, "POST", "/fhir", bundle)
        reads = [pool.submit(exchange, port, "GET", "/fhir/Patient/bulk") for _ in range(30)]
        assert [read.result()[0] for read in reads] == [200] * 30
        status, response = transaction.result()
    assert status == 200 and [entry["response"]["status"][:3] for entry in response["entry"]] == ["201"] * 1500


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_client_is_served_while_another_clients_write_waits_on_a_lock(database_url, served):
    """The gevent worker's database waits let its loop serve others: with one worker, a read answers while an update
    waits for a row lock held elsewhere. A driver that blocked the loop would hold the read until the lock went."""
    port, _ = served
    dsn = libpq_url(make_url(database_url))
    assert exchange(port, "PUT", "/fhir/Patient/held", {"resourceType": "Patient", "id": "held", "active": True})[0] == 201
    with psycopg.connect(dsn) as locker, ThreadPoolExecutor(1) as pool:
        locker.execute("SELECT 1 FROM resource WHERE res_type = 'Patient' AND res_id = 'held' FOR UPDATE")
        update = pool.submit(exchange, port, "PUT", "/fhir/Patient/held", {"resourceType": "Patient", "id": "held", "active": False})
        wait_for_lock_waiter(dsn)
        status, read = exchange(port, "GET", "/fhir/Patient/held", timeout=30)
        assert (status, read["active"], update.done()) == (200, True, False)
        locker.rollback()
        assert update.result()[0] == 200
    assert exchange(port, "GET", "/fhir/Patient/held")[1]["active"] is False


def wait_for_lock_waiter(dsn: str) -> None:
    """Until another session waits on a lock (the update, blocked behind the test's row lock)."""
    with psycopg.connect(dsn, autocommit=True) as watcher:
        for _ in range(600):
            waiting = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("the update never waited on the lock")
