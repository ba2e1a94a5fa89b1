"""Version headers, conditional requests, Prefer: return, and the version life cycle of a resource."""
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

import pytest

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
PATIENT = {"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Aisha"]}], "gender": "female", "birthDate": "1984-03-02"}


def create_patient(client, body=PATIENT, **headers):
    response = client.post("/fhir/Patient", data=json.dumps(body), content_type=FHIR_JSON, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response


def put_patient(client, resource_id, body=PATIENT, **headers):
    return client.put(f"/fhir/Patient/{resource_id}", data=json.dumps({**body, "id": resource_id}), content_type=FHIR_JSON, headers=headers)


def patch_patient(client, resource_id, operations, **headers):
    return client.patch(f"/fhir/Patient/{resource_id}", data=json.dumps(operations), content_type=JSON_PATCH, headers=headers)


def new_patient_id(client) -> str:
    return create_patient(client).get_json()["id"]


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def last_updated(resource: dict) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))


def assert_outcome(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    document = response.get_json(force=True)
    assert document["resourceType"] == "OperationOutcome"
    assert code in [issue["code"] for issue in document["issue"]]
    return document


# Headers on create, read and update


def test_create_answers_201_with_location_etag_and_last_modified(client):
    response = create_patient(client)
    body = response.get_json()
    assert response.headers["Location"] == f"http://localhost/fhir/Patient/{body['id']}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == last_updated(body).replace(microsecond=0)
    assert body["meta"]["versionId"] == "1"


def test_create_assigns_its_own_id_ignoring_the_clients(client):
    response = create_patient(client, {**PATIENT, "id": "chosen-by-client"})
    assert response.get_json()["id"] != "chosen-by-client"
    assert client.get("/fhir/Patient/chosen-by-client").status_code == 404


def test_read_answers_etag_last_modified_and_content_location(client):
    created = create_patient(client).get_json()
    response = client.get(f"/fhir/Patient/{created['id']}")
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == last_updated(created).replace(microsecond=0)
    assert response.headers["Content-Location"].endswith(f"/fhir/Patient/{created['id']}/_history/1")
    assert response.content_type.startswith(FHIR_JSON)


def test_update_answers_200_with_the_new_versions_etag_and_last_modified(client):
    resource_id = new_patient_id(client)
    response = put_patient(client, resource_id, {**PATIENT, "gender": "other"})
    assert response.status_code == 200
    body = response.get_json()
    assert response.headers["ETag"] == 'W/"2"' and body["meta"]["versionId"] == "2"
    assert parsedate_to_datetime(response.headers["Last-Modified"]) == last_updated(body).replace(microsecond=0)
    assert response.headers["Content-Location"].endswith(f"/fhir/Patient/{resource_id}/_history/2")


def test_update_as_create_answers_201_with_location(client):
    response = put_patient(client, "client-chosen")
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/fhir/Patient/client-chosen/_history/1")
    assert response.headers["ETag"] == 'W/"1"'
    assert client.get("/fhir/Patient/client-chosen").get_json()["name"] == PATIENT["name"]


def test_patch_answers_the_new_versions_etag(client):
    resource_id = new_patient_id(client)
    response = patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "male"}])
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"' and "Last-Modified" in response.headers
    assert response.get_json()["gender"] == "male"


def test_the_etag_is_the_version_id_of_the_resource(client):
    resource_id = new_patient_id(client)
    for gender in ("male", "other", "unknown"):
        put_patient(client, resource_id, {**PATIENT, "gender": gender})
    response = client.get(f"/fhir/Patient/{resource_id}")
    assert response.headers["ETag"] == f'W/"{response.get_json()["meta"]["versionId"]}"' == 'W/"4"'


# If-Match on writes


@pytest.mark.parametrize("if_match", ['W/"1"', '"1"'])
def test_put_with_a_matching_if_match_updates(client, if_match):
    resource_id = new_patient_id(client)
    response = put_patient(client, resource_id, {**PATIENT, "gender": "male"}, **{"If-Match": if_match})
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"2"'


def test_put_with_a_stale_if_match_is_412_and_changes_nothing(client):
    resource_id = new_patient_id(client)
    put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    response = put_patient(client, resource_id, {**PATIENT, "gender": "other"}, **{"If-Match": 'W/"1"'})
    assert_outcome(response, 412, "conflict")
    current = client.get(f"/fhir/Patient/{resource_id}")
    assert current.headers["ETag"] == 'W/"2"' and current.get_json()["gender"] == "male"


def test_patch_with_a_matching_if_match_patches(client):
    resource_id = new_patient_id(client)
    response = patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "male"}], **{"If-Match": 'W/"1"'})
    assert response.status_code == 200 and response.get_json()["gender"] == "male"


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(client):
    resource_id = new_patient_id(client)
    response = patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "male"}], **{"If-Match": 'W/"7"'})
    assert_outcome(response, 412, "conflict")
    current = client.get(f"/fhir/Patient/{resource_id}")
    assert current.headers["ETag"] == 'W/"1"' and current.get_json()["gender"] == "female"


def test_delete_with_a_matching_if_match_deletes(client):
    resource_id = new_patient_id(client)
    response = client.delete(f"/fhir/Patient/{resource_id}", headers={"If-Match": 'W/"1"'})
    assert response.status_code in (200, 204)
    assert client.get(f"/fhir/Patient/{resource_id}").status_code == 410


def test_delete_with_a_stale_if_match_is_412_and_keeps_the_resource(client):
    resource_id = new_patient_id(client)
    response = client.delete(f"/fhir/Patient/{resource_id}", headers={"If-Match": 'W/"2"'})
    assert_outcome(response, 412, "conflict")
    assert client.get(f"/fhir/Patient/{resource_id}").status_code == 200


def test_if_match_on_a_put_that_would_create_is_412_and_creates_nothing(client):
    response = put_patient(client, "not-there-yet", **{"If-Match": 'W/"1"'})
    assert_outcome(response, 412, "conflict")
    assert client.get("/fhir/Patient/not-there-yet").status_code == 404


def test_the_412_tells_the_client_the_current_version(client):
    resource_id = new_patient_id(client)
    put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    document = assert_outcome(put_patient(client, resource_id, PATIENT, **{"If-Match": 'W/"1"'}), 412, "conflict")
    assert 'W/"2"' in document["issue"][0]["diagnostics"]


# Conditional read


def test_if_none_match_with_the_current_etag_is_304_without_a_body(client):
    resource_id = new_patient_id(client)
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == 'W/"1"'


def test_if_none_match_with_an_older_etag_is_200_with_the_resource(client):
    resource_id = new_patient_id(client)
    put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.get_json()["gender"] == "male" and response.headers["ETag"] == 'W/"2"'


def test_if_none_match_listing_the_current_etag_among_others_is_304(client):
    resource_id = new_patient_id(client)
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-None-Match": 'W/"7", W/"1"'})
    assert response.status_code == 304


def test_if_modified_since_in_the_future_is_304(client):
    resource_id = new_patient_id(client)
    future = http_date(datetime.now(timezone.utc) + timedelta(days=1))
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-Modified-Since": future})
    assert response.status_code == 304 and response.get_data() == b""


def test_if_modified_since_the_last_modified_date_is_304(client):
    resource_id = new_patient_id(client)
    last_modified = client.get(f"/fhir/Patient/{resource_id}").headers["Last-Modified"]
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-Modified-Since": last_modified})
    assert response.status_code == 304
    assert response.headers["ETag"] == 'W/"1"'


def test_if_modified_since_in_the_past_is_200_with_the_resource(client):
    resource_id = new_patient_id(client)
    past = http_date(datetime.now(timezone.utc) - timedelta(days=1))
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-Modified-Since": past})
    assert response.status_code == 200 and response.get_json()["id"] == resource_id


def test_an_unparseable_if_modified_since_is_ignored(client):
    resource_id = new_patient_id(client)
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-Modified-Since": "last Tuesday"})
    assert response.status_code == 200


def test_if_none_match_wins_over_if_modified_since(client):
    """RFC 9110 13.1.3: If-Modified-Since is ignored when If-None-Match is present."""
    resource_id = new_patient_id(client)
    put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    future = http_date(datetime.now(timezone.utc) + timedelta(days=1))
    response = client.get(f"/fhir/Patient/{resource_id}", headers={"If-None-Match": 'W/"1"', "If-Modified-Since": future})
    assert response.status_code == 200


# Prefer: return


@pytest.mark.parametrize("preference", ["return=minimal", 'return="minimal"', "respond-async, return=minimal"])
def test_create_with_prefer_return_minimal_has_an_empty_body_and_the_headers(client, preference):
    response = client.post("/fhir/Patient", data=json.dumps(PATIENT), content_type=FHIR_JSON, headers={"Prefer": preference})
    assert response.status_code == 201
    assert response.get_data() == b""
    assert response.headers["ETag"] == 'W/"1"'
    assert "/fhir/Patient/" in response.headers["Location"] and "Last-Modified" in response.headers


def test_update_with_prefer_return_minimal_has_an_empty_body_and_the_headers(client):
    resource_id = new_patient_id(client)
    response = put_patient(client, resource_id, {**PATIENT, "gender": "male"}, Prefer="return=minimal")
    assert response.status_code == 200 and response.get_data() == b""
    assert response.headers["ETag"] == 'W/"2"'


def test_patch_with_prefer_return_minimal_has_an_empty_body(client):
    resource_id = new_patient_id(client)
    response = patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "male"}], Prefer="return=minimal")
    assert response.status_code == 200 and response.get_data() == b""
    assert response.headers["ETag"] == 'W/"2"'


def test_create_with_prefer_return_operation_outcome_answers_an_operation_outcome(client):
    response = client.post("/fhir/Patient", data=json.dumps(PATIENT), content_type=FHIR_JSON, headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    document = response.get_json()
    assert document["resourceType"] == "OperationOutcome"
    assert document["issue"][0]["severity"] in ("information", "warning")
    assert response.headers["ETag"] == 'W/"1"' and "Location" in response.headers


def test_update_with_prefer_return_operation_outcome_answers_an_operation_outcome(client):
    resource_id = new_patient_id(client)
    response = put_patient(client, resource_id, {**PATIENT, "gender": "male"}, Prefer="return=OperationOutcome")
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("headers", [{}, {"Prefer": "return=representation"}])
def test_create_returns_the_stored_resource_by_default_and_on_request(client, headers):
    response = client.post("/fhir/Patient", data=json.dumps(PATIENT), content_type=FHIR_JSON, headers=headers)
    body = response.get_json()
    assert body["resourceType"] == "Patient" and body["name"] == PATIENT["name"]
    assert body == client.get(f"/fhir/Patient/{body['id']}").get_json()


def test_prefer_return_minimal_on_a_failed_create_still_answers_an_operation_outcome(client):
    response = client.post("/fhir/Patient", data=json.dumps({**PATIENT, "birthDate": "x"}), content_type=FHIR_JSON, headers={"Prefer": "return=minimal"})
    assert_outcome(response, 400, "value")


# Versions: no-op updates, server-owned meta


def test_an_update_with_identical_content_creates_no_new_version(client):
    created = create_patient(client).get_json()
    response = put_patient(client, created["id"], PATIENT)
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"1"'
    assert response.get_json()["meta"] == created["meta"]
    history = client.get(f"/fhir/Patient/{created['id']}/_history").get_json()
    assert len(history["entry"]) == 1


def test_an_update_differing_only_in_server_meta_creates_no_new_version(client):
    created = create_patient(client).get_json()
    body = {**PATIENT, "meta": {"versionId": "41", "lastUpdated": "2001-01-01T00:00:00Z"}}
    response = put_patient(client, created["id"], body)
    assert response.headers["ETag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{created['id']}").get_json()["meta"] == created["meta"]


def test_an_identical_patch_creates_no_new_version(client):
    resource_id = new_patient_id(client)
    response = patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "female"}])
    assert response.status_code == 200 and response.headers["ETag"] == 'W/"1"'


def test_client_version_id_and_last_updated_are_ignored_on_create(client):
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    meta = {"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z"}
    body = create_patient(client, {**PATIENT, "meta": meta}).get_json()
    assert body["meta"]["versionId"] == "1"
    assert last_updated(body) >= before
    stored = client.get(f"/fhir/Patient/{body['id']}").get_json()
    assert stored["meta"]["versionId"] == "1" and last_updated(stored) >= before


def test_client_version_id_and_last_updated_are_ignored_on_update(client):
    created = create_patient(client).get_json()
    meta = {"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z"}
    body = put_patient(client, created["id"], {**PATIENT, "gender": "male", "meta": meta}).get_json()
    assert body["meta"]["versionId"] == "2"
    assert last_updated(body) >= last_updated(created)


def test_client_tags_and_profiles_are_kept_on_create_and_update(client):
    meta = {
        "versionId": "99",
        "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
        "tag": [{"system": "http://example.org/tags", "code": "vip"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
    }
    created = create_patient(client, {**PATIENT, "meta": meta}).get_json()
    for key in ("profile", "tag", "security"):
        assert created["meta"][key] == meta[key]
    updated = put_patient(client, created["id"], {**PATIENT, "gender": "male", "meta": meta}).get_json()
    assert updated["meta"]["tag"] == meta["tag"] and updated["meta"]["profile"] == meta["profile"]
    assert updated["meta"]["versionId"] == "2"


def test_last_updated_moves_forward_with_each_version(client):
    resource_id = new_patient_id(client)
    stamps = [last_updated(client.get(f"/fhir/Patient/{resource_id}").get_json())]
    for gender in ("male", "other"):
        stamps.append(last_updated(put_patient(client, resource_id, {**PATIENT, "gender": gender}).get_json()))
    assert stamps == sorted(stamps) and len(set(stamps)) == 3


# Delete and resurrection


def test_a_deleted_resource_reads_as_410_gone_with_the_deletion_versions_etag(client):
    resource_id = new_patient_id(client)
    deleted = client.delete(f"/fhir/Patient/{resource_id}")
    assert deleted.status_code in (200, 204)
    assert deleted.headers["ETag"] == 'W/"2"'
    response = client.get(f"/fhir/Patient/{resource_id}")
    assert_outcome(response, 410, "deleted")
    assert response.headers["ETag"] == 'W/"2"'


def test_a_deleted_resource_is_left_out_of_search(client):
    resource_id = new_patient_id(client)
    keep_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    bundle = client.get("/fhir/Patient").get_json()
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == [keep_id]


def test_deleting_twice_is_fine_and_writes_no_second_deletion(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    again = client.delete(f"/fhir/Patient/{resource_id}")
    assert again.status_code in (200, 204)
    history = client.get(f"/fhir/Patient/{resource_id}/_history").get_json()
    assert len(history["entry"]) == 2
    assert client.get(f"/fhir/Patient/{resource_id}").headers["ETag"] == 'W/"2"'


def test_deleting_a_resource_that_never_existed_is_fine(client):
    response = client.delete("/fhir/Patient/never-was")
    assert response.status_code in (200, 204)
    assert client.get("/fhir/Patient/never-was").status_code == 404


def test_updating_a_deleted_resource_brings_it_back_as_the_next_version(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    response = put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    assert response.status_code in (200, 201)
    assert response.headers["ETag"] == 'W/"3"'
    current = client.get(f"/fhir/Patient/{resource_id}")
    assert current.status_code == 200
    assert current.get_json()["meta"]["versionId"] == "3" and current.get_json()["gender"] == "male"


def test_updating_a_deleted_resource_with_its_old_content_still_brings_it_back(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    response = put_patient(client, resource_id, PATIENT)
    assert response.headers["ETag"] == 'W/"3"'
    assert client.get(f"/fhir/Patient/{resource_id}").status_code == 200


def test_patching_a_deleted_resource_is_410(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    assert_outcome(patch_patient(client, resource_id, [{"op": "replace", "path": "/gender", "value": "male"}]), 410, "deleted")


def test_if_match_on_a_put_resurrecting_a_deleted_resource_must_name_the_deletion_version(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    assert_outcome(put_patient(client, resource_id, PATIENT, **{"If-Match": 'W/"1"'}), 412, "conflict")
    assert put_patient(client, resource_id, PATIENT, **{"If-Match": 'W/"2"'}).headers["ETag"] == 'W/"3"'


# vread


def test_vread_of_an_old_version_returns_it_with_its_etag(client):
    resource_id = new_patient_id(client)
    put_patient(client, resource_id, {**PATIENT, "gender": "male"})
    response = client.get(f"/fhir/Patient/{resource_id}/_history/1")
    assert response.status_code == 200
    assert response.get_json()["gender"] == "female" and response.get_json()["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'


def test_vread_of_a_version_that_does_not_exist_is_404(client):
    resource_id = new_patient_id(client)
    assert_outcome(client.get(f"/fhir/Patient/{resource_id}/_history/9"), 404, "not-found")
    assert_outcome(client.get(f"/fhir/Patient/{resource_id}/_history/latest"), 404, "not-found")


def test_vread_of_an_id_that_does_not_exist_is_404(client):
    assert_outcome(client.get("/fhir/Patient/never-was/_history/1"), 404, "not-found")


def test_vread_of_the_deletion_version_is_410_and_earlier_versions_stay_readable(client):
    resource_id = new_patient_id(client)
    client.delete(f"/fhir/Patient/{resource_id}")
    assert_outcome(client.get(f"/fhir/Patient/{resource_id}/_history/2"), 410, "deleted")
    assert client.get(f"/fhir/Patient/{resource_id}/_history/1").get_json()["gender"] == "female"
