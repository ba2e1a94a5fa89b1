"""Searches by protected values, with protection on: what the blind index can answer finds exactly the right people
among several alike; what it cannot (a substring, one letter, a date range, an order) is refused with a 400 that says
why; conditional writes find the patient they name."""
import pytest
from sqlalchemy import func, select

from app.search.index import hash64
from app.store.schema import resource, search_token
from tests.protection.conftest import FHIR_JSON, put, raw_database_text, search_ids

MRN = "urn:mrn"


def patient(resource_id: str, family: str | None = None, given: str | None = None, birth: str | None = None,
            identifiers: tuple = (), telecom: tuple = (), postal: str | None = None, city: str | None = None, gender: str = "unknown") -> dict:
    body = {"resourceType": "Patient", "id": resource_id, "gender": gender}
    if family or given:
        body["name"] = [{key: value for key, value in (("family", family), ("given", [given] if given else None)) if value}]
    if birth:
        body["birthDate"] = birth
    if identifiers:
        body["identifier"] = [{"system": system, "value": value} for system, value in identifiers]
    if telecom:
        body["telecom"] = [{"system": system, "value": value} for system, value in telecom]
    if postal or city:
        body["address"] = [{key: value for key, value in (("postalCode", postal), ("city", city)) if value}]
    return body


PATIENTS = (
    patient("p1", "Zyxwvutson", "Quentinius", "1931-07-19", ((MRN, "MRN-1001"),), (("phone", "555-0101"), ("email", "one@example.org")),
            "QX9 1ZZ", "Vexford", gender="male"),
    patient("p2", "Zyxwvutsonne", "Albérik", "1931-07-20", ((MRN, "MRN-1002"), ("urn:other", "MRN-1001")),
            (("phone", "555-0102"), ("email", "two@example.org")), "QX9 2ZZ", "Vexham", gender="female"),
    patient("p3", "Müller", "Zyxwvutson", "1931-12-01", ((MRN, "MRN-1003"),), (("phone", "555-0103"),), "AB1 2CD", "Oxbridge"),
    patient("p4", "Ölander", "Björn", "1945-07-19", ((MRN, "MRN-1004"),), (("email", "555-0101"),)),
    patient("p5"),
)


@pytest.fixture
def patients(client):
    for body in PATIENTS:
        put(client, body)


def wrong_answers(client, expected: dict[str, set[str]]) -> dict[str, set[str]]:
    """The searches (of Patient) that did not find exactly the patients expected, with what they found."""
    found = {query: search_ids(client, f"Patient?{query}") for query in expected}
    return {query: ids for query, ids in found.items() if ids != expected[query]}


def test_identifier_searches_by_system_and_value_or_value_alone_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "identifier=urn:mrn|MRN-1001": {"p1"},
        "identifier=MRN-1001": {"p1", "p2"},
        "identifier=urn:other|": {"p2"},
        "identifier=urn:mrn|MRN-1001,urn:mrn|MRN-1004": {"p1", "p4"},
        "identifier=urn:mrn|MRN-9999": set(),
        "identifier=mrn-1001": set(),
        "identifier:not=urn:mrn|MRN-1001": {"p2", "p3", "p4", "p5"},
        "identifier:missing=true": {"p5"},
    }) == {}


def test_family_searches_by_prefix_and_exact_value_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "family=zy": {"p1", "p2"},
        "family=Zyxwvutson": {"p1", "p2"},
        "family=ZYXWVUTSONNE": {"p2"},
        "family=zyxwvutsonnex": set(),
        "family:exact=Zyxwvutson": {"p1"},
        "family:exact=zyxwvutson": set(),
        "family:exact=Zyxwvut": set(),
        "family=muller": {"p3"},
        "family=Mül": {"p3"},
        "family=oland": {"p4"},
        "family=muller,oland": {"p3", "p4"},
        "family:missing=true": {"p5"},
    }) == {}


def test_given_and_name_searches_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "given=quent": {"p1"},
        "given=alberik": {"p2"},
        "given:exact=Albérik": {"p2"},
        "given=zyx": {"p3"},
        "name=zyx": {"p1", "p2", "p3"},
        "name=bjorn": {"p4"},
        "name=zyx&gender=male": {"p1"},
        "family=zyxwvutson&given=alb": {"p2"},
    }) == {}


def test_name_and_address_searches_find_every_part_while_their_rows_hold_only_what_the_parts_parameters_do_not(patients, client, engine):
    """`name` looks up the blind rows of `family` and `given` too, `address` the whole values of `address-city`,
    `-state`, `-postalcode` and `-country` (ProtectedPaths.shared_parts): their own rows hold the other parts (a
    name's text, prefix and suffix; an address's lines, text and district), and a search by any part still finds
    the patient, `address` still by whole parts alone."""
    put(client, {"resourceType": "Patient", "id": "p8",
                 "name": [{"text": "Quirinus Vandermeer III", "prefix": ["Dr."], "suffix": ["III"], "family": "Vandermeer", "given": ["Quirinus"]}],
                 "address": [{"line": ["12 Quayside Lane"], "district": "Quarry Bank", "city": "Quedgeley", "state": "GL", "postalCode": "GL2 4QQ",
                              "country": "UK"}]})
    assert wrong_answers(client, {
        "name=quirinus v": {"p8"},
        "name=dr": {"p8"},
        "name=iii": {"p8"},
        "name=vanderm": {"p8"},
        "name:exact=Quirinus": {"p8"},
        "name:exact=Dr.": {"p8"},
        "name:exact=quirinus": set(),
        "name:missing=true": {"p5"},
        "phonetic=vandermeer": {"p8"},
        "family=quirinus": set(),
        "family=dr": set(),
        "given=vander": set(),
        "address=12 quayside lane": {"p8"},
        "address=quarry bank": {"p8"},
        "address=quedgeley": {"p8"},
        "address=gl": {"p8"},
        "address=gl2 4qq": {"p8"},
        "address=uk": {"p8"},
        "address=queds": set(),
        "address=gl2": set(),
        "address:exact=GL2 4QQ": {"p8"},
        "address:exact=Quedgeley": {"p8"},
        "address:missing=true": {"p4", "p5"},
        "address-city=quarry bank": set(),
        "address-city=qued": {"p8"},
    }) == {}
    rows = select(func.count()).select_from(search_token.join(resource, search_token.c.res_pk == resource.c.pk)).where(resource.c.res_type == "Patient")
    name_rows, address_rows = (rows.where(search_token.c.h_param == hash64("Patient", code)) for code in ("name", "address"))
    with engine.connect() as connection:
        assert connection.execute(name_rows.where(resource.c.res_id == "p1")).scalar() == 0  # a family and a given name only
        assert connection.execute(address_rows.where(resource.c.res_id == "p1")).scalar() == 0  # a postal code and a city only
        assert connection.execute(name_rows.where(resource.c.res_id == "p8")).scalar() > 0
        assert connection.execute(address_rows.where(resource.c.res_id == "p8")).scalar() > 0


def test_an_initial_is_found_by_an_exact_search(patients, client):
    put(client, patient("p7", "Initialson", "Q"))
    assert search_ids(client, "Patient?given:exact=Q") == {"p7"}
    assert client.get("/fhir/Patient?given=Q").status_code == 400


def test_birthdate_searches_at_year_month_and_day_precision_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "birthdate=1931": {"p1", "p2", "p3"},
        "birthdate=1931-07": {"p1", "p2"},
        "birthdate=1931-07-19": {"p1"},
        "birthdate=eq1931-07-20": {"p2"},
        "birthdate=1931-08": set(),
        "birthdate=1945": {"p4"},
        "birthdate=1945-07-19,1931-12-01": {"p3", "p4"},
        "birthdate:missing=true": {"p5"},
        "family=zyxwvutson&birthdate=1931-07-20": {"p2"},
    }) == {}


def test_phone_email_and_telecom_searches_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "phone=555-0102": {"p2"},
        "phone=555-0101": {"p1"},
        "email=two@example.org": {"p2"},
        "email=555-0101": {"p4"},
        "telecom=555-0101": {"p1", "p4"},
        "telecom=one@example.org": {"p1"},
        "telecom=555-010": set(),
    }) == {}


def test_address_searches_find_exactly_the_right_patients(patients, client):
    assert wrong_answers(client, {
        "address-postalcode=QX9": {"p1", "p2"},
        "address-postalcode=qx9 1zz": {"p1"},
        "address-postalcode:exact=QX9 2ZZ": {"p2"},
        "address-city=vex": {"p1", "p2"},
        "address-city=vexh": {"p2"},
        "address=oxbridge": {"p3"},
        "address=qx9 2zz": {"p2"},
        "address:exact=Vexford": {"p1"},
    }) == {}


def test_the_address_parameter_matches_whole_parts_of_an_address_and_not_their_start(patients, client):
    """Its blind rows hold each line and part whole (docs/security.md): the start of one finds nothing."""
    assert wrong_answers(client, {"address=oxbr": set(), "address=vex": set(), "address=QX9": set()}) == {}


def test_a_search_by_protected_values_pages_through_every_match(patients, client):
    found, url = [], "/fhir/Patient?name=zyx&_count=1"
    while url:
        bundle = client.get(url).get_json()
        found += [entry["resource"]["id"] for entry in bundle.get("entry", [])]
        url = next((link["url"].split("localhost", 1)[1] for link in bundle["link"] if link["relation"] == "next"), None)
    assert sorted(found) == ["p1", "p2", "p3"]
    assert client.get("/fhir/Patient?name=zyx&_summary=count").get_json()["total"] == 3


def test_a_chained_search_through_a_reference_finds_by_the_patients_protected_values(patients, client):
    observation = {"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "weight"}, "subject": {"reference": "Patient/p3"}}
    put(client, observation)
    assert search_ids(client, "Observation?subject:Patient.family=muller") == {"o3"}
    assert search_ids(client, "Observation?patient.identifier=urn:mrn|MRN-1003") == {"o3"}
    assert search_ids(client, "Observation?patient.birthdate=1931-07") == set()


def test_a_search_across_types_finds_protected_and_unprotected_names_alike(patients, client):
    put(client, {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Zyxwvutdoc"}], "telecom": [{"system": "phone", "value": "555-0101"}]})
    assert search_ids(client, "?_type=Patient,Practitioner&name=zyxwvut") == {"p1", "p2", "p3", "d1"}
    assert search_ids(client, "?_type=Patient,Practitioner&phone=555-0101") == {"p1", "d1"}


REFUSED = {  # the search, and the words of the reason it is refused for
    "family:contains=wvu": ":contains",
    "name:contains=zyx": ":contains",
    "family=z": "2 characters",
    "given=Q": "2 characters",
    "birthdate=gt2000": "prefix",
    "birthdate=le1931-07-19": "prefix",
    "birthdate=ne1931": "prefix",
    "birthdate=1931-07-19T10:00:00Z": "time",
    "_sort=family": "_sort",
    "_sort=-birthdate": "_sort",
    "identifier:text=MRN": ":text",
    "telecom:text=555": ":text",
}


def test_searches_the_blind_index_cannot_answer_are_refused_with_400_saying_why(patients, client):
    answers = {query: client.get(f"/fhir/Patient?{query}") for query in REFUSED}
    assert {query: response.status_code for query, response in answers.items()} == dict.fromkeys(REFUSED, 400)
    for query, response in answers.items():
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome"
        diagnostics = outcome["issue"][0]["diagnostics"]
        assert REFUSED[query] in diagnostics and "protected" in diagnostics, (query, diagnostics)


def test_an_identifier_of_a_type_is_found_by_type_and_value(patients, client):
    typed = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}
    put(client, {"resourceType": "Patient", "id": "p6", "identifier": [{"type": {"coding": [typed]}, "system": MRN, "value": "MRN-7777"}]})
    assert search_ids(client, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-7777") == {"p6"}
    assert search_ids(client, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-1001") == set()


def test_a_string_modifier_unknown_to_fhir_is_refused_with_400(patients, client):
    response = client.get("/fhir/Patient?family:text=zyx")
    assert response.status_code == 400
    assert ":text" in response.get_json()["issue"][0]["diagnostics"]


def test_conditional_create_by_identifier_finds_the_existing_patient_and_makes_no_duplicate(patients, client):
    body = patient("ignored", "Zyxwvutson", identifiers=((MRN, "MRN-1001"),))
    del body["id"]
    for criteria in ("identifier=urn:mrn|MRN-1001", "identifier=MRN-1003", "family:exact=Müller"):
        response = client.post("/fhir/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": criteria})
        assert response.status_code == 200, (criteria, response.get_json())
    assert search_ids(client, "Patient?identifier=urn:mrn|MRN-1001") == {"p1"}
    assert client.get("/fhir/Patient?_summary=count").get_json()["total"] == len(PATIENTS)


def test_conditional_create_by_a_new_identifier_creates_a_patient_found_by_it(patients, client):
    body = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "MRN-2000"}]}
    headers = {**FHIR_JSON, "If-None-Exist": "identifier=urn:mrn|MRN-2000"}
    created = client.post("/fhir/Patient", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    assert client.post("/fhir/Patient", json=body, headers=headers).status_code == 200
    assert search_ids(client, "Patient?identifier=MRN-2000") == {created.get_json()["id"]}


def test_conditional_create_matching_two_patients_is_refused(patients, client):
    body = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "MRN-1001"}]}
    response = client.post("/fhir/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": "identifier=MRN-1001"})
    assert response.status_code == 412


def test_conditional_update_by_identifier_updates_the_patient_it_names(patients, client):
    body = {**patient("p3", "Müller-Lüdenscheidt", identifiers=((MRN, "MRN-1003"),))}
    del body["id"]
    response = client.put("/fhir/Patient?identifier=urn:mrn|MRN-1003", json=body, headers=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["id"] == "p3"
    assert search_ids(client, "Patient?family=muller-lud") == {"p3"}


def test_a_transaction_resolves_a_conditional_reference_by_protected_identifier(patients, client):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                     "subject": {"reference": "Patient?identifier=urn:mrn|MRN-1004"}},
        "request": {"method": "POST", "url": "Observation"},
    }]}
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    observation_id = response.get_json()["entry"][0]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{observation_id}").get_json()["subject"] == {"reference": "Patient/p4"}


def test_audit_events_stay_searchable_by_patient_and_entity_while_their_query_is_protected(patients, client, database_url):
    event = {"resourceType": "AuditEvent", "id": "ae1", "recorded": "2026-01-01T00:00:00Z",
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
             "agent": [{"requestor": True, "who": {"display": "a clinician"}}], "source": {"observer": {"display": "ehr"}},
             "entity": [{"what": {"reference": "Patient/p1"}, "query": "UGF0aWVudD9mYW1pbHk9WnlYd3Z1dHNvbg=="}]}
    put(client, event)
    assert search_ids(client, "AuditEvent?patient=Patient/p1") == {"ae1"}
    assert search_ids(client, "AuditEvent?entity=Patient/p1") == {"ae1"}
    assert ("AuditEvent", "ae1") in {(entry["resource"]["resourceType"], entry["resource"]["id"])
                                     for entry in client.get("/fhir/Patient/p1/$everything").get_json()["entry"]}
    assert client.get("/fhir/AuditEvent/ae1").get_json()["entity"] == event["entity"]
    assert "UGF0aWVudD9mYW1pbHk9WnlYd3Z1dHNvbg" not in raw_database_text(database_url)
