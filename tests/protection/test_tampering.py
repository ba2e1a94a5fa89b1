"""A ciphertext moved to another resource or another element, or altered, never reads back as a value: the read fails
with a 503 OperationOutcome (never the value, never a 500), and the server's log names the data key it needed."""
import logging
import pickle

import pytest
from sqlalchemy import select, update

from app.protection.fields import ValueUnreadable
from app.store.schema import resource
from tests.protection.conftest import json_output, put, run_ehr

A = {"resourceType": "Patient", "id": "pat-a", "gender": "female", "birthDate": "1931-07-19",
     "name": [{"family": "Aardvarkson"}], "telecom": [{"system": "phone", "value": "555-0111"}]}
B = {"resourceType": "Patient", "id": "pat-b", "gender": "male", "birthDate": "1988-12-30",
     "name": [{"family": "Bumblebeeson"}], "telecom": [{"system": "phone", "value": "555-0222"}]}


@pytest.fixture
def patients(client):
    put(client, A)
    put(client, B)


def stored_body(engine, resource_id: str) -> dict:
    with engine.connect() as connection:
        return connection.execute(select(resource.c.body).where(resource.c.res_id == resource_id)).scalar_one()


def store_body(engine, resource_id: str, body: dict) -> None:
    with engine.begin() as connection:
        connection.execute(update(resource).where(resource.c.res_id == resource_id).values(body=body))


def key_id_of(ciphertext: str) -> str:
    return ciphertext.split(":")[2]


def assert_unreadable(response, caplog, key_id: str, plaintexts: tuple[str, ...]) -> None:
    assert response.status_code == 503, response.get_json()
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "security"
    assert not any(plaintext in response.get_data(as_text=True) for plaintext in plaintexts)
    logged = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert any(key_id in message for message in logged), logged


def test_a_birth_date_copied_from_another_patient_fails_to_read(patients, engine, client, caplog):
    sealed_a = stored_body(engine, "pat-a")["birthDate"]
    store_body(engine, "pat-b", {**stored_body(engine, "pat-b"), "birthDate": sealed_a})
    response = client.get("/fhir/Patient/pat-b")
    assert_unreadable(response, caplog, key_id_of(sealed_a), (A["birthDate"], B["birthDate"]))


def test_a_value_copied_to_another_element_of_the_same_patient_fails_to_read(patients, engine, client, caplog):
    body = stored_body(engine, "pat-a")
    store_body(engine, "pat-a", {**body, "telecom": body["birthDate"]})
    response = client.get("/fhir/Patient/pat-a")
    assert_unreadable(response, caplog, key_id_of(body["birthDate"]), (A["birthDate"], "555-0111"))


def test_an_altered_ciphertext_fails_to_read(patients, engine, client, caplog):
    body = stored_body(engine, "pat-a")
    sealed = body["name"]
    altered = sealed[:-2] + ("AA" if sealed[-2:] != "AA" else "BB")
    store_body(engine, "pat-a", {**body, "name": altered})
    assert_unreadable(client.get("/fhir/Patient/pat-a"), caplog, key_id_of(sealed), ("Aardvarkson",))


def test_a_search_that_matches_a_tampered_patient_fails_without_answering_its_values(patients, engine, client, caplog):
    sealed_a = stored_body(engine, "pat-a")["birthDate"]
    store_body(engine, "pat-b", {**stored_body(engine, "pat-b"), "birthDate": sealed_a})
    assert_unreadable(client.get("/fhir/Patient?gender=male"), caplog, key_id_of(sealed_a), (A["birthDate"], B["birthDate"]))


def test_the_untampered_versions_still_read(patients, engine, client):
    store_body(engine, "pat-b", {**stored_body(engine, "pat-b"), "birthDate": stored_body(engine, "pat-a")["birthDate"]})
    assert client.get("/fhir/Patient/pat-a").get_json()["birthDate"] == A["birthDate"]
    assert client.get("/fhir/Patient/pat-b/_history/1").get_json()["birthDate"] == B["birthDate"]


def test_the_outcome_names_the_resource_the_element_and_the_key_needed(patients, engine, client):
    sealed_a = stored_body(engine, "pat-a")["birthDate"]
    store_body(engine, "pat-b", {**stored_body(engine, "pat-b"), "birthDate": sealed_a})
    diagnostics = client.get("/fhir/Patient/pat-b").get_json()["issue"][0]["diagnostics"]
    assert "Patient/pat-b" in diagnostics and "birthDate" in diagnostics and key_id_of(sealed_a) in diagnostics


def test_a_value_in_the_clear_where_the_resource_says_it_was_encrypted_fails_to_read(patients, engine, client):
    body = stored_body(engine, "pat-a")
    store_body(engine, "pat-a", {**body, "birthDate": "1900-01-01"})
    response = client.get("/fhir/Patient/pat-a")
    assert response.status_code == 503 and "1900-01-01" not in response.get_data(as_text=True)


def test_a_ciphertext_in_a_resource_that_says_it_encrypted_nothing_fails_to_read(patients, engine, client):
    body = stored_body(engine, "pat-a")
    store_body(engine, "pat-a", {key: value for key, value in body.items() if key != "ehr:sealed"})
    response = client.get("/fhir/Patient/pat-a")
    assert response.status_code == 503 and response.get_json()["resourceType"] == "OperationOutcome"
    assert body["birthDate"] not in response.get_data(as_text=True)


def test_a_ciphertext_naming_a_key_the_database_does_not_hold_fails_to_read_and_names_that_key(patients, engine, client, caplog):
    body = stored_body(engine, "pat-a")
    unknown = body["birthDate"].replace(key_id_of(body["birthDate"]), "deadbeef", 1)
    store_body(engine, "pat-a", {**body, "birthDate": unknown})
    assert_unreadable(client.get("/fhir/Patient/pat-a"), caplog, "deadbeef", (A["birthDate"],))


def test_everything_for_a_tampered_patient_fails_without_answering_its_values(patients, engine, client, caplog):
    sealed_a = stored_body(engine, "pat-a")["birthDate"]
    store_body(engine, "pat-b", {**stored_body(engine, "pat-b"), "birthDate": sealed_a})
    assert_unreadable(client.get("/fhir/Patient/pat-b/$everything"), caplog, key_id_of(sealed_a), (A["birthDate"], B["birthDate"]))


def test_an_unreadable_value_survives_pickling_as_a_forked_rewrap_process_sends_it_back():
    error = pickle.loads(pickle.dumps(ValueUnreadable("Patient/p1 name: does not decrypt", "kid1")))
    assert isinstance(error, ValueUnreadable) and error.key_id == "kid1" and str(error) == "Patient/p1 name: does not decrypt"


def test_a_rewrap_with_nothing_to_do_leaves_an_altered_row_alone_and_the_read_still_fails(patients, engine, client, caplog, database_url, key_file):
    """Rewrap tells a row already sealed as configured from its markers and key ids, without decrypting it: an altered
    ciphertext under the primary key does not stop it (the read still refuses it)."""
    body = stored_body(engine, "pat-a")
    sealed = body["name"]
    store_body(engine, "pat-a", {**body, "name": sealed[:-2] + ("AA" if sealed[-2:] != "AA" else "BB")})
    assert json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file))["rewrapped"] == 0
    assert_unreadable(client.get("/fhir/Patient/pat-a"), caplog, key_id_of(sealed), ("Aardvarkson",))
