"""The server as a real FHIR client library sees it: fhirpy over HTTP, on SQLite and on PostgreSQL."""
import uuid

import pytest
import requests
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

FHIR_JSON = "application/fhir+json"


@pytest.fixture
def fhir(live_server):
    return SyncFHIRClient(live_server)


def new_patient(fhir, family="Garcia", **fields):
    patient = fhir.resource("Patient", name=[{"family": family, "given": ["Maria"]}], gender="female", **fields)
    patient.save()
    return patient


def history_of(fhir, patient):
    """The instance history Bundle, fetched through fhirpy (it has no history helper, so via execute)."""
    return fhir.execute(f"Patient/{patient.id}/_history", method="get")


def version_ids(history) -> list[str]:
    return [entry["response"]["etag"] for entry in history.get("entry", [])]


def test_fhirpy_create_gives_the_patient_a_server_id_and_version_1(fhir):
    patient = new_patient(fhir)
    assert patient.id
    assert patient.meta.versionId == "1"
    assert patient.meta.lastUpdated


def test_fhirpy_reads_back_what_it_created(fhir):
    created = new_patient(fhir, birthDate="1958-04-12")
    read = fhir.reference("Patient", created.id).to_resource()
    assert (read.id, read.name[0].family, read.birthDate) == (created.id, "Garcia", "1958-04-12")
    assert fhir.get("Patient", created.id)["gender"] == "female"


def test_fhirpy_update_increments_the_version_and_the_etag(fhir, live_server):
    patient = new_patient(fhir)
    patient.birthDate = "1958-04-12"
    patient.save()
    assert patient.meta.versionId == "2"
    response = requests.get(f"{live_server}/Patient/{patient.id}")
    assert response.headers["ETag"] == 'W/"2"'
    assert response.json()["birthDate"] == "1958-04-12"


def test_fhirpy_saving_unchanged_content_keeps_the_version(fhir):
    patient = new_patient(fhir)
    patient.save()
    patient.save()
    assert fhir.reference("Patient", patient.id).to_resource().meta.versionId == "1"


def test_fhirpy_refresh_picks_up_a_version_written_by_another_client(fhir, live_server):
    patient = new_patient(fhir)
    other = SyncFHIRClient(live_server).reference("Patient", patient.id).to_resource()
    other.gender = "other"
    other.save()
    patient.refresh()
    assert (patient.meta.versionId, patient.gender) == ("2", "other")


def test_fhirpy_refresh_of_the_current_version_leaves_the_resource_as_it_is(fhir):
    patient = new_patient(fhir)
    patient.refresh()
    assert (patient.meta.versionId, patient.name[0].family) == ("1", "Garcia")


def test_history_through_fhirpy_lists_every_version_newest_first(fhir):
    patient = new_patient(fhir)
    for family in ("Lopez", "Garcia-Lopez"):
        patient.name = [{"family": family, "given": ["Maria"]}]
        patient.save()
    history = history_of(fhir, patient)
    assert history.type == "history"
    assert version_ids(history) == ['W/"3"', 'W/"2"', 'W/"1"']
    assert [entry.resource.name[0].family for entry in history.entry] == ["Garcia-Lopez", "Lopez", "Garcia"]
    assert [entry.request.method for entry in history.entry] == ["PUT", "PUT", "POST"]


def test_fhirpy_delete_makes_reads_fail_and_http_says_410_gone(fhir, live_server):
    patient = new_patient(fhir)
    patient.delete()
    with pytest.raises(ResourceNotFound):
        fhir.reference("Patient", patient.id).to_resource()
    response = requests.get(f"{live_server}/Patient/{patient.id}")
    assert response.status_code == 410
    assert response.headers["ETag"] == 'W/"2"'


def test_history_of_a_deleted_patient_ends_with_a_deletion_and_old_versions_stay_readable(fhir):
    patient = new_patient(fhir)
    patient.delete()
    history = history_of(fhir, patient)
    assert version_ids(history) == ['W/"2"', 'W/"1"']
    assert history.entry[0].request.method == "DELETE" and "resource" not in history.entry[0]
    first = fhir.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert first["name"][0]["family"] == "Garcia"


def test_fhirpy_update_with_a_stale_if_match_fails_and_keeps_the_newer_version(fhir, live_server):
    patient = new_patient(fhir)
    patient.gender = "other"
    patient.save()
    stale = SyncFHIRClient(live_server, extra_headers={"If-Match": 'W/"1"'}).reference("Patient", patient.id).to_resource()
    stale.gender = "unknown"
    with pytest.raises(MultipleResourcesFound):  # fhirpy reports every 412 Precondition Failed as this
        stale.save()
    current = fhir.reference("Patient", patient.id).to_resource()
    assert (current.meta.versionId, current.gender) == ("2", "other")


def test_fhirpy_save_of_an_invalid_patient_raises_an_operation_outcome_naming_the_element(fhir):
    patient = fhir.resource("Patient", birthDate="yesterday")
    with pytest.raises(OperationOutcome) as raised:
        patient.save()
    issues = raised.value.resource["issue"]
    assert any("Patient.birthDate" in issue.get("expression", []) for issue in issues)
    assert fhir.resources("Patient").fetch_all() == []


def test_fhirpy_pages_through_every_patient_by_following_next_links(fhir):
    created = {new_patient(fhir, family=f"Family{n}").id for n in range(5)}
    fetched = [patient.id for patient in fhir.resources("Patient").limit(2).fetch_all()]
    assert sorted(fetched) == sorted(created)


def transaction_with_local_references() -> tuple[dict, str]:
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    observation = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": patient_url},
        "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    bundle = {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": observation, "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": patient_url, "resource": {"resourceType": "Patient", "name": [{"family": "Okafor"}]},
             "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    return bundle, patient_url


def created_location(entry) -> tuple[str, str, str]:
    """(type, id, version) from a transaction-response entry's location, relative or absolute."""
    parts = entry["response"]["location"].split("/")
    assert parts[-2] == "_history", entry
    return parts[-4], parts[-3], parts[-1]


def test_transaction_posted_with_requests_creates_both_resources_and_links_them(live_server):
    bundle, _ = transaction_with_local_references()
    response = requests.post(live_server, json=bundle, headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["type"] == "transaction-response"
    assert [entry["response"]["status"].split()[0] for entry in result["entry"]] == ["201", "201"]
    (_, observation_id, _), (_, patient_id, version) = (created_location(entry) for entry in result["entry"])
    assert version == "1"
    observation = requests.get(f"{live_server}/Observation/{observation_id}").json()
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    assert requests.get(f"{live_server}/Patient/{patient_id}").json()["name"][0]["family"] == "Okafor"


def test_transaction_posted_through_fhirpy_creates_resources_it_can_then_read(fhir):
    bundle, _ = transaction_with_local_references()
    result = fhir.execute("/", method="post", data=bundle)
    assert result["type"] == "transaction-response"
    (_, observation_id, _), (_, patient_id, _) = (created_location(entry) for entry in result["entry"])
    observation = fhir.reference("Observation", observation_id).to_resource()
    assert observation.subject.reference == f"Patient/{patient_id}"
    assert observation.subject.to_resource().name[0].family == "Okafor"


def test_failed_transaction_entry_leaves_nothing_behind(live_server):
    bundle, _ = transaction_with_local_references()
    bundle["entry"][1]["resource"]["birthDate"] = "yesterday"
    response = requests.post(live_server, json=bundle, headers={"Content-Type": FHIR_JSON})
    assert response.status_code in (400, 422)
    assert response.json()["resourceType"] == "OperationOutcome"
    for type_name in ("Patient", "Observation"):
        assert "entry" not in requests.get(f"{live_server}/{type_name}").json()


def heart_rate(fhir, patient, value: int, day: int):
    observation = fhir.resource(
        "Observation", status="final", code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        subject={"reference": f"Patient/{patient.id}"}, effectiveDateTime=f"2025-02-0{day}T08:00:00Z",
        valueQuantity={"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    )
    observation.save()
    return observation


def test_fhirpy_invokes_stats_lastn_and_everything_by_post_with_a_parameters_body(fhir):
    patient = new_patient(fhir)
    first, latest = heart_rate(fhir, patient, 60, 1), heart_rate(fhir, patient, 80, 2)
    stats = fhir.execute("Observation/$stats", method="post", data={"resourceType": "Parameters", "parameter": [
        {"name": "subject", "valueString": f"Patient/{patient.id}"},
        {"name": "coding", "valueCoding": {"system": "http://loinc.org", "code": "8867-4"}},
        {"name": "statistic", "valueCode": "average"},
    ]})
    assert stats["parameter"][0]["resource"]["component"][0]["valueQuantity"]["value"] == 70
    lastn = fhir.execute("Observation/$lastn", method="post", data={"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{patient.id}"}},
    ]})
    assert [entry["resource"]["id"] for entry in lastn["entry"]] == [latest.id]
    everything = fhir.execute(f"Patient/{patient.id}/$everything", method="post", data={"resourceType": "Parameters"})
    assert {entry["resource"]["id"] for entry in everything["entry"]} == {patient.id, first.id, latest.id}


def test_fhirpy_sees_an_unsupported_operation_as_an_operation_outcome(fhir):
    with pytest.raises(OperationOutcome, match="not an operation this server supports"):
        fhir.execute("Patient/$export", method="get")
