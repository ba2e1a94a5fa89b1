"""With protection on, every way of reading a person back gives exactly the plaintext that was written: create, read,
vread, history, search (with _include, _revinclude and $everything), update and patch, on SQLite and PostgreSQL."""
import copy

import pytest

from tests.protection.conftest import FHIR_JSON, put
from tests.protection.people import BIRTH_TIME, PATIENT, PEOPLE, PRACTITIONER, RELATED_PERSON, without_meta

KINDS = [pytest.param(body, id=body["resourceType"]) for body in PEOPLE]


@pytest.fixture
def patient_a(client):
    """Patient/pat-a, which the RelatedPerson refers to."""
    return put(client, PATIENT)


def assert_as_sent(returned: dict, sent: dict) -> None:
    assert without_meta(returned) == without_meta(sent)


def entry_resources(bundle: dict) -> dict[tuple[str, str], dict]:
    return {(entry["resource"]["resourceType"], entry["resource"]["id"]): entry["resource"] for entry in bundle.get("entry", [])}


def changed(body: dict) -> dict:
    """The next version of a person: other values at each protected path."""
    body = copy.deepcopy(body)
    body["telecom"] = [{"system": "phone", "value": "555-0100"}]
    body["address"] = [{"city": "Newtownmoor", "postalCode": "NT1 2AB"}]
    body["identifier"][0]["value"] = "CHANGED-0001"
    body["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml">changed</div>'
    if body["resourceType"] != "Practitioner":
        body["name"] = [{"family": "Newsurname", "given": ["Newgiven"]}]
        body["birthDate"] = "1940-02-29"
        body["_birthDate"] = {"extension": [{"url": BIRTH_TIME, "valueDateTime": "1940-02-29T23:59:00+02:00"}]}
    return body


@pytest.mark.parametrize("sent", KINDS)
def test_create_read_and_vread_give_back_every_protected_element_as_sent(client, patient_a, sent):
    body = {name: value for name, value in sent.items() if name != "id"}
    created = client.post(f"/fhir/{sent['resourceType']}", json=body, headers=FHIR_JSON)
    assert created.status_code == 201, created.get_json()
    resource_id = created.get_json()["id"]
    expected = {**body, "id": resource_id}
    assert_as_sent(created.get_json(), expected)
    assert_as_sent(client.get(f"/fhir/{sent['resourceType']}/{resource_id}").get_json(), expected)
    assert_as_sent(client.get(f"/fhir/{sent['resourceType']}/{resource_id}/_history/1").get_json(), expected)


@pytest.mark.parametrize("sent", KINDS)
def test_update_answers_and_reads_back_the_new_protected_values(client, patient_a, sent):
    put(client, sent)
    updated = changed(sent)
    response = client.put(f"/fhir/{sent['resourceType']}/{sent['id']}", json=updated, headers=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    assert_as_sent(response.get_json(), updated)
    assert_as_sent(client.get(f"/fhir/{sent['resourceType']}/{sent['id']}").get_json(), updated)


@pytest.mark.parametrize("sent", KINDS)
def test_history_gives_back_each_version_as_it_was_written(client, patient_a, sent):
    put(client, sent)
    put(client, changed(sent))
    kind = sent["resourceType"]
    history = client.get(f"/fhir/{kind}/{sent['id']}/_history").get_json()
    versions = {entry["resource"]["meta"]["versionId"]: entry["resource"] for entry in history["entry"]}
    assert_as_sent(versions["1"], sent)
    assert_as_sent(versions["2"], changed(sent))
    assert_as_sent(client.get(f"/fhir/{kind}/{sent['id']}/_history/1").get_json(), sent)
    for url in (f"/fhir/{kind}/_history", "/fhir/_history"):
        latest = [entry["resource"] for entry in client.get(url).get_json()["entry"] if entry["resource"]["id"] == sent["id"]]
        assert [without_meta(body) for body in latest] == [without_meta(changed(sent)), without_meta(sent)]


def test_search_results_give_back_every_protected_element_as_sent(client, patient_a):
    put(client, RELATED_PERSON)
    put(client, PRACTITIONER)
    searches = {
        "Patient?gender=female": PATIENT, "Patient?family=zyxw": PATIENT, "Patient?_id=pat-a": PATIENT,
        "RelatedPerson?name=kestrel": RELATED_PERSON, "Practitioner?name=plainname": PRACTITIONER,
        "Practitioner?identifier=NPI-2718281": PRACTITIONER,
    }
    for query, sent in searches.items():
        found = entry_resources(client.get(f"/fhir/{query}").get_json())
        assert list(found) == [(sent["resourceType"], sent["id"])], query
        assert_as_sent(found[(sent["resourceType"], sent["id"])], sent)


def test_included_and_revincluded_resources_are_given_back_as_sent(client, patient_a):
    put(client, RELATED_PERSON)
    included = entry_resources(client.get("/fhir/RelatedPerson?_include=RelatedPerson:patient").get_json())
    assert_as_sent(included[("Patient", "pat-a")], PATIENT)
    revincluded = entry_resources(client.get("/fhir/Patient?_id=pat-a&_revinclude=RelatedPerson:patient").get_json())
    assert_as_sent(revincluded[("RelatedPerson", "rel-a")], RELATED_PERSON)


def test_everything_gives_back_the_patient_and_related_person_as_sent(client, patient_a):
    put(client, RELATED_PERSON)
    response = client.get("/fhir/Patient/pat-a/$everything")
    assert response.status_code == 200, response.get_json()
    found = entry_resources(response.get_json())
    assert_as_sent(found[("Patient", "pat-a")], PATIENT)
    assert_as_sent(found[("RelatedPerson", "rel-a")], RELATED_PERSON)


def test_a_patch_of_protected_elements_reads_back_patched(client, patient_a):
    operations = [{"op": "replace", "path": "/birthDate", "value": "1932-01-02"},
                  {"op": "replace", "path": "/name/0/family", "value": "Patchedson"},
                  {"op": "remove", "path": "/_birthDate"}]
    response = client.patch("/fhir/Patient/pat-a", json=operations, headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 200, response.get_json()
    expected = {**PATIENT, "birthDate": "1932-01-02", "name": [{**PATIENT["name"][0], "family": "Patchedson"}]}
    del expected["_birthDate"]
    assert_as_sent(client.get("/fhir/Patient/pat-a").get_json(), expected)


def test_a_primitive_extension_without_its_value_round_trips(client):
    sent = {"resourceType": "Patient", "id": "no-date", "_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "asked-declined"}]}}
    assert_as_sent(put(client, sent), sent)
    assert_as_sent(client.get("/fhir/Patient/no-date").get_json(), sent)


def test_a_transaction_bundle_stores_protected_elements_that_read_back_as_sent(client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7f3c1f4e-0000-4000-8000-000000000001", "resource": {k: v for k, v in PATIENT.items() if k != "id"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**RELATED_PERSON, "patient": {"reference": "urn:uuid:7f3c1f4e-0000-4000-8000-000000000001"}},
         "request": {"method": "PUT", "url": "RelatedPerson/rel-a"}},
    ]}
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    patient_id = response.get_json()["entry"][0]["response"]["location"].split("/")[1]
    assert_as_sent(client.get(f"/fhir/Patient/{patient_id}").get_json(), {**PATIENT, "id": patient_id})
    expected = {**RELATED_PERSON, "patient": {"reference": f"Patient/{patient_id}"}}
    assert_as_sent(client.get("/fhir/RelatedPerson/rel-a").get_json(), expected)
