"""Required bindings: a `code` outside its required R4 value set is rejected, naming the element and the codes allowed."""
import copy

import pytest

from app.demo import demo_bundle
from app.errors import InvalidResource
from app.model.validation import validate_resource

PATIENT = {
    "resourceType": "Patient",
    "name": [{"use": "official", "family": "Okafor", "given": ["Aisha"]}],
    "telecom": [{"system": "phone", "value": "617-555-0115", "use": "home"}, {"system": "email", "value": "aisha@example.org"}],
    "gender": "female",
    "birthDate": "1989-07-25",
}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [
        {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    ],
}


def rejected(body: dict) -> InvalidResource:
    with pytest.raises(InvalidResource) as raised:
        validate_resource(body)
    return raised.value


def code_issues(error: InvalidResource) -> dict[str, str]:
    """Expression -> diagnostics of the code-invalid issues."""
    return {issue.expression[0]: issue.diagnostics for issue in error.issues if issue.code == "code-invalid"}


def changed(body: dict, path: tuple, value) -> dict:
    """A deep copy of `body` with the element at `path` (keys and indexes) set to `value`."""
    copied = copy.deepcopy(body)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copied


@pytest.mark.parametrize(
    ("body", "path", "expression"),
    [
        (PATIENT, ("gender",), "Patient.gender"),
        (OBSERVATION, ("status",), "Observation.status"),
        (PATIENT, ("name", 0, "use"), "Patient.name[0].use"),
        (PATIENT, ("telecom", 1, "system"), "Patient.telecom[1].system"),
        (OBSERVATION, ("component", 0, "valueQuantity", "comparator"), "Observation.component[0].valueQuantity.comparator"),
    ],
    ids=["top-level", "top-level-status", "datatype-in-array", "second-array-item", "datatype-in-backbone"],
)
def test_a_code_outside_its_required_value_set_is_rejected_naming_its_path(body, path, expression):
    issues = code_issues(rejected(changed(body, path, "no-such-code")))
    assert list(issues) == [expression]
    assert "'no-such-code'" in issues[expression]


def test_the_diagnostics_list_the_allowed_codes():
    diagnostics = code_issues(rejected({**PATIENT, "gender": "woman"}))["Patient.gender"]
    assert "http://hl7.org/fhir/ValueSet/administrative-gender" in diagnostics
    assert "male, female, other, unknown" in diagnostics


def test_a_top_level_choice_of_a_datatype_is_checked():
    body = {**OBSERVATION, "valueQuantity": {"value": 5, "comparator": "about"}}
    assert list(code_issues(rejected(body))) == ["Observation.valueQuantity.comparator"]


def test_a_code_in_a_backbone_element_is_checked():
    history = [{"status": "over", "period": {"start": "2025-01-01"}}]
    encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "statusHistory": history}
    assert list(code_issues(rejected(encounter))) == ["Encounter.statusHistory[0].status"]


def test_a_code_in_a_backbone_element_of_a_bundle_is_checked():
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": PATIENT, "request": {"method": "FETCH", "url": "Patient"}}]}
    assert list(code_issues(rejected(bundle))) == ["Bundle.entry[0].request.method"]


def test_a_contained_resource_is_checked_as_its_own_type():
    body = {**OBSERVATION, "contained": [{**PATIENT, "id": "p1", "gender": "woman"}], "subject": {"reference": "#p1"}}
    assert list(code_issues(rejected(body))) == ["Observation.contained[0].gender"]


def test_the_narrative_status_is_checked():
    body = {**PATIENT, "text": {"status": "written", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Aisha</div>'}}
    assert list(code_issues(rejected(body))) == ["Patient.text.status"]


def test_a_datatype_inside_an_extension_is_checked():
    extension = {"url": "http://example.org/other-id", "valueIdentifier": {"use": "nickname", "value": "A1"}}
    assert list(code_issues(rejected({**PATIENT, "extension": [extension]}))) == ["Patient.extension[0].valueIdentifier.use"]


def test_every_invalid_code_is_reported_at_once():
    body = {**PATIENT, "gender": "woman", "address": [{"use": "home"}, {"use": "holiday", "type": "igloo"}]}
    assert set(code_issues(rejected(body))) == {"Patient.gender", "Patient.address[1].use", "Patient.address[1].type"}


def test_codes_of_a_repeating_element_are_checked_one_by_one():
    timing = {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "dayOfWeek": ["mon", "funday"]}}
    request = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/p1"}, "occurrenceTiming": timing}
    assert list(code_issues(rejected(request))) == ["ServiceRequest.occurrenceTiming.repeat.dayOfWeek[1]"]


def test_codes_are_case_sensitive():
    assert list(code_issues(rejected({**PATIENT, "gender": "Female"}))) == ["Patient.gender"]


@pytest.mark.parametrize("gender", ["male", "female", "other", "unknown"])
def test_every_code_of_the_value_set_is_accepted(gender):
    validate_resource({**PATIENT, "gender": gender})


def test_valid_codes_everywhere_are_accepted():
    validate_resource(PATIENT)
    validate_resource({**OBSERVATION, "contained": [{**PATIENT, "id": "p1"}], "subject": {"reference": "#p1"}})


def test_a_value_set_of_an_external_code_system_is_not_checked():
    """MIME types (urn:ietf:bcp:13) are not in the R4 package: the binding is skipped, not enforced."""
    validate_resource({**PATIENT, "photo": [{"contentType": "image/x-made-up", "data": "iVBORw0KGgo="}]})


def test_every_resource_of_the_demo_data_validates():
    for entry in demo_bundle()["entry"]:
        validate_resource(entry["resource"])

