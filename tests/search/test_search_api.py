"""FHIR R4 search over HTTP (R4 search.html), table-driven: for each query, the exact set of ids a client gets back.

One small data set, designed so that every row tells a right answer from a plausible
wrong one (accents, dates at year/month/day precision, a dateTime whose local day
differs from its UTC day, codes with and without a system, quantities on either side
of an implicit-precision boundary, references by relative and absolute URL). It is
written once per backend by PUT to stable ids, and every row runs on SQLite and on
PostgreSQL. The few tests that write clean up after themselves, so the rows can share it.
"""
import json
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from app.config import Settings
from app.store.db import make_engine
from app.web import create_app
from tests.conftest import BACKENDS, empty_tables

FHIR_JSON = "application/fhir+json"
BASE = "http://localhost/fhir"  # the Flask test client's host, so this server's own absolute URLs
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MRN = "http://hospital.example.org/mrn"
NATIONAL_ID = "http://national.example.org/id"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PROFILES = "http://example.org/fhir/StructureDefinition"
OTHER_SERVER_PATIENT = "http://other.example.org/fhir/Patient/ext-1"
OTHER_SERVER_PRACTITIONER = "http://other.example.org/fhir/Practitioner/dr-house"  # not our dr-house
LENIENT = {"Prefer": "handling=lenient"}


def patient(id_, family, given, **fields):
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family, "given": [given]}], **fields}


PATIENTS = [
    patient(
        "p-muller", "Müller", "Anna", active=True, gender="female", birthDate="1980-05-12",
        identifier=[{"type": {"text": "Medical record number"}, "system": MRN, "value": "MRN-1"}],
        telecom=[{"system": "phone", "value": "555-0101"}, {"system": "email", "value": "anna@example.org"}],
        address=[{"line": ["Flat 3, Main Street"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
        generalPractitioner=[{"reference": "Practitioner/dr-house"}],
        meta={"profile": [f"{PROFILES}/patient-base/v2"]},
    ),
    patient(
        "p-mueller", "Mueller", "Bernd", gender="male", birthDate="1980-05",
        identifier=[{"system": NATIONAL_ID, "value": "MRN-1"}],
        telecom=[{"system": "phone", "value": "555-0102"}], address=[{"city": "Bern"}],
        generalPractitioner=[{"reference": "Practitioner/dr-wilson"}],
        meta={"profile": [f"{PROFILES}/patient-base"]},
    ),
    patient(
        "p-miller", "Miller", "Carl", gender="male", birthDate="1980", identifier=[{"value": "MRN-1"}],
        meta={"profile": ["http://other.example.org/fhir/StructureDefinition/patient"]},
    ),
    patient("p-smith", "Smith", "Dana", active=False, gender="female", birthDate="2019-12-31"),
    patient(
        "p-lopez", "López", "Eva", gender="female", birthDate="1975-03-01",
        identifier=[{"system": MRN, "value": "MRN-5"}], address=[{"city": "Madrid"}],
    ),
    patient("p-zweig", "Zweig", "Émile"),  # no gender, birth date, identifier, telecom or address
]
PRACTITIONERS = [
    {"resourceType": "Practitioner", "id": "dr-house", "name": [{"family": "House", "given": ["Gregory"]}]},
    {"resourceType": "Practitioner", "id": "dr-wilson", "name": [{"family": "Wilson", "given": ["James"]}]},
]
LOCATIONS = [{"resourceType": "Location", "id": "loc-1", "name": "Müller Ward"}]


def encounter(id_, status, class_code, subject, period, practitioner=None, **fields):
    body = {
        "resourceType": "Encounter", "id": id_, "status": status, "class": {"system": ACT_CODE, "code": class_code},
        "subject": {"reference": subject}, "period": period, **fields,
    }
    if practitioner:
        body["participant"] = [{"individual": {"reference": practitioner}}]
    return body


ENCOUNTERS = [
    encounter(
        "e1", "finished", "AMB", "Patient/p-muller", {"start": "2020-01-01T08:00:00Z", "end": "2020-01-01T23:00:00Z"},
        "Practitioner/dr-house", length={"value": 30, "unit": "min", "system": UCUM, "code": "min"},
    ),
    encounter("e2", "in-progress", "IMP", "Patient/p-mueller", {"start": "2019-12-31"}, "Practitioner/dr-wilson"),
    encounter("e3", "finished", "AMB", "Patient/p-smith", {"start": "2021-03-01T09:00:00Z", "end": "2021-03-01T11:00:00Z"}),
]


def loinc(code, display):
    return {"coding": [{"system": LOINC, "code": code, "display": display}]}


def quantity(value, code, unit=None):
    return {"value": value, "unit": unit or code, "system": UCUM, "code": code}


def observation(id_, code, subject, status="final", **fields):
    return {"resourceType": "Observation", "id": id_, "status": status, "code": code, "subject": {"reference": subject}, **fields}


HEART_RATE = loinc("8867-4", "Heart rate")
BODY_WEIGHT = loinc("29463-7", "Body weight")
OBSERVATIONS = [
    observation(  # 2019-12-31 local time, but 2020-01-01T00:30:20Z
        "o-hr1", HEART_RATE, "Patient/p-muller", encounter={"reference": "Encounter/e1"},
        performer=[{"reference": "Practitioner/dr-house"}],
        effectiveDateTime="2019-12-31T23:30:20-01:00", valueQuantity=quantity(72, "/min", "beats/minute"),
    ),
    observation(
        "o-hr2", HEART_RATE, "Patient/p-mueller", encounter={"reference": "Encounter/e2"},
        effectiveDateTime="2019-12-31T22:30:00-01:00", valueQuantity=quantity(100, "/min"),
    ),
    observation("o-hr3", HEART_RATE, "Patient/p-miller", effectiveDateTime="2020-06-15", valueQuantity=quantity(100.2, "/min")),
    observation(
        "o-hr4", HEART_RATE, "Patient/p-smith", encounter={"reference": "Encounter/e3"},
        effectiveDateTime="2021-03-01T10:00:00Z", valueQuantity=quantity(100.6, "/min"),
    ),
    observation(  # a LOINC code sent without its system
        "o-glucose", {"coding": [{"code": "2339-0", "display": "Glucose"}]}, "Patient/p-muller",
        encounter={"reference": "Encounter/e1"}, effectivePeriod={"start": "2020-02-01", "end": "2020-02-03"},
        valueQuantity=quantity(5.4, "mmol/L"),
    ),
    observation(  # an open-ended period from March 2020
        "o-weight", BODY_WEIGHT, "Patient/p-lopez", effectivePeriod={"start": "2020-03"}, valueQuantity=quantity(1.5, "kg"),
    ),
    observation(  # its subject is this server's patient, by absolute URL
        "o-temp", loinc("8310-5", "Body temperature"), f"{BASE}/Patient/p-mueller",
        effectiveDateTime="2022-01-01T00:00:00Z", valueQuantity=quantity(100, "[degF]", "°F"),
    ),
    observation(  # no effective[x] and no value[x] quantity; its subject and performer live on another server
        "o-note", {"text": "Free text note"}, OTHER_SERVER_PATIENT, status="preliminary",
        performer=[{"reference": OTHER_SERVER_PRACTITIONER}], valueString="Patient reports Müdigkeit",
    ),
    observation(
        "o-loc", BODY_WEIGHT, "Location/loc-1", effectiveDateTime="2020-01-15T08:00:00+02:00", valueQuantity=quantity(1.46, "kg"),
    ),
]


def risk(id_, subject, probability=None):
    body = {"resourceType": "RiskAssessment", "id": id_, "status": "final", "subject": {"reference": subject}}
    if probability is not None:
        body["prediction"] = [{"probabilityDecimal": probability}]
    return body


RISKS = [
    risk("ra-1", "Patient/p-muller", 0.1), risk("ra-2", "Patient/p-mueller", 0.2), risk("ra-3", "Patient/p-miller", 99.6),
    risk("ra-4", "Patient/p-smith", 100), risk("ra-5", "Patient/p-lopez", 100.6), risk("ra-6", "Patient/p-zweig"),
]


def basic_created(number: int) -> str | None:
    """Four dates shared by many resources (ties), and every sixth resource without one."""
    return None if number % 6 == 0 else f"2020-01-{number % 4 + 1:02d}"


def basic(number: int) -> dict:
    body = {
        "resourceType": "Basic", "id": f"b{number:02d}",
        "code": {"coding": [{"system": "http://example.org/basic", "code": "even" if number % 2 == 0 else "odd"}]},
    }
    created = basic_created(number)
    return {**body, "created": created} if created else body


BASICS = [basic(number) for number in range(1, 26)]
DATA_SET = [*PRACTITIONERS, *LOCATIONS, *PATIENTS, *ENCOUNTERS, *OBSERVATIONS, *RISKS, *BASICS]


def put(client, body: dict) -> int:
    return client.put(f"/fhir/{body['resourceType']}/{body['id']}", data=json.dumps(body), content_type=FHIR_JSON).status_code


@pytest.fixture(scope="module", params=BACKENDS)
def api(request, database_urls):
    """A Flask test client on a database of each backend holding DATA_SET. No EHR_BASE_URL is configured: the server
    knows its own absolute URLs (BASE) from the requests, as the README promises."""
    engine = make_engine(database_urls[request.param])
    empty_tables(engine)
    engine.dispose()
    app = create_app(Settings(auth=False, database_url=database_urls[request.param]))
    client = app.test_client()
    for body in DATA_SET:
        assert put(client, body) == 201, body["id"]
    yield client
    app.extensions["ehr.engine"].dispose()


def encoded(query: str) -> str:
    """`name=value&...` as written in the tables, percent-encoded the way a client sends it."""
    pairs = (pair.partition("=") for pair in query.split("&") if pair)
    return "&".join(f"{quote(name, safe=':._-')}={quote(value, safe='')}" for name, _, value in pairs)


def search(client, type_and_query: str, headers=None) -> dict:
    type_name, _, query = type_and_query.partition("?")
    response = client.get(f"/fhir/{type_name}?{encoded(query)}", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def entries(bundle: dict, mode: str) -> list[dict]:
    return [entry for entry in bundle.get("entry", []) if entry["search"]["mode"] == mode]


def matched_ids(bundle: dict) -> list[str]:
    return [entry["resource"]["id"] for entry in entries(bundle, "match")]


def included_refs(bundle: dict) -> set[str]:
    return {f"{entry['resource']['resourceType']}/{entry['resource']['id']}" for entry in entries(bundle, "include")}


def link(bundle: dict, relation: str) -> str | None:
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


def every_page(client, first_url: str) -> list[list[str]]:
    """The matched ids of each page, following next links from the first page to the last."""
    pages, url = [], first_url
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_data(as_text=True)
        bundle = response.get_json()
        pages.append(matched_ids(bundle))
        url = link(bundle, "next")
        assert len(pages) <= 30, "the next links never end"
    return pages


def assert_matches(client, query: str, expected: set[str]) -> None:
    ids = matched_ids(search(client, query))
    assert sorted(ids) == sorted(expected), query
    assert len(ids) == len(set(ids)), f"{query} returned a resource twice"


def rows(table: dict[str, set[str]]):
    return [pytest.param(query, expected, id=query) for query, expected in table.items()]


ALL_PATIENTS = {body["id"] for body in PATIENTS}
ALL_OBSERVATIONS = {body["id"] for body in OBSERVATIONS}
HEART_RATES = {"o-hr1", "o-hr2", "o-hr3", "o-hr4"}
LOINC_CODED = HEART_RATES | {"o-weight", "o-temp", "o-loc"}

STRING_ROWS = {
    "Patient?name=muller": {"p-muller"},
    "Patient?name=Müller": {"p-muller"},
    "Patient?name=MÜL": {"p-muller"},
    "Patient?name=mu": {"p-muller", "p-mueller"},
    "Patient?name=ller": set(),  # the default match is at the start of a part, not anywhere
    "Patient?name=Anna": {"p-muller"},  # a given name is a part of the name too
    "Patient?family=lopez": {"p-lopez"},
    "Patient?given=emile": {"p-zweig"},
    "Patient?name=Smith,Lopez": {"p-smith", "p-lopez"},
    "Patient?name=mu&given=bernd": {"p-mueller"},
    "Patient?name:contains=ller": {"p-muller", "p-mueller", "p-miller"},
    "Patient?name:contains=ÜLL": {"p-muller"},
    "Patient?name:exact=Müller": {"p-muller"},
    "Patient?name:exact=Muller": set(),
    "Patient?name:exact=müller": set(),
    "Patient?name:exact=Mül": set(),
    "Patient?name:contains=%": set(),  # SQL wildcards are plain characters
    "Patient?name:contains=_": set(),
    "Patient?address-city=zurich": {"p-muller"},
    "Patient?address=8001": {"p-muller"},
    "Patient?address=Madr": {"p-lopez"},
    "Patient?address:contains=3\\, Main": {"p-muller"},  # \, is a literal comma, not OR
    "Patient?address:missing=true": {"p-miller", "p-smith", "p-zweig"},
    "Patient?address:missing=false": {"p-muller", "p-mueller", "p-lopez"},
    "Observation?value-string=patient reports mud": {"o-note"},
    "Location?name=muller": {"loc-1"},
}


@pytest.mark.parametrize("query, expected", rows(STRING_ROWS))
def test_string_search_is_a_case_and_accent_insensitive_prefix_match_unless_exact_or_contains(api, query, expected):
    assert_matches(api, query, expected)


TOKEN_ROWS = {
    "Patient?gender=female": {"p-muller", "p-smith", "p-lopez"},
    "Patient?gender=male,female": ALL_PATIENTS - {"p-zweig"},
    "Patient?gender:not=male": {"p-muller", "p-smith", "p-lopez", "p-zweig"},  # :not includes those without a gender
    "Patient?gender:not=male,female": {"p-zweig"},
    "Patient?gender:missing=true": {"p-zweig"},
    "Patient?gender:missing=false": ALL_PATIENTS - {"p-zweig"},
    "Patient?identifier=MRN-1": {"p-muller", "p-mueller", "p-miller"},
    f"Patient?identifier={MRN}|MRN-1": {"p-muller"},
    f"Patient?identifier={NATIONAL_ID}|MRN-1": {"p-mueller"},
    "Patient?identifier=|MRN-1": {"p-miller"},
    f"Patient?identifier={MRN}|": {"p-muller", "p-lopez"},
    f"Patient?identifier:not={MRN}|MRN-1": ALL_PATIENTS - {"p-muller"},
    "Patient?identifier:text=medical record": {"p-muller"},
    "Patient?active=true": {"p-muller"},
    "Patient?active=false": {"p-smith"},
    "Patient?active:missing=true": ALL_PATIENTS - {"p-muller", "p-smith"},
    "Patient?phone=555-0101": {"p-muller"},
    "Patient?phone=anna@example.org": set(),  # an email is not a phone
    "Patient?email=anna@example.org": {"p-muller"},
    "Patient?telecom=555-0102": {"p-mueller"},
    "Patient?_id=p-muller,p-smith": {"p-muller", "p-smith"},
    "Patient?_id=p-nobody": set(),
    "Observation?code=8867-4": HEART_RATES,
    f"Observation?code={LOINC}|8867-4": HEART_RATES,
    "Observation?code=http://snomed.info/sct|8867-4": set(),
    "Observation?code=|8867-4": set(),  # the heart rates' coding has a system
    "Observation?code=2339-0": {"o-glucose"},
    "Observation?code=|2339-0": {"o-glucose"},
    f"Observation?code={LOINC}|2339-0": set(),  # the glucose coding has no system
    f"Observation?code={LOINC}|": LOINC_CODED,
    "Observation?code=8867-4,2339-0": HEART_RATES | {"o-glucose"},
    "Observation?code:text=heart": HEART_RATES,  # Coding.display
    "Observation?code:text=free text": {"o-note"},  # CodeableConcept.text
    "Observation?code:text=heart,free": HEART_RATES | {"o-note"},
    "Observation?code:not=8867-4": ALL_OBSERVATIONS - HEART_RATES,
    "Observation?status=preliminary": {"o-note"},
    "Observation?status:not=final": {"o-note"},
    "Encounter?class=AMB": {"e1", "e3"},
    f"Encounter?class={ACT_CODE}|IMP": {"e2"},
}


@pytest.mark.parametrize("query, expected", rows(TOKEN_ROWS))
def test_token_search_matches_codes_with_or_without_their_system(api, query, expected):
    assert_matches(api, query, expected)


DATE_ROWS = {
    # Patient.birthDate at day (muller), month (mueller) and year (miller) precision
    "Patient?birthdate=1980": {"p-muller", "p-mueller", "p-miller"},
    "Patient?birthdate=1980-05": {"p-muller", "p-mueller"},
    "Patient?birthdate=1980-05-12": {"p-muller"},
    "Patient?birthdate=eq1980-05-12": {"p-muller"},
    "Patient?birthdate=ne1980-05-12": {"p-mueller", "p-miller", "p-smith", "p-lopez"},
    "Patient?birthdate=gt1980-05-12": {"p-mueller", "p-miller", "p-smith"},
    "Patient?birthdate=ge1980-05-12": {"p-muller", "p-mueller", "p-miller", "p-smith"},
    "Patient?birthdate=lt1980-05-12": {"p-mueller", "p-miller", "p-lopez"},
    "Patient?birthdate=le1980-05-12": {"p-muller", "p-mueller", "p-miller", "p-lopez"},
    "Patient?birthdate=sa1980-05-12": {"p-smith"},
    "Patient?birthdate=eb1980-05-12": {"p-lopez"},
    "Patient?birthdate=sa1980": {"p-smith"},
    "Patient?birthdate=1980-05-12T10:00:00Z": set(),  # the day is not inside that second
    "Patient?birthdate=gt1980-05-12T10:00:00Z": {"p-muller", "p-mueller", "p-miller", "p-smith"},
    "Patient?birthdate=lt1980-05-12T10:00:00Z": {"p-muller", "p-mueller", "p-miller", "p-lopez"},
    "Patient?birthdate=eb1980": {"p-lopez"},
    "Patient?birthdate=ap1980-05-12": {"p-muller", "p-mueller", "p-miller"},
    "Patient?birthdate=1980,1975": {"p-muller", "p-mueller", "p-miller", "p-lopez"},
    "Patient?birthdate=ge1980&birthdate=lt1981": {"p-muller", "p-mueller", "p-miller"},
    "Patient?birthdate:missing=true": {"p-zweig"},
    "Patient?birthdate:missing=false": ALL_PATIENTS - {"p-zweig"},
    # o-hr1 is 2019-12-31T23:30:20-01:00, that is 2020-01-01T00:30:20Z
    "Observation?date=ge2020-01-01": ALL_OBSERVATIONS - {"o-hr2", "o-note"},
    "Observation?date=lt2020-01-01": {"o-hr2"},
    "Observation?date=2019": {"o-hr2"},
    "Observation?date=2020": {"o-hr1", "o-hr3", "o-glucose", "o-loc"},
    "Observation?date=2020-01-01T00:30:20Z": {"o-hr1"},
    "Observation?date=2019-12-31T23:30:20-01:00": {"o-hr1"},
    "Observation?date=2020-01-01T00:30Z": {"o-hr1"},  # a minute-precision search covers the whole minute
    "Observation?date=2020-02": {"o-glucose"},
    "Observation?date=2020-02-02": set(),  # the 1-3 February period is not inside the 2nd
    "Observation?date=ge2020-02-02&date=le2020-02-02": {"o-glucose"},
    "Observation?date=gt2021": {"o-weight", "o-temp"},  # an open end goes on for ever
    "Observation?date=sa2020-02-03": {"o-weight", "o-hr3", "o-hr4", "o-temp"},
    "Observation?date=eb2020-02-01": {"o-hr1", "o-hr2", "o-loc"},
    "Observation?date=ne2020": {"o-hr2", "o-hr4", "o-weight", "o-temp"},
    "Observation?date:missing=true": {"o-note"},
    "Encounter?date=2020-01-01": {"e1"},
    "Encounter?date=ge2030-01-01": {"e2"},
    "Encounter?date=sa2019-12-31": {"e1", "e3"},
    "Encounter?date=eb2020-01-02": {"e1"},
    "Patient?_lastUpdated=gt2000-01-01": ALL_PATIENTS,
    "Patient?_lastUpdated=lt2000-01-01": set(),
}


@pytest.mark.parametrize("query, expected", rows(DATE_ROWS))
def test_date_search_compares_ranges_at_the_precision_given(api, query, expected):
    assert_matches(api, query, expected)


NUMBER_AND_QUANTITY_ROWS = {
    # RiskAssessment probabilities: 0.1, 0.2, 99.6, 100, 100.6 and one without a prediction
    "RiskAssessment?probability=100": {"ra-3", "ra-4"},  # 100 means [99.5, 100.5)
    "RiskAssessment?probability=100.0": {"ra-4"},  # 100.0 means [99.95, 100.05)
    "RiskAssessment?probability=0.1": {"ra-1"},
    "RiskAssessment?probability=gt100": {"ra-5"},  # prefixes compare exactly
    "RiskAssessment?probability=ge100": {"ra-4", "ra-5"},
    "RiskAssessment?probability=lt100": {"ra-1", "ra-2", "ra-3"},
    "RiskAssessment?probability=le0.2": {"ra-1", "ra-2"},
    "RiskAssessment?probability=ne100": {"ra-1", "ra-2", "ra-5"},
    "RiskAssessment?probability=sa100": {"ra-5"},
    "RiskAssessment?probability=eb0.2": {"ra-1"},
    "RiskAssessment?probability=ap100": {"ra-3", "ra-4", "ra-5"},
    "RiskAssessment?probability=0.1,0.2": {"ra-1", "ra-2"},
    "RiskAssessment?probability:missing=true": {"ra-6"},
    # Observation values: 72, 100, 100.2, 100.6 /min; 5.4 mmol/L; 1.5 and 1.46 kg; 100 [degF]
    "Observation?value-quantity=100": {"o-hr2", "o-hr3", "o-temp"},
    "Observation?value-quantity=100.0": {"o-hr2", "o-temp"},
    "Observation?value-quantity=100||/min": {"o-hr2", "o-hr3"},
    f"Observation?value-quantity=100|{UCUM}|[degF]": {"o-temp"},
    f"Observation?value-quantity=100|{LOINC}|[degF]": set(),
    "Observation?value-quantity=gt100": {"o-hr3", "o-hr4"},
    "Observation?value-quantity=ge100": {"o-hr2", "o-hr3", "o-hr4", "o-temp"},
    "Observation?value-quantity=lt5.4": {"o-weight", "o-loc"},
    f"Observation?value-quantity=le5.4|{UCUM}|mmol/L": {"o-glucose"},
    "Observation?value-quantity=ne100||/min": {"o-hr1", "o-hr4"},
    "Observation?value-quantity=ap100": {"o-hr2", "o-hr3", "o-hr4", "o-temp"},
    "Observation?value-quantity=1.5": {"o-weight", "o-loc"},
    "Observation?value-quantity=1.50": {"o-weight"},
    "Observation?value-quantity=5.4||mmol/L": {"o-glucose"},
    "Observation?value-quantity=ge100&value-quantity=lt100.5": {"o-hr2", "o-hr3", "o-temp"},
    "Observation?value-quantity:missing=true": {"o-note"},
    "Encounter?length=gt29||min": {"e1"},
}


@pytest.mark.parametrize("query, expected", rows(NUMBER_AND_QUANTITY_ROWS))
def test_number_and_quantity_search_use_implicit_precision_for_equality_and_exact_values_for_order(api, query, expected):
    assert_matches(api, query, expected)


REFERENCE_AND_URI_ROWS = {
    "Observation?subject=Patient/p-muller": {"o-hr1", "o-glucose"},
    "Observation?subject=p-muller": {"o-hr1", "o-glucose"},
    "Observation?subject:Patient=p-muller": {"o-hr1", "o-glucose"},
    "Observation?patient=p-muller": {"o-hr1", "o-glucose"},
    "Observation?subject:Location=p-muller": set(),
    "Observation?subject=Location/loc-1": {"o-loc"},
    "Observation?subject:Location=loc-1": {"o-loc"},
    "Observation?encounter=e1": {"o-hr1", "o-glucose"},
    "Observation?encounter=Encounter/e1,Encounter/e3": {"o-hr1", "o-glucose", "o-hr4"},
    "Observation?encounter:missing=true": {"o-hr3", "o-weight", "o-temp", "o-note", "o-loc"},
    f"Observation?subject={OTHER_SERVER_PATIENT}": {"o-note"},
    f"Observation?performer={OTHER_SERVER_PRACTITIONER}": {"o-note"},
    # a relative reference and this server's absolute URL for it are the same reference (R4 search.html#reference)
    "Observation?subject=Patient/p-mueller": {"o-hr2", "o-temp"},
    f"Observation?subject={BASE}/Patient/p-muller": {"o-hr1", "o-glucose"},
    f"Observation?subject={BASE}/Patient/p-mueller": {"o-hr2", "o-temp"},
    # ...but Practitioner/dr-house means the dr-house on this server, not the one on another server
    "Observation?performer=Practitioner/dr-house": {"o-hr1"},
    "Observation?performer=dr-house": {"o-hr1"},
    "Observation?subject=Patient/ext-1": set(),
    "Patient?general-practitioner=dr-house": {"p-muller"},
    f"Patient?_profile={PROFILES}/patient-base": {"p-mueller"},
    f"Patient?_profile:below={PROFILES}": {"p-muller", "p-mueller"},
    f"Patient?_profile:below={PROFILES}/patient-base": {"p-muller", "p-mueller"},
    f"Patient?_profile:above={PROFILES}/patient-base/v2/draft": {"p-muller", "p-mueller"},
    f"Patient?_profile:above={PROFILES}/patient-base": {"p-mueller"},
    "Patient?_profile:missing=true": {"p-smith", "p-lopez", "p-zweig"},
}


@pytest.mark.parametrize("query, expected", rows(REFERENCE_AND_URI_ROWS))
def test_reference_and_uri_search_match_the_referenced_resource_or_the_uri(api, query, expected):
    assert_matches(api, query, expected)


CHAIN_ROWS = {
    "Observation?subject:Patient.name=muller": {"o-hr1", "o-glucose"},
    "Observation?subject.name=muller": {"o-hr1", "o-glucose", "o-loc"},  # a Patient's name or a Location's
    "Observation?subject:Location.name=muller": {"o-loc"},
    "Observation?patient.birthdate=1980": {"o-hr1", "o-glucose", "o-hr2", "o-temp", "o-hr3"},
    f"Observation?subject:Patient.identifier={MRN}|MRN-1": {"o-hr1", "o-glucose"},
    "Observation?subject:Patient.name=muller&code=8867-4": {"o-hr1"},
    "Observation?subject:Patient.name=nobody": set(),
    "Observation?encounter.status=in-progress": {"o-hr2"},
    "Observation?encounter.subject:Patient.name=muller": {"o-hr1", "o-glucose"},
    "Observation?encounter.participant:Practitioner.name=wilson": {"o-hr2"},
    "Observation?subject:Patient.general-practitioner:Practitioner.name=house": {"o-hr1", "o-glucose"},
    "RiskAssessment?subject:Patient.gender=male": {"ra-2", "ra-3"},
    "RiskAssessment?subject:Patient.birthdate:missing=true": {"ra-6"},
    "Encounter?subject:Patient.birthdate=lt1980-05-12": {"e2"},
    "Patient?_has:Observation:patient:code=2339-0": {"p-muller"},
    "Patient?_has:Observation:subject:value-quantity=gt100": {"p-miller", "p-smith"},
    "Patient?_has:Observation:patient:code=8867-4,2339-0": {"p-muller", "p-mueller", "p-miller", "p-smith"},
    "Patient?_has:Observation:patient:code=8867-4&_has:Observation:patient:code=2339-0": {"p-muller"},
    "Patient?_has:Observation:patient:code=8310-5": {"p-mueller"},  # o-temp points here by absolute URL
    "Patient?_has:Encounter:patient:status=in-progress": {"p-mueller"},
    "Patient?_has:Observation:patient:code=nothing": set(),
    "Practitioner?_has:Encounter:participant:status=finished": {"dr-house"},
    "Practitioner?_has:Encounter:participant:_has:Observation:encounter:code=2339-0": {"dr-house"},
    "Practitioner?_has:Patient:general-practitioner:gender=male": {"dr-wilson"},
    "Practitioner?_has:Observation:performer:status=final": {"dr-house"},
    "Practitioner?_has:Observation:performer:status=preliminary": set(),  # o-note's performer is on another server
}


@pytest.mark.parametrize("query, expected", rows(CHAIN_ROWS))
def test_chains_and_reverse_chains_select_by_the_resources_at_the_other_end(api, query, expected):
    assert_matches(api, query, expected)


SORT_ROWS = {
    "Patient?_sort=birthdate": ["p-lopez", "p-miller", "p-mueller", "p-muller", "p-smith", "p-zweig"],
    "Patient?_sort=family": ["p-lopez", "p-miller", "p-mueller", "p-muller", "p-smith", "p-zweig"],
    "Patient?_sort=-family": ["p-zweig", "p-smith", "p-muller", "p-mueller", "p-miller", "p-lopez"],
    "Patient?_sort=_id": sorted(ALL_PATIENTS),
    "Patient?_sort=-_id": sorted(ALL_PATIENTS, reverse=True),
    # female by latest birth date first, then male likewise; no gender last
    "Patient?_sort=gender,-birthdate": ["p-smith", "p-muller", "p-lopez", "p-miller", "p-mueller", "p-zweig"],
    "Observation?code=8867-4&_sort=value-quantity": ["o-hr1", "o-hr2", "o-hr3", "o-hr4"],
    "Observation?code=8867-4&_sort=-value-quantity": ["o-hr4", "o-hr3", "o-hr2", "o-hr1"],
    "Observation?code=8867-4&_sort=date": ["o-hr2", "o-hr1", "o-hr3", "o-hr4"],
    "Observation?code=8867-4&_sort=-date": ["o-hr4", "o-hr3", "o-hr1", "o-hr2"],
    "RiskAssessment?_sort=probability": ["ra-1", "ra-2", "ra-3", "ra-4", "ra-5", "ra-6"],
    "Encounter?_sort=-date": ["e2", "e3", "e1"],  # e2 has no end, so it ends latest
}


@pytest.mark.parametrize("query, expected", [pytest.param(query, order, id=query) for query, order in SORT_ROWS.items()])
def test_sort_orders_the_matches_by_each_key_in_turn_with_missing_values_last(api, query, expected):
    assert matched_ids(search(api, query)) == expected


def test_descending_sort_puts_the_latest_birth_dates_first(api):
    order = [id_ for id_ in matched_ids(search(api, "Patient?_sort=-birthdate")) if id_ != "p-zweig"]
    assert order == ["p-smith", "p-miller", "p-mueller", "p-muller", "p-lopez"]


PAGED_SORTS = ["", "_id", "-_id", "created", "-created", "created,-_id", "-created,_id", "_lastUpdated", "-_lastUpdated"]


@pytest.mark.parametrize("sort", PAGED_SORTS)
def test_paging_25_resources_7_at_a_time_returns_each_exactly_once(api, sort):
    query = f"_count=7&_sort={sort}" if sort else "_count=7"
    pages = every_page(api, f"/fhir/Basic?{query}")
    ids = [id_ for page in pages for id_ in page]
    assert [len(page) for page in pages] == [7, 7, 7, 4]
    assert sorted(ids) == sorted(body["id"] for body in BASICS)


def expected_created_order(sort: str) -> list[str]:
    """The order `_sort=created,-_id` (and the like) defines, resources without `created` last."""
    first, second = sort.split(",")
    ids = [body["id"] for body in BASICS]
    ids.sort(key=lambda id_: id_, reverse=second.startswith("-"))
    dated = [id_ for id_ in ids if basic_created(int(id_[1:]))]
    dated.sort(key=lambda id_: basic_created(int(id_[1:])), reverse=first.startswith("-"))  # stable: ties keep the id order
    return dated + [id_ for id_ in ids if not basic_created(int(id_[1:]))]


@pytest.mark.parametrize("sort", ["created,-_id", "_id,created"])
def test_paging_in_a_total_sort_order_returns_the_resources_in_exactly_that_order(api, sort):
    pages = every_page(api, f"/fhir/Basic?_count=7&_sort={sort}")
    ids = [id_ for page in pages for id_ in page]
    expected = sorted(body["id"] for body in BASICS) if sort.startswith("_id") else expected_created_order(sort)
    assert ids == expected


def test_paging_descending_with_a_second_key_orders_the_dated_resources_exactly(api):
    ids = [id_ for page in every_page(api, "/fhir/Basic?_count=7&_sort=-created,_id") for id_ in page]
    dated = [id_ for id_ in ids if basic_created(int(id_[1:]))]
    assert dated == [id_ for id_ in expected_created_order("-created,_id") if basic_created(int(id_[1:]))]
    assert sorted(ids) == sorted(body["id"] for body in BASICS)


@pytest.mark.parametrize("sort", ["created", "-created"])
def test_paging_on_a_key_with_ties_keeps_the_order_across_pages(api, sort):
    ids = [id_ for page in every_page(api, f"/fhir/Basic?_count=7&_sort={sort}") for id_ in page]
    dated = [basic_created(int(id_[1:])) for id_ in ids if basic_created(int(id_[1:]))]
    assert dated == sorted(dated, reverse=sort.startswith("-"))
    assert sorted(ids) == sorted(body["id"] for body in BASICS)


def test_paging_ascending_puts_the_resources_without_the_sort_value_last(api):
    ids = [id_ for page in every_page(api, "/fhir/Basic?_count=7&_sort=created") for id_ in page]
    assert ids[-4:] and all(basic_created(int(id_[1:])) is None for id_ in ids[-4:])


@pytest.mark.parametrize("query", [
    "Observation?_sort=value-quantity&_count=2",
    "Observation?_sort=-value-quantity&_count=2",
    "Observation?_sort=date&_count=2",
    "RiskAssessment?_sort=-probability&_count=2",
    "Patient?_sort=-birthdate&_count=2",
    "Patient?_sort=family&_count=4",
])
def test_paging_on_numbers_quantities_dates_and_strings_with_missing_values_returns_every_match_once(api, query):
    type_name, _, params = query.partition("?")
    ids = [id_ for page in every_page(api, f"/fhir/{type_name}?{params}") for id_ in page]
    expected = {"Observation": ALL_OBSERVATIONS, "RiskAssessment": {body["id"] for body in RISKS}, "Patient": ALL_PATIENTS}
    assert sorted(ids) == sorted(expected[type_name])


def test_paging_with_criteria_pages_only_through_the_matches(api):
    pages = every_page(api, "/fhir/Basic?code=even&_count=5&_sort=_id")
    assert pages == [["b02", "b04", "b06", "b08", "b10"], ["b12", "b14", "b16", "b18", "b20"], ["b22", "b24"]]


def test_next_links_keep_the_criteria_and_the_count_and_the_last_page_has_none(api):
    first = search(api, "Basic?code=odd&_count=5&_sort=_id")
    params = dict(parse_qsl(urlsplit(link(first, "next")).query))
    assert (params["code"], params["_count"], params["_sort"]) == ("odd", "5", "_id")
    last = api.get("/fhir/Basic?code=odd&_count=20").get_json()
    assert link(last, "next") is None and len(matched_ids(last)) == 13


def test_total_accurate_counts_every_match_not_only_the_page(api):
    bundle = search(api, "Observation?code=8867-4&_count=2&_total=accurate")
    assert (bundle["total"], len(matched_ids(bundle))) == (4, 2)
    assert link(bundle, "next")


def test_summary_count_gives_the_total_and_no_entries(api):
    bundle = search(api, "Observation?code=8867-4&_summary=count")
    assert (bundle["total"], bundle.get("entry", [])) == (4, [])


def test_count_zero_is_treated_as_summary_count(api):
    bundle = search(api, "Observation?code=8867-4&_count=0")
    assert (bundle.get("total"), bundle.get("entry", []), link(bundle, "next")) == (4, [], None)


INCLUDE_ROWS = {
    "Observation?code=2339-0&_include=Observation:subject&_include=Observation:encounter": (
        {"o-glucose"}, {"Patient/p-muller", "Encounter/e1"}),
    "Observation?_id=o-hr1&_include=Observation:*": (
        {"o-hr1"}, {"Patient/p-muller", "Encounter/e1", "Practitioner/dr-house"}),
    "Observation?_id=o-hr1,o-loc&_include=Observation:subject:Patient": ({"o-hr1", "o-loc"}, {"Patient/p-muller"}),
    "Observation?_id=o-note&_include=Observation:subject": ({"o-note"}, set()),  # on another server: left out, no error
    "Observation?_id=o-note&_include=Observation:performer": ({"o-note"}, set()),  # another server's dr-house, not ours
    "Observation?_id=o-temp&_include=Observation:subject": ({"o-temp"}, {"Patient/p-mueller"}),  # by absolute URL
    "Patient?_id=p-muller&_include=Patient:general-practitioner": ({"p-muller"}, {"Practitioner/dr-house"}),
    "Patient?_id=p-muller&_revinclude=Observation:subject": ({"p-muller"}, {"Observation/o-hr1", "Observation/o-glucose"}),
    "Patient?_id=p-muller&_revinclude=Observation:patient&_revinclude=Encounter:subject&_revinclude=RiskAssessment:subject": (
        {"p-muller"}, {"Observation/o-hr1", "Observation/o-glucose", "Encounter/e1", "RiskAssessment/ra-1"}),
    "Patient?_id=p-mueller&_revinclude=Observation:subject": ({"p-mueller"}, {"Observation/o-hr2", "Observation/o-temp"}),
    "Observation?_id=o-hr2&_include=Observation:encounter&_include:iterate=Encounter:participant": (
        {"o-hr2"}, {"Encounter/e2", "Practitioner/dr-wilson"}),
    "Practitioner?_id=dr-house&_revinclude=Encounter:participant&_revinclude:iterate=Observation:encounter": (
        {"dr-house"}, {"Encounter/e1", "Observation/o-hr1", "Observation/o-glucose"}),
    "Observation?_id=o-hr1,o-glucose&_include=Observation:subject": ({"o-hr1", "o-glucose"}, {"Patient/p-muller"}),
    "Patient?_id=p-muller,p-mueller&_include=Patient:general-practitioner&_revinclude=Encounter:subject": (
        {"p-muller", "p-mueller"}, {"Practitioner/dr-house", "Practitioner/dr-wilson", "Encounter/e1", "Encounter/e2"}),
}


@pytest.mark.parametrize("query, expected", [pytest.param(query, pair, id=query) for query, pair in INCLUDE_ROWS.items()])
def test_include_and_revinclude_add_the_related_resources_marked_include(api, query, expected):
    matches, included = expected
    bundle = search(api, query)
    assert sorted(matched_ids(bundle)) == sorted(matches)
    assert included_refs(bundle) == included
    assert len(entries(bundle, "include")) == len(included), "an included resource appears twice"


def test_each_page_carries_the_includes_of_its_own_matches(api):
    pages = []
    url = "/fhir/Observation?code=8867-4&_sort=_id&_count=2&_include=Observation:subject"
    while url:
        bundle = api.get(url).get_json()
        pages.append((matched_ids(bundle), included_refs(bundle)))
        url = link(bundle, "next")
    assert pages == [
        (["o-hr1", "o-hr2"], {"Patient/p-muller", "Patient/p-mueller"}),
        (["o-hr3", "o-hr4"], {"Patient/p-miller", "Patient/p-smith"}),
    ]


def test_included_resources_do_not_count_towards_the_total(api):
    bundle = search(api, "Patient?_id=p-muller&_revinclude=Observation:subject&_total=accurate")
    assert bundle["total"] == 1


def test_match_entries_carry_the_full_url_of_the_resource(api):
    bundle = search(api, "Patient?_id=p-muller")
    assert bundle["entry"][0]["fullUrl"] == f"{BASE}/Patient/p-muller"
    assert bundle["type"] == "searchset"


@pytest.mark.parametrize("query, named", [
    ("Patient?shoe-size=42", "shoe-size"),
    ("Patient?name:fuzzy=mul", "fuzzy"),
    ("Observation?subject:Patient.shoe-size=42", "shoe-size"),
    ("Patient?_sort=shoe-size", "shoe-size"),
    ("Patient?birthdate=not-a-date", "not-a-date"),
    ("RiskAssessment?probability=many", "many"),
])
def test_an_unknown_parameter_modifier_or_malformed_value_is_a_400_naming_it(api, query, named):
    type_name, _, params = query.partition("?")
    response = api.get(f"/fhir/{type_name}?{encoded(params)}")
    assert response.status_code == 400
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert named in json.dumps(outcome["issue"])


def test_lenient_handling_ignores_unknown_parameters_and_leaves_them_out_of_the_self_link(api):
    bundle = search(api, "Patient?family=muller&shoe-size=42&_count=5", headers=LENIENT)
    assert matched_ids(bundle) == ["p-muller"]
    self_params = parse_qsl(urlsplit(link(bundle, "self")).query)
    assert ("family", "muller") in self_params and ("_count", "5") in self_params
    assert "shoe-size" not in dict(self_params)


def test_the_self_link_lists_the_parameters_used(api):
    bundle = search(api, "Observation?code=8867-4&value-quantity=gt100&_sort=-date")
    params = parse_qsl(urlsplit(link(bundle, "self")).query)
    assert {("code", "8867-4"), ("value-quantity", "gt100"), ("_sort", "-date")} <= set(params)


def test_post_search_with_form_parameters_finds_what_get_finds(api):
    response = api.post("/fhir/Observation/_search", data={"subject:Patient.name": "Müller", "code": "8867-4,2339-0"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert sorted(matched_ids(response.get_json())) == ["o-glucose", "o-hr1"]


def test_post_search_combines_url_and_form_parameters(api):
    response = api.post("/fhir/Patient/_search?gender=female", data={"birthdate": "ge1980"})
    assert sorted(matched_ids(response.get_json())) == ["p-muller", "p-smith"]


def test_post_search_with_a_json_body_is_refused_with_415(api):
    response = api.post("/fhir/Patient/_search", data=json.dumps({"name": "x"}), content_type="application/json")
    assert response.status_code == 415


def test_a_deleted_resource_is_no_longer_found(api):
    assert put(api, patient("p-gone", "Gone", "Ghost", birthDate="1990")) == 201
    try:
        assert matched_ids(search(api, "Patient?family=gone")) == ["p-gone"]
    finally:
        assert api.delete("/fhir/Patient/p-gone").status_code == 200
    assert matched_ids(search(api, "Patient?family=gone")) == []
    assert matched_ids(search(api, "Patient?birthdate=1990")) == []


def test_an_update_replaces_what_the_resource_is_found_by(api):
    body = patient("p-renamed", "Before", "Ida")
    try:
        assert put(api, body) == 201
        assert put(api, {**body, "name": [{"family": "After"}]}) == 200
        assert matched_ids(search(api, "Patient?family=after")) == ["p-renamed"]
        assert matched_ids(search(api, "Patient?family=before")) == []
    finally:
        api.delete("/fhir/Patient/p-renamed")
