"""Search as fhirpy, a real FHIR client library, sees it over HTTP: chains, _has, includes, sorting, paging and counts.

Every test runs against the app served by werkzeug on SQLite and on PostgreSQL
(the `live_server` fixture), after writing a small data set with fhirpy itself.
"""
from itertools import islice

import pytest
from fhirpy import SyncFHIRClient

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
HEART_RATE = {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]}
GLUCOSE = {"coding": [{"system": LOINC, "code": "2339-0", "display": "Glucose"}]}
SUBJECTS = ("p-muller", "p-mueller", "p-smith")  # the heart rates' subjects, in turn


def heart_rate(number: int) -> dict:
    """obs-01 .. obs-11: one a day from 1 January 2020, 63, 66, ... /min, subjects taking turns."""
    body = {
        "id": f"obs-{number:02d}", "status": "final", "code": HEART_RATE,
        "subject": {"reference": f"Patient/{SUBJECTS[number % 3]}"},
        "effectiveDateTime": f"2020-01-{number:02d}T08:00:00Z",
        "valueQuantity": {"value": 60 + 3 * number, "unit": "/min", "system": UCUM, "code": "/min"},
    }
    if number in (3, 7):
        body["encounter"] = {"reference": "Encounter/e1"}
    return body


HEART_RATES = [heart_rate(number) for number in range(1, 12)]
DATA_SET = [
    ("Practitioner", {"id": "dr-house", "name": [{"family": "House", "given": ["Gregory"]}]}),
    ("Patient", {
        "id": "p-muller", "name": [{"family": "Müller", "given": ["Anna"]}], "gender": "female", "birthDate": "1980-05-12",
        "generalPractitioner": [{"reference": "Practitioner/dr-house"}],
    }),
    ("Patient", {"id": "p-mueller", "name": [{"family": "Mueller", "given": ["Bernd"]}], "gender": "male", "birthDate": "1980-05"}),
    ("Patient", {"id": "p-smith", "name": [{"family": "Smith", "given": ["Dana"]}], "gender": "female", "birthDate": "2019-12-31"}),
    ("Patient", {"id": "p-zweig", "name": [{"family": "Zweig", "given": ["Émile"]}]}),
    ("Encounter", {
        "id": "e1", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/p-muller"},
        "participant": [{"individual": {"reference": "Practitioner/dr-house"}}],
    }),
    *(("Observation", body) for body in HEART_RATES),
    ("Observation", {
        "id": "obs-glucose", "status": "final", "code": GLUCOSE, "subject": {"reference": "Patient/p-mueller"},
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
    }),
]


def ids_of(body_list) -> list[str]:
    return [body["id"] for body in body_list]


def subject_of(patient_id: str) -> set[str]:
    return {body["id"] for body in HEART_RATES if body["subject"]["reference"] == f"Patient/{patient_id}"}


MULLER_OBSERVATIONS = subject_of("p-muller")
ALL_OBSERVATIONS = set(ids_of(HEART_RATES)) | {"obs-glucose"}


@pytest.fixture
def fhir(live_server):
    client = SyncFHIRClient(live_server)
    for resource_type, body in DATA_SET:
        client.resource(resource_type, **body).save()
    return client


def ids(resources) -> list[str]:
    return [resource.id for resource in resources]


def fetch_all_bounded(searchset, at_most: int) -> list:
    """What fetch_all() returns (fhirpy follows next links until there are none), but failing, not looping for ever,
    if the server hands out next links past the end."""
    found = list(islice(iter(searchset), at_most + 1))
    assert len(found) <= at_most, "the server's next links kept returning resources"
    return found


def bundle_entries(bundle, mode: str) -> set[str]:
    return {f"{entry.resource.resourceType}/{entry.resource.id}" for entry in bundle.get("entry", []) if entry.search.mode == mode}


def test_fhirpy_chained_search_finds_the_observations_of_the_patients_with_that_name(fhir):
    found = fhir.resources("Observation").search(subject__Patient__name="Müller").fetch_all()
    assert set(ids(found)) == MULLER_OBSERVATIONS
    assert set(ids(fhir.resources("Observation").search(subject__Patient__name="MULLER").fetch_all())) == MULLER_OBSERVATIONS


def test_fhirpy_chain_through_two_references_reaches_the_encounters_patient(fhir):
    found = fhir.resources("Observation").search(encounter__subject__Patient__name="muller").fetch_all()
    assert sorted(ids(found)) == ["obs-03", "obs-07"]


def test_fhirpy_chain_with_a_prefix_searches_the_referenced_patients_birth_date(fhir):
    found = fhir.resources("Observation").search(subject__Patient__birthdate__ge="2019").fetch_all()
    assert set(ids(found)) == subject_of("p-smith")


def test_fhirpy_reverse_chain_finds_the_patients_that_observations_point_at(fhir):
    found = fhir.resources("Patient").has("Observation", "patient", code=f"{LOINC}|2339-0").fetch_all()
    assert ids(found) == ["p-mueller"]


def test_fhirpy_modifiers_and_prefixes_reach_the_server_as_written(fhir):
    patients = fhir.resources("Patient")
    assert sorted(ids(patients.search(name__contains="ÜLL").fetch_all())) == ["p-muller"]
    assert sorted(ids(patients.search(name__exact="Mueller").fetch_all())) == ["p-mueller"]
    assert sorted(ids(patients.search(gender__not="male").fetch_all())) == ["p-muller", "p-smith", "p-zweig"]
    assert sorted(ids(patients.search(birthdate__missing=True).fetch_all())) == ["p-zweig"]
    assert sorted(ids(patients.search(birthdate__gt="1980-05-12").fetch_all())) == ["p-mueller", "p-smith"]
    observations = fhir.resources("Observation")
    assert sorted(ids(observations.search(value_quantity__gt="88").fetch_all())) == ["obs-10", "obs-11"]


def test_fhirpy_include_returns_the_matches_and_their_patients_marked_include(fhir):
    bundle = fhir.resources("Observation").search(code=f"{LOINC}|2339-0").include("Observation", "subject").fetch_raw()
    assert bundle_entries(bundle, "match") == {"Observation/obs-glucose"}
    assert bundle_entries(bundle, "include") == {"Patient/p-mueller"}


def test_fhirpy_fetch_leaves_the_included_resources_out_of_the_matches(fhir):
    found = fhir.resources("Observation").search(encounter="e1").include("Observation", "encounter").fetch()
    assert sorted(ids(found)) == ["obs-03", "obs-07"]


def test_fhirpy_revinclude_with_iterate_brings_the_encounters_and_their_observations(fhir):
    bundle = (
        fhir.resources("Practitioner").search(_id="dr-house")
        .revinclude("Encounter", "participant")
        .revinclude("Observation", "encounter", iterate=True)
        .fetch_raw()
    )
    assert bundle_entries(bundle, "match") == {"Practitioner/dr-house"}
    assert bundle_entries(bundle, "include") == {"Encounter/e1", "Observation/obs-03", "Observation/obs-07"}


def test_fhirpy_fetch_all_pages_through_every_observation_exactly_once(fhir):
    found = ids(fhir.resources("Observation").sort("_id").limit(4).fetch_all())
    assert found == sorted(ALL_OBSERVATIONS)
    found = ids(fetch_all_bounded(fhir.resources("Observation").limit(4), 3 * len(ALL_OBSERVATIONS)))
    assert sorted(found) == sorted(ALL_OBSERVATIONS)


def test_fhirpy_fetch_all_pages_by_last_updated_through_every_observation_exactly_once(fhir):
    found = ids(fetch_all_bounded(fhir.resources("Observation").sort("-_lastUpdated").limit(4), 3 * len(ALL_OBSERVATIONS)))
    assert sorted(found) == sorted(ALL_OBSERVATIONS)


@pytest.mark.parametrize("sort, expected", [
    ("date", ids_of(HEART_RATES)),
    ("-date", ids_of(reversed(HEART_RATES))),
    ("value-quantity", ids_of(HEART_RATES)),
    ("-value-quantity", ids_of(reversed(HEART_RATES))),
])
def test_fhirpy_fetch_all_pages_in_the_sort_order_asked_for(fhir, sort, expected):
    found = ids(fetch_all_bounded(fhir.resources("Observation").search(code="8867-4").sort(sort).limit(4), 3 * len(expected)))
    assert found == expected


def test_fhirpy_sort_on_two_keys_orders_by_the_first_then_the_second(fhir):
    found = ids(fhir.resources("Patient").search(gender="male,female").sort("gender", "-birthdate").fetch())
    assert found == ["p-smith", "p-muller", "p-mueller"]


def test_fhirpy_first_returns_the_earliest_in_the_sort_order(fhir):
    latest = fhir.resources("Observation").search(subject="Patient/p-muller").sort("-date").first()
    assert latest.id == max(MULLER_OBSERVATIONS)


def test_fhirpy_get_returns_the_single_match(fhir):
    assert fhir.resources("Patient").search(family="zweig").get().id == "p-zweig"


def test_fhirpy_count_reports_how_many_match_without_fetching_them(live_server, fhir):
    # fhirpy sends _count=0 (R4: same as _summary=count) plus its own _totalMethod, which a strict server rejects
    lenient = SyncFHIRClient(live_server, extra_headers={"Prefer": "handling=lenient"})
    assert lenient.resources("Observation").search(subject="Patient/p-muller").count() == len(MULLER_OBSERVATIONS)
    assert lenient.resources("Observation").count() == len(ALL_OBSERVATIONS)


def test_fhirpy_sees_total_accurate_as_the_bundle_total(fhir):
    bundle = fhir.resources("Observation").search(code="8867-4", _total="accurate").limit(2).fetch_raw()
    assert (bundle.total, len(bundle.entry)) == (len(HEART_RATES), 2)


def test_fhirpy_search_after_an_update_finds_the_new_values_only(fhir):
    patient = fhir.resources("Patient").search(_id="p-zweig").get()
    patient.name = [{"family": "Zwieback", "given": ["Émile"]}]
    patient.save()
    assert ids(fhir.resources("Patient").search(family="zwieb").fetch_all()) == ["p-zweig"]
    assert ids(fhir.resources("Patient").search(family__exact="Zweig").fetch_all()) == []
