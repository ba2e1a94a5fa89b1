"""Conditional create, update and delete over HTTP, including 30 clients racing the same conditional create."""
import threading

import requests

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MRN = "http://hospital.example.org/mrn"


def patient(value: str, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": value}], "name": [{"family": "Okafor"}], **extra}


def conditional_create(client, value: str):
    return client.post("/fhir/Patient", json=patient(value), headers={**FHIR_JSON, "If-None-Exist": f"identifier={MRN}|{value}"})


def test_conditional_create_creates_when_nothing_matches(client):
    response = conditional_create(client, "1")
    assert response.status_code == 201


def test_conditional_create_returns_the_match_instead_of_creating(client):
    first = conditional_create(client, "1").json
    again = conditional_create(client, "1")
    assert again.status_code == 200 and again.json["id"] == first["id"]
    assert client.get("/fhir/Patient?_summary=count").json["total"] == 1


def test_conditional_create_with_several_matches_is_412(client):
    client.post("/fhir/Patient", json=patient("1"), headers=FHIR_JSON)
    client.post("/fhir/Patient", json=patient("1"), headers=FHIR_JSON)
    assert conditional_create(client, "1").status_code == 412


def test_conditional_create_with_unknown_criteria_is_400(client):
    response = client.post("/fhir/Patient", json=patient("1"), headers={**FHIR_JSON, "If-None-Exist": "shoe-size=42"})
    assert response.status_code == 400 and "shoe-size" in response.json["issue"][0]["diagnostics"]


def test_one_token_criterion_finds_by_the_token_rows_and_id_by_the_resource_row(client):
    """Single-token criteria take a short path; _id, a token answered from the resource row, must not."""
    created = conditional_create(client, "1").json
    for criteria in (f"identifier={MRN}|1", "identifier=1", f"identifier={MRN}|", f"_id={created['id']}"):
        again = client.post("/fhir/Patient", json=patient("1"), headers={**FHIR_JSON, "If-None-Exist": criteria})
        assert (again.status_code, again.json["id"]) == (200, created["id"]), criteria
    other = client.post("/fhir/Patient", json=patient("1"), headers={**FHIR_JSON, "If-None-Exist": f"identifier={MRN}|2"})
    assert other.status_code == 201


def test_conditional_update_updates_the_one_match(client):
    created = conditional_create(client, "1").json
    response = client.put(f"/fhir/Patient?identifier={MRN}|1", json=patient("1", gender="female"), headers=FHIR_JSON)
    assert response.status_code == 200 and response.json["id"] == created["id"] and response.json["meta"]["versionId"] == "2"


def test_conditional_update_creates_when_nothing_matches(client):
    response = client.put(f"/fhir/Patient?identifier={MRN}|9", json=patient("9"), headers=FHIR_JSON)
    assert response.status_code == 201


def test_conditional_update_with_a_different_body_id_is_400(client):
    conditional_create(client, "1")
    response = client.put(f"/fhir/Patient?identifier={MRN}|1", json={**patient("1"), "id": "someone-else"}, headers=FHIR_JSON)
    assert response.status_code == 400


def test_conditional_delete_deletes_the_one_match(client):
    created = conditional_create(client, "1").json
    assert client.delete(f"/fhir/Patient?identifier={MRN}|1").status_code == 200
    assert client.get(f"/fhir/Patient/{created['id']}").status_code == 410


def test_conditional_delete_without_criteria_is_400(client):
    assert client.delete("/fhir/Patient").status_code == 400


def test_thirty_clients_racing_one_conditional_create_make_exactly_one_resource(live_server):
    barrier = threading.Barrier(30)
    statuses = []

    def send():
        barrier.wait()
        response = requests.post(
            f"{live_server}/Patient", json=patient("race"), headers={**FHIR_JSON, "If-None-Exist": f"identifier={MRN}|race"}, timeout=60
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 29 + [201]
    found = requests.get(f"{live_server}/Patient", params={"identifier": f"{MRN}|race", "_total": "accurate"}, timeout=30).json()
    assert found["total"] == 1


def test_conditional_criteria_may_name_a_reference_by_this_servers_own_url(client):
    """References to this server's base are stored relative; criteria naming them by the absolute URL still match."""
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=FHIR_JSON)
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"}, "subject": {"reference": "Patient/p1"}}
    first = client.post("/fhir/Observation", json=observation, headers=FHIR_JSON)
    criteria = {"If-None-Exist": "subject=http://localhost/fhir/Patient/p1&code:text=Weight"}
    again = client.post("/fhir/Observation", json=observation, headers={**FHIR_JSON, **criteria})
    assert again.status_code == 200 and again.json["id"] == first.json["id"]
    updated = client.put("/fhir/Observation?subject=http://localhost/fhir/Patient/p1", json={**observation, "status": "amended"}, headers=FHIR_JSON)
    assert updated.status_code == 200 and updated.json["id"] == first.json["id"]
