""":of-type on identifiers, :identifier on references, and versioned references, on both databases."""
from urllib.parse import quote

import pytest

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MR = "http://terminology.hl7.org/CodeSystem/v2-0203|MR"


@pytest.fixture
def seeded(client):
    identifier = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "system": "http://mrn", "value": "123"}
    bodies = [
        {"resourceType": "Patient", "id": "p1", "identifier": [identifier]},
        {"resourceType": "Patient", "id": "p2", "identifier": [{"system": "http://mrn", "value": "123"}]},
        {"resourceType": "Observation", "id": "by-identifier", "status": "final", "code": {"text": "x"}, "subject": {"identifier": {"system": "http://mrn", "value": "123"}}},
        {"resourceType": "Observation", "id": "by-reference", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}},
    ]
    for body in bodies:
        assert client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR_JSON).status_code == 201
    return client


def ids(client, url: str) -> list[str]:
    response = client.get(url)
    assert response.status_code == 200, response.json
    return sorted(entry["resource"]["id"] for entry in response.json.get("entry", []))


def test_of_type_matches_an_identifier_by_its_type_and_value(seeded):
    assert ids(seeded, f"/fhir/Patient?identifier:of-type={MR}|123") == ["p1"]
    assert ids(seeded, f"/fhir/Patient?identifier:of-type={MR}|999") == []


def test_of_type_without_three_parts_is_400(seeded):
    assert seeded.get("/fhir/Patient?identifier:of-type=123").status_code == 400


def test_identifier_modifier_matches_a_reference_by_its_logical_identifier(seeded):
    assert ids(seeded, "/fhir/Observation?subject:identifier=http://mrn|123") == ["by-identifier"]


def test_a_versioned_reference_finds_what_refers_to_that_resource(seeded):
    assert ids(seeded, "/fhir/Observation?subject=Patient/p1/_history/1") == ["by-reference"]


def test_the_keyed_rows_do_not_leak_into_plain_token_searches(seeded):
    assert ids(seeded, "/fhir/Patient?identifier=123") == ["p1", "p2"]
    assert ids(seeded, "/fhir/Patient?identifier=http://mrn|123") == ["p1", "p2"]


@pytest.mark.parametrize("value, expected", [
    ("a\\,b", ["comma"]), ("a\\|b", ["bar"]), ("a\\$b", ["dollar"]), ("a\\\\b", ["backslash"]), ("a\\b", ["backslash"]),  # a lone backslash escapes nothing: itself
])
def test_escaped_characters_in_a_token_value_match_themselves(client, value, expected):
    for name, literal in (("comma", "a,b"), ("bar", "a|b"), ("dollar", "a$b"), ("backslash", "a\\b")):
        body = {"resourceType": "Patient", "id": name, "identifier": [{"system": "http://mrn", "value": literal}]}
        assert client.put(f"/fhir/Patient/{name}", json=body, headers=FHIR_JSON).status_code == 201
    assert ids(client, "/fhir/Patient?identifier=" + quote(f"http://mrn|{value}")) == expected
