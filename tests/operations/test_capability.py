"""GET /fhir/metadata lists the operations the server really answers, with their official definitions."""
import pytest

OPERATION_DEFINITION = "http://hl7.org/fhir/OperationDefinition/"


def operations_of(client, type_name: str) -> dict[str, str]:
    resources = client.get("/fhir/metadata").get_json()["rest"][0]["resource"]
    entry = next(resource for resource in resources if resource["type"] == type_name)
    return {operation["name"]: operation["definition"] for operation in entry.get("operation", [])}


def test_metadata_lists_everything_and_validate_on_patient(client):
    assert operations_of(client, "Patient") == {
        "everything": OPERATION_DEFINITION + "Patient-everything",
        "validate": OPERATION_DEFINITION + "Resource-validate",
    }


def test_metadata_lists_lastn_stats_and_validate_on_observation(client):
    assert operations_of(client, "Observation") == {
        "lastn": OPERATION_DEFINITION + "Observation-lastn",
        "stats": OPERATION_DEFINITION + "Observation-stats",
        "validate": OPERATION_DEFINITION + "Resource-validate",
    }


def test_metadata_lists_validate_on_every_other_type(client):
    assert operations_of(client, "Encounter") == {"validate": OPERATION_DEFINITION + "Resource-validate"}


@pytest.mark.parametrize("method, url", [
    ("GET", "/fhir/Patient/someone/$everything"),
    ("POST", "/fhir/Patient/someone/$everything"),
    ("GET", "/fhir/Patient/$everything"),
    ("POST", "/fhir/Patient/$everything"),
    ("GET", "/fhir/Observation/$lastn"),
    ("POST", "/fhir/Observation/$lastn"),
    ("GET", "/fhir/Observation/$stats"),
    ("POST", "/fhir/Observation/$stats"),
    ("POST", "/fhir/Encounter/$validate"),
    ("POST", "/fhir/Encounter/someone/$validate"),
])
def test_every_listed_operation_has_a_route(client, method, url):
    """An operation's URL reaches the operation: its own answer, never the 'no interaction here' 404 or a 405."""
    response = client.open(url, method=method)
    assert response.status_code in (200, 400, 404)
    assert "No FHIR interaction exists at this URL" not in str(response.get_json())


def test_each_operation_listed_on_each_type_is_served_there_by_post(client):
    """R4: every operation may be invoked by POST; none listed may answer 'not supported' (501) or 405."""
    for resource in client.get("/fhir/metadata").get_json()["rest"][0]["resource"]:
        for operation in resource.get("operation", []):
            response = client.post(f"/fhir/{resource['type']}/${operation['name']}")
            assert response.status_code in (200, 400), (resource["type"], operation["name"], response.get_json())
