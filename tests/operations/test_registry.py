"""Invoking operations over HTTP: by GET or POST where each is served, and an OperationOutcome for any other `$name` or method."""
import pytest

FHIR_JSON = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "ann"}
OBSERVATION = {
    "resourceType": "Observation", "id": "hr-1", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/ann"},
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
}


@pytest.fixture
def ann(client):
    for resource in (PATIENT, OBSERVATION):
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, content_type=FHIR_JSON)
        assert response.status_code == 201, response.get_json()


def outcome_of(response, status: int) -> dict:
    assert response.status_code == status, response.get_json()
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    return outcome["issue"][0]


@pytest.mark.parametrize("url", [
    "/fhir/Observation/$lastn",
    "/fhir/Observation/$stats",
    "/fhir/Patient/$everything",
    "/fhir/Patient/ann/$everything",
])
def test_every_get_operation_can_also_be_invoked_by_post(client, ann, url):
    inputs = {"/fhir/Observation/$lastn": [("patient", "ann")], "/fhir/Observation/$stats": [("subject", "Patient/ann"), ("code", "8867-4"), ("statistic", "count")]}
    body = {"resourceType": "Parameters", "parameter": [{"name": name, "valueString": value} for name, value in inputs.get(url, [])]}
    by_get = client.get(url, query_string=inputs.get(url, []))
    by_post = client.post(url, json=body, content_type=FHIR_JSON)
    assert (by_get.status_code, by_post.status_code) == (200, 200), by_post.get_json()
    assert by_post.get_json() == by_get.get_json()


@pytest.mark.parametrize("body", [
    {"resourceType": "Observation", "status": "final"},
    {"resourceType": "Parameters", "parameter": {"name": "patient"}},
    {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueString": "ann", "valueCode": "ann"}]},
    ["patient", "ann"],
])
def test_operation_posted_a_body_that_is_not_a_parameters_resource_is_400(client, ann, body):
    issue = outcome_of(client.post("/fhir/Observation/$lastn", json=body, content_type=FHIR_JSON), 400)
    assert "Parameters" in issue["diagnostics"] or "value[x]" in issue["diagnostics"]


@pytest.mark.parametrize("method, url", [
    ("GET", "/fhir/Patient/$export"),
    ("POST", "/fhir/Patient/$export"),
    ("GET", "/fhir/$export"),
    ("GET", "/fhir/Patient/ann/$match"),
    ("PUT", "/fhir/Patient/$nonsense"),
])
def test_an_operation_the_server_does_not_know_is_501_not_supported(client, ann, method, url):
    issue = outcome_of(client.open(url, method=method), 501)
    assert issue["code"] == "not-supported"
    assert "$everything" in issue["diagnostics"]  # it names what is served


@pytest.mark.parametrize("url, where", [
    ("/fhir/Patient/$lastn", "Observation/$lastn"),
    ("/fhir/Observation/hr-1/$stats", "Observation/$stats"),
    ("/fhir/Observation/$everything", "Patient/[id]/$everything"),
    ("/fhir/$validate", "[type]/$validate"),
])
def test_a_known_operation_where_it_is_not_defined_is_501_naming_where_it_is(client, ann, url, where):
    issue = outcome_of(client.get(url), 501)
    assert issue["code"] == "not-supported" and where in issue["diagnostics"]


@pytest.mark.parametrize("method, url, allowed", [
    ("DELETE", "/fhir/Observation/$stats", "GET, POST"),
    ("PUT", "/fhir/Observation/$lastn", "GET, POST"),
    ("PATCH", "/fhir/Patient/ann/$everything", "GET, POST"),
    ("GET", "/fhir/Patient/$validate", "POST"),
    ("DELETE", "/fhir/Patient/ann/$validate", "POST"),
])
def test_a_known_operation_with_a_method_it_does_not_take_is_405_with_allow(client, ann, method, url, allowed):
    response = client.open(url, method=method)
    assert outcome_of(response, 405)["code"] == "not-supported"
    assert response.headers["Allow"] == allowed


def test_delete_of_an_operation_url_deletes_nothing(client, ann):
    client.delete("/fhir/Patient/$everything")
    client.delete("/fhir/Observation/$stats")
    assert client.get("/fhir/Patient/ann").status_code == 200
    assert client.get("/fhir/Observation/hr-1").status_code == 200


def test_an_operation_on_an_unknown_type_is_404(client):
    assert outcome_of(client.get("/fhir/Spaceship/$lastn"), 404)["code"] == "not-found"
