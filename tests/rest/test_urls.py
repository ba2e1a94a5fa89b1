"""FHIR URLs as clients write them: a trailing slash changes nothing, and a `$` segment is an operation, never an id."""
FHIR_JSON = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "ann", "gender": "female"}


def test_search_with_a_trailing_slash_is_the_search_of_the_type(client):
    client.put("/fhir/Patient/ann", json=PATIENT, content_type=FHIR_JSON)
    response = client.get("/fhir/Patient/?gender=female")
    assert response.status_code == 200
    assert [entry["resource"]["id"] for entry in response.get_json()["entry"]] == ["ann"]


def test_read_with_a_trailing_slash_is_the_read_of_the_resource(client):
    client.put("/fhir/Patient/ann", json=PATIENT, content_type=FHIR_JSON)
    response = client.get("/fhir/Patient/ann/")
    assert (response.status_code, response.get_json()["id"]) == (200, "ann")
    assert client.get("/fhir/Patient/ann/_history/").get_json()["type"] == "history"


def test_post_with_a_trailing_slash_creates_without_a_redirect(client):
    response = client.post("/fhir/Patient/", json={"resourceType": "Patient"}, content_type=FHIR_JSON)
    assert response.status_code == 201
    assert client.get(response.headers["Location"].removeprefix("http://localhost")).status_code == 200


def test_put_with_a_trailing_slash_updates_the_resource(client):
    response = client.put("/fhir/Patient/ann/", json=PATIENT, content_type=FHIR_JSON)
    assert response.status_code == 201
    assert client.get("/fhir/Patient/ann").get_json()["gender"] == "female"


def test_an_operation_name_in_the_id_slot_is_never_read_as_an_id(client):
    response = client.get("/fhir/Patient/$export")
    assert response.status_code == 501
    assert "does not exist" not in response.get_json()["issue"][0]["diagnostics"]
