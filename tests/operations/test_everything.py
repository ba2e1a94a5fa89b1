"""Patient/{id}/$everything over HTTP on the demo data set: the patient's whole compartment, filtered and paged."""
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from app.config import Integrity, Settings
from app.demo import demo_bundle
from app.web import create_app

FHIR_JSON = "application/fhir+json"
PATIENT = "demo-patient-1"


@pytest.fixture
def demo(client):
    response = client.post("/fhir", json=demo_bundle(), content_type=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    return [entry["resource"] for entry in demo_bundle()["entry"]]


def compartment_of(resources: list[dict], patient_id: str) -> set[tuple[str, str]]:
    """What the demo data puts in a patient's compartment: the patient and everything whose subject it is."""
    subject = f"Patient/{patient_id}"
    return {("Patient", patient_id)} | {
        (resource["resourceType"], resource["id"]) for resource in resources if resource.get("subject", {}).get("reference") == subject
    }


def keys(bundle: dict, mode: str = "match") -> list[tuple[str, str]]:
    return [
        (entry["resource"]["resourceType"], entry["resource"]["id"]) for entry in bundle.get("entry", []) if entry["search"]["mode"] == mode
    ]


def everything(client, patient_id: str = PATIENT, **params) -> dict:
    response = client.get(f"/fhir/Patient/{patient_id}/$everything", query_string=params)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def next_link(bundle: dict) -> str | None:
    url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
    return None if url is None else url.removeprefix("http://localhost")


def test_everything_returns_the_patient_and_exactly_its_compartment(client, demo):
    bundle = everything(client)
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    assert sorted(keys(bundle)) == sorted(compartment_of(demo, PATIENT))


def test_everything_leaves_out_every_other_patients_resources(client, demo):
    found = set(keys(everything(client)))
    for other in ("demo-patient-2", "demo-patient-3"):
        assert found.isdisjoint(compartment_of(demo, other))


def test_everything_includes_the_practitioners_the_record_refers_to_once(client, demo):
    included = keys(everything(client), mode="include")
    assert included == [("Practitioner", "demo-practitioner-1")]


def test_everything_finds_resources_through_any_compartment_parameter(client, demo):
    allergy = {
        "resourceType": "AllergyIntolerance", "id": "peanuts", "patient": {"reference": f"Patient/{PATIENT}"},
        "code": {"text": "Peanuts"},
    }
    assert client.put("/fhir/AllergyIntolerance/peanuts", json=allergy, content_type=FHIR_JSON).status_code == 201
    assert ("AllergyIntolerance", "peanuts") in keys(everything(client))
    assert ("AllergyIntolerance", "peanuts") not in keys(everything(client, "demo-patient-2"))


def test_everything_with_type_returns_only_those_types(client, demo):
    bundle = everything(client, _type="Encounter,Patient")
    assert sorted(keys(bundle)) == sorted(key for key in compartment_of(demo, PATIENT) if key[0] in ("Encounter", "Patient"))
    assert keys(bundle, mode="include") == []


def test_everything_takes_type_repeated(client, demo):
    response = client.get(f"/fhir/Patient/{PATIENT}/$everything?_type=Encounter&_type=Patient")
    assert {key[0] for key in keys(response.get_json())} == {"Encounter", "Patient"}


def test_everything_with_since_returns_only_what_changed_since(client, demo):
    time.sleep(0.01)
    since = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    time.sleep(0.01)
    observation = next(resource for resource in demo if resource["id"] == "demo-heart-rate-1")
    changed = {**observation, "valueQuantity": {**observation["valueQuantity"], "value": 99}}
    assert client.put("/fhir/Observation/demo-heart-rate-1", json=changed, content_type=FHIR_JSON).status_code == 200
    assert keys(everything(client, _since=since)) == [("Observation", "demo-heart-rate-1")]


def test_everything_pages_with_count_visit_each_resource_once(client, demo):
    seen, url, pages = [], f"/fhir/Patient/{PATIENT}/$everything?_count=3", 0
    while url:
        bundle = client.get(url).get_json()
        page = keys(bundle)
        assert len(page) <= 3
        seen += page
        pages += 1
        url = next_link(bundle)
    assert sorted(seen) == sorted(compartment_of(demo, PATIENT))
    assert pages == -(-len(seen) // 3)


def test_everything_next_links_keep_the_filters(client, demo):
    first = everything(client, _type="Observation", _count=2)
    query = urlsplit(next_link(first)).query
    assert "_type=Observation" in query and "_count=2" in query
    second = client.get(next_link(first)).get_json()
    assert {key[0] for key in keys(second)} == {"Observation"}
    assert set(keys(first)).isdisjoint(keys(second))


def test_everything_by_post_takes_a_parameters_body(client, demo):
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Encounter"}]}
    response = client.post(f"/fhir/Patient/{PATIENT}/$everything", json=body, content_type=FHIR_JSON)
    assert response.status_code == 200
    assert sorted(keys(response.get_json())) == [("Encounter", "demo-encounter-1"), ("Encounter", "demo-encounter-2")]


def test_everything_by_post_without_a_body_returns_the_whole_record(client, demo):
    response = client.post(f"/fhir/Patient/{PATIENT}/$everything")
    assert sorted(keys(response.get_json())) == sorted(compartment_of(demo, PATIENT))


def test_everything_of_an_unknown_patient_is_404(client, demo):
    response = client.get("/fhir/Patient/nobody/$everything")
    assert response.status_code == 404
    assert response.get_json()["issue"][0]["code"] == "not-found"


@pytest.fixture
def unchecked_client(database_url):
    """A client of the same database through a server that lets a resource be deleted while others refer to it."""
    app = create_app(Settings(auth=False, database_url=database_url, integrity=Integrity(on_delete=False)))
    yield app.test_client()
    app.extensions["ehr.engine"].dispose()


def test_everything_of_a_deleted_patient_is_410(client, demo, unchecked_client):
    assert client.delete(f"/fhir/Patient/{PATIENT}").status_code == 409  # its record refers to it
    assert unchecked_client.delete(f"/fhir/Patient/{PATIENT}").status_code == 200
    assert client.get(f"/fhir/Patient/{PATIENT}/$everything").status_code == 410


def test_everything_leaves_out_deleted_resources(client, demo, unchecked_client):
    assert unchecked_client.delete("/fhir/Encounter/demo-encounter-1").status_code == 200
    assert ("Encounter", "demo-encounter-1") not in keys(everything(client))


@pytest.mark.parametrize("params", [{"_type": "Spaceship"}, {"start": "2025-01-01"}, {"_count": "many"}, {"_cursor": "bm90LWEtY3Vyc29y"}])
def test_everything_with_a_parameter_it_cannot_honour_is_400(client, demo, params):
    response = client.get(f"/fhir/Patient/{PATIENT}/$everything", query_string=params)
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_everything_at_type_level_returns_every_patients_record(client, demo):
    patients = {resource["id"] for resource in demo if resource["resourceType"] == "Patient"}
    response = client.get("/fhir/Patient/$everything", query_string={"_count": 1000})
    assert response.status_code == 200, response.get_json()
    assert sorted(keys(response.get_json())) == sorted(set().union(*(compartment_of(demo, patient) for patient in patients)))


def test_everything_at_type_level_by_post_takes_a_parameters_body(client, demo):
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueCode": "Patient"}]}
    response = client.post("/fhir/Patient/$everything", json=body, content_type=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    assert sorted(keys(response.get_json())) == sorted(("Patient", r["id"]) for r in demo if r["resourceType"] == "Patient")
