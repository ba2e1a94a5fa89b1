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
    ("GET", "/fhir/Observation/$lastn"),
    ("GET", "/fhir/Observation/$stats"),
    ("POST", "/fhir/Encounter/$validate"),
])
def test_every_listed_operation_has_a_route(client, method, url):
    """An operation's URL reaches the operation: its own answer, never the 'no interaction here' 404 or a 405."""
    response = client.open(url, method=method)
    assert response.status_code in (200, 400, 404)
    assert "No FHIR interaction exists at this URL" not in str(response.get_json())
