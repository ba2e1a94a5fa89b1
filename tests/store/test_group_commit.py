"""Group commit: units whose only writes are creates share a statement when they line up behind one that runs, and
each keeps its own outcome (app/store/group_commit.py)."""
import threading
import time

import psycopg
from sqlalchemy import event

from sqlalchemy.engine import make_url

from app.store import group_commit
from app.store.group_commit import Group
from tests.conftest import libpq_url

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def observation(subject: str) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}, "subject": {"reference": subject}}


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Writes:
    """A write function for a Group that records each call, can be held, and fails any call that includes "bad"."""

    def __init__(self):
        self.calls: list[list] = []
        self.held = threading.Event()
        self.held.set()

    def __call__(self, _connection, units: list) -> list:
        self.calls.append(list(units))
        self.held.wait()
        if "bad" in units:
            raise ValueError("bad")
        return [f"wrote {unit}" for unit in units]


def in_threads(group: Group, writes: Writes, units: list[str], sizes: dict | None = None) -> tuple[list, dict]:
    results: dict = {}

    def write(unit):
        try:
            results[unit] = group.write(None, unit, (sizes or {}).get(unit, 1), writes)
        except ValueError as error:
            results[unit] = error

    threads = [threading.Thread(target=write, args=(unit,)) for unit in units]
    return threads, results


def line_up(group: Group, threads: list[threading.Thread]) -> None:
    """Start the threads one by one, each lined up before the next starts."""
    for count, thread in enumerate(threads, 1):
        thread.start()
        wait_until(lambda count=count: len(group.line) == count)


def test_a_unit_alone_writes_at_once_and_alone():
    group, writes = Group(), Writes()
    assert group.write(None, "a", 1, writes) == "wrote a"
    assert writes.calls == [["a"]]


def lined_up_behind_a_held_write(group: Group, writes: Writes, units: list[str], sizes: dict | None = None) -> dict:
    """Unit "a" writes, held, while `units` line up in order behind it; then all are let through. Each unit's result."""
    writes.held.clear()
    first, results = in_threads(group, writes, ["a"])
    first[0].start()
    wait_until(lambda: writes.calls)
    others, more = in_threads(group, writes, units, sizes)
    line_up(group, others)
    writes.held.set()
    for thread in first + others:
        thread.join()
    return {**results, **more}


def test_units_that_line_up_behind_a_running_write_share_the_next_one():
    group, writes = Group(), Writes()
    results = lined_up_behind_a_held_write(group, writes, ["b", "c", "d"])
    assert writes.calls == [["a"], ["b", "c", "d"]]
    assert results == {unit: f"wrote {unit}" for unit in "abcd"}


def test_when_a_shared_write_fails_each_unit_is_written_alone_with_its_own_outcome():
    group, writes = Group(), Writes()
    results = lined_up_behind_a_held_write(group, writes, ["b", "bad", "c"])
    assert results["b"] == "wrote b" and results["c"] == "wrote c" and isinstance(results["bad"], ValueError)
    assert writes.calls == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]
    assert not group.line and not group.writing


def test_a_shared_write_holds_at_most_most_versions():
    group, writes = Group(), Writes()
    half = group_commit.MOST_VERSIONS // 2
    results = lined_up_behind_a_held_write(group, writes, ["b", "c", "d"], {"b": half, "c": half, "d": 1})
    assert writes.calls[1:] == [["b", "c"], ["d"]]
    assert results == {unit: f"wrote {unit}" for unit in "abcd"}


def test_rest_creates_that_line_up_share_one_statement_and_keep_their_own_answers(app, database_url):
    """Through the REST entrance on the real database. On PostgreSQL a first create is held on the lock of the patient
    it refers to; the creates that line up meanwhile, one of them referring to a patient that does not exist, are
    written in one statement: that one is refused and only that one. SQLite writes each unit alone, one at a time."""
    engine = app.extensions["ehr.engine"]
    client = app.test_client()
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR_JSON).status_code == 201
    statements = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    postgresql = engine.dialect.name == "postgresql"
    holder = hold_row(database_url, "p1") if postgresql else None
    answers: dict[str, int] = {}

    def create(name: str, subject: str) -> None:
        answers[name] = app.test_client().post("/fhir/Observation", json=observation(subject), headers=FHIR_JSON).status_code

    first = threading.Thread(target=create, args=("first", "Patient/p1"))
    first.start()
    if postgresql:
        wait_until(lambda: statements)
    lined = [threading.Thread(target=create, args=(name, subject))
             for name, subject in [("second", "Patient/p1"), ("dangling", "Patient/nobody"), ("third", "Patient/p1")]]
    for thread in lined:
        thread.start()
    if postgresql:
        wait_until(lambda: len(group_commit.GROUPS[engine.pool].line) == 3)
        holder.rollback()
    for thread in [first, *lined]:
        thread.join()
    assert answers == {"first": 201, "second": 201, "dangling": 400, "third": 201}
    assert len(client.get("/fhir/Observation").json["entry"]) == 3
    if postgresql:
        writes = [statement for statement in statements if statement.lstrip().startswith("WITH")]
        assert len(writes) == 2, writes  # the first alone, then the three lined up in one


def hold_row(database_url: str, resource_id: str) -> psycopg.Connection:
    """A transaction that holds the resource's row locked FOR UPDATE (as a delete or update does) until rolled back."""
    connection = psycopg.connect(libpq_url(make_url(database_url)))
    connection.execute("SELECT 1 FROM resource WHERE res_id = %s FOR UPDATE", (resource_id,))
    return connection


def test_many_concurrent_creates_are_each_written_once(app):
    """Eight threads creating at once, with and without references: every create is answered 201, and stored once."""
    client = app.test_client()
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR_JSON).status_code == 201
    statuses, ids = [], []

    def create_many(n: int) -> None:
        own = app.test_client()
        for k in range(25):
            body = observation("Patient/p1") if (n + k) % 2 else {"resourceType": "Patient", "name": [{"family": f"F{n}-{k}"}]}
            response = own.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)
            statuses.append(response.status_code)
            ids.append(response.json["id"])

    threads = [threading.Thread(target=create_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 200 and len(set(ids)) == 200
    stored = sum(client.get(f"/fhir/{type_name}?_summary=count").json["total"] for type_name in ("Observation", "Patient"))
    assert stored == 200 + 1
