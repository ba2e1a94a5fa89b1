"""Conditional creates, conditional URLs and conditional references in transaction and batch Bundles (http.html#trules)."""
import base64
import json

import pytest
from sqlalchemy import func, select

from app.bundles import process_bundle
from app.errors import BadRequest, Gone, NotFound, PreconditionFailed
from app.store.schema import resource, resource_history
from app.store.unit import reading, writing

BASE = "http://127.0.0.1:8080/fhir"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
NPI = "http://hl7.org/fhir/sid/us-npi"
SYNTHEA = "https://github.com/synthetichealth/synthea"
MRN = "http://hospital.example.org/mrn"
PRACTITIONER_CRITERIA = f"identifier={NPI}|9999"
ORGANIZATION_CRITERIA = f"identifier={SYNTHEA}|org-1"
PRACTITIONER_REFERENCE = f"Practitioner?{PRACTITIONER_CRITERIA}"
ORGANIZATION_REFERENCE = f"Organization?{ORGANIZATION_CRITERIA}"
PATIENT_URN = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
ENCOUNTER_URN = "urn:uuid:b2d3a1c8-5f0e-4a7b-9c1d-3e4f5a6b7c8d"
PRACTITIONER_URN = "urn:uuid:0000016d-3a85-4cca-0000-00000000270f"
ORGANIZATION_URN = "urn:uuid:ef58ea08-d883-3957-8300-150554edc8fb"


def transaction(*entries, kind="transaction"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(body, full_url=None, **request):
    entry = {"resource": body, "request": {"method": "POST", "url": body["resourceType"], **request}}
    return {"fullUrl": full_url, **entry} if full_url else entry


def request_entry(method, url, body=None):
    entry = {"request": {"method": method, "url": url}}
    return {"resource": body, **entry} if body else entry


def practitioner(npi="9999", **fields):
    return {"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": npi}], "name": [{"family": "Osei"}], **fields}


def organization(value="org-1"):
    return {"resourceType": "Organization", "identifier": [{"system": SYNTHEA, "value": value}], "name": "Mercy Hospital"}


def patient(value="1", **fields):
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": value}], "name": [{"family": "Okafor"}], **fields}


def encounter(subject, practitioner_reference, organization_reference):
    return {
        "resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
        "subject": {"reference": subject},
        "participant": [{"individual": {"reference": practitioner_reference}}],
        "serviceProvider": {"reference": organization_reference},
    }


def observation(subject, **fields):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, "subject": {"reference": subject}, **fields}


def synthea_bundle():
    """A patient's record as Synthea writes it: Organization and Practitioner created only if absent, and
    referred to by criteria; the rest by urn:uuid. The conditional creates come last, to show order does not matter."""
    return transaction(
        post(patient(), PATIENT_URN),
        post(encounter(PATIENT_URN, PRACTITIONER_REFERENCE, ORGANIZATION_REFERENCE), ENCOUNTER_URN),
        post(observation(PATIENT_URN, encounter={"reference": ENCOUNTER_URN}, performer=[{"reference": PRACTITIONER_REFERENCE}])),
        post(observation(PATIENT_URN, encounter={"reference": ENCOUNTER_URN})),
        post(organization(), ORGANIZATION_URN, ifNoneExist=ORGANIZATION_CRITERIA),
        post(practitioner(), PRACTITIONER_URN, ifNoneExist=PRACTITIONER_CRITERIA),
    )


def store(engine, body):
    with writing(engine) as unit:
        return unit.create(body).stored


def read(engine, type_name, resource_id):
    with reading(engine) as unit:
        return unit.read(type_name, resource_id)


def count_live(engine, type_name):
    with reading(engine) as unit:
        query = select(func.count()).select_from(resource).where(resource.c.res_type == type_name, resource.c.deleted.is_(False))
        return unit.connection.execute(query).scalar()


def count_versions(engine):
    with reading(engine) as unit:
        return unit.connection.execute(select(func.count()).select_from(resource_history)).scalar()


def statuses(response):
    return [entry["response"]["status"] for entry in response["entry"]]


def reference_to(entry):
    """`Type/id` of the resource a response entry's location names."""
    return "/".join(entry["response"]["location"].split("/")[:2])


def test_synthea_style_transaction_resolves_conditional_and_urn_references(engine):
    response = process_bundle(engine, synthea_bundle(), BASE)
    assert statuses(response) == ["201 Created"] * 6
    patient_ref, encounter_ref, observation_ref, _, organization_ref, practitioner_ref = map(reference_to, response["entry"])
    stored_encounter = read(engine, *encounter_ref.split("/")).body
    assert stored_encounter["subject"] == {"reference": patient_ref}
    assert stored_encounter["participant"][0]["individual"] == {"reference": practitioner_ref}
    assert stored_encounter["serviceProvider"] == {"reference": organization_ref}
    stored_observation = read(engine, *observation_ref.split("/")).body
    assert stored_observation["encounter"] == {"reference": encounter_ref}
    assert stored_observation["performer"] == [{"reference": practitioner_ref}]


def test_the_same_synthea_bundle_posted_twice_creates_practitioner_and_organization_once(client):
    first = client.post("/fhir", json=synthea_bundle(), headers=FHIR_JSON).json
    second = client.post("/fhir", json=synthea_bundle(), headers=FHIR_JSON).json
    assert statuses(second) == ["201 Created"] * 4 + ["200 OK"] * 2
    assert [reference_to(entry) for entry in second["entry"][4:]] == [reference_to(entry) for entry in first["entry"][4:]]
    assert second["entry"][5]["response"]["etag"] == 'W/"1"'
    totals = {kind: client.get(f"/fhir/{kind}?_summary=count").json["total"] for kind in ("Practitioner", "Organization", "Patient")}
    assert totals == {"Practitioner": 1, "Organization": 1, "Patient": 2}
    second_encounter = client.get(f"/fhir/{reference_to(second['entry'][1])}").json
    assert second_encounter["participant"][0]["individual"]["reference"] == reference_to(first["entry"][5])


def test_a_urn_reference_to_a_matched_conditional_create_points_at_the_existing_resource(engine):
    existing = store(engine, practitioner())
    bundle = transaction(
        post(practitioner(), PRACTITIONER_URN, ifNoneExist=PRACTITIONER_CRITERIA),
        post(observation("Patient/p1", performer=[{"reference": PRACTITIONER_URN}])),
    )
    response = process_bundle(engine, bundle, BASE)
    assert statuses(response) == ["200 OK", "201 Created"]
    assert response["entry"][0]["response"]["location"] == f"Practitioner/{existing.id}/_history/1"
    observation_id = reference_to(response["entry"][1]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["performer"] == [{"reference": f"Practitioner/{existing.id}"}]


def test_if_none_exist_may_repeat_the_type_and_order_its_criteria_differently(engine):
    existing = store(engine, practitioner(active=True))
    bundle = transaction(
        post(practitioner(active=True), PRACTITIONER_URN, ifNoneExist=f"Practitioner?active=true&{PRACTITIONER_CRITERIA}"),
        post(observation("Patient/p1", performer=[{"reference": f"{PRACTITIONER_REFERENCE}&active=true"}])),
    )
    response = process_bundle(engine, bundle, BASE)
    assert reference_to(response["entry"][0]) == f"Practitioner/{existing.id}"
    observation_id = reference_to(response["entry"][1]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["performer"] == [{"reference": f"Practitioner/{existing.id}"}]


def test_a_conditional_reference_to_a_stored_resource_resolves(engine):
    existing = store(engine, practitioner())
    response = process_bundle(engine, transaction(post(observation("Patient/p1", performer=[{"reference": PRACTITIONER_REFERENCE}]))), BASE)
    observation_id = reference_to(response["entry"][0]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["performer"] == [{"reference": f"Practitioner/{existing.id}"}]


def test_a_conditional_reference_that_matches_nothing_fails_the_transaction_with_412(engine):
    bundle = transaction(post(patient(), PATIENT_URN), post(observation(PATIENT_URN, performer=[{"reference": PRACTITIONER_REFERENCE}])))
    with pytest.raises(PreconditionFailed) as raised:
        process_bundle(engine, bundle, BASE)
    assert raised.value.status == 412
    assert raised.value.diagnostics.startswith("Bundle.entry[1] (POST Observation): ") and PRACTITIONER_REFERENCE in raised.value.diagnostics
    assert count_versions(engine) == 0


def test_if_none_exist_matching_two_resources_fails_the_transaction_with_412(engine):
    store(engine, practitioner())
    store(engine, practitioner())
    before = count_versions(engine)
    with pytest.raises(PreconditionFailed, match=r"Bundle.entry\[1\] \(POST Practitioner\): More than one Practitioner"):
        process_bundle(engine, transaction(post(patient()), post(practitioner(), ifNoneExist=PRACTITIONER_CRITERIA)), BASE)
    assert count_versions(engine) == before


def test_two_conditional_creates_of_the_same_new_resource_are_rejected(engine):
    bundle = transaction(post(practitioner(), ifNoneExist=PRACTITIONER_CRITERIA), post(practitioner(), ifNoneExist=PRACTITIONER_CRITERIA))
    with pytest.raises(BadRequest, match="both create a Practitioner"):
        process_bundle(engine, bundle, BASE)
    assert count_versions(engine) == 0


def test_conditional_put_updates_the_one_match_and_creates_when_none_matches(engine):
    existing = store(engine, patient("1"))
    bundle = transaction(
        request_entry("PUT", f"Patient?identifier={MRN}|1", patient("1", gender="female")),
        request_entry("PUT", f"Patient?identifier={MRN}|2", patient("2")),
    )
    updated, created = process_bundle(engine, bundle, BASE)["entry"]
    assert (updated["response"]["status"], updated["response"]["location"]) == ("200 OK", f"Patient/{existing.id}/_history/2")
    assert read(engine, "Patient", existing.id).body["gender"] == "female"
    assert created["response"]["status"] == "201 Created"
    assert read(engine, *reference_to(created).split("/")).body["identifier"][0]["value"] == "2"


def test_a_urn_reference_to_a_conditional_put_points_at_the_updated_resource(engine):
    existing = store(engine, patient("1"))
    bundle = transaction(
        {"fullUrl": PATIENT_URN, **request_entry("PUT", f"Patient?identifier={MRN}|1", patient("1", gender="male"))},
        post(observation(PATIENT_URN)),
    )
    response = process_bundle(engine, bundle, BASE)
    observation_id = reference_to(response["entry"][1]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["subject"] == {"reference": f"Patient/{existing.id}"}


def test_conditional_delete_deletes_the_one_match_and_is_a_no_op_when_none_matches(engine):
    existing = store(engine, patient("1"))
    bundle = transaction(request_entry("DELETE", f"Patient?identifier={MRN}|1"), request_entry("DELETE", f"Patient?identifier={MRN}|9"))
    assert statuses(process_bundle(engine, bundle, BASE)) == ["204 No Content", "204 No Content"]
    with pytest.raises(Gone):
        read(engine, "Patient", existing.id)


def test_a_conditional_delete_runs_before_a_conditional_create_with_the_same_criteria(engine):
    old = store(engine, patient("1"))
    bundle = transaction(post(patient("1"), ifNoneExist=f"identifier={MRN}|1"), request_entry("DELETE", f"Patient?identifier={MRN}|1"))
    created, deleted = process_bundle(engine, bundle, BASE)["entry"]
    assert (created["response"]["status"], deleted["response"]["status"]) == ("201 Created", "204 No Content")
    assert reference_to(created) != f"Patient/{old.id}" and count_live(engine, "Patient") == 1


def test_conditional_patch_patches_the_one_match(engine):
    existing = store(engine, patient("1"))
    data = base64.b64encode(json.dumps([{"op": "add", "path": "/gender", "value": "other"}]).encode()).decode()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}
    process_bundle(engine, transaction(request_entry("PATCH", f"Patient?identifier={MRN}|1", binary)), BASE)
    assert read(engine, "Patient", existing.id).body["gender"] == "other"
    with pytest.raises(NotFound, match=r"Bundle.entry\[0\] \(PATCH Patient\?identifier=.*\|9\): No live Patient"):
        process_bundle(engine, transaction(request_entry("PATCH", f"Patient?identifier={MRN}|9", binary)), BASE)


def test_a_conditional_url_without_criteria_is_rejected(engine):
    with pytest.raises(BadRequest, match=r"Bundle.entry\[0\] \(DELETE Patient\): .*Type\?criteria"):
        process_bundle(engine, transaction(request_entry("DELETE", "Patient")), BASE)


def test_batch_evaluates_each_conditional_create_on_its_own(engine):
    existing = store(engine, practitioner("1"))
    store(engine, practitioner("2"))
    store(engine, practitioner("2"))
    bundle = transaction(
        post(practitioner("1"), ifNoneExist=f"identifier={NPI}|1"),
        post(practitioner("3"), ifNoneExist=f"identifier={NPI}|3"),
        post(practitioner("2"), ifNoneExist=f"identifier={NPI}|2"),
        post(observation("Patient/p1", performer=[{"reference": f"Practitioner?identifier={NPI}|1"}])),
        kind="batch",
    )
    response = process_bundle(engine, bundle, BASE)
    assert statuses(response) == ["200 OK", "201 Created", "412 Precondition Failed", "201 Created"]
    assert reference_to(response["entry"][0]) == f"Practitioner/{existing.id}"
    observation_id = reference_to(response["entry"][3]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["performer"] == [{"reference": f"Practitioner/{existing.id}"}]
    assert count_live(engine, "Practitioner") == 4


def test_a_batch_resolves_conditional_references_by_searching_what_earlier_entries_wrote(engine):
    bundle = transaction(
        post(practitioner(), ifNoneExist=PRACTITIONER_CRITERIA),
        post(observation("Patient/p1", performer=[{"reference": PRACTITIONER_REFERENCE}])),
        kind="batch",
    )
    response = process_bundle(engine, bundle, BASE)
    assert statuses(response) == ["201 Created", "201 Created"]  # POSTs run in order, so the Practitioner is found
    observation_id = reference_to(response["entry"][1]).split("/")[1]
    assert read(engine, "Observation", observation_id).body["performer"] == [{"reference": reference_to(response["entry"][0])}]
