"""$validate over HTTP: an OperationOutcome naming every invalid element, always 200, and nothing ever stored."""
import pytest

FHIR_JSON = "application/fhir+json"
VALID = {"resourceType": "Patient", "id": "ann", "name": [{"family": "Lee"}], "gender": "female", "birthDate": "1980-05-12"}
INVALID = {"resourceType": "Patient", "gender": "robot", "birthDate": "yesterday", "shoeSize": 42}


def validate(client, url: str, body, **params) -> dict:
    response = client.post(url, json=body, content_type=FHIR_JSON, query_string=params)
    assert response.status_code == 200, response.get_json()
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome


def errors(outcome: dict) -> dict[str, str]:
    """expression -> issue code, for each error."""
    return {issue["expression"][0]: issue["code"] for issue in outcome["issue"] if issue["severity"] == "error" and issue.get("expression")}


def parameters(resource=None, **values) -> dict:
    entries = [{"name": "resource", "resource": resource}] if resource else []
    return {"resourceType": "Parameters", "parameter": entries + [{"name": name, "valueCode": value} for name, value in values.items()]}


def history_size(client) -> int:
    return len(client.get("/fhir/_history").get_json().get("entry", []))


def test_validate_of_a_valid_resource_answers_with_one_information_issue(client):
    outcome = validate(client, "/fhir/Patient/$validate", VALID)
    assert [(issue["severity"], issue["code"]) for issue in outcome["issue"]] == [("information", "informational")]
    assert "No errors" in outcome["issue"][0]["diagnostics"]


def test_validate_of_an_invalid_resource_names_each_invalid_element(client):
    outcome = validate(client, "/fhir/Patient/$validate", INVALID)
    found = errors(outcome)
    assert found.keys() >= {"Patient.gender", "Patient.birthDate", "Patient.shoeSize"}
    assert found["Patient.gender"] == "code-invalid"


def test_validate_takes_the_resource_and_mode_from_a_parameters_body(client):
    assert errors(validate(client, "/fhir/Patient/$validate", parameters(INVALID, mode="create"))).keys() >= {"Patient.gender"}
    assert validate(client, "/fhir/Patient/$validate", parameters(VALID, mode="create"))["issue"][0]["severity"] == "information"


def test_validate_of_a_resource_of_another_type_is_an_error(client):
    outcome = validate(client, "/fhir/Observation/$validate", VALID)
    assert outcome["issue"][0]["severity"] == "error"


def test_validate_an_update_with_another_id_names_the_id(client):
    assert errors(validate(client, "/fhir/Patient/bob/$validate", VALID, mode="update")) == {"Patient.id": "value"}
    assert validate(client, "/fhir/Patient/ann/$validate", VALID, mode="update")["issue"][0]["severity"] == "information"


def test_validate_a_delete_checks_the_resource_exists(client):
    missing = validate(client, "/fhir/Patient/ann/$validate", parameters(mode="delete"))
    assert [(issue["severity"], issue["code"]) for issue in missing["issue"]] == [("error", "not-found")]
    client.put("/fhir/Patient/ann", json=VALID, content_type=FHIR_JSON)
    assert validate(client, "/fhir/Patient/ann/$validate", parameters(mode="delete"))["issue"][0]["severity"] == "information"
    assert client.get("/fhir/Patient/ann").status_code == 200


def test_validate_never_stores_anything(client):
    before = history_size(client)
    validate(client, "/fhir/Patient/$validate", VALID)
    validate(client, "/fhir/Patient/ann/$validate", VALID, mode="update")
    validate(client, "/fhir/Patient/$validate", INVALID)
    assert history_size(client) == before
    assert client.get("/fhir/Patient/ann").status_code == 404


@pytest.mark.parametrize("url, body, params", [
    ("/fhir/Patient/$validate", VALID, {"mode": "update"}),
    ("/fhir/Patient/$validate", VALID, {"mode": "replace"}),
    ("/fhir/Patient/$validate", VALID, {"profile": "http://example.org/StructureDefinition/my-patient"}),
    ("/fhir/Patient/$validate", parameters(mode="create"), {}),
])
def test_validate_that_cannot_be_performed_is_a_4xx(client, url, body, params):
    response = client.post(url, json=body, content_type=FHIR_JSON, query_string=params)
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_validate_against_the_base_profile_is_performed(client):
    profile = "http://hl7.org/fhir/StructureDefinition/Patient"
    assert validate(client, "/fhir/Patient/$validate", VALID, profile=profile)["issue"][0]["severity"] == "information"


def test_validate_of_an_unknown_type_is_404(client):
    response = client.post("/fhir/Spaceship/$validate", json={"resourceType": "Spaceship"}, content_type=FHIR_JSON)
    assert response.status_code == 404


def test_validate_a_delete_names_a_resource_that_still_refers_to_it(client):
    client.put("/fhir/Patient/ann", json=VALID, content_type=FHIR_JSON)
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Weight"}, "subject": {"reference": "Patient/ann"}}
    created = client.post("/fhir/Observation", json=observation, content_type=FHIR_JSON).get_json()
    outcome = validate(client, "/fhir/Patient/ann/$validate", parameters(mode="delete"))
    assert [(issue["severity"], issue["code"]) for issue in outcome["issue"]] == [("error", "conflict")]
    assert f"Observation/{created['id']}" in outcome["issue"][0]["diagnostics"]
