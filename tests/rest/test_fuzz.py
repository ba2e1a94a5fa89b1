"""Fuzzing the FHIR REST API with hypothesis: whatever a client puts in an id, a version, a search parameter's value
or a date (any Unicode including NUL, lone surrogates and invalid UTF-8 sent as %-sequences, prefixes, dates at and
past the ends of the range, huge numbers), the answer is a FHIR response and never a 500, on both backends.

EHR_FUZZ_EXAMPLES sets how many examples each test tries (default 50); run with a few thousand once after
changing how requests are parsed, e.g. `EHR_FUZZ_EXAMPLES=3000 pytest tests/rest/test_fuzz.py`.
"""
import json
import os
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.web import create_app
from tests.conftest import BACKENDS

EXAMPLES = int(os.environ.get("EHR_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FHIR_JSON = "application/fhir+json"
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Żółkiewski", "given": ["Anna"]}], "birthDate": "1974-12-25"}
OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
    "effectiveDateTime": "2024-05-17T09:30:00Z", "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org", "code": "/min"},
}
KEPT_IDS = {"p1", "o1"}
PIECES = ["\x00", "%", "%00", "/", "?", "#", "&", "=", ",", "\\,", "|", "$", ":", ".", "..", "_history", "$everything", " ", "\t", "\n",
          "'", '"', ";", "--", "\\", "*", "_", "é", "ł", "ß", "王", "\U0001F600", "\ufeff", "\ud800", "\udfff", "1e400", "-0", "9" * 30]
PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"]
SEARCHES = {
    "Patient": ["name", "family", "given", "name:exact", "name:contains", "identifier", "gender:not", "birthdate", "_lastUpdated",
                "general-practitioner", "_id", "address:missing", "_has:Observation:patient:code", "_sort", "_count", "_include"],
    "Observation": ["code", "code:text", "date", "value-quantity", "subject", "patient", "subject:Patient.name", "combo-code",
                    "component-code-value-quantity", "_profile:below", "_source", "_cursor", "_revinclude", "_elements", "_summary", "_total"],
    "RiskAssessment": ["probability", "subject"],
    "Encounter": ["date", "length", "class"],
}


def url_encoded(text: str) -> str:
    """Percent-encoded as UTF-8, lone surrogates included (as the three bytes a lax encoder would send)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


pieces = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=6).map("".join)
fhir_ids = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
dates = st.builds(
    "{}{}{}{}{}".format,
    st.sampled_from(["0000", "0001", "1970", "2024", "9999", "10000", "19"]),
    st.sampled_from(["", "-01", "-12", "-13", "-02-30", "-12-31", "-01-01"]),
    st.sampled_from(["", "T00:00:00", "T23:59:59", "T24:00:00", "T09:30", "T23:59:59.9999999", "T00:00:00.0"]),
    st.sampled_from(["", "Z", "+14:00", "-12:00", "+00:00", "+99:99", "-14:59"]),
    st.sampled_from(["", "", "/", "/9999", "x"]),
)
numbers = st.one_of(
    st.sampled_from(["0", "-0", "1e400", "1e-400", "1e999999999", "1e-999999999", "NaN", "Infinity", "1.", ".5", "1" * 60, "0." + "0" * 40 + "1"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
)
prefixed = st.builds("{}{}".format, st.sampled_from(PREFIXES), st.one_of(dates, numbers))
values = st.one_of(
    st.text(),
    pieces,
    prefixed,
    st.builds("{}|{}|{}".format, numbers, st.sampled_from(["", "http://unitsofmeasure.org"]), st.sampled_from(["", "/min", "mg"])),
    st.builds("{}/{}".format, st.sampled_from(["Patient", "Observation", "patient", "http://x/fhir/Patient"]), st.one_of(fhir_ids, pieces)),
    st.builds("{}${}".format, pieces, prefixed),
)
ids = st.one_of(fhir_ids, st.text(min_size=1), pieces.filter(bool))
search_pairs = st.sampled_from(sorted(SEARCHES)).flatmap(
    lambda type_name: st.tuples(st.just(type_name), st.lists(st.tuples(st.one_of(st.sampled_from(SEARCHES[type_name]), pieces), values), min_size=1, max_size=3))
)


@pytest.fixture(scope="module", params=BACKENDS)
def shared_client(request, database_urls):
    """One app per backend for the module (hypothesis runs many examples in one test; function-scoped fixtures are not
    set up again between them), with a patient and an observation for the requests to find."""
    app = create_app(Settings(auth=False, database_url=database_urls[request.param]))
    client = app.test_client()
    for body in (PATIENT, OBSERVATION):
        client.put(f"/fhir/{body['resourceType']}/{body['id']}", data=json.dumps(body), content_type=FHIR_JSON)
    yield client
    app.extensions["ehr.engine"].dispose()


def assert_answered(response) -> None:
    """Not a 500, and a FHIR JSON body: a resource, a Bundle or an OperationOutcome. A 501 is an answer too: an id that
    starts with `$` names an operation, and one this server does not serve is Not Implemented."""
    assert response.status_code < 500 or response.status_code == 501, response.get_data(as_text=True)
    if response.status_code != 304:
        assert "resourceType" in response.get_json(), response.get_data(as_text=True)


@FUZZ
@given(resource_id=ids, version=st.one_of(st.text(), numbers, pieces), since=st.one_of(dates, pieces))
def test_reading_any_id_version_or_history_is_answered_never_a_500(shared_client, resource_id, version, since):
    path = f"/fhir/Patient/{url_encoded(resource_id)}"
    assert_answered(shared_client.get(path))
    assert_answered(shared_client.get(f"{path}/_history/{url_encoded(version)}"))
    assert_answered(shared_client.get(f"{path}/_history?_since={url_encoded(since)}"))
    assert_answered(shared_client.get(f"/fhir/Patient/p1/_history/{url_encoded(version)}"))
    assert_answered(shared_client.get(f"/fhir/_history?_since={url_encoded(since)}&_count={url_encoded(version)}"))
    assert_answered(shared_client.get(f"{path}/$everything?_since={url_encoded(since)}"))


@FUZZ
@given(resource_id=ids, raw=st.binary(min_size=1, max_size=20))
def test_writing_to_any_id_is_answered_never_a_500(shared_client, resource_id, raw):
    assume(resource_id not in KEPT_IDS)
    for path in (f"/fhir/Patient/{url_encoded(resource_id)}", f"/fhir/Patient/{quote(raw, safe='')}"):
        patch = json.dumps([{"op": "add", "path": "/active", "value": True}])
        assert_answered(shared_client.patch(path, data=patch, content_type="application/json-patch+json"))
        assert_answered(shared_client.delete(path))
        body = json.dumps({"resourceType": "Patient", "id": resource_id}, ensure_ascii=True)
        assert_answered(shared_client.put(path, data=body, content_type=FHIR_JSON))


@FUZZ
@given(search=search_pairs)
def test_any_search_is_answered_never_a_500(shared_client, search):
    type_name, pairs = search
    query = "&".join(f"{url_encoded(name)}={url_encoded(value)}" for name, value in pairs)
    assert_answered(shared_client.get(f"/fhir/{type_name}?{query}"))
    assert_answered(shared_client.get(f"/fhir/{type_name}?{query}", headers={"Prefer": "handling=lenient"}))
    assert_answered(shared_client.post(f"/fhir/{type_name}/_search", data=query, content_type="application/x-www-form-urlencoded"))


@FUZZ
@given(value=values, date=dates, number=numbers)
def test_operations_with_any_dates_and_numbers_are_answered_never_a_500(shared_client, value, date, number):
    stats = f"/fhir/Observation/$stats?subject=Patient/p1&code=8867-4&statistic=average&include=true&limit={url_encoded(number)}"
    assert_answered(shared_client.get(f"{stats}&period={url_encoded(date)}"))
    assert_answered(shared_client.get(f"{stats}&duration={url_encoded(number)}"))
    assert_answered(shared_client.get(f"/fhir/Observation/$lastn?patient=Patient/p1&max={url_encoded(number)}&code={url_encoded(value)}"))
    assert_answered(shared_client.get(f"/fhir?_type=Patient,Observation&_lastUpdated={url_encoded(date)}&_id={url_encoded(value)}"))


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.sampled_from(PIECES),
              st.sampled_from(["1", "[1]", "{}", '{"id": 1}', "null", "true", "male"])),  # JSON text: some validators parse strings
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.sampled_from(["url", "id", "value", "_value", "extension"]), children, max_size=3)),
    max_leaves=6,
)
element_names = st.one_of(st.sampled_from(sorted({*PATIENT, *OBSERVATION} - {"resourceType"})), st.text(max_size=8)).flatmap(
    lambda name: st.sampled_from([name, f"_{name}"])
)


@FUZZ
@given(body=st.sampled_from([PATIENT, OBSERVATION]), name=element_names, value=json_values)
@example(body=PATIENT, name="_birthDate", value="1")  # the models read the text as JSON, then call .get on the number
def test_any_value_of_any_element_or_its_extensions_is_answered_never_a_500(shared_client, body, name, value):
    """Elements and their primitive extensions (`_name`) set to any JSON: a 400, or stored, never a 500."""
    changed = {**body, name: value, "id": "fuzzed"}
    assert_answered(shared_client.post(f"/fhir/{body['resourceType']}", data=json.dumps(changed), content_type=FHIR_JSON))
    assert_answered(shared_client.put(f"/fhir/{body['resourceType']}/fuzzed", data=json.dumps(changed), content_type=FHIR_JSON))
