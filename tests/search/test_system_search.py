"""System-level search (R4 http.html#search: GET [base]?params, POST [base]/_search) and _total, on SQLite and PostgreSQL.

One small data set of four types; some resources carry the tag TAGGED, Patient and
Observation share the id `shared`, and a Patient and a Practitioner have no name.
"""
import json
import time
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from sqlalchemy import event

FHIR_JSON = "application/fhir+json"
BASE = "http://localhost/fhir"
TAGS = "http://example.org/tags"
TAGGED = f"{TAGS}|flagged"
LENIENT = {"Prefer": "handling=lenient"}


def tagged(body: dict) -> dict:
    return {**body, "meta": {"tag": [{"system": TAGS, "code": "flagged"}]}}


def patient(id_, family=None, **fields):
    return {"resourceType": "Patient", "id": id_, **({"name": [{"family": family}]} if family else {}), **fields}


def practitioner(id_, family=None):
    return {"resourceType": "Practitioner", "id": id_, **({"name": [{"family": family}]} if family else {})}


def observation(id_, subject):
    return {"resourceType": "Observation", "id": id_, "status": "final", "code": {"text": "note"}, "subject": {"reference": subject}}


def encounter(id_, subject):
    return {
        "resourceType": "Encounter", "id": id_, "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": {"reference": subject},
    }


DATA_SET = [
    tagged(practitioner("dr-smith", "Smith")), practitioner("dr-nameless"),
    tagged(patient("p1", "Smith", gender="female")), patient("p2", "Jones", gender="male"), patient("shared"),
    tagged(observation("o1", "Patient/p1")), observation("o2", "Patient/p2"), observation("shared", "Patient/p2"),
    encounter("e1", "Patient/p1"), tagged(encounter("e2", "Patient/p2")),
]
EVERYTHING = {f"{body['resourceType']}/{body['id']}" for body in DATA_SET}


def put(client, body: dict) -> dict:
    response = client.put(f"/fhir/{body['resourceType']}/{body['id']}", data=json.dumps(body), content_type=FHIR_JSON)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


@pytest.fixture
def api(client):
    for body in DATA_SET:
        put(client, body)
    return client


def get_bundle(client, url: str, headers=None) -> dict:
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def refs(bundle: dict, mode: str = "match") -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def found(client, query: str, headers=None) -> set[str]:
    matches = refs(get_bundle(client, f"/fhir?{query}", headers))
    assert len(matches) == len(set(matches)), f"{query} returned a resource twice"
    return set(matches)


def link(bundle: dict, relation: str) -> str | None:
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


def every_page(client, url: str) -> list[list[str]]:
    pages = []
    while url:
        bundle = get_bundle(client, url)
        pages.append(refs(bundle))
        url = link(bundle, "next")
        assert len(pages) <= 20, "the next links never end"
    return pages


def bad_request_diagnostics(client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["resourceType"] == "OperationOutcome"
    return json.dumps(response.get_json()["issue"])


def test_a_search_without_type_returns_resources_of_every_type_as_a_searchset(api):
    bundle = get_bundle(api, "/fhir")
    assert bundle["type"] == "searchset"
    assert set(refs(bundle)) == EVERYTHING
    assert {entry["fullUrl"] for entry in bundle["entry"]} == {f"{BASE}/{ref}" for ref in EVERYTHING}


def test_type_restricts_the_search_to_the_types_named(api):
    assert found(api, "_type=Patient,Encounter") == {"Patient/p1", "Patient/p2", "Patient/shared", "Encounter/e1", "Encounter/e2"}


def test_type_naming_one_type_allows_that_types_own_parameters(api):
    assert found(api, "_type=Patient&gender=female") == {"Patient/p1"}


@pytest.mark.parametrize("query, expected", [
    (f"_tag={TAGGED}", {"Practitioner/dr-smith", "Patient/p1", "Observation/o1", "Encounter/e2"}),
    (f"_tag={TAGGED}&_type=Observation,Encounter", {"Observation/o1", "Encounter/e2"}),
    (f"_tag:not={TAGGED}&_type=Observation,Encounter", {"Observation/o2", "Observation/shared", "Encounter/e1"}),
    ("_id=shared", {"Patient/shared", "Observation/shared"}),
    ("_id=shared,e1,dr-smith", {"Patient/shared", "Observation/shared", "Encounter/e1", "Practitioner/dr-smith"}),
    ("_id=shared&_type=Observation,Encounter", {"Observation/shared"}),
    ("_type=Observation,Encounter&patient=Patient/p1", {"Observation/o1", "Encounter/e1"}),
    ("_type=Observation,Encounter&subject:Patient.name=jones", {"Observation/o2", "Observation/shared", "Encounter/e2"}),
    ("_has:Observation:subject:_id=o1", {"Patient/p1"}),
    ("_type=Patient,Practitioner&name=smith", {"Patient/p1", "Practitioner/dr-smith"}),  # each type's own `name`
    ("_type=Patient,Practitioner&name:missing=true", {"Patient/shared", "Practitioner/dr-nameless"}),
])
def test_criteria_match_across_the_types_searched(api, query, expected):
    assert found(api, query) == expected


def test_last_updated_selects_the_resources_written_since_across_types(api):
    time.sleep(0.01)
    later = [put(api, body) for body in (patient("p-late"), observation("o-late", "Patient/p-late"))]
    since = quote(later[0]["meta"]["lastUpdated"])
    assert found(api, f"_lastUpdated=ge{since}") == {"Patient/p-late", "Observation/o-late"}
    assert found(api, f"_lastUpdated=lt{since}") == EVERYTHING


@pytest.mark.parametrize("query, expected", [
    ("_count=3", EVERYTHING),
    ("_count=3&_sort=_id", EVERYTHING),
    ("_count=4&_sort=-_lastUpdated", EVERYTHING),
    (f"_count=1&_tag={TAGGED}", {"Practitioner/dr-smith", "Patient/p1", "Observation/o1", "Encounter/e2"}),
])
def test_next_links_page_through_every_type_without_duplicates_or_gaps(api, query, expected):
    pages = every_page(api, f"/fhir?{query}")
    matches = [ref for page in pages for ref in page]
    assert len(pages) > 1
    assert sorted(matches) == sorted(expected)


def test_sort_by_id_orders_the_matches_of_all_types_together(api):
    ids = [ref.split("/")[1] for page in every_page(api, "/fhir?_count=4&_sort=_id") for ref in page]
    assert ids == sorted(ids)


def test_post_search_takes_form_parameters_and_links_back_to_a_get(api):
    response = api.post("/fhir/_search", data={"_type": "Patient,Observation", "_tag": TAGGED, "_count": "1"})
    assert response.status_code == 200, response.get_data(as_text=True)
    bundle = response.get_json()
    assert refs(bundle) in (["Patient/p1"], ["Observation/o1"])
    next_url = link(bundle, "next")
    assert urlsplit(next_url).path == "/fhir"
    assert set(refs(bundle) + refs(get_bundle(api, next_url))) == {"Patient/p1", "Observation/o1"}


def test_post_search_with_a_json_body_is_refused_with_415(api):
    assert api.post("/fhir/_search", data="{}", content_type="application/json").status_code == 415


def test_includes_follow_the_matches_of_each_type(api):
    bundle = get_bundle(api, "/fhir?_type=Observation,Encounter&patient=Patient/p1&_include=Observation:subject&_include=Encounter:subject")
    assert set(refs(bundle)) == {"Observation/o1", "Encounter/e1"}
    assert refs(bundle, "include") == ["Patient/p1"]


@pytest.mark.parametrize("url, named", [
    ("/fhir?birthdate=1980", "birthdate"),
    ("/fhir?_type=Patient,Observation&gender=female", "gender"),
    ("/fhir?_sort=birthdate", "birthdate"),
    ("/fhir?_type=Patient,Unicorn", "Unicorn"),
    ("/fhir?_type=Patient&_type=Observation", "_type"),
    ("/fhir?_include=Patient:general-practitioner&_type=Observation,Encounter", "Patient:general-practitioner"),
    ("/fhir?_total=maybe", "maybe"),
])
def test_a_parameter_the_types_searched_do_not_share_is_a_400_naming_it(api, url, named):
    assert named in bad_request_diagnostics(api, url)


def test_lenient_handling_ignores_unknown_parameters_and_leaves_them_out_of_the_links(api):
    bundle = get_bundle(api, "/fhir?_type=Patient,Practitioner&birthdate=1980&name=smith", LENIENT)
    assert set(refs(bundle)) == {"Patient/p1", "Practitioner/dr-smith"}
    assert "birthdate" not in dict(parse_qsl(urlsplit(link(bundle, "self")).query))


def test_capability_statement_declares_system_search_and_only_parameters_that_work(api):
    rest = get_bundle(api, "/fhir/metadata")["rest"][0]
    assert "search-system" in {interaction["code"] for interaction in rest["interaction"]}
    declared = {parameter["name"]: parameter["type"] for parameter in rest["searchParam"]}
    assert declared == {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_security": "token", "_profile": "uri", "_source": "uri"}
    examples = {"token": "x", "date": "ge2000", "uri": "http://example.org/x"}
    for name, kind in declared.items():
        assert api.get(f"/fhir?{name}={examples[kind]}").status_code == 200, name


def test_total_accurate_counts_the_matches_of_every_type_not_only_the_page(api):
    bundle = get_bundle(api, f"/fhir?_tag={TAGGED}&_count=2&_total=accurate")
    assert (bundle["total"], len(refs(bundle))) == (4, 2)


@pytest.mark.parametrize("query", ["", "&_total=none"])
def test_without_total_accurate_or_estimate_the_bundle_has_no_total(api, query):
    assert "total" not in get_bundle(api, f"/fhir?_count=2{query}")


@pytest.fixture
def statements(api):
    """The SQL statements the app runs from now on."""
    seen: list[str] = []
    engine = api.application.extensions["ehr.engine"]
    listener = lambda conn, cursor, statement, *rest: seen.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    yield seen
    event.remove(engine, "before_cursor_execute", listener)


@pytest.mark.parametrize("url", [f"/fhir?_tag={TAGGED}&_count=1&_total=estimate", "/fhir/Observation?_count=1&_total=estimate"])
def test_total_estimate_is_the_planner_estimate_on_postgresql_and_the_count_on_sqlite(api, statements, url):
    bundle = get_bundle(api, url)
    exact = len([ref for page in every_page(api, url.replace("_total=estimate", "_total=none")) for ref in page])
    if api.application.extensions["ehr.engine"].dialect.name == "postgresql":
        assert isinstance(bundle["total"], int) and bundle["total"] >= 0
        assert any(statement.startswith("EXPLAIN (FORMAT JSON)") for statement in statements)
        assert not any("count(*)" in statement for statement in statements)
    else:
        assert bundle["total"] == exact
        assert not any(statement.startswith("EXPLAIN") for statement in statements)


def test_total_estimate_is_exact_when_the_first_page_holds_every_match(api):
    assert get_bundle(api, f"/fhir?_tag={TAGGED}&_total=estimate")["total"] == 4
