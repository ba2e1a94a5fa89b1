"""Bulk loading (app/loader.py): what a file yields, which id each resource is stored under,
what is rejected and why, and that loading is idempotent; on SQLite and on PostgreSQL."""
import orjson
import pytest
from sqlalchemy import func, select

from app.loader import BATCH_SIZE, LoadReport, bundle_candidates, entry_id, load_candidates, read_candidates
from app.search.service import SearchRequest, count_matches
from app.store.db import read_unit
from app.store.resources import read_resource
from app.store.schema import resource_history


def patient(resource_id=None, family="Garcia", **fields) -> dict:
    body = {"resourceType": "Patient", "name": [{"family": family}], **fields}
    return {**body, "id": resource_id} if resource_id else body


def write_ndjson(path, lines) -> None:
    path.write_text("".join((line if isinstance(line, str) else orjson.dumps(line).decode()) + "\n" for line in lines))


def write_json(path, document) -> None:
    path.write_bytes(orjson.dumps(document))


def candidates_of(path) -> tuple[list, LoadReport]:
    report = LoadReport()
    return list(read_candidates(path, report)), report


def load_file(engine, path) -> LoadReport:
    report = LoadReport()
    load_candidates(engine, read_candidates(path, report), report)
    return report


def stored(engine, type_name, resource_id):
    with read_unit(engine) as connection:
        return read_resource(connection, type_name, resource_id)


def count_of(engine, type_name) -> int:
    with read_unit(engine) as connection:
        return count_matches(connection, SearchRequest(type_name))


def version_count(engine) -> int:
    with read_unit(engine) as connection:
        return connection.execute(select(func.count()).select_from(resource_history)).scalar()


def outcomes(report: LoadReport) -> dict:
    return {kind: report.outcomes[kind] for kind in ("created", "updated", "unchanged", "rejected")}


def synthea_bundle(patient_uuid="8f1a3c2e-1111-4c4c-9e9e-000000000001", observation_uuid="8f1a3c2e-2222-4c4c-9e9e-000000000002"):
    observation = {
        "resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"},
        "subject": {"reference": f"urn:uuid:{patient_uuid}"},
    }
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{patient_uuid}", "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": f"urn:uuid:{observation_uuid}", "resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


# read_candidates: what a file yields


def test_ndjson_yields_one_resource_per_line_named_by_file_and_line(tmp_path):
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient("a"), "", patient("b")])
    candidates, report = candidates_of(path)
    assert [(c.where, c.resource["id"]) for c in candidates] == [("patients.ndjson:1", "a"), ("patients.ndjson:3", "b")]
    assert report.rejected == []


def test_ndjson_line_that_is_not_json_is_rejected_naming_its_line(tmp_path):
    path = tmp_path / "broken.ndjson"
    write_ndjson(path, [patient("a"), '{"resourceType": "Patient", ', patient("b")])
    candidates, report = candidates_of(path)
    assert [c.resource["id"] for c in candidates] == ["a", "b"]
    assert [(where, reason.startswith("not valid JSON")) for where, reason in report.rejected] == [("broken.ndjson:2", True)]


def test_jsonl_files_are_read_as_ndjson(tmp_path):
    path = tmp_path / "patients.jsonl"
    write_ndjson(path, [patient("a"), patient("b")])
    assert [c.resource["id"] for c in candidates_of(path)[0]] == ["a", "b"]


def test_json_bundle_yields_each_entry_resource_named_by_entry(tmp_path):
    path = tmp_path / "bundle.json"
    write_json(path, {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient("a")}, {"resource": patient("b")}]})
    candidates, _ = candidates_of(path)
    assert [(c.where, c.resource["id"]) for c in candidates] == [("bundle.json#entry[0]", "a"), ("bundle.json#entry[1]", "b")]


def test_bundle_entries_without_a_resource_are_skipped(tmp_path):
    path = tmp_path / "bundle.json"
    entries = [{"request": {"method": "DELETE", "url": "Patient/gone"}}, {"resource": patient("a"), "request": {"method": "PUT", "url": "Patient/a"}}]
    write_json(path, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert [c.resource["id"] for c in candidates_of(path)[0]] == ["a"]


def test_json_file_with_one_resource_yields_that_resource(tmp_path):
    path = tmp_path / "patient.json"
    write_json(path, patient("solo"))
    candidates, _ = candidates_of(path)
    assert [(c.where, c.resource) for c in candidates] == [("patient.json", patient("solo"))]


def test_document_bundle_is_one_resource_not_a_list_of_entries(tmp_path):
    path = tmp_path / "document.json"
    document = {"resourceType": "Bundle", "id": "doc", "type": "document", "entry": [{"resource": patient("a")}]}
    write_json(path, document)
    assert [c.resource for c in candidates_of(path)[0]] == [document]


def test_json_file_that_is_not_json_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    candidates, report = candidates_of(path)
    assert candidates == []
    assert [where for where, _ in report.rejected] == ["broken.json"]
    assert report.rejected[0][1].startswith("not valid JSON")


# entry_id: which id a Bundle entry's resource is stored under


def test_entry_id_is_the_resources_own_id_first():
    entry = {"fullUrl": "urn:uuid:from-full-url", "resource": patient("own"), "request": {"method": "PUT", "url": "Patient/from-url"}}
    assert entry_id(entry) == "own"


def test_entry_id_comes_from_the_put_url_when_the_resource_has_none():
    entry = {"fullUrl": "urn:uuid:from-full-url", "resource": patient(), "request": {"method": "PUT", "url": "Patient/from-url"}}
    assert entry_id(entry) == "from-url"


def test_entry_id_ignores_a_conditional_url_and_uses_the_full_url():
    entry = {"fullUrl": "urn:uuid:from-full-url", "resource": patient(), "request": {"method": "POST", "url": "Patient?identifier=x|1"}}
    assert entry_id(entry) == "from-full-url"


@pytest.mark.parametrize(("full_url", "expected"), [
    ("urn:uuid:0f6e2c55-3c1d-4a8b-9a51-2c8b1f1b0a01", "0f6e2c55-3c1d-4a8b-9a51-2c8b1f1b0a01"),
    ("urn:oid:1.2.3.4", "1.2.3.4"),
    ("http://other.example.org/fhir/Patient/abc", "abc"),
    ("http://other.example.org/fhir/Patient/abc/", "abc"),
])
def test_entry_id_comes_from_the_full_url_of_a_post_entry(full_url, expected):
    assert entry_id({"fullUrl": full_url, "resource": patient(), "request": {"method": "POST", "url": "Patient"}}) == expected


def test_entry_without_any_id_source_has_no_id():
    assert entry_id({"resource": patient(), "request": {"method": "POST", "url": "Patient"}}) is None


# bundle_candidates: ids and references inside a Bundle


def test_urn_uuid_entries_get_their_uuid_as_id_and_references_to_them_are_rewritten():
    candidates = list(bundle_candidates("synthea.json", synthea_bundle("p-1", "o-1")))
    patient_body, observation = (c.resource for c in candidates)
    assert (patient_body["id"], observation["id"]) == ("p-1", "o-1")
    assert observation["subject"]["reference"] == "Patient/p-1"


def test_references_to_urns_outside_the_bundle_are_left_alone():
    bundle = synthea_bundle()
    bundle["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:somewhere-else"
    observation = list(bundle_candidates("b.json", bundle))[1].resource
    assert observation["subject"]["reference"] == "urn:uuid:somewhere-else"


def test_bundle_entries_without_full_url_each_keep_the_id_of_their_own_put_url():
    entries = [{"resource": patient(family=name), "request": {"method": "PUT", "url": f"Patient/{name}"}} for name in ("first", "second")]
    candidates = list(bundle_candidates("b.json", {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    assert [(c.resource["id"], c.resource["name"][0]["family"]) for c in candidates] == [("first", "first"), ("second", "second")]


def test_post_entry_without_full_url_does_not_borrow_another_entrys_id():
    entries = [
        {"resource": patient(family="new"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient(family="named"), "request": {"method": "PUT", "url": "Patient/named"}},
    ]
    candidates = list(bundle_candidates("b.json", {"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    assert "id" not in candidates[0].resource
    assert candidates[1].resource["id"] == "named"


# load_candidates: what ends up in the database


def test_loading_ndjson_creates_each_resource_under_its_id(engine, tmp_path):
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient("a", "Garcia"), patient("b", "Chen")])
    report = load_file(engine, path)
    assert outcomes(report) == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 0}
    assert stored(engine, "Patient", "b").body["name"] == [{"family": "Chen"}]
    assert stored(engine, "Patient", "a").version == 1


def test_loading_the_same_file_twice_reports_unchanged_and_writes_no_version(engine, tmp_path):
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient("a"), patient("b")])
    load_file(engine, path)
    versions = version_count(engine)
    assert outcomes(load_file(engine, path)) == {"created": 0, "updated": 0, "unchanged": 2, "rejected": 0}
    assert version_count(engine) == versions


def test_loading_changed_content_for_a_known_id_writes_version_2(engine, tmp_path):
    path = tmp_path / "patients.ndjson"
    write_ndjson(path, [patient("a", "Garcia")])
    load_file(engine, path)
    write_ndjson(path, [patient("a", "Garcia-Lopez")])
    assert outcomes(load_file(engine, path))["updated"] == 1
    current = stored(engine, "Patient", "a")
    assert (current.version, current.body["name"][0]["family"]) == (2, "Garcia-Lopez")


def test_a_resource_without_id_is_created_under_a_server_id(engine, tmp_path):
    path = tmp_path / "anonymous.ndjson"
    write_ndjson(path, [patient(family="Nobody")])
    assert outcomes(load_file(engine, path))["created"] == 1
    assert count_of(engine, "Patient") == 1


def test_invalid_resources_are_rejected_with_reasons_and_the_valid_ones_still_load(engine, tmp_path):
    path = tmp_path / "mixed.ndjson"
    write_ndjson(path, [
        patient("ok-1"),
        patient("bad-date", birthDate="yesterday"),
        {"resourceType": "Spaceship", "id": "x"},
        [1, 2, 3],
        patient("ok-2"),
    ])
    report = load_file(engine, path)
    assert outcomes(report) == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 3}
    reasons = dict(report.rejected)
    assert "Patient.birthDate" in reasons["mixed.ndjson:2"]
    assert "Spaceship" in reasons["mixed.ndjson:3"]
    assert "JSON object" in reasons["mixed.ndjson:4"]
    assert count_of(engine, "Patient") == 2


def test_an_id_longer_than_64_characters_is_rejected_and_the_rest_of_the_file_loads(engine, tmp_path):
    path = tmp_path / "long-id.ndjson"
    write_ndjson(path, [patient("ok-1"), patient("x" * 65), patient("ok-2")])
    report = load_file(engine, path)
    assert outcomes(report) == {"created": 2, "updated": 0, "unchanged": 0, "rejected": 1}
    assert [where for where, _ in report.rejected] == ["long-id.ndjson:2"]
    assert count_of(engine, "Patient") == 2


def test_the_same_id_twice_in_one_file_ends_at_the_later_content(engine, tmp_path):
    path = tmp_path / "twice.ndjson"
    write_ndjson(path, [patient("a", "Before"), patient("a", "After")])
    assert outcomes(load_file(engine, path)) == {"created": 1, "updated": 1, "unchanged": 0, "rejected": 0}
    assert stored(engine, "Patient", "a").body["name"][0]["family"] == "After"


def test_a_file_of_1200_resources_spanning_several_batches_loads_completely(engine, tmp_path):
    assert 1200 > 2 * BATCH_SIZE
    path = tmp_path / "many.ndjson"
    write_ndjson(path, [patient(f"p-{n:04d}", f"Family{n}") for n in range(1200)])
    report = load_file(engine, path)
    assert outcomes(report) == {"created": 1200, "updated": 0, "unchanged": 0, "rejected": 0}
    assert count_of(engine, "Patient") == 1200
    assert stored(engine, "Patient", "p-1199").body["name"][0]["family"] == "Family1199"


def test_a_rejection_in_a_later_batch_does_not_lose_the_other_resources(engine, tmp_path):
    path = tmp_path / "many.ndjson"
    lines = [patient(f"p-{n:04d}") for n in range(1200)]
    lines[BATCH_SIZE + 7] = patient("bad", birthDate="yesterday")
    write_ndjson(path, lines)
    report = load_file(engine, path)
    assert outcomes(report) == {"created": 1199, "updated": 0, "unchanged": 0, "rejected": 1}
    assert [where for where, _ in report.rejected] == [f"many.ndjson:{BATCH_SIZE + 8}"]
    assert count_of(engine, "Patient") == 1199


def test_a_synthea_bundle_loads_under_its_uuids_with_references_resolved(engine, tmp_path):
    path = tmp_path / "synthea.json"
    write_json(path, synthea_bundle("p-1", "o-1"))
    assert outcomes(load_file(engine, path))["created"] == 2
    assert stored(engine, "Observation", "o-1").body["subject"] == {"reference": "Patient/p-1"}
    assert stored(engine, "Patient", "p-1").version == 1


def test_loading_a_synthea_bundle_twice_changes_nothing(engine, tmp_path):
    path = tmp_path / "synthea.json"
    write_json(path, synthea_bundle())
    load_file(engine, path)
    versions = version_count(engine)
    assert outcomes(load_file(engine, path)) == {"created": 0, "updated": 0, "unchanged": 2, "rejected": 0}
    assert version_count(engine) == versions


def test_references_to_the_configured_base_are_loaded_as_relative_references(engine, tmp_path):
    """With EHR_BASE_URL set, `{base}/Patient/x` in a file is this server's Patient/x, as it is over REST."""
    base = "https://ehr.example/fhir"
    observation = {"resourceType": "Observation", "id": "ob1", "status": "final", "code": {"text": "pulse"},
                   "subject": {"reference": f"{base}/Patient/lp1"}, "performer": [{"reference": "https://other.example/fhir/Practitioner/1"}]}
    path = tmp_path / "refs.ndjson"
    write_ndjson(path, [patient("lp1"), observation])
    report = LoadReport()
    load_candidates(engine, read_candidates(path, report), report, base)
    body = stored(engine, "Observation", "ob1").body
    assert body["subject"]["reference"] == "Patient/lp1"
    assert body["performer"][0]["reference"] == "https://other.example/fhir/Practitioner/1"
