"""Observation/$lastn over HTTP: the latest `max` Observations of each code for one patient, newest first."""
from urllib.request import urlopen

import pytest

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
HEART_RATE, WEIGHT, PULSE = "8867-4", "29463-7", "8889-8"


def observation(id_, patient, codes, day, category="vital-signs", text=None):
    code = {"coding": [{"system": LOINC, "code": code} for code in codes]} if codes else {}
    return {
        "resourceType": "Observation", "id": id_, "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {**code, **({"text": text} if text else {})},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2025-01-{day:02d}T09:00:00Z",
    }


OBSERVATIONS = [
    observation("hr-1", "ann", [HEART_RATE], 1),
    observation("hr-3", "ann", [HEART_RATE], 3),
    observation("hr-2", "ann", [HEART_RATE], 2),
    observation("wt-1", "ann", [WEIGHT], 1),
    observation("wt-2", "ann", [WEIGHT], 2),
    observation("hb-4", "ann", ["718-7"], 4, category="laboratory"),
    observation("bob-hr-9", "bob", [HEART_RATE], 9),
]


@pytest.fixture
def observations(client):
    for patient in ("ann", "bob"):
        assert client.put(f"/fhir/Patient/{patient}", json={"resourceType": "Patient", "id": patient}, content_type=FHIR_JSON).status_code == 201
    for resource in OBSERVATIONS:
        put(client, resource)


def put(client, resource):
    response = client.put(f"/fhir/Observation/{resource['id']}", json=resource, content_type=FHIR_JSON)
    assert response.status_code in (200, 201), response.get_json()


def lastn(client, query: str) -> list[str]:
    response = client.get(f"/fhir/Observation/$lastn?{query}")
    assert response.status_code == 200, response.get_json()
    bundle = response.get_json()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "searchset")
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def test_lastn_returns_the_latest_observation_of_each_code(client, observations):
    assert lastn(client, "patient=ann&category=vital-signs") == ["hr-3", "wt-2"]


def test_lastn_with_max_2_returns_the_two_latest_of_each_code_newest_first(client, observations):
    assert lastn(client, "patient=ann&category=vital-signs&max=2") == ["hr-3", "hr-2", "wt-2", "wt-1"]


def test_lastn_with_a_max_above_the_count_returns_every_observation(client, observations):
    assert lastn(client, "subject=Patient/ann&code=http://loinc.org|8867-4&max=10") == ["hr-3", "hr-2", "hr-1"]


def test_lastn_never_returns_another_patients_observations(client, observations):
    assert "bob-hr-9" not in lastn(client, "patient=ann&max=5")
    assert lastn(client, "patient=bob") == ["bob-hr-9"]


def test_lastn_filters_by_category_and_date(client, observations):
    assert lastn(client, "patient=ann&category=laboratory") == ["hb-4"]
    assert sorted(lastn(client, "patient=ann&category=vital-signs&date=le2025-01-01")) == ["hr-1", "wt-1"]


def test_lastn_keeps_observations_tied_with_the_last_one_kept(client, observations):
    put(client, observation("hr-3-again", "ann", [HEART_RATE], 3))
    assert sorted(lastn(client, f"patient=ann&code={HEART_RATE}")) == ["hr-3", "hr-3-again"]


def test_lastn_groups_codes_that_share_a_coding(client, observations):
    put(client, observation("pulse-5", "ann", [PULSE, HEART_RATE], 5))
    put(client, observation("pulse-0", "ann", [PULSE], 1))
    assert lastn(client, "patient=ann&category=vital-signs") == ["pulse-5", "wt-2"]


def test_lastn_groups_text_only_codes_by_their_exact_text(client, observations):
    put(client, observation("note-a", "ann", [], 5, text="Pain score"))
    put(client, observation("note-b", "ann", [], 6, text="Pain score"))
    put(client, observation("note-c", "ann", [], 4, text="pain score"))
    assert lastn(client, "patient=ann&category=vital-signs") == ["note-b", "note-c", "hr-3", "wt-2"]


def test_lastn_with_no_match_is_an_empty_searchset(client, observations):
    assert lastn(client, "patient=ann&code=no-such-code") == []


@pytest.mark.parametrize("query", ["category=vital-signs", "patient=ann&max=0", "patient=ann&max=two", "patient=ann&_sort=date", "patient=ann&nonsense=1"])
def test_lastn_without_a_patient_or_with_a_bad_parameter_is_400(client, observations, query):
    response = client.get(f"/fhir/Observation/$lastn?{query}")
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_lastn_is_the_operation_not_a_read_of_an_observation_called_dollar_lastn(client, observations):
    response = client.get("/fhir/Observation/$lastn?patient=ann")
    assert response.status_code == 200 and response.get_json()["resourceType"] == "Bundle"


def test_lastn_answers_over_http_with_the_dollar_percent_encoded(live_server, client, observations):
    with urlopen(f"{live_server}/Observation/%24lastn?patient=ann&code={HEART_RATE}") as response:
        assert response.status == 200
        assert b'"hr-3"' in response.read()


def test_lastn_by_post_with_a_parameters_body_answers_as_the_same_get(client, observations):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": "Patient/ann"}},
        {"name": "category", "valueString": "vital-signs"},
        {"name": "max", "valuePositiveInt": 2},
    ]}
    response = client.post("/fhir/Observation/$lastn", json=body, content_type=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    assert [entry["resource"]["id"] for entry in response.get_json()["entry"]] == lastn(client, "patient=ann&category=vital-signs&max=2")


def test_lastn_by_post_with_a_form_body_answers_as_the_same_get(client, observations):
    response = client.post("/fhir/Observation/$lastn", data={"patient": "ann", "max": "2"})
    assert response.status_code == 200, response.get_json()
    assert [entry["resource"]["id"] for entry in response.get_json()["entry"]] == lastn(client, "patient=ann&max=2")
