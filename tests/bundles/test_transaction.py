"""Transaction and batch Bundles, processed directly against each database backend."""
import base64
import json

import pytest
from sqlalchemy import func, select

from app.bundles import process_bundle
from app.errors import BadRequest, InvalidResource, NotFound, PreconditionFailed
from app.store.db import read_unit, write_unit
from app.store.resources import read_resource, update_resource
from app.store.schema import resource, resource_history

BASE = "http://127.0.0.1:8080/fhir"
PATIENT_URN = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"


def transaction(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource, full_url=None):
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def put(resource, full_url=None, **request):
    entry = {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}", **request}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def request_only(method, url, **request):
    return {"request": {"method": method, "url": url, **request}}


def patient(family="Okafor", **fields):
    return {"resourceType": "Patient", "name": [{"family": family}], **fields}


def observation(subject, **fields):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "subject": {"reference": subject}, **fields}


def json_patch(operations):
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


def store(engine, body):
    with write_unit(engine) as connection:
        return update_resource(connection, body["resourceType"], body["id"], body).stored


def read(engine, type_name, resource_id):
    with read_unit(engine) as connection:
        return read_resource(connection, type_name, resource_id)


def count_versions(engine):
    with read_unit(engine) as connection:
        return connection.execute(select(func.count()).select_from(resource_history)).scalar()


def statuses(response):
    return [entry["response"]["status"] for entry in response["entry"]]


def location_id(entry):
    return entry["response"]["location"].split("/")[1]


def test_urn_uuid_references_are_rewritten_to_the_created_resource(engine):
    response = process_bundle(engine, transaction(post(observation(PATIENT_URN)), post(patient(), PATIENT_URN)), BASE)
    observation_id, patient_id = (location_id(entry) for entry in response["entry"])
    assert read(engine, "Observation", observation_id).body["subject"] == {"reference": f"Patient/{patient_id}"}
    assert read(engine, "Patient", patient_id).body["name"] == [{"family": "Okafor"}]


def test_urn_uuid_of_a_put_entry_resolves_to_its_url(engine):
    bundle = transaction(put(patient(id="p1"), PATIENT_URN), post(observation(PATIENT_URN)))
    response = process_bundle(engine, bundle, BASE)
    assert read(engine, "Observation", location_id(response["entry"][1])).body["subject"] == {"reference": "Patient/p1"}


def test_absolute_reference_to_an_entry_on_this_server_becomes_relative(engine):
    bundle = transaction(put(patient(id="p1"), f"{BASE}/Patient/p1"), post(observation(f"{BASE}/Patient/p1")))
    response = process_bundle(engine, bundle, BASE)
    assert read(engine, "Observation", location_id(response["entry"][1])).body["subject"] == {"reference": "Patient/p1"}


def test_response_entries_carry_status_location_etag_and_last_modified(engine):
    response = process_bundle(engine, transaction(post(patient()), put(patient(id="p1"))), BASE)
    assert response["type"] == "transaction-response"
    created, updated = (entry["response"] for entry in response["entry"])
    assert created["status"] == "201 Created" and created["location"].startswith("Patient/") and created["location"].endswith("/_history/1")
    assert (created["etag"], updated["location"], updated["etag"]) == ('W/"1"', "Patient/p1/_history/1", 'W/"1"')
    assert "lastModified" in created and "resource" not in response["entry"][0]


def test_prefer_representation_returns_each_written_resource(engine):
    response = process_bundle(engine, transaction(put(patient(id="p1"))), BASE, prefer_return="representation")
    entry = response["entry"][0]
    assert entry["fullUrl"] == f"{BASE}/Patient/p1"
    assert entry["resource"]["meta"]["versionId"] == "1" and entry["resource"]["name"] == [{"family": "Okafor"}]


def test_prefer_operation_outcome_returns_an_outcome_per_entry(engine):
    response = process_bundle(engine, transaction(put(patient(id="p1"))), BASE, prefer_return="OperationOutcome")
    outcome = response["entry"][0]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"] == "Created Patient/p1."


def test_a_delete_and_a_post_in_one_transaction_run_delete_first_then_post_then_get(engine):
    store(engine, patient(id="old"))
    bundle = transaction(
        request_only("GET", "Patient"),
        post(patient("New")),
        request_only("DELETE", "Patient/old"),
    )
    response = process_bundle(engine, bundle, BASE)
    assert statuses(response) == ["200 OK", "201 Created", "204 No Content"]
    listed = [entry["resource"]["name"][0]["family"] for entry in response["entry"][0]["resource"]["entry"]]
    assert listed == ["New"]


def test_get_entries_see_earlier_writes_of_the_same_transaction(engine):
    bundle = transaction(
        request_only("GET", "Patient/p1"),
        request_only("GET", "Patient/p1/_history"),
        request_only("GET", "Patient/p1/_history/1"),
        request_only("HEAD", "Patient/p1"),
        put(patient(id="p1")),
    )
    read_entry, history, vread, head, _ = process_bundle(engine, bundle, BASE)["entry"]
    assert read_entry["resource"]["id"] == "p1" and read_entry["response"]["etag"] == 'W/"1"'
    assert history["resource"]["type"] == "history" and len(history["resource"]["entry"]) == 1
    assert vread["resource"]["meta"]["versionId"] == "1"
    assert "resource" not in head and head["response"]["status"] == "200 OK"


def test_get_type_listing_honors_count(engine):
    for name in ("a", "b", "c"):
        store(engine, patient(id=name))
    response = process_bundle(engine, transaction(request_only("GET", "Patient?_count=2")), BASE)
    listing = response["entry"][0]["resource"]
    assert listing["type"] == "searchset" and len(listing["entry"]) == 2


def test_response_keeps_request_order(engine):
    store(engine, patient(id="gone"))
    bundle = transaction(
        request_only("GET", "Patient/kept"),
        put(patient(id="kept")),
        request_only("DELETE", "Patient/gone"),
        post(patient()),
    )
    response = process_bundle(engine, bundle, BASE)
    assert statuses(response) == ["200 OK", "201 Created", "204 No Content", "201 Created"]
    assert response["entry"][0]["resource"]["id"] == "kept"
    assert response["entry"][1]["response"]["location"] == "Patient/kept/_history/1"


def test_transaction_rolls_back_entirely_when_one_entry_fails(engine):
    store(engine, patient(id="existing"))
    before = count_versions(engine)
    bundle = transaction(
        post(patient(), PATIENT_URN),
        put(patient(id="existing", gender="female")),
        request_only("DELETE", "Patient/existing2"),
        put({**patient(id="bad"), "birthDate": "not a date"}),
    )
    with pytest.raises(InvalidResource) as raised:
        process_bundle(engine, bundle, BASE)
    assert count_versions(engine) == before
    assert "gender" not in read(engine, "Patient", "existing").body
    assert raised.value.diagnostics.startswith("Bundle.entry[3] (PUT Patient/bad): ")
    issue = raised.value.issues[0]
    assert issue.diagnostics.startswith("Bundle.entry[3] (PUT Patient/bad): ")
    assert issue.expression == ("Bundle.entry[3].resource.birthDate",)


def test_failed_transaction_keeps_the_failing_entrys_status(engine):
    with pytest.raises(NotFound) as raised:
        process_bundle(engine, transaction(put(patient(id="p1")), request_only("GET", "Patient/missing")), BASE)
    assert raised.value.status == 404 and "Bundle.entry[1] (GET Patient/missing)" in raised.value.diagnostics
    assert count_versions(engine) == 0


def test_two_entries_on_the_same_resource_are_rejected(engine):
    bundle = transaction(put(patient(id="p1")), request_only("DELETE", "Patient/p1"))
    with pytest.raises(BadRequest, match=r"Bundle.entry\[0\] \(PUT Patient/p1\) and Bundle.entry\[1\] \(DELETE Patient/p1\)"):
        process_bundle(engine, bundle, BASE)
    assert count_versions(engine) == 0


def test_two_entries_with_the_same_full_url_are_rejected(engine):
    with pytest.raises(BadRequest, match="same fullUrl"):
        process_bundle(engine, transaction(post(patient(), PATIENT_URN), post(patient(), PATIENT_URN)), BASE)


def test_patch_entry_applies_its_json_patch(engine):
    store(engine, patient(id="p1"))
    operations = [{"op": "add", "path": "/gender", "value": "female"}]
    entry = {"resource": json_patch(operations), "request": {"method": "PATCH", "url": "Patient/p1"}}
    response = process_bundle(engine, transaction(entry), BASE)
    assert response["entry"][0]["response"]["location"] == "Patient/p1/_history/2"
    assert read(engine, "Patient", "p1").body["gender"] == "female"


def test_patch_entry_without_a_json_patch_binary_is_rejected(engine):
    store(engine, patient(id="p1"))
    entry = {"resource": patient(id="p1"), "request": {"method": "PATCH", "url": "Patient/p1"}}
    with pytest.raises(BadRequest, match=r"Bundle.entry\[0\] \(PATCH Patient/p1\): .*Binary"):
        process_bundle(engine, transaction(entry), BASE)


def test_if_match_on_an_entry_is_checked(engine):
    store(engine, patient(id="p1"))
    with pytest.raises(PreconditionFailed):
        process_bundle(engine, transaction(put(patient(id="p1", gender="male"), ifMatch='W/"7"')), BASE)
    assert "gender" not in read(engine, "Patient", "p1").body


def test_batch_gives_per_entry_statuses_with_one_failure(engine):
    store(engine, patient(id="p1"))
    bundle = transaction(
        put(patient(id="p2")),
        request_only("GET", "Patient/missing"),
        {"request": {"method": "GET"}},
        request_only("GET", "Patient/p1"),
        kind="batch",
    )
    response = process_bundle(engine, bundle, BASE)
    assert response["type"] == "batch-response"
    assert statuses(response) == ["201 Created", "404 Not Found", "400 Bad Request", "200 OK"]
    assert response["entry"][1]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert read(engine, "Patient", "p2").id == "p2"


def test_batch_leaves_urn_uuid_references_as_they_are(engine):
    bundle = transaction(post(patient(), PATIENT_URN), post(observation(PATIENT_URN)), kind="batch")
    response = process_bundle(engine, bundle, BASE)
    assert read(engine, "Observation", location_id(response["entry"][1])).body["subject"] == {"reference": PATIENT_URN}


def test_a_3000_entry_transaction_completes(engine):
    entries = []
    for number in range(1000):
        urn = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
        entries += [post(patient(f"Family{number}"), urn), post(observation(urn)), put(patient(id=f"put-{number}"))]
    response = process_bundle(engine, transaction(*entries), BASE)
    assert len(response["entry"]) == 3000
    patient_id = location_id(response["entry"][2997])
    assert read(engine, "Observation", location_id(response["entry"][2998])).body["subject"] == {"reference": f"Patient/{patient_id}"}
    with read_unit(engine) as connection:
        assert connection.execute(select(func.count()).select_from(resource)).scalar() == 3000


@pytest.mark.parametrize("document", [
    {"resourceType": "Patient"},
    {"resourceType": "Bundle", "type": "collection"},
    [],
])
def test_not_a_transaction_or_batch_bundle_is_rejected(engine, document):
    with pytest.raises(BadRequest, match="transaction"):
        process_bundle(engine, document, BASE)


def test_an_entry_without_a_request_names_the_entry(engine):
    with pytest.raises(BadRequest, match=r"Bundle.entry\[1\]: .*request.method and request.url"):
        process_bundle(engine, transaction(put(patient(id="p1")), {"resource": patient()}), BASE)


@pytest.mark.parametrize("kind, status", [("transaction", 400), ("batch", 200)])
def test_a_resource_nested_too_deep_in_a_bundle_is_refused_not_a_500(client, kind, status):
    inner = {"url": "http://example.org/nest"}
    for _ in range(400):
        inner = {"url": "http://example.org/nest", "extension": [inner]}
    body = transaction(post({"resourceType": "Patient", "extension": [inner]}), kind=kind)
    response = client.post("/fhir", data=json.dumps(body), content_type="application/fhir+json")
    assert response.status_code == status
    outcome = response.get_json() if kind == "transaction" else response.get_json()["entry"][0]["response"]["outcome"]
    assert "nested more than" in json.dumps(outcome)
