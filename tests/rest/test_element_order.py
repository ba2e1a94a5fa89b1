"""Resources come back in FHIR's element order on both databases, whatever order they were sent in:
PostgreSQL's JSONB sorts keys by length, and a client may send them in any order."""
import json
FHIR_JSON = {"Content-Type": "application/fhir+json"}
SCRAMBLED_PATIENT = {
    "contact": [{"telecom": [{"value": "555-0100", "system": "phone"}], "relationship": [{"text": "sister"}]}],
    "birthDate": "1980-01-01",
    "gender": "female",
    "name": [{"given": ["An"], "family": "Nguyen", "use": "official"}],
    "active": True,
    "identifier": [{"value": "MRN-1", "system": "urn:example:mrn", "type": {"text": "MRN"}}],
    "meta": {"tag": [{"code": "demo", "system": "urn:example:tags"}]},
    "id": "order-1",
    "resourceType": "Patient",
}
PATIENT_ORDER = ["resourceType", "id", "meta", "identifier", "active", "name", "gender", "birthDate", "contact"]


def assert_in_fhir_order(patient: dict) -> None:
    assert list(patient) == PATIENT_ORDER
    assert list(patient["meta"]) == ["versionId", "lastUpdated", "tag"]
    assert list(patient["meta"]["tag"][0]) == ["system", "code"]
    assert list(patient["identifier"][0]) == ["type", "system", "value"]
    assert list(patient["name"][0]) == ["use", "family", "given"]
    assert list(patient["contact"][0]) == ["relationship", "telecom"]
    assert list(patient["contact"][0]["telecom"][0]) == ["system", "value"]


def put(client, body: dict) -> dict:
    """PUT the body with its keys in the order given (the test client's json= would sort them)."""
    response = client.put(f"/fhir/Patient/{body['id']}", data=json.dumps(body), headers=FHIR_JSON)
    assert response.status_code == 201, response.json
    return response.json


def put_patient(client) -> dict:
    return put(client, SCRAMBLED_PATIENT)


def test_a_patient_sent_in_any_order_is_returned_in_fhir_element_order(client):
    assert_in_fhir_order(put_patient(client))
    assert_in_fhir_order(client.get("/fhir/Patient/order-1").json)
    assert_in_fhir_order(client.get("/fhir/Patient/order-1/_history/1").json)


def test_a_patient_sent_in_fhir_order_keeps_it(client):
    in_order = {"resourceType": "Patient", "id": "order-2", "meta": {"tag": [{"system": "urn:example:tags", "code": "demo"}]},
                "identifier": [{"system": "urn:example:mrn", "value": "MRN-2"}], "name": [{"family": "Berg"}], "birthDate": "1990-05-06"}
    put(client, in_order)
    assert list(client.get("/fhir/Patient/order-2").json) == ["resourceType", "id", "meta", "identifier", "name", "birthDate"]


def test_search_and_history_entries_hold_resources_in_fhir_element_order(client):
    put_patient(client)
    assert_in_fhir_order(client.get("/fhir/Patient?identifier=MRN-1").json["entry"][0]["resource"])
    assert_in_fhir_order(client.get("/fhir/Patient/order-1/_history").json["entry"][0]["resource"])
    assert_in_fhir_order(client.get("/fhir/Patient/_history").json["entry"][0]["resource"])


def test_summary_and_elements_keep_fhir_element_order(client):
    put_patient(client)
    summary = client.get("/fhir/Patient/order-1?_summary=true").json
    assert list(summary) == ["resourceType", "id", "meta", "identifier", "active", "name", "gender", "birthDate"]
    assert list(summary["name"][0]) == ["use", "family", "given"]
    elements = client.get("/fhir/Patient?_id=order-1&_elements=birthDate,identifier").json["entry"][0]["resource"]
    assert list(elements) == ["resourceType", "id", "meta", "identifier", "birthDate"]
    assert list(elements["identifier"][0]) == ["type", "system", "value"]
