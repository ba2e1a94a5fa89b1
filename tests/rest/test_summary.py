"""_summary and _elements on read and search: the parts a client asked for, marked SUBSETTED (R4 search.html#summary)."""
import json

import pytest

FHIR_JSON = "application/fhir+json"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Aisha Okafor</div>'}
PATIENT = {
    "resourceType": "Patient",
    "text": NARRATIVE,
    "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}]},
    "identifier": [{"system": "http://example.org/mrn", "value": "MRN-1"}],
    "active": True,
    "name": [{"family": "Okafor", "given": ["Aisha"]}],
    "gender": "female",
    "birthDate": "1984-03-02",
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1984-03-02T04:10:00Z"}]},
    "maritalStatus": {"text": "married"},
    "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
    "contact": [{"name": {"family": "Okafor", "given": ["Chidi"]}}],
    "communication": [{"language": {"text": "Yoruba"}}],
}
OBSERVATION = {
    "resourceType": "Observation",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Heart rate 72/min</div>'},
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "http://other.example.org/fhir/Patient/p1"},  # another server's: not checked here
    "effectiveDateTime": "2025-03-04T09:30:00+00:00",
    "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    "interpretation": [{"text": "normal"}],
    "note": [{"text": "Measured after a short walk."}],
}
BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [{
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "interpretation": [{"text": "normal"}],
    }],
}



def create(client, body) -> dict:
    response = client.post(f"/fhir/{body['resourceType']}", data=json.dumps(body), content_type=FHIR_JSON)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def read(client, body, query: str) -> dict:
    created = create(client, body)
    response = client.get(f"/fhir/{body['resourceType']}/{created['id']}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def is_subsetted(resource: dict) -> bool:
    return any(tag.get("system") == SUBSETTED["system"] and tag.get("code") == "SUBSETTED" for tag in resource.get("meta", {}).get("tag", []))


def search_entries(client, type_name: str, query: str) -> list[dict]:
    response = client.get(f"/fhir/{type_name}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry["resource"] for entry in response.get_json().get("entry", [])]


# _summary=true


def test_summary_true_keeps_the_patients_summary_elements(client):
    summary = read(client, PATIENT, "_summary=true")
    for element in ("identifier", "active", "name", "gender", "birthDate"):
        assert summary[element] == PATIENT[element]
    assert summary["id"] and summary["meta"]["versionId"] == "1"


def test_summary_true_drops_the_patients_non_summary_elements(client):
    summary = read(client, PATIENT, "_summary=true")
    for element in ("text", "maritalStatus", "photo", "contact", "communication"):
        assert element not in summary


def test_summary_true_keeps_an_observations_code_status_and_value_and_drops_its_note(client):
    summary = read(client, OBSERVATION, "_summary=true")
    assert summary["code"] == OBSERVATION["code"] and summary["status"] == "final"
    assert summary["valueQuantity"] == OBSERVATION["valueQuantity"]
    assert summary["subject"] == OBSERVATION["subject"]
    for element in ("note", "interpretation", "category", "text"):
        assert element not in summary


def test_summary_true_drops_non_summary_elements_inside_summary_elements(client):
    """Observation.component is a summary element; component.interpretation is not."""
    summary = read(client, BLOOD_PRESSURE, "_summary=true")
    component = summary["component"][0]
    assert component["code"] == BLOOD_PRESSURE["component"][0]["code"]
    assert "interpretation" not in component


def test_summary_true_marks_the_resource_subsetted_and_keeps_client_tags(client):
    summary = read(client, PATIENT, "_summary=true")
    assert is_subsetted(summary)
    assert {"system": "http://example.org/tags", "code": "vip"} in summary["meta"]["tag"]
    assert summary["meta"]["versionId"] == "1" and "lastUpdated" in summary["meta"]


def test_summary_true_keeps_the_extension_of_a_kept_primitive(client):
    summary = read(client, PATIENT, "_summary=true")
    assert summary["_birthDate"] == PATIENT["_birthDate"]


def test_summarising_a_read_does_not_change_the_stored_resource(client):
    created = create(client, PATIENT)
    client.get(f"/fhir/Patient/{created['id']}?_summary=true")
    full = client.get(f"/fhir/Patient/{created['id']}").get_json()
    assert full == created
    assert full["photo"] == PATIENT["photo"] and not is_subsetted(full)


# _summary=text, data, false


def test_summary_text_keeps_text_id_meta_and_mandatory_elements_only(client):
    summary = read(client, OBSERVATION, "_summary=text")
    assert summary["text"] == OBSERVATION["text"]
    assert summary["code"] == OBSERVATION["code"] and summary["status"] == "final"
    assert set(summary) == {"resourceType", "id", "meta", "text", "status", "code"}
    assert is_subsetted(summary)


def test_summary_text_of_a_patient_keeps_only_text_id_and_meta(client):
    summary = read(client, PATIENT, "_summary=text")
    assert set(summary) == {"resourceType", "id", "meta", "text"}
    assert summary["text"] == NARRATIVE


def test_summary_data_drops_only_the_text(client):
    created = create(client, PATIENT)
    summary = client.get(f"/fhir/Patient/{created['id']}?_summary=data").get_json()
    assert "text" not in summary
    assert {key: value for key, value in summary.items() if key != "meta"} == {
        key: value for key, value in created.items() if key not in ("meta", "text")
    }
    assert is_subsetted(summary)


def test_summary_false_is_the_whole_resource_unmarked(client):
    created = create(client, PATIENT)
    full = client.get(f"/fhir/Patient/{created['id']}?_summary=false").get_json()
    assert full == created
    assert not is_subsetted(full)


def test_a_read_without_summary_is_not_marked_subsetted(client):
    created = create(client, OBSERVATION)
    assert not is_subsetted(client.get(f"/fhir/Observation/{created['id']}").get_json())


# _elements


def test_elements_birth_date_keeps_it_with_id_and_meta(client):
    subset = read(client, PATIENT, "_elements=birthDate")
    assert subset["birthDate"] == "1984-03-02"
    assert subset["_birthDate"] == PATIENT["_birthDate"]
    assert set(subset) == {"resourceType", "id", "meta", "birthDate", "_birthDate"}
    assert is_subsetted(subset)


def test_elements_keeps_mandatory_elements_that_were_not_asked_for(client):
    subset = read(client, OBSERVATION, "_elements=subject")
    assert subset["subject"] == OBSERVATION["subject"]
    assert subset["status"] == "final" and subset["code"] == OBSERVATION["code"]
    assert "note" not in subset and "valueQuantity" not in subset and "text" not in subset


def test_elements_value_keeps_an_observations_value_quantity(client):
    subset = read(client, OBSERVATION, "_elements=value")
    assert subset["valueQuantity"] == OBSERVATION["valueQuantity"]
    assert "effectiveDateTime" not in subset and "note" not in subset


def test_elements_takes_a_comma_separated_list(client):
    subset = read(client, PATIENT, "_elements=name,gender")
    assert subset["name"] == PATIENT["name"] and subset["gender"] == "female"
    assert "birthDate" not in subset and "identifier" not in subset and "photo" not in subset


def test_elements_naming_an_element_the_resource_lacks_returns_the_rest_of_the_subset(client):
    subset = read(client, PATIENT, "_elements=deceased,gender")
    assert subset["gender"] == "female" and "deceasedBoolean" not in subset


# Search


def test_summary_count_on_search_gives_the_total_and_no_entries(client):
    for _ in range(3):
        create(client, PATIENT)
    removed = create(client, PATIENT)
    client.delete(f"/fhir/Patient/{removed['id']}")
    create(client, OBSERVATION)
    response = client.get("/fhir/Patient?_summary=count")
    assert response.status_code == 200
    bundle = response.get_json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 3
    assert "entry" not in bundle


def test_summary_count_on_an_empty_type_is_zero(client):
    assert client.get("/fhir/Condition?_summary=count").get_json()["total"] == 0


def test_summary_true_applies_to_every_search_entry(client):
    create(client, PATIENT)
    create(client, PATIENT)
    entries = search_entries(client, "Patient", "_summary=true")
    assert len(entries) == 2
    for entry in entries:
        assert is_subsetted(entry)
        assert entry["name"] == PATIENT["name"] and "photo" not in entry and "text" not in entry


def test_elements_applies_to_every_search_entry(client):
    create(client, OBSERVATION)
    create(client, OBSERVATION)
    entries = search_entries(client, "Observation", "_elements=value")
    assert len(entries) == 2
    for entry in entries:
        assert is_subsetted(entry)
        assert entry["valueQuantity"] == OBSERVATION["valueQuantity"]
        assert entry["status"] == "final" and "note" not in entry and "subject" not in entry


def test_search_without_subsetting_returns_whole_unmarked_resources(client):
    created = create(client, PATIENT)
    assert search_entries(client, "Patient", "") == [created]


def test_summary_text_on_search_keeps_the_narrative(client):
    create(client, OBSERVATION)
    [entry] = search_entries(client, "Observation", "_summary=text")
    assert entry["text"] == OBSERVATION["text"] and "valueQuantity" not in entry


@pytest.mark.parametrize("query", ["_summary=true", "_elements=gender"])
def test_the_self_link_keeps_the_subsetting_parameters(client, query):
    create(client, PATIENT)
    bundle = client.get(f"/fhir/Patient?{query}").get_json()
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert query in self_link


def test_the_next_page_keeps_the_elements_subsetting(client):
    for _ in range(3):
        create(client, PATIENT)
    first = client.get("/fhir/Patient?_elements=gender&_count=2").get_json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = client.get(next_url.removeprefix("http://localhost")).get_json()
    assert len(second["entry"]) == 1
    entry = second["entry"][0]["resource"]
    assert is_subsetted(entry) and "name" not in entry and entry["gender"] == "female"
