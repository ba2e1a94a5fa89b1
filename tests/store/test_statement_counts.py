"""What a REST write sends to the database: statements counted by SQLAlchemy's before_cursor_execute event and, on
PostgreSQL, round trips counted from libpq's protocol trace. Counts, not timings: they do not drift with the machine."""
import os
from contextlib import contextmanager

import pytest
from psycopg import pq
from sqlalchemy import event

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Aisha"]}], "gender": "female", "birthDate": "1980-02-01"}
OBSERVATION = {
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "valueQuantity": {"value": 72, "unit": "/min"},
}
# Frontend messages after which libpq waits for the server's answer: each is one round trip.
WAITING_MESSAGES = ("Query", "Sync", "CopyDone", "CopyFail")


@contextmanager
def statements_run(engine):
    statements = []

    def record(_connection, _cursor, statement, _parameters, _context, _executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


@contextmanager
def round_trips_traced(engine, trace_path):
    """Every pooled connection checked out meanwhile writes libpq's protocol trace to `trace_path`; yields a function
    that counts the round trips traced so far. Nothing is traced on SQLite, which has no round trips."""
    descriptor = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    traced = []

    def trace(dbapi_connection, _record, _proxy):
        if hasattr(dbapi_connection, "pgconn") and dbapi_connection not in traced:
            dbapi_connection.pgconn.trace(os.dup(descriptor))
            dbapi_connection.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            traced.append(dbapi_connection)

    def count() -> int:
        for connection in traced:
            connection.pgconn.untrace()  # flushes what it traced
        traced.clear()
        lines = trace_path.read_text(errors="replace").splitlines()
        return sum(1 for line in lines if line.split("\t")[0] == "F" and line.split("\t")[2] in WAITING_MESSAGES)

    event.listen(engine, "checkout", trace)
    try:
        yield count
    finally:
        event.remove(engine, "checkout", trace)
        os.close(descriptor)


def is_postgresql(app) -> bool:
    return app.extensions["ehr.engine"].dialect.name == "postgresql"


def test_a_rest_create_is_one_statement_and_one_round_trip_on_postgresql(app, client, tmp_path):
    engine = app.extensions["ehr.engine"]
    client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON)  # connects and warms up
    with statements_run(engine) as statements, round_trips_traced(engine, tmp_path / "pq.trace") as round_trips:
        response = client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON)
        assert response.status_code == 201
        if is_postgresql(app):
            assert len(statements) == 1, statements
            assert round_trips() == 1
        else:  # BEGIN IMMEDIATE, then one insert per table: resource, history and the 3 index tables it fills
            assert len(statements) == 6, [statement[:40] for statement in statements]


def test_a_rest_update_is_two_statements_and_two_round_trips_on_postgresql(app, client, tmp_path):
    engine = app.extensions["ehr.engine"]
    client.put("/fhir/Patient/p1", json={**PATIENT, "id": "p1"}, headers=FHIR_JSON)
    with statements_run(engine) as statements, round_trips_traced(engine, tmp_path / "pq.trace") as round_trips:
        response = client.put("/fhir/Patient/p1", json={**PATIENT, "id": "p1", "gender": "other"}, headers=FHIR_JSON)
        assert response.status_code == 200
        if is_postgresql(app):  # the read, then one statement that swaps, supersedes, reindexes and commits
            assert len(statements) == 2, statements
            assert round_trips() == 2
            assert "FOR UPDATE" not in statements[0]
        else:  # BEGIN IMMEDIATE, the read, the swap, supersede, history, and a delete and an insert per index table
            assert len(statements) == 11, [statement[:40] for statement in statements]


@pytest.mark.parametrize("count", [1, 3])
def test_a_transaction_of_creates_is_one_statement_on_postgresql(app, client, count):
    engine = app.extensions["ehr.engine"]
    entries = [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}} for _ in range(count)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with statements_run(engine) as statements:
        response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    if is_postgresql(app):
        assert len(statements) == 1, statements


def test_a_rest_create_with_a_reference_checks_its_target_in_its_one_statement(app, client, tmp_path):
    engine = app.extensions["ehr.engine"]
    client.put("/fhir/Patient/p1", json={**PATIENT, "id": "p1"}, headers=FHIR_JSON)
    observation = {**OBSERVATION, "subject": {"reference": "Patient/p1"}}
    client.post("/fhir/Observation", json=observation, headers=FHIR_JSON)  # warms up
    with statements_run(engine) as statements, round_trips_traced(engine, tmp_path / "pq.trace") as round_trips:
        response = client.post("/fhir/Observation", json=observation, headers=FHIR_JSON)
        assert response.status_code == 201
        if is_postgresql(app):  # the target's lock, the writes and the check of what it found: one statement
            assert len(statements) == 1, statements
            assert round_trips() == 1
        else:  # BEGIN IMMEDIATE, the target's lookup, then one insert per table
            assert statements[1].lstrip().startswith("SELECT"), statements[1][:60]


def test_a_create_whose_target_is_missing_writes_nothing_and_names_it(app, client):
    observation = {**OBSERVATION, "subject": {"reference": "Patient/nobody"}}
    response = client.post("/fhir/Observation", json=observation, headers=FHIR_JSON)
    assert response.status_code == 400
    assert "refers to Patient/nobody" in response.json["issue"][0]["diagnostics"]
    assert "entry" not in client.get("/fhir/Observation").json


def test_a_rest_update_with_a_reference_checks_its_target_in_its_write(app, client, tmp_path):
    engine = app.extensions["ehr.engine"]
    client.put("/fhir/Patient/p1", json={**PATIENT, "id": "p1"}, headers=FHIR_JSON)
    observation = {**OBSERVATION, "id": "o1", "subject": {"reference": "Patient/p1"}}
    client.put("/fhir/Observation/o1", json=observation, headers=FHIR_JSON)
    with statements_run(engine) as statements, round_trips_traced(engine, tmp_path / "pq.trace") as round_trips:
        response = client.put("/fhir/Observation/o1", json={**observation, "status": "amended"}, headers=FHIR_JSON)
        assert response.status_code == 200
        if is_postgresql(app):  # the read, then the write that also finds and holds the target, and commits
            assert len(statements) == 2, statements
            assert round_trips() == 2
