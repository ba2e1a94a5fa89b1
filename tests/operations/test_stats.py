"""Observation/$stats over HTTP: statistics on known values, per code, and per component of a blood pressure panel."""
import math

import pytest
from fhir.resources.R4B import get_fhir_model_class

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
HEART_RATE, PANEL, SYSTOLIC, DIASTOLIC = "8867-4", "85354-9", "8480-6", "8462-4"
HEART_RATES = [60, 90, 70, 100, 80]
BLOOD_PRESSURES = [(120, 80), (140, 90), (130, 85)]


def quantity(value, code):
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def observation(id_, code, day, patient="ann", status="final", **value):
    return {
        "resourceType": "Observation", "id": id_, "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": f"2025-02-{day:02d}T08:00:00Z",
        **value,
    }


def heart_rate(id_, value, day, **fields):
    return observation(id_, HEART_RATE, day, valueQuantity=quantity(value, "/min"), **fields)


def blood_pressure(id_, systolic, diastolic, day):
    return observation(id_, PANEL, day, component=[
        {"code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]}, "valueQuantity": quantity(systolic, "mm[Hg]")},
        {"code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]}, "valueQuantity": quantity(diastolic, "mm[Hg]")},
    ])


OBSERVATIONS = [
    *(heart_rate(f"hr-{day}", value, day) for day, value in enumerate(HEART_RATES, 1)),
    *(blood_pressure(f"bp-{day}", systolic, diastolic, day) for day, (systolic, diastolic) in enumerate(BLOOD_PRESSURES, 1)),
    heart_rate("hr-wrong", 500, 6, status="entered-in-error"),
    heart_rate("hr-bob", 200, 3, patient="bob"),
    observation("hr-missing", HEART_RATE, 7, dataAbsentReason={"text": "Patient refused"}),
]


@pytest.fixture
def observations(client):
    for patient in ("ann", "bob"):
        assert client.put(f"/fhir/Patient/{patient}", json={"resourceType": "Patient", "id": patient}, content_type=FHIR_JSON).status_code == 201
    for resource in OBSERVATIONS:
        response = client.put(f"/fhir/Observation/{resource['id']}", json=resource, content_type=FHIR_JSON)
        assert response.status_code == 201, response.get_json()


def stats(client, query: str) -> dict:
    response = client.get(f"/fhir/Observation/$stats?{query}")
    assert response.status_code == 200, response.get_json()
    parameters = response.get_json()
    assert parameters["resourceType"] == "Parameters"
    return parameters


def statistics_of(parameters: dict) -> dict[str, dict[str, object]]:
    """Measured code -> statistic code -> its value (a number, or None when absent)."""
    return {
        entry["resource"]["code"]["coding"][0]["code"]: {
            component["code"]["coding"][0]["code"]: component_value(component) for component in entry["resource"]["component"]
        }
        for entry in parameters["parameter"] if entry["name"] == "statistics"
    }


def component_value(component: dict):
    if "valueInteger" in component:
        return component["valueInteger"]
    return component["valueQuantity"]["value"] if "valueQuantity" in component else None


def test_stats_counts_and_bounds_are_right_on_known_values(client, observations):
    result = statistics_of(stats(client, f"subject=Patient/ann&code={HEART_RATE}&system={LOINC}&statistic=count,minimum,maximum,average,median,sum"))
    assert result == {HEART_RATE: {"count": 5, "minimum": 60, "maximum": 100, "average": 80, "median": 80, "sum": 400}}


def test_stats_spread_and_quantiles_are_the_sample_statistics(client, observations):
    query = f"subject=Patient/ann&coding={LOINC}|{HEART_RATE}&statistic=variance,std-dev,4-lower,4-upper,4-dev,20-percent,80-percent,5-2"
    result = statistics_of(stats(client, query))[HEART_RATE]
    assert result["variance"] == 250 and math.isclose(result["std-dev"], math.sqrt(250))
    assert (result["4-lower"], result["4-upper"], result["4-dev"]) == (70, 90, 10)
    assert (result["20-percent"], result["80-percent"], result["5-2"]) == (68, 92, 76)


def test_stats_skew_of_a_symmetric_sample_is_zero(client, observations):
    result = statistics_of(stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=skew,kurtosis"))[HEART_RATE]
    assert result["skew"] == 0
    assert math.isclose(result["kurtosis"], -1.2)


def test_stats_total_count_includes_observations_without_a_value_but_not_entered_in_error(client, observations):
    result = statistics_of(stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=count,total-count,maximum"))
    assert result[HEART_RATE] == {"count": 5, "total-count": 6, "maximum": 100}


def test_stats_of_a_blood_pressure_panel_are_per_component(client, observations):
    result = statistics_of(stats(client, f"subject=Patient/ann&code={PANEL}&system={LOINC}&statistic=count,average,minimum,maximum"))
    assert result == {
        SYSTOLIC: {"count": 3, "average": 130, "minimum": 120, "maximum": 140},
        DIASTOLIC: {"count": 3, "average": 85, "minimum": 80, "maximum": 90},
    }


def test_stats_of_a_component_code_are_found_inside_panels(client, observations):
    result = statistics_of(stats(client, f"subject=Patient/ann&code={DIASTOLIC}&system={LOINC}&statistic=average"))
    assert result == {DIASTOLIC: {"average": 85}}


def test_stats_values_carry_the_measurements_unit(client, observations):
    parameters = stats(client, f"subject=Patient/ann&code={SYSTOLIC}&statistic=average,count")
    average, count = parameters["parameter"][0]["resource"]["component"]
    assert average["valueQuantity"] == {"value": 130, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}
    assert average["code"]["coding"][0]["system"] == STATISTICS
    assert count["valueInteger"] == 3


def test_stats_result_is_a_valid_parameters_with_final_observations_for_the_subject(client, observations):
    parameters = stats(client, f"subject=Patient/ann&code={HEART_RATE},{PANEL}&system={LOINC}&statistic=average,std-dev&include=true")
    get_fhir_model_class("Parameters").model_validate(parameters)
    results = [entry["resource"] for entry in parameters["parameter"] if entry["name"] == "statistics"]
    assert [result["code"]["coding"][0]["code"] for result in results] == [HEART_RATE, SYSTOLIC, DIASTOLIC]
    assert all(result["status"] == "final" and result["subject"] == {"reference": "Patient/ann"} for result in results)


def test_stats_without_a_period_span_the_measurements_used(client, observations):
    parameters = stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=average")
    period = parameters["parameter"][0]["resource"]["effectivePeriod"]
    assert period == {"start": "2025-02-01T08:00:00.000+00:00", "end": "2025-02-05T08:00:00.000+00:00"}


def test_stats_with_include_returns_the_source_observations(client, observations):
    parameters = stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=count&include=true")
    sources = [entry["resource"]["id"] for entry in parameters["parameter"] if entry["name"] == "source"]
    assert sources == ["hr-1", "hr-2", "hr-3", "hr-4", "hr-5", "hr-missing"]
    limited = stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=count&include=true&limit=2")
    assert len([entry for entry in limited["parameter"] if entry["name"] == "source"]) == 2


def test_stats_over_a_period_use_only_the_observations_inside_it(client, observations):
    parameters = stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=count,average&period=2025-02-02/2025-02-03")
    assert statistics_of(parameters) == {HEART_RATE: {"count": 2, "average": 80}}
    assert parameters["parameter"][0]["resource"]["effectivePeriod"] == {"start": "2025-02-02", "end": "2025-02-03"}


def test_stats_over_a_recent_duration_find_nothing_old(client, observations):
    assert statistics_of(stats(client, f"subject=Patient/ann&code={HEART_RATE}&statistic=count,average&duration=1")) == {
        HEART_RATE: {"count": 0, "average": None}
    }


def test_stats_never_mix_in_another_subjects_values(client, observations):
    assert statistics_of(stats(client, f"subject=Patient/bob&code={HEART_RATE}&statistic=maximum")) == {HEART_RATE: {"maximum": 200}}


def test_stats_of_a_single_value_leave_the_spread_absent(client, observations):
    parameters = stats(client, f"subject=Patient/bob&code={HEART_RATE}&statistic=std-dev")
    component = parameters["parameter"][0]["resource"]["component"][0]
    assert component["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"


@pytest.mark.parametrize("query", [
    f"code={HEART_RATE}&statistic=average",
    "subject=Patient/ann&statistic=average",
    f"subject=Patient/ann&code={HEART_RATE}",
    f"subject=Patient/ann&code={HEART_RATE}&statistic=mode",
    f"subject=Patient/ann&code={HEART_RATE}&statistic=regression",
    f"subject=Patient/ann&code={HEART_RATE}&statistic=average&duration=1&period=2025/2026",
    f"subject=Patient/ann&code={HEART_RATE}&statistic=average&limit=0",
])
def test_stats_with_a_missing_or_wrong_parameter_is_400(client, observations, query):
    response = client.get(f"/fhir/Observation/$stats?{query}")
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_stats_with_a_system_inside_code_is_400_naming_system_and_coding(client, observations):
    response = client.get(f"/fhir/Observation/$stats?subject=Patient/ann&code={LOINC}|{HEART_RATE}&statistic=average")
    assert response.status_code == 400
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert f"system={LOINC}&code={HEART_RATE}" in diagnostics and f"coding={LOINC}|{HEART_RATE}" in diagnostics


def test_stats_with_coding_finds_the_code_in_its_system_only(client, observations):
    assert statistics_of(stats(client, f"subject=Patient/ann&coding={LOINC}|{HEART_RATE}&statistic=count")) == {HEART_RATE: {"count": 5}}
    assert statistics_of(stats(client, f"subject=Patient/ann&coding=http://snomed.info/sct|{HEART_RATE}&statistic=count")) == {
        HEART_RATE: {"count": 0}
    }


def test_stats_by_post_reads_coding_and_period_as_fhir_types(client, observations):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueUri": "Patient/ann"},
        {"name": "coding", "valueCoding": {"system": LOINC, "code": HEART_RATE}},
        {"name": "period", "valuePeriod": {"start": "2025-02-02", "end": "2025-02-03"}},
        {"name": "statistic", "valueCode": "count"},
        {"name": "statistic", "valueCode": "average"},
    ]}
    response = client.post("/fhir/Observation/$stats", json=body, content_type=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    assert statistics_of(response.get_json()) == {HEART_RATE: {"count": 2, "average": 80}}


def test_stats_by_post_answers_as_the_same_get(client, observations):
    query = f"subject=Patient/ann&code={PANEL}&system={LOINC}&statistic=count,maximum"
    form = client.post("/fhir/Observation/$stats", data=query, content_type="application/x-www-form-urlencoded")
    assert form.status_code == 200, form.get_json()
    assert statistics_of(form.get_json()) == statistics_of(stats(client, query))
