"""Resources inside resources: a Patient contained in an Observation, or an entry of a stored Bundle, has its protected
values sealed like a Patient stored by itself, bound to its place in the resource that holds it; reads give them back,
a database dump shows none of them, and `ehr keys rewrap` seals those written before protection was on."""
import pytest
from sqlalchemy import select, update

from app.store.schema import resource
from tests.protection.conftest import json_output, protected_settings, put, raw_database_text, run_ehr, running_app

SUBJECT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Quorvaldsen", "given": ["Ysolde"]}],
           "birthDate": "1936-04-21", "telecom": [{"system": "phone", "value": "555-0142"}], "gender": "female"}
NEXT_OF_KIN = {"resourceType": "Patient", "id": "p2", "name": [{"family": "Thrandolux"}], "birthDate": "1962-11-03",
               "gender": "male"}
OBSERVATION = {
    "resourceType": "Observation", "id": "obs-nested", "status": "final", "contained": [SUBJECT, NEXT_OF_KIN],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "#p1"},
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
}
BUNDLE = {
    "resourceType": "Bundle", "id": "bundle-nested", "type": "collection",
    "entry": [{"fullUrl": "urn:uuid:8d2c6a55-3b7e-4c9a-9a59-3f0f2c1b7d10", "resource": {**SUBJECT, "id": "in-bundle"}},
              {"fullUrl": "urn:uuid:0e3f1a6c-71b4-4d0e-8a3e-5c2f4b9e6d21", "resource": {**OBSERVATION, "id": "obs-in-bundle"}}],
}
PROTECTED = ("Quorvaldsen", "Ysolde", "1936-04-21", "555-0142", "Thrandolux", "1962-11-03")


def readable(database_url: str) -> list[str]:
    raw = raw_database_text(database_url).casefold()
    return [value for value in PROTECTED if value.casefold() in raw]


def without_meta(body: dict) -> dict:
    return {name: value for name, value in body.items() if name != "meta"}


def stored_body(engine, resource_id: str) -> dict:
    with engine.connect() as connection:
        return connection.execute(select(resource.c.body).where(resource.c.res_id == resource_id)).scalar_one()


def stored_bodies(engine, resource_id: str) -> list[dict]:
    with engine.connect() as connection:
        return list(connection.execute(select(resource.c.body).where(resource.c.res_id == resource_id)).scalars())


@pytest.fixture
def written(client):
    for body in (OBSERVATION, BUNDLE):
        put(client, body)


def test_a_contained_patient_and_a_bundle_entry_read_back_as_written(written, client):
    for body in (OBSERVATION, BUNDLE):
        response = client.get(f"/fhir/{body['resourceType']}/{body['id']}")
        assert response.status_code == 200
        assert without_meta(response.get_json()) == body


def test_no_protected_value_of_a_resource_inside_another_is_readable_in_the_database(written, database_url):
    assert readable(database_url) == []


def test_what_is_not_protected_inside_them_stays_as_it_was(written, engine):
    stored = stored_body(engine, OBSERVATION["id"])
    assert stored["contained"][0]["gender"] == "female" and stored["contained"][0]["name"].startswith("enc:v1:")
    assert stored["subject"] == {"reference": "#p1"} and stored["valueQuantity"]["value"] == 72
    entry = stored_body(engine, BUNDLE["id"])["entry"][1]["resource"]
    assert entry["contained"][1]["birthDate"].startswith("enc:v1:") and entry["status"] == "final"


def test_a_value_moved_between_two_contained_patients_fails_to_read(written, engine, client):
    stored = stored_body(engine, OBSERVATION["id"])
    stored["contained"][1]["birthDate"] = stored["contained"][0]["birthDate"]
    with engine.begin() as connection:
        connection.execute(update(resource).where(resource.c.res_id == OBSERVATION["id"]).values(body=stored))
    response = client.get(f"/fhir/Observation/{OBSERVATION['id']}")
    assert response.status_code == 503 and response.get_json()["issue"][0]["code"] == "security"
    assert "1936-04-21" not in response.get_data(as_text=True)


@pytest.fixture
def written_without_a_key(database_url) -> str:
    with running_app(protected_settings(database_url, None)) as app:
        for body in (OBSERVATION, BUNDLE):
            put(app.test_client(), body)
    return database_url


def test_rewrap_seals_the_resources_inside_others_written_before_protection_was_on(written_without_a_key, key_file):
    assert readable(written_without_a_key) == list(PROTECTED)
    with running_app(protected_settings(written_without_a_key, key_file)) as app:
        first = json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        again = json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        client = app.test_client()
        assert [without_meta(client.get(f"/fhir/{body['resourceType']}/{body['id']}").get_json()) for body in (OBSERVATION, BUNDLE)] == [
            OBSERVATION, BUNDLE]
    assert first["rewrapped"] == 4 and again["rewrapped"] == 0  # current and history rows of both
    assert readable(written_without_a_key) == []


ENCOUNTER = {"resourceType": "Encounter", "id": OBSERVATION["id"], "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
             "contained": [{"resourceType": "Patient", "id": "p9", "name": [{"family": "Ordinarius"}], "birthDate": "1990-01-01"}]}


def test_a_contained_patient_copied_to_a_resource_of_another_type_with_the_same_id_fails_to_read(written, engine, client):
    observation = stored_body(engine, OBSERVATION["id"])
    put(client, ENCOUNTER)
    encounter = next(body for body in stored_bodies(engine, OBSERVATION["id"]) if body["resourceType"] == "Encounter")
    encounter["contained"][0] = observation["contained"][0]
    with engine.begin() as connection:
        connection.execute(update(resource).where(resource.c.res_type == "Encounter", resource.c.res_id == ENCOUNTER["id"]).values(body=encounter))
    response = client.get(f"/fhir/Encounter/{ENCOUNTER['id']}")
    assert response.status_code == 503 and "Quorvaldsen" not in response.get_data(as_text=True)


def test_a_resource_stripped_of_its_marker_fails_to_read_rather_than_answer_the_ciphertexts_inside_it(written, engine, client):
    observation = stored_body(engine, OBSERVATION["id"])
    del observation["ehr:sealed"]
    with engine.begin() as connection:
        connection.execute(update(resource).where(resource.c.res_id == OBSERVATION["id"]).values(body=observation))
    response = client.get(f"/fhir/Observation/{OBSERVATION['id']}")
    assert response.status_code == 503 and "enc:v1:" not in response.get_data(as_text=True)
