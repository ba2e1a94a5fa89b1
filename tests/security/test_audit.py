"""The audit trail (app/store/audit.py): an AuditEvent for every access a token holder makes, on SQLite and PostgreSQL."""
import base64
import threading
from dataclasses import replace

import orjson
import pytest
import requests
from sqlalchemy import text
from werkzeug.serving import make_server

from app.model.validation import validate_resource
from app.protection.service import UNPROTECTED
from app.search.index import index_rows
from app.store.audit import EVENT_TYPE, SOURCE, audit_version
from app.store.postgresql_writes import Creates, swap_committed_with_creates
from app.store.resources import version_values
from app.store.unit import reading, writing
from tests.rest.test_concurrency import CLIENTS, race
from tests.store.test_statement_counts import round_trips_traced, statements_run
from tests.security.test_enforcement import bearer, observation, records, settings, token_for  # noqa: F401 (fixtures)


def audit_events(app, engine) -> list[dict]:
    """Every AuditEvent stored, oldest first, once the app's writer has written what it gathered."""
    with reading(engine) as unit:
        from app.search.query import SearchRequest, SortKey

        return [stored.body for stored in unit.search(SearchRequest("AuditEvent", sort=(SortKey("_lastUpdated", False),), count=100)).matches]


def subtypes(event: dict) -> list[str]:
    return [coding["code"] for coding in event.get("subtype", [])]


def entity_references(event: dict) -> set[str]:
    return {entity["what"]["reference"] for entity in event["entity"] if "what" in entity}


def test_a_patients_read_is_audited_with_her_app_her_and_her_record(app, client, engine, records):
    token = token_for(engine, "patient/*.rs", patient="ana", fhir_user="Patient/ana")
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    [event] = audit_events(app, engine)
    validate_resource(event)
    assert subtypes(event) == ["read"] and event["action"] == "R" and event["outcome"] == "0"
    user, application = event["agent"]
    assert user["who"] == {"reference": "Patient/ana"} and user["requestor"] is True and user["network"]["address"] == "127.0.0.1"
    assert application["who"]["identifier"]["value"] == "test-app" and application["requestor"] is False
    assert entity_references(event) == {"Patient/ana", "Observation/ana-pulse/_history/1"}


def test_a_search_is_audited_with_its_query_once_per_patient_it_touched(app, client, engine, records):
    token = token_for(engine, "system/Observation.rs")
    assert client.get("/fhir/Observation?code=8867-4", headers=bearer(token)).status_code == 200
    events = audit_events(app, engine)
    for event in events:
        validate_resource(event)
        assert subtypes(event) == ["search-type"] and event["action"] == "E"
        assert event["agent"][0]["requestor"] is True  # a backend service is its own requestor
        [query] = [entity["query"] for entity in event["entity"] if "query" in entity]
        assert base64.b64decode(query).decode() == "Observation?code=8867-4"
    assert sorted(entity_references(event) for event in events) == [
        {"Patient/ana", "Observation/ana-pulse/_history/1"}, {"Patient/bob", "Observation/bob-pulse/_history/1"}]


def test_a_write_and_its_audit_event_are_written_together(app, client, engine, records):
    token = token_for(engine, "patient/*.cruds", patient="ana", fhir_user="Patient/ana")
    assert client.post("/fhir/Observation", json=observation("x", "ana"), headers=bearer(token)).status_code == 201
    with engine.connect() as connection:  # in the write's own transaction: there before the writer's next flush
        written = connection.execute(text("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'")).scalar()
    assert written == 1
    [event] = audit_events(app, engine)
    validate_resource(event)
    assert subtypes(event) == ["create"] and event["action"] == "C" and "Patient/ana" in entity_references(event)


def test_a_refused_request_is_audited_as_a_failure_and_its_write_is_not(app, client, engine, records):
    token = token_for(engine, "patient/*.cruds", patient="ana", fhir_user="Patient/ana")
    assert client.post("/fhir/Observation", json=observation("x", "bob"), headers=bearer(token)).status_code == 403
    [event] = audit_events(app, engine)
    validate_resource(event)
    assert event["outcome"] == "4" and "would be in the record of Patient/bob" in event["outcomeDesc"] and "subtype" not in event
    [query] = [entity["query"] for entity in event["entity"]]
    assert base64.b64decode(query).decode() == "POST /fhir/Observation"


def test_a_patient_can_read_who_read_her_record_and_nothing_about_others(app, client, engine, records):
    doctor = token_for(engine, "user/*.rs", fhir_user="Practitioner/doc")
    client.get("/fhir/Patient/ana", headers=bearer(doctor))
    client.get("/fhir/Patient/bob", headers=bearer(doctor))
    client.get("/fhir/Observation?code=8867-4", headers=bearer(doctor))  # both patients' pulses: one AuditEvent each
    ana = token_for(engine, "patient/AuditEvent.rs", patient="ana", fhir_user="Patient/ana")
    found = [entry["resource"] for entry in client.get("/fhir/AuditEvent", headers=bearer(ana)).get_json()["entry"]]
    assert [subtypes(event) for event in found] == [["read"], ["search-type"]]
    assert {reference for event in found for reference in entity_references(event)} == {"Patient/ana", "Patient/ana/_history/1",
                                                                                       "Observation/ana-pulse/_history/1"}


def test_the_audit_trail_is_never_written_through_the_api(app, client, engine, records):
    client.get("/fhir/Patient/ana", headers=bearer(token_for(engine, "system/*.rs")))
    [event] = audit_events(app, engine)
    ana = bearer(token_for(engine, "patient/*.cruds", patient="ana", fhir_user="Patient/ana"))
    everything = bearer(token_for(engine, "system/*.cruds admin"))
    forged = {key: value for key, value in event.items() if key not in ("id", "meta")}
    for headers in (ana, everything):
        assert client.put(f"/fhir/AuditEvent/{event['id']}", json={**event, "outcome": "8"}, headers=headers).status_code == 403
        assert client.delete(f"/fhir/AuditEvent/{event['id']}", headers=headers).status_code == 403
        refused = client.post("/fhir/AuditEvent", json=forged, headers=headers)
        assert refused.status_code == 403 and "never written through the API" in refused.get_json()["issue"][0]["diagnostics"]


def test_only_an_admin_token_searches_the_whole_trail(app, client, engine, records):
    client.get("/fhir/Patient/ana", headers=bearer(token_for(engine, "system/*.rs")))
    client.get("/fhir/Patient/bob", headers=bearer(token_for(engine, "system/*.rs")))
    for scope in ("system/*.rs", "user/*.rs"):
        assert client.get("/fhir/AuditEvent", headers=bearer(token_for(engine, scope, fhir_user="Practitioner/doc"))).status_code == 403
    admin = client.get("/fhir/AuditEvent?subtype=read", headers=bearer(token_for(engine, "admin")))
    assert admin.status_code == 200 and len(admin.get_json()["entry"]) == 2


def test_every_token_issued_is_audited_with_its_grant(app, client, engine, records, database_url, tmp_path):
    from tests.test_cli import ehr

    client_id = orjson.loads(ehr(database_url, "clients", "add", "--name", "App", "--redirect-uri", "https://app.example/cb", "--scope",
                                 "patient/*.rs", "--public", cwd=tmp_path).stdout)["client_id"]
    ehr(database_url, "users", "add", "--username", "ana", "--password-stdin", "--patient", "Patient/ana", cwd=tmp_path, stdin="ana-password\n")
    issued = ehr(database_url, "tokens", "issue", "--username", "ana", "--client", client_id, "--scope", "patient/Observation.rs", cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr
    [event] = audit_events(app, engine)
    validate_resource(event)
    assert event["type"]["code"] == "110114" and event["agent"][0]["who"] == {"reference": "Patient/ana"}
    assert event["agent"][1]["who"]["identifier"]["value"] == client_id and "Patient/ana" in entity_references(event)
    [token] = [entity for entity in event["entity"] if "detail" in entity]
    assert token["detail"] == [{"type": "scope", "valueString": "patient/Observation.rs"}]


def test_without_tokens_nothing_is_audited(database_url, engine, records):
    from app.config import Settings
    from app.web import create_app

    app = create_app(Settings(database_url=database_url, auth=False))
    assert app.test_client().get("/fhir/Patient/ana").status_code == 200
    assert audit_events(app, engine) == []
    app.extensions["ehr.engine"].dispose()


@pytest.mark.parametrize("url", ["/fhir/Patient/ana/_history", "/fhir/Patient/ana/$everything", "/fhir/Patient/ana/_history/1"])
def test_history_vread_and_operations_are_audited(app, client, engine, records, url):
    token = token_for(engine, "patient/*.rs", patient="ana", fhir_user="Patient/ana")
    assert client.get(url, headers=bearer(token)).status_code == 200
    [event] = audit_events(app, engine)
    validate_resource(event)
    expected = {"_history": "history-instance", "$everything": "operation", "1": "vread"}[url.rsplit("/", 1)[1]]
    assert subtypes(event)[-1] == expected and "Patient/ana" in entity_references(event)  # $everything reads the Patient first


def test_audit_events_never_hold_back_a_delete(app, client, engine, records):
    token = token_for(engine, "system/Observation.cruds")
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    assert client.delete("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    assert "Observation/ana-pulse/_history/1" in entity_references(audit_events(app, engine)[0])  # and the record stays as it was


def test_a_deletion_is_audited_in_the_record_of_the_patient_whose_resource_it_deleted(app, client, engine, records):
    token = token_for(engine, "system/Observation.cruds")
    assert client.delete("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    [event] = audit_events(app, engine)
    validate_resource(event)
    assert subtypes(event) == ["delete"] and event["action"] == "D"
    assert entity_references(event) == {"Patient/ana", "Observation/ana-pulse/_history/2"}


def test_an_audited_update_and_its_audit_event_commit_in_one_statement_after_one_read(app, client, engine, records, tmp_path):
    """On PostgreSQL the update by id of an unconfined token keeps its two round trips: the read, then one statement
    that swaps the version in, writes the AuditEvent and commits; on SQLite it runs in the unit's transaction."""
    token = token_for(engine, "system/Observation.cruds")
    body = {**observation("ana-pulse", "ana"), "status": "amended"}
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200  # the token, now known
    served = app.extensions["ehr.engine"]
    with statements_run(served) as statements, round_trips_traced(served, tmp_path / "pq.trace") as round_trips:
        assert client.put("/fhir/Observation/ana-pulse", json=body, headers=bearer(token)).status_code == 200
        if engine.dialect.name == "postgresql":
            assert len(statements) == 2 and round_trips() == 2, statements
    _read, event = audit_events(app, engine)
    validate_resource(event)
    assert subtypes(event) == ["update"] and entity_references(event) == {"Patient/ana", "Observation/ana-pulse/_history/2"}


def test_an_update_that_another_writer_swapped_first_writes_no_audit_event_with_it(engine, records):
    """The statement that writes an update with its AuditEvents writes them only if the version swapped in: a stale
    version writes nothing (and the unit then updates under the row lock, auditing in its transaction)."""
    if engine.dialect.name != "postgresql":
        return
    with writing(engine) as unit:
        current = unit.read("Observation", "ana-pulse")
    stale = replace(current, version=current.version + 1, body={**current.body, "status": "amended"})
    audit = audit_version({"resourceType": "AuditEvent", "type": EVENT_TYPE, "recorded": "2026-01-01T00:00:00Z",
                           "agent": [{"requestor": True}], "source": SOURCE})
    with writing(engine) as unit:
        row_sets = [index_rows("AuditEvent", audit.body, UNPROTECTED)]
        creates = Creates([version_values(audit, row_sets[0], UNPROTECTED)], row_sets, frozenset())
        rows = index_rows("Observation", stale.body, UNPROTECTED)
        swapped, _ = swap_committed_with_creates(unit.connection, version_values(replace(stale, version=stale.version + 1), rows, UNPROTECTED), rows,
                                                 current.index_mask, creates)
    assert not swapped
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM resource WHERE res_type = 'AuditEvent'")).scalar() == 0
        assert connection.execute(text("SELECT version FROM resource WHERE res_id = 'ana-pulse'")).scalar() == current.version


def test_concurrent_audited_updates_all_succeed_and_each_is_audited_once(app, engine, records):
    """Updates racing on one resource: those whose read went stale update under the row lock instead, and every
    version has exactly one AuditEvent, written with it."""
    token = token_for(engine, "system/Observation.cruds")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/fhir/Observation/ana-pulse"
        bodies = [{**observation("ana-pulse", "ana"), "note": [{"text": f"take {n}"}]} for n in range(CLIENTS)]
        responses = race([lambda body=body: requests.put(url, json=body, headers=bearer(token), timeout=60) for body in bodies])
    finally:
        server.shutdown()
        thread.join()
    assert [response.status_code for response in responses] == [200] * CLIENTS
    audited = [reference for event in audit_events(app, engine) if subtypes(event) == ["update"]
               for reference in entity_references(event) if "/_history/" in reference]
    assert sorted(audited) == sorted(f"Observation/ana-pulse/_history/{version}" for version in range(2, CLIENTS + 2))
