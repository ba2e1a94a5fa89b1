"""The search parameter registry: the official R4 parameters of each served type, expressions restricted to it."""
import re

import pytest

from app.model.registry import resource_types
from app.search.parameters import Component, parameter, parameters_of, patient_compartment_parameters


def test_observation_code_is_a_token_on_observation_code():
    code = parameter("Observation", "code")
    assert (code.type, code.expression) == ("token", "Observation.code")
    assert code.url == "http://hl7.org/fhir/SearchParameter/clinical-code"


def test_observation_subject_is_a_reference_that_may_target_a_patient():
    subject = parameter("Observation", "subject")
    assert (subject.type, subject.expression) == ("reference", "Observation.subject")
    assert "Patient" in subject.targets


def test_observation_value_quantity_keeps_its_parenthesised_casts():
    value = parameter("Observation", "value-quantity")
    assert value.type == "quantity"
    assert value.expression == "(Observation.value as Quantity) | (Observation.value as SampledData)"


def test_composite_components_name_their_parameters_and_relative_expressions():
    composite = parameter("Observation", "component-code-value-quantity")
    assert (composite.type, composite.expression) == ("composite", "Observation.component")
    assert composite.components == (Component("component-code", "code"), Component("component-value-quantity", "value.as(Quantity)"))


def test_observation_date_is_a_date_on_effective():
    date = parameter("Observation", "date")
    assert (date.type, date.expression) == ("date", "Observation.effective")


@pytest.mark.parametrize(
    "code, kind, expression",
    [
        ("name", "string", "Patient.name"),
        ("family", "string", "Patient.name.family"),
        ("given", "string", "Patient.name.given"),
        ("birthdate", "date", "Patient.birthDate"),
        ("identifier", "token", "Patient.identifier"),
        ("deceased", "token", "Patient.deceased.exists() and Patient.deceased != false"),
        ("general-practitioner", "reference", "Patient.generalPractitioner"),
    ],
)
def test_patient_parameters_apply_to_patient_only(code, kind, expression):
    found = parameter("Patient", code)
    assert (found.type, found.expression) == (kind, expression)


@pytest.mark.parametrize(
    "code, kind, expression",
    [("_id", "token", "Patient.id"), ("_lastUpdated", "date", "Patient.meta.lastUpdated"), ("_tag", "token", "Patient.meta.tag")],
)
def test_common_parameters_are_rewritten_onto_the_type(code, kind, expression):
    found = parameter("Patient", code)
    assert (found.type, found.expression) == (kind, expression)


def test_common_parameters_without_an_expression_are_not_offered():
    assert parameter("Patient", "_text") is None
    assert parameter("Patient", "_content") is None


def test_condition_patient_keeps_only_the_condition_branch_of_the_shared_union():
    assert parameter("Condition", "patient").expression == "Condition.subject.where(resolve() is Patient)"


def test_insurance_plan_name_uses_the_corrected_expression():
    assert parameter("InsurancePlan", "name").expression == "InsurancePlan.name | InsurancePlan.alias"


def test_a_reference_to_any_resource_targets_every_served_type():
    assert set(parameter("Task", "subject").targets) == resource_types()


def test_no_expression_mentions_another_types_prefix():
    served = resource_types()
    for type_name in served:
        for code, found in parameters_of(type_name).items():
            prefixes = set(re.findall(r"\b([A-Z][A-Za-z]+)\.", found.expression)) & served
            assert prefixes <= {type_name}, (type_name, code, found.expression)


def test_every_served_type_has_id():
    for type_name in resource_types():
        assert parameter(type_name, "_id").expression == f"{type_name}.id"


def test_unknown_type_or_code_has_no_parameters():
    assert parameters_of("Unicorn") == {}
    assert parameter("Patient", "horn") is None


def test_observation_is_in_the_patient_compartment_by_subject_and_performer():
    assert {"subject", "performer"} <= set(patient_compartment_parameters("Observation"))


def test_patient_is_in_its_compartment_through_link():
    assert set(patient_compartment_parameters("Patient")) & {"{def}", "link"}


def test_a_type_outside_the_compartment_has_no_compartment_parameters():
    assert patient_compartment_parameters("Organization") == ()


def test_every_compartment_parameter_is_a_parameter_of_its_type():
    for type_name in resource_types():
        for code in patient_compartment_parameters(type_name):
            assert code == "{def}" or parameter(type_name, code) is not None, (type_name, code)
