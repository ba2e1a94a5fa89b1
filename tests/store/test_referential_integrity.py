"""Referential integrity as HAPI FHIR enforces it by default: a write whose local reference names no live resource is
a 400 naming the reference, a delete of a resource others refer to is a 409 naming one; a transaction, an `ehr load`
batch and an HL7 message resolve their references within themselves first; both checks can be switched off.
On SQLite and on PostgreSQL, through HTTP, the loader and the command line."""
import orjson
import pytest
from click.testing import CliRunner

from app.cli import main
from app.config import Integrity, Settings
from app.loader import LoadReport, load_candidates, read_candidates
from app.store.db import open_database
from app.web import create_app

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(resource_id: str) -> dict:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": "Okafor"}]}


def observation(subject: str, **fields) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "Heart rate"}, "subject": {"reference": subject}, **fields}


def put(client, body: dict):
    return client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR_JSON)


def post(client, body: dict):
    return client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)


def transaction(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post_entry(body: dict, full_url: str | None = None) -> dict:
    entry = {"resource": body, "request": {"method": "POST", "url": body["resourceType"]}}
    return {**entry, "fullUrl": full_url} if full_url else entry


def put_entry(body: dict) -> dict:
    return {"resource": body, "request": {"method": "PUT", "url": f"{body['resourceType']}/{body['id']}"}}


def delete_entry(reference: str) -> dict:
    return {"request": {"method": "DELETE", "url": reference}}


@pytest.fixture
def unchecked_client(database_url):
    app = create_app(Settings(auth=False, database_url=database_url, integrity=Integrity(on_write=False, on_delete=False)))
    yield app.test_client()
    app.extensions["ehr.engine"].dispose()


# Writes over REST.


def test_a_create_referring_to_a_missing_resource_is_a_400_naming_the_reference(client):
    response = post(client, observation("Patient/nobody"))
    assert response.status_code == 400
    issue = response.json["issue"][0]
    assert issue["code"] == "not-found" and "Patient/nobody" in issue["diagnostics"]
    assert issue["expression"] == ["Observation.subject"]
    assert "entry" not in client.get("/fhir/Observation").json  # nothing was stored


def test_a_create_referring_to_a_stored_resource_is_stored(client):
    assert put(client, patient("p1")).status_code == 201
    assert post(client, observation("Patient/p1")).status_code == 201


def test_a_versioned_reference_needs_its_resource_too(client):
    assert post(client, observation("Patient/nobody/_history/1")).status_code == 400
    put(client, patient("p1"))
    assert post(client, observation("Patient/p1/_history/1")).status_code == 201


def test_an_absolute_reference_to_this_server_is_checked_like_a_relative_one(client):
    assert post(client, observation("http://localhost/fhir/Patient/nobody")).status_code == 400
    put(client, patient("p1"))
    assert post(client, observation("http://localhost/fhir/Patient/p1")).status_code == 201


@pytest.mark.parametrize("reference", ["http://other.example.org/fhir/Patient/x", "urn:uuid:0b4a8a5e-3b8a-4d5c-9e57-8e9a4f6b1c2d", "#contained"])
def test_references_that_name_no_resource_here_are_not_checked(client, reference):
    body = observation(reference)
    if reference == "#contained":
        body["contained"] = [{"resourceType": "Patient", "id": "contained"}]
    assert post(client, body).status_code == 201


def test_every_reference_is_checked_not_only_the_subject(client):
    put(client, patient("p1"))
    response = post(client, observation("Patient/p1", performer=[{"reference": "Practitioner/nobody"}]))
    assert response.status_code == 400
    assert response.json["issue"][0]["expression"] == ["Observation.performer"]


def test_an_update_or_patch_that_adds_a_missing_reference_is_a_400(client):
    put(client, patient("p1"))
    created = post(client, observation("Patient/p1")).json
    assert put(client, {**created, "subject": {"reference": "Patient/nobody"}}).status_code == 400
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/nobody"}]
    response = client.patch(f"/fhir/Observation/{created['id']}", json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert response.status_code == 400
    assert client.get(f"/fhir/Observation/{created['id']}").json["meta"]["versionId"] == "1"


def test_a_reference_to_a_deleted_resource_is_a_400(client):
    put(client, patient("p1"))
    assert client.delete("/fhir/Patient/p1").status_code == 200
    assert post(client, observation("Patient/p1")).status_code == 400


# Deletes over REST.


def test_deleting_a_referenced_resource_is_a_409_naming_a_referrer(client):
    put(client, patient("p1"))
    created = post(client, observation("Patient/p1")).json
    response = client.delete("/fhir/Patient/p1")
    assert response.status_code == 409
    assert f"Observation/{created['id']}" in response.json["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p1").status_code == 200


def test_a_conditional_delete_of_a_referenced_resource_is_a_409(client):
    put(client, {**patient("p1"), "identifier": [{"system": "urn:mrn", "value": "7"}]})
    post(client, observation("Patient/p1"))
    assert client.delete("/fhir/Patient?identifier=urn:mrn|7").status_code == 409


def test_a_resource_is_deletable_once_its_referrers_are_deleted(client):
    put(client, patient("p1"))
    created = post(client, observation("Patient/p1")).json
    assert client.delete(f"/fhir/Observation/{created['id']}").status_code == 200
    assert client.delete("/fhir/Patient/p1").status_code == 200


def test_a_resource_referring_to_itself_may_be_deleted(client):
    body = {**patient("p1"), "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]}
    assert put(client, patient("p1")).status_code == 201
    assert put(client, body).status_code == 200
    assert client.delete("/fhir/Patient/p1").status_code == 200


# Both switched off.


def test_with_the_checks_off_dangling_references_and_referenced_deletes_are_allowed(unchecked_client):
    assert post(unchecked_client, observation("Patient/nobody")).status_code == 201
    put(unchecked_client, patient("p1"))
    post(unchecked_client, observation("Patient/p1"))
    assert unchecked_client.delete("/fhir/Patient/p1").status_code == 200


def test_the_settings_read_both_switches(monkeypatch):
    from app.config import load_settings

    monkeypatch.setenv("EHR_REFERENTIAL_INTEGRITY_ON_WRITE", "false")
    monkeypatch.setenv("EHR_REFERENTIAL_INTEGRITY_ON_DELETE", "")
    assert load_settings().integrity == Integrity(on_write=False, on_delete=True)
    monkeypatch.setenv("EHR_REFERENTIAL_INTEGRITY_ON_DELETE", "maybe")
    with pytest.raises(ValueError, match="EHR_REFERENTIAL_INTEGRITY_ON_DELETE"):
        load_settings()


# Bundles.


def test_a_transaction_resolves_references_among_its_entries_in_any_order(client):
    bundle = transaction(
        post_entry(observation("urn:uuid:11111111-1111-4111-8111-111111111111")),
        post_entry({"resourceType": "Patient"}, "urn:uuid:11111111-1111-4111-8111-111111111111"),
        post_entry(observation("Patient/p2")),
        put_entry(patient("p2")),
    )
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.json
    assert [entry["response"]["status"] for entry in response.json["entry"]] == ["201 Created"] * 4


def test_a_transaction_with_a_dangling_reference_writes_nothing_and_names_the_entry(client):
    bundle = transaction(put_entry(patient("p1")), post_entry(observation("Patient/p1")), post_entry(observation("Patient/nobody")))
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 400
    issue = response.json["issue"][0]
    assert "entry[2]" in issue["diagnostics"] and "Patient/nobody" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[2].resource.subject"]
    assert client.get("/fhir/Patient/p1").status_code == 404


def test_a_transaction_may_delete_a_resource_with_its_referrers(client):
    put(client, patient("p1"))
    created = post(client, observation("Patient/p1")).json
    bundle = transaction(delete_entry("Patient/p1"), delete_entry(f"Observation/{created['id']}"))
    assert client.post("/fhir", json=bundle, headers=FHIR_JSON).status_code == 200
    assert client.get("/fhir/Patient/p1").status_code == 410


def test_a_transaction_deleting_a_still_referenced_resource_is_a_409_naming_the_entry(client):
    put(client, patient("p1"))
    post(client, observation("Patient/p1"))
    response = client.post("/fhir", json=transaction(put_entry(patient("p9")), delete_entry("Patient/p1")), headers=FHIR_JSON)
    assert response.status_code == 409
    assert "entry[1]" in response.json["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient/p9").status_code == 404


def test_a_batch_fails_only_the_entry_with_a_dangling_reference(client):
    put(client, patient("p1"))
    bundle = transaction(post_entry(observation("Patient/p1")), post_entry(observation("Patient/nobody")), post_entry(observation("Patient/p1")), kind="batch")
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    statuses = [entry["response"]["status"] for entry in response.json["entry"]]
    assert statuses[0] == "201 Created" and statuses[1].startswith("400") and statuses[2] == "201 Created"
    assert "Patient/nobody" in response.json["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"]


# ehr load.


def write_ndjson(path, resources) -> None:
    path.write_bytes(b"".join(orjson.dumps(resource) + b"\n" for resource in resources))


def test_a_load_resolves_references_within_its_batch_and_rejects_only_the_dangling(engine, tmp_path):
    path = tmp_path / "mixed.ndjson"
    write_ndjson(path, [
        {**observation("Patient/p1"), "id": "o1"}, patient("p1"), {**observation("Patient/nobody"), "id": "o2"},
        {**observation("Observation/o2"), "id": "o3"}, {**observation("Patient/p1"), "id": "o4"},
    ])
    report = LoadReport()
    load_candidates(engine, read_candidates(path, report), report)
    assert report.outcomes["created"] == 3 and report.outcomes["rejected"] == 2
    assert sorted(where for where, _ in report.rejected) == ["mixed.ndjson:3", "mixed.ndjson:4"]  # o3 refers to o2, rejected
    assert "Patient/nobody" in dict(report.rejected)["mixed.ndjson:3"]


def test_ehr_load_takes_no_check_references_for_files_in_any_order(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv("EHR_DATABASE_URL", database_url)
    observations, patients = tmp_path / "Observation.ndjson", tmp_path / "Patient.ndjson"
    write_ndjson(observations, [{**observation("Patient/p1"), "id": "o1"}])
    write_ndjson(patients, [patient("p1")])
    checked = CliRunner().invoke(main, ["load", str(observations), str(patients)])
    assert checked.exit_code == 1 and "1 rejected" in checked.output and "--no-check-references" in checked.output
    unchecked = CliRunner().invoke(main, ["load", "--no-check-references", str(observations), str(patients)])
    assert unchecked.exit_code == 0, unchecked.output
    assert "1 created" in unchecked.output and "1 unchanged" in unchecked.output


def test_a_database_opened_with_checks_off_writes_dangling_references(database_url, tmp_path):
    from app.config import Database

    path = tmp_path / "o.ndjson"
    write_ndjson(path, [{**observation("Patient/nobody"), "id": "o1"}])
    engine = open_database(Database(database_url, Integrity(on_write=False)))
    report = LoadReport()
    load_candidates(engine, read_candidates(path, report), report)
    engine.dispose()
    assert report.outcomes["created"] == 1


# Concurrency.


def delete_refused_while_held(engine, hold, target: str) -> str:
    """Run `hold(unit)` in one unit of work, kept open half a second after it returns, and meanwhile delete `target`
    (Type/id) in another; the diagnostics of the delete's StillReferenced ("" if it was not refused)."""
    import threading

    from app.store.integrity import StillReferenced
    from app.store.unit import writing

    held, refused = threading.Event(), []

    def hold_open():
        with writing(engine) as unit:
            hold(unit)
            held.set()
            threading.Event().wait(0.5)  # the delete arrives while this transaction is still open

    def delete():
        held.wait(10)
        try:
            with writing(engine) as unit:
                unit.delete(*target.split("/"))
        except StillReferenced as error:
            refused.append(error.diagnostics)

    threads = [threading.Thread(target=hold_open), threading.Thread(target=delete)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return "".join(refused)


def test_a_delete_racing_a_create_that_refers_to_it_waits_and_is_refused(engine):
    """The create's check holds its target until commit: the delete that comes meanwhile waits, then sees the referrer."""
    from app.store.unit import writing

    with writing(engine) as unit:
        unit.update("Patient", "p1", patient("p1"))
    created = []

    def create(unit):
        created.append(unit.create(observation("Patient/p1")).stored.id)
        unit.finish()  # the reference is checked and its target held

    refusal = delete_refused_while_held(engine, create, "Patient/p1")
    assert f"Observation/{created[0]}" in refusal


def test_a_delete_racing_an_update_that_refers_to_it_waits_and_is_refused(engine):
    """An update's write finds and holds its targets in the same statement (PostgreSQL), so a delete that comes before
    its commit waits, then sees the new referrer."""
    from app.store.unit import writing

    with writing(engine) as unit:
        unit.update("Patient", "p1", patient("p1"))
        unit.update("Observation", "o1", {**observation("Patient/p1"), "id": "o1"})
        unit.update("Patient", "p2", patient("p2"))

    def update(unit):
        unit.update("Observation", "o1", {**observation("Patient/p2"), "id": "o1"})

    assert "Observation/o1" in delete_refused_while_held(engine, update, "Patient/p2")


def test_a_target_an_update_found_is_checked_again_when_the_unit_deletes_it(database_url):
    """The targets an update's write found live are not looked up again at the unit's end, unless the unit itself
    deleted one of them afterwards."""
    from app.config import Database
    from app.store.integrity import DanglingReferences
    from app.store.unit import writing

    engine = open_database(Database(database_url, Integrity(on_write=True, on_delete=False)))
    try:
        with writing(engine) as unit:
            unit.update("Patient", "p1", patient("p1"))
            unit.update("Observation", "o1", {**observation("Patient/p1"), "id": "o1"})
        with pytest.raises(DanglingReferences), writing(engine) as unit:
            unit.update("Observation", "o1", {**observation("Patient/p1"), "id": "o1", "status": "amended"})
            unit.delete("Patient", "p1")
    finally:
        engine.dispose()
