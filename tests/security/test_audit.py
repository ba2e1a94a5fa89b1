"""The audit trail (app/store/audit.py): an AuditEvent for every access a token holder makes, on SQLite and PostgreSQL."""
import base64

import orjson

import pytest
from sqlalchemy import text

from app.model.validation import validate_resource
from app.store.unit import reading
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
