"""FHIRPath evaluation of the search parameter expressions, natively and through the fhirpathpy fallback."""
import fhirpathpy
import pytest
from fhirpathpy.models import models

from app.demo import demo_bundle
from app.search.parameters import parameter, parameters_by_type, parameters_of
from app.search.paths import (
    Node, UnsupportedExpression, compile_expression, evaluate_components, native_evaluator, reference_target_type,
)

DEMO = [entry["resource"] for entry in demo_bundle()["entry"]]
BLOOD_PRESSURE = next(resource for resource in DEMO if resource["id"] == "demo-blood-pressure-1")
HEART_RATE = next(resource for resource in DEMO if resource["id"] == "demo-heart-rate-1")
PATIENT = next(resource for resource in DEMO if resource["id"] == "demo-patient-1")


def evaluate(resource: dict, expression: str) -> list[Node]:
    return compile_expression(resource["resourceType"], expression)(resource)


def values(resource: dict, expression: str) -> list:
    return [node.value for node in evaluate(resource, expression)]


def types(resource: dict, expression: str) -> list[str]:
    return [node.type for node in evaluate(resource, expression)]


def served_expressions() -> list[str]:
    """Every expression of every served type's parameters, composite components included."""
    found = set()
    for parameters in parameters_by_type().values():
        for served in parameters.values():
            found |= {served.expression, *(component.expression for component in served.components)}
    return sorted(found)


def test_a_path_flattens_arrays_and_types_each_value_by_the_element_table():
    assert values(PATIENT, "Patient.name.given") == ["Maria", "Elena"]
    assert types(PATIENT, "Patient.name.given") == ["string", "string"]
    assert types(BLOOD_PRESSURE, "Observation.code") == ["CodeableConcept"]
    assert types(PATIENT, "Patient.birthDate") == ["date"]
    assert types(BLOOD_PRESSURE, "Observation.meta.profile") == ["canonical"]


def test_backbone_elements_report_their_node_name():
    assert types(BLOOD_PRESSURE, "Observation.component") == ["Observation.component"] * 2
    ranged = {**HEART_RATE, "component": [{"code": {"text": "x"}, "referenceRange": [{"text": "60-100"}]}]}
    assert types(ranged, "Observation.component.referenceRange") == ["Observation.referenceRange"]


@pytest.mark.parametrize(
    "base, element, value, expected",
    [
        ("value", "valueQuantity", {"value": 72, "unit": "/min"}, "Quantity"),
        ("value", "valueString", "negative", "string"),
        ("effective", "effectiveDateTime", "2025-01-14T09:30:00+00:00", "dateTime"),
        ("effective", "effectivePeriod", {"start": "2025-01-14"}, "Period"),
    ],
)
def test_a_choice_element_is_typed_by_the_suffix_of_the_key_present(base, element, value, expected):
    observation = {"resourceType": "Observation", element: value}
    assert evaluate(observation, f"Observation.{base}") == [Node(value, expected)]


def test_quantity_profiles_report_their_own_type_and_match_as_quantity():
    condition = {"resourceType": "Condition", "onsetAge": {"value": 52, "unit": "a"}}
    assert evaluate(condition, parameter("Condition", "onset-age").expression) == [Node({"value": 52, "unit": "a"}, "Age")]
    assert types(condition, "Condition.onset.ofType(Quantity)") == ["Age"]


def test_value_quantity_takes_the_quantity_and_ignores_other_value_types():
    expression = parameter("Observation", "value-quantity").expression
    assert values(HEART_RATE, expression) == [HEART_RATE["valueQuantity"]]
    assert values({"resourceType": "Observation", "valueString": "72"}, expression) == []


def test_as_keeps_every_matching_item_of_several():
    expression = parameter("Observation", "component-value-quantity").expression
    assert values(BLOOD_PRESSURE, expression) == [component["valueQuantity"] for component in BLOOD_PRESSURE["component"]]


def test_a_path_continues_after_a_cast():
    observation = {"resourceType": "Observation", "valueCodeableConcept": {"text": "Positive"}}
    assert evaluate(observation, parameter("Observation", "value-string").expression) == [Node("Positive", "string")]


def test_union_keeps_left_then_right_and_drops_duplicates():
    code = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    observation = {"resourceType": "Observation", "code": code, "component": [{"code": code}, {"code": {"text": "other"}}]}
    assert values(observation, "Observation.code | Observation.component.code") == [code, {"text": "other"}]


def test_where_resolve_is_patient_keeps_patient_references_and_drops_group_references():
    expression = parameter("Observation", "patient").expression
    assert values(HEART_RATE, expression) == [{"reference": "Patient/demo-patient-1"}]
    assert values({**HEART_RATE, "subject": {"reference": "Group/ward-7"}}, expression) == []


@pytest.mark.parametrize(
    "reference, target",
    [
        ({"reference": "Patient/p1"}, "Patient"),
        ({"reference": "https://other.example.org/fhir/Patient/p1/_history/3"}, "Patient"),
        ({"reference": "Group/g1"}, "Group"),
        ({"reference": "urn:uuid:6c2b3f2e-1f7e-4a48-9a8a-1c2d3e4f5a6b", "type": "Patient"}, "Patient"),
        ({"identifier": {"value": "MRN-1"}, "type": "http://hl7.org/fhir/StructureDefinition/Patient"}, "Patient"),
        ({"reference": "#p1"}, None),
        ({"reference": "urn:uuid:6c2b3f2e-1f7e-4a48-9a8a-1c2d3e4f5a6b"}, None),
        ({"display": "someone"}, None),
    ],
)
def test_a_reference_target_type_comes_from_its_url_or_its_type(reference, target):
    assert reference_target_type(reference) == target


@pytest.mark.parametrize(
    "deceased, expected",
    [({}, False), ({"deceasedBoolean": False}, False), ({"deceasedBoolean": True}, True), ({"deceasedDateTime": "2024-05-01"}, True)],
)
def test_deceased_is_true_for_a_death_flag_or_date_and_false_otherwise(deceased, expected):
    expression = parameter("Patient", "deceased").expression
    assert evaluate({**PATIENT, **deceased}, expression) == [Node(expected, "boolean")]


def test_telecom_filters_keep_the_contact_points_of_their_system():
    patient = {**PATIENT, "telecom": [*PATIENT["telecom"], {"system": "email", "value": "maria@example.org"}]}
    assert [point["value"] for point in values(patient, parameter("Patient", "phone").expression)] == ["617-555-0142"]
    assert evaluate(patient, parameter("Patient", "email").expression) == [Node(patient["telecom"][1], "ContactPoint")]


def test_related_artifact_filter_then_path_yields_the_canonicals_of_that_kind():
    plan = {
        "resourceType": "PlanDefinition",
        "relatedArtifact": [
            {"type": "depends-on", "resource": "http://example.org/Library/lib-1"},
            {"type": "derived-from", "resource": "http://example.org/PlanDefinition/old"},
        ],
        "library": ["http://example.org/Library/lib-2"],
    }
    assert evaluate(plan, parameter("PlanDefinition", "depends-on").expression) == [
        Node("http://example.org/Library/lib-1", "canonical"), Node("http://example.org/Library/lib-2", "canonical")]


def test_an_indexer_picks_one_item_and_a_resource_is_typed_by_its_resource_type():
    composition = {"resourceType": "Composition", "id": "c1"}
    bundle = {"resourceType": "Bundle", "type": "document", "entry": [{"resource": composition}, {"resource": PATIENT}]}
    assert evaluate(bundle, parameter("Bundle", "composition").expression) == [Node(composition, "Composition")]
    assert values(PATIENT, "Patient.name.given.first()") == ["Maria"]


def test_contained_resources_are_never_entered():
    observation = {**HEART_RATE, "contained": [{"resourceType": "Patient", "id": "p1"}]}
    assert evaluate(observation, "Observation.contained") == []


def test_blood_pressure_components_pair_code_and_value_from_the_same_component():
    pairs = evaluate_components(parameter("Observation", "component-code-value-quantity"), BLOOD_PRESSURE)
    assert [(codes[0].value["coding"][0]["code"], quantities[0].value["value"]) for codes, quantities in pairs] == [
        (component["code"]["coding"][0]["code"], component["valueQuantity"]["value"]) for component in BLOOD_PRESSURE["component"]]
    assert all(len(codes) == len(quantities) == 1 for codes, quantities in pairs)


def test_combo_composites_pair_the_observation_and_each_component():
    pairs = evaluate_components(parameter("Observation", "combo-code-value-quantity"), BLOOD_PRESSURE)
    assert [len(quantities) for _, quantities in pairs] == [0, 1, 1]  # the panel itself has no value
    assert pairs[0][0] == [Node(BLOOD_PRESSURE["code"], "CodeableConcept")]


def test_a_system_type_name_matches_its_fhir_primitive():
    observation = {"resourceType": "Observation", "code": {"text": "onset"}, "valueDateTime": "2025-02-01"}
    [(codes, dates)] = evaluate_components(parameter("Observation", "code-value-date"), observation)
    assert dates == [Node("2025-02-01", "dateTime")]


def test_components_may_read_the_whole_resource():
    sequence = {
        "resourceType": "MolecularSequence", "type": "dna", "coordinateSystem": 0,
        "referenceSeq": {"chromosome": {"coding": [{"code": "1"}]}},
        "variant": [{"start": 100, "end": 101}, {"start": 200, "end": 201}],
    }
    pairs = evaluate_components(parameter("MolecularSequence", "chromosome-variant-coordinate"), sequence)
    assert [(chromosome[0].type, start[0].value, end[0].value) for chromosome, start, end in pairs] == [
        ("CodeableConcept", 100, 101), ("CodeableConcept", 200, 201)]
    assert types(sequence, "MolecularSequence.variant.start") == ["integer", "integer"]


def test_every_served_expression_compiles_natively():
    assert [expression for expression in served_expressions() if not compiles_natively(expression)] == []


def compiles_natively(expression: str) -> bool:
    try:
        native_evaluator(expression)
    except UnsupportedExpression:
        return False
    return True


@pytest.mark.parametrize("type_name", sorted(parameters_by_type()))
def test_every_parameter_evaluates_on_an_empty_resource(type_name):
    empty = {"resourceType": type_name}
    for served in parameters_of(type_name).values():
        if served.components:
            assert all(part == [] for parts in evaluate_components(served, empty) for part in parts)
        else:
            assert compile_expression(type_name, served.expression)(empty) in ([], [Node(False, "boolean")])


def test_an_expression_outside_the_native_subset_falls_back_to_fhirpathpy_with_typed_results():
    patient = {**PATIENT, "telecom": [*PATIENT["telecom"], {"system": "sms", "value": "617-555-0100"}]}
    texting = "Patient.telecom.where(system = 'phone' or system = 'sms')"  # `or` is not compiled natively
    assert not compiles_natively(texting)
    assert types(patient, texting) == ["ContactPoint", "ContactPoint"]
    assert evaluate(patient, "Patient.name.given.count()") == [Node(2, "integer")]


def fhirpathpy_values(resource: dict, expression: str) -> list:
    return [getattr(item, "data", item) for item in
            fhirpathpy.compile(expression, model=models["r4"], options={"returnRawData": True})(resource, {})]


# fhirpathpy has no resolve(), and its `as` refuses several items: those expressions are compared above instead.
SAMPLES = [
    (resource, served.expression)
    for resource in (HEART_RATE, BLOOD_PRESSURE, PATIENT, DEMO[0], next(r for r in DEMO if r["resourceType"] == "Encounter"))
    for served in parameters_of(resource["resourceType"]).values()
    if "resolve()" not in served.expression and "component.value as" not in served.expression
]


@pytest.mark.parametrize("resource, expression", SAMPLES, ids=[f"{r['id']}:{e}" for r, e in SAMPLES])
def test_native_results_equal_fhirpathpy_results(resource, expression):
    assert values(resource, expression) == fhirpathpy_values(resource, expression)
