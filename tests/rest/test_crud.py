"""Create, read, update, patch, delete and listing over HTTP, on both databases."""
import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2025-03-04T09:30:00+00:00",
    "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
}

@pytest.fixture(autouse=True)
def patient_p1(client):
    """Patient/p1, which the observations here refer to (references must resolve)."""
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers={"Content-Type": "application/fhir+json"}).status_code == 201



def create(client, body=OBSERVATION):
    response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.json
    return response


def test_create_returns_201_with_location_and_the_stored_resource(client):
    response = create(client)
    body = response.json
    assert response.headers["Location"].endswith(f"/fhir/Observation/{body['id']}/_history/1")
    assert response.headers["ETag"] == 'W/"1"'
    assert response.content_type.startswith("application/fhir+json")
    assert body["valueQuantity"]["value"] == 72 and body["meta"]["versionId"] == "1"


def test_read_returns_the_resource_with_its_version_headers(client):
    created = create(client).json
    response = client.get(f"/fhir/Observation/{created['id']}")
    assert response.status_code == 200
    assert response.json == created
    assert response.headers["ETag"] == 'W/"1"' and "Last-Modified" in response.headers


def test_read_puts_resource_type_id_and_meta_first(client):
    created = create(client).json
    keys = list(client.get(f"/fhir/Observation/{created['id']}").json)
    assert keys[:3] == ["resourceType", "id", "meta"]


def test_put_to_a_new_id_creates_it_with_201(client):
    response = client.put("/fhir/Observation/hr-1", json={**OBSERVATION, "id": "hr-1"}, headers=FHIR_JSON)
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/fhir/Observation/hr-1/_history/1")


def test_put_to_an_existing_id_updates_it_with_200(client):
    client.put("/fhir/Observation/hr-1", json={**OBSERVATION, "id": "hr-1"}, headers=FHIR_JSON)
    changed = {**OBSERVATION, "id": "hr-1", "valueQuantity": {**OBSERVATION["valueQuantity"], "value": 80}}
    response = client.put("/fhir/Observation/hr-1", json=changed, headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.json["meta"]["versionId"] == "2"
    assert client.get("/fhir/Observation/hr-1").json["valueQuantity"]["value"] == 80


def test_put_of_a_body_without_an_id_is_400_asking_for_the_id_of_the_url(client):
    response = client.put("/fhir/Observation/hr-1", json=OBSERVATION, headers=FHIR_JSON)
    assert response.status_code == 400
    diagnostics = response.json["issue"][0]["diagnostics"]
    assert "no id" in diagnostics and '"id": "hr-1"' in diagnostics and "None" not in diagnostics
    assert client.get("/fhir/Observation/hr-1").status_code == 404


def test_json_patch_updates_one_element(client):
    created = create(client).json
    patch = [{"op": "replace", "path": "/valueQuantity/value", "value": 65}]
    response = client.patch(f"/fhir/Observation/{created['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200
    assert response.json["valueQuantity"]["value"] == 65 and response.json["meta"]["versionId"] == "2"


def test_delete_then_read_is_410_gone(client):
    created = create(client).json
    deleted = client.delete(f"/fhir/Observation/{created['id']}")
    assert deleted.status_code == 200 and deleted.headers["ETag"] == 'W/"2"'
    gone = client.get(f"/fhir/Observation/{created['id']}")
    assert gone.status_code == 410
    assert gone.json["resourceType"] == "OperationOutcome" and gone.headers["ETag"] == 'W/"2"'


def test_vread_returns_each_version(client):
    created = create(client).json
    client.put(f"/fhir/Observation/{created['id']}", json={**created, "status": "amended"}, headers=FHIR_JSON)
    first = client.get(f"/fhir/Observation/{created['id']}/_history/1")
    second = client.get(f"/fhir/Observation/{created['id']}/_history/2")
    assert (first.json["status"], second.json["status"]) == ("final", "amended")


def test_listing_a_type_pages_through_every_resource_once(client):
    ids = {create(client).json["id"] for _ in range(7)}
    seen, url = [], "/fhir/Observation?_count=3"
    while url:
        page = client.get(url).json
        assert page["type"] == "searchset"
        seen += [entry["resource"]["id"] for entry in page.get("entry", [])]
        url = next((link["url"].split("localhost", 1)[1] for link in page["link"] if link["relation"] == "next"), None)
    assert sorted(seen) == sorted(ids)


def test_listing_leaves_out_deleted_resources_and_counts_with_total(client):
    kept, dropped = create(client).json["id"], create(client).json["id"]
    client.delete(f"/fhir/Observation/{dropped}")
    page = client.get("/fhir/Observation?_total=accurate").json
    assert page["total"] == 1 and [entry["resource"]["id"] for entry in page["entry"]] == [kept]


def test_listing_entries_carry_full_urls_and_match_mode(client):
    created = create(client).json
    entry = client.get("/fhir/Observation").json["entry"][0]
    assert entry["fullUrl"] == f"http://localhost/fhir/Observation/{created['id']}"
    assert entry["search"] == {"mode": "match"}


def test_every_first_class_type_round_trips(client):
    resources = [
        {"resourceType": "Patient", "name": [{"family": "Chen", "given": ["Wei"]}], "birthDate": "1980-02-29"},
        {"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]},
        {"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
        {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "Asthma"}},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"}, "medicationCodeableConcept": {"text": "Salbutamol"}},
    ]
    for body in resources:
        created = create(client, body).json
        read = client.get(f"/fhir/{body['resourceType']}/{created['id']}").json
        assert {k: v for k, v in read.items() if k not in ("id", "meta")} == body
