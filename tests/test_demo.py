"""The demo data set: a stable, valid, self-contained FHIR R4 transaction Bundle."""
import json
from collections import Counter
from datetime import datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.demo import demo_bundle

UCUM = "http://unitsofmeasure.org"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
VITAL_SIGN_CODES = {"8867-4", "85354-9", "59408-5", "29463-7"}


def resources(resource_type=None):
    return [entry["resource"] for entry in demo_bundle()["entry"]
            if resource_type in (None, entry["resource"]["resourceType"])]


def references_in(value):
    """Every `reference` string anywhere inside a resource."""
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [ref for child in value.values() for ref in references_in(child)]
    if isinstance(value, list):
        return [ref for child in value for ref in references_in(child)]
    return []


def loinc_code(observation):
    return observation["code"]["coding"][0]["code"]


def test_demo_bundle_is_identical_on_every_call():
    assert json.dumps(demo_bundle(), sort_keys=True) == json.dumps(demo_bundle(), sort_keys=True)


def test_demo_bundle_is_json_ready():
    bundle = demo_bundle()
    assert json.loads(json.dumps(bundle)) == bundle


def test_demo_bundle_is_a_transaction():
    bundle = demo_bundle()
    assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")


def test_every_entry_is_a_put_to_its_own_type_and_id():
    for entry in demo_bundle()["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}


def test_no_two_entries_share_a_type_and_id():
    urls = Counter(entry["request"]["url"] for entry in demo_bundle()["entry"])
    assert [url for url, count in urls.items() if count > 1] == []


@pytest.mark.parametrize("resource", resources(), ids=lambda r: f"{r['resourceType']}/{r['id']}")
def test_every_demo_resource_validates_against_r4_models(resource):
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_whole_bundle_validates_against_r4_models():
    get_fhir_model_class("Bundle").model_validate(demo_bundle())


def test_every_reference_in_the_demo_points_at_an_entry_of_the_bundle():
    urls = {entry["request"]["url"] for entry in demo_bundle()["entry"]}
    dangling = [ref for resource in resources() for ref in references_in(resource) if ref not in urls]
    assert dangling == []


def test_demo_has_five_patients_three_practitioners_and_two_or_three_encounters_each():
    visits = Counter(e["subject"]["reference"] for e in resources("Encounter"))
    assert (len(resources("Patient")), len(resources("Practitioner"))) == (5, 3)
    assert len(visits) == 5 and set(visits.values()) <= {2, 3}


def test_every_patient_has_an_mrn_and_a_general_practitioner():
    for patient in resources("Patient"):
        mrn_type = patient["identifier"][0]["type"]["coding"][0]
        assert (mrn_type["system"], mrn_type["code"]) == (IDENTIFIER_TYPE, "MR")
        assert patient["generalPractitioner"][0]["reference"].startswith("Practitioner/")


def test_every_practitioner_is_a_doctor_with_an_npi():
    for practitioner in resources("Practitioner"):
        assert practitioner["identifier"][0]["system"] == "http://hl7.org/fhir/sid/us-npi"
        assert practitioner["name"][0]["prefix"] == ["Dr"]


def test_demo_has_each_vital_sign_kind():
    assert {loinc_code(o) for o in resources("Observation")} == VITAL_SIGN_CODES


def test_every_encounter_has_one_reading_of_each_vital_sign():
    kinds = Counter((o["encounter"]["reference"], loinc_code(o)) for o in resources("Observation"))
    assert len(kinds) == len(resources("Encounter")) * len(VITAL_SIGN_CODES)
    assert set(kinds.values()) == {1}


def test_every_observation_is_a_final_vital_sign():
    for observation in resources("Observation"):
        category = observation["category"][0]["coding"][0]
        assert (observation["status"], category["code"]) == ("final", "vital-signs")


def test_blood_pressure_has_systolic_and_diastolic_components_and_no_top_level_value():
    for panel in (o for o in resources("Observation") if loinc_code(o) == "85354-9"):
        assert [c["code"]["coding"][0]["code"] for c in panel["component"]] == ["8480-6", "8462-4"]
        assert not any(key.startswith("value") for key in panel)


def test_every_measurement_is_a_ucum_quantity():
    observations = resources("Observation")
    quantities = [o["valueQuantity"] for o in observations if "valueQuantity" in o]
    quantities += [c["valueQuantity"] for o in observations for c in o.get("component", [])]
    assert {(q["system"], q["code"]) for q in quantities} == {
        (UCUM, "/min"), (UCUM, "mm[Hg]"), (UCUM, "%"), (UCUM, "kg")}


def test_every_reading_is_taken_during_its_encounter_with_a_timezone():
    periods = {f"Encounter/{e['id']}": e["period"] for e in resources("Encounter")}
    for observation in resources("Observation"):
        taken = datetime.fromisoformat(observation["effectiveDateTime"])
        period = periods[observation["encounter"]["reference"]]
        assert taken.tzinfo is not None
        assert datetime.fromisoformat(period["start"]) <= taken <= datetime.fromisoformat(period["end"])


def test_readings_vary_between_encounters():
    weights = [o["valueQuantity"]["value"] for o in resources("Observation") if loinc_code(o) == "29463-7"]
    assert len(set(weights)) > len(resources("Patient"))
