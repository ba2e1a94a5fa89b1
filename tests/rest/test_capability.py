"""GET /fhir/metadata: a valid R4 CapabilityStatement that claims exactly what the server does."""
import json

import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.model.registry import resource_types

FHIR_JSON = "application/fhir+json"
CORE_TYPES = (
    "Patient", "Practitioner", "Encounter", "Observation", "Condition", "Procedure", "MedicationRequest", "Claim", "DocumentReference",
)
TYPE_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "create", "history-instance", "history-type", "search-type"}
SYSTEM_INTERACTIONS = {"transaction", "batch", "history-system", "search-system"}
# Resource types FHIR R4 (4.0.1) does not define: added in R4B or R5.
NOT_IN_R4 = {
    "SubscriptionStatus", "SubscriptionTopic", "Citation", "ClinicalUseDefinition", "EvidenceReport", "Ingredient",
    "ManufacturedItemDefinition", "MedicinalProductDefinition", "NutritionProduct", "PackagedProductDefinition",
    "RegulatedAuthorization", "AdministrableProductDefinition", "ActorDefinition", "Requirements", "Transport",
    "InventoryReport", "InventoryItem", "GenomicStudy", "FormularyItem", "DeviceUsage", "DeviceDispense", "ArtifactAssessment",
    "ConditionDefinition", "NutritionIntake", "Permission", "TestPlan", "ImagingSelection", "DeviceAssociation",
}


@pytest.fixture
def capability(client) -> dict:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.content_type.startswith(FHIR_JSON)
    return response.get_json()


def listed_resources(capability: dict) -> dict[str, dict]:
    return {entry["type"]: entry for entry in capability["rest"][0]["resource"]}


def test_metadata_is_a_valid_capability_statement(capability):
    model = get_fhir_model_class("CapabilityStatement").model_validate(capability)
    assert model.status == "active" and model.kind == "instance"


def test_metadata_declares_fhir_4_0_1_and_fhir_json(capability):
    assert capability["fhirVersion"] == "4.0.1"
    assert "application/fhir+json" in capability["format"]
    assert "application/json-patch+json" in capability["patchFormat"]


def test_metadata_does_not_claim_formats_the_server_cannot_serve(capability):
    for media_type in capability["format"]:
        assert "xml" not in media_type and "turtle" not in media_type


def test_metadata_names_the_server_and_its_base_url(capability):
    assert capability["software"]["name"]
    assert capability["implementation"]["url"] == "http://localhost/fhir"
    assert len(capability["rest"]) == 1 and capability["rest"][0]["mode"] == "server"


@pytest.mark.parametrize("type_name", CORE_TYPES)
def test_metadata_lists_each_clinical_type_with_every_type_interaction(capability, type_name):
    entry = listed_resources(capability)[type_name]
    codes = [interaction["code"] for interaction in entry["interaction"]]
    assert set(codes) == TYPE_INTERACTIONS
    assert len(codes) == len(set(codes))


def test_metadata_lists_the_system_interactions(capability):
    codes = {interaction["code"] for interaction in capability["rest"][0]["interaction"]}
    assert codes == SYSTEM_INTERACTIONS


def test_metadata_lists_no_type_it_cannot_store(capability):
    listed = listed_resources(capability)
    assert "Parameters" not in listed
    assert len(listed) == len(capability["rest"][0]["resource"])


def test_metadata_lists_no_type_that_fhir_r4_does_not_define(capability):
    assert sorted(set(listed_resources(capability)) & NOT_IN_R4) == []


def test_metadata_lists_exactly_the_served_types(capability):
    assert set(listed_resources(capability)) == set(resource_types())


def test_every_listed_type_is_served_reading_an_unknown_id_is_not_found(capability, client):
    wrong = {}
    for type_name in listed_resources(capability):
        response = client.get(f"/fhir/{type_name}/no-such-id")
        document = response.get_json()
        issue = document["issue"][0] if document.get("resourceType") == "OperationOutcome" else {}
        if response.status_code != 404 or issue.get("code") != "not-found" or "no-such-id" not in issue.get("diagnostics", ""):
            wrong[type_name] = (response.status_code, document)
    assert wrong == {}


def test_every_listed_type_can_be_searched(capability, client):
    wrong = {}
    for type_name in listed_resources(capability):
        response = client.get(f"/fhir/{type_name}?_summary=count")
        if response.status_code != 200 or response.get_json().get("total") != 0:
            wrong[type_name] = response.status_code
    assert wrong == {}


def test_every_listed_type_accepts_or_validates_a_create(capability, client):
    """A bare {resourceType} is created, or refused as invalid (required elements), never as an unknown type or a crash."""
    wrong = {}
    for type_name in listed_resources(capability):
        response = client.post(f"/fhir/{type_name}", data=json.dumps({"resourceType": type_name}), content_type=FHIR_JSON)
        if response.status_code not in (201, 400) or (response.status_code == 400 and "not-found" in str(response.get_json())):
            wrong[type_name] = (response.status_code, response.get_data(as_text=True)[:200])
    assert wrong == {}


@pytest.mark.parametrize("type_name", sorted(NOT_IN_R4 | {"Parameters"}))
def test_a_type_that_is_not_an_r4_stored_type_is_404_to_search(client, type_name):
    response = client.get(f"/fhir/{type_name}")
    assert response.status_code == 404
    assert response.get_json()["issue"][0]["code"] == "not-found"


def test_metadata_claims_update_as_create_and_the_server_does_it(capability, client):
    assert listed_resources(capability)["Patient"]["updateCreate"] is True
    response = client.put("/fhir/Patient/chosen", data=json.dumps({"resourceType": "Patient", "id": "chosen"}), content_type=FHIR_JSON)
    assert response.status_code == 201


def test_metadata_claims_conditional_read_and_the_server_answers_304(capability, client):
    assert listed_resources(capability)["Patient"]["conditionalRead"] in ("full-support", "modified-since", "not-match")
    client.put("/fhir/Patient/chosen", data=json.dumps({"resourceType": "Patient", "id": "chosen"}), content_type=FHIR_JSON)
    assert client.get("/fhir/Patient/chosen", headers={"If-None-Match": 'W/"1"'}).status_code == 304


def test_metadata_claims_versioned_updates_and_history(capability):
    patient = listed_resources(capability)["Patient"]
    assert patient["versioning"] in ("versioned", "versioned-update")
    assert patient["readHistory"] is True


def test_metadata_claims_of_conditional_create_update_and_delete_hold(capability, client):
    patient = listed_resources(capability)["Patient"]
    assert (patient["conditionalCreate"], patient["conditionalUpdate"], patient["conditionalDelete"]) == (True, True, "single")
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}]}
    headers = {"Content-Type": "application/fhir+json", "If-None-Exist": "identifier=urn:x|1"}
    assert [client.post("/fhir/Patient", json=body, headers=headers).status_code for _ in range(2)] == [201, 200]
    assert client.put("/fhir/Patient?identifier=urn:x|1", json=body, headers=headers).status_code == 200
    assert client.delete("/fhir/Patient?identifier=urn:x|1").status_code == 200


ROW_PARAMETER_QUERIES = {"_id": {"_id": "x"}, "_lastUpdated": {"_lastUpdated": "gt2000"}}


def test_every_listed_search_parameter_is_accepted(capability, client):
    for resource_capability in listed_resources(capability).values():
        for parameter in resource_capability.get("searchParam", []):
            query = ROW_PARAMETER_QUERIES.get(parameter["name"], {f"{parameter['name']}:missing": "true"})
            response = client.get(f"/fhir/{resource_capability['type']}", query_string={**query, "_count": "1"})
            assert response.status_code == 200, (resource_capability["type"], parameter["name"], response.json)


def test_metadata_is_served_in_fhir_json_with_pretty_printing_on_request(client):
    response = client.get("/fhir/metadata?_pretty=true")
    assert response.status_code == 200
    assert b"\n  " in response.get_data()
    assert json.loads(response.get_data())["resourceType"] == "CapabilityStatement"


def test_metadata_lists_as_revincludes_of_patient_the_reference_parameters_that_can_point_at_it(capability):
    revincludes = listed_resources(capability)["Patient"]["searchRevInclude"]
    assert {"Observation:subject", "Observation:patient", "Encounter:patient", "Provenance:target", "Patient:link"} <= set(revincludes)
    assert "*" not in revincludes
    assert not {"Observation:specimen", "Observation:code", "Encounter:service-provider"} & set(revincludes)


def test_metadata_lists_as_includes_the_types_own_reference_parameters(capability):
    includes = listed_resources(capability)["Observation"]["searchInclude"]
    assert {"Observation:subject", "Observation:patient", "Observation:performer", "Observation:encounter"} <= set(includes)
    assert all(value.startswith("Observation:") for value in includes) and "Observation:code" not in includes


@pytest.mark.parametrize("type_name", ["Patient", "Observation", "Encounter", "Practitioner"])
def test_every_listed_include_and_revinclude_is_accepted_by_a_search(capability, client, type_name):
    listed = listed_resources(capability)[type_name]
    queries = [("_include", value) for value in listed["searchInclude"]] + [("_revinclude", value) for value in listed["searchRevInclude"]]
    for name, value in queries:
        response = client.get(f"/fhir/{type_name}", query_string={name: value, "_count": "1"})
        assert response.status_code == 200, (name, value, response.json)
