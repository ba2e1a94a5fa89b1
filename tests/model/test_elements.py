"""The R4 element table, and the summaries and element subsets it drives."""
from app.model.elements import RESOURCE, binding_table, element_of, elements_of
from app.model.subsetting import subset

BLOOD_PRESSURE = {
    "resourceType": "Observation",
    "id": "bp",
    "meta": {"versionId": "1"},
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "note": [{"text": "Seated."}],
    "component": [{
        "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
        "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]", "comparator": "<"},
        "interpretation": [{"text": "normal"}],
        "referenceRange": [{"text": "below 140"}],
    }],
}


def test_an_element_knows_its_summary_flag_and_cardinality():
    status = element_of("Observation", "status")
    assert status.summary and status.mandatory
    assert not element_of("Observation", "note").summary and not element_of("Observation", "note").mandatory


def test_choice_elements_are_listed_by_their_json_names_with_their_base():
    assert element_of("Observation", "valueQuantity").base == "value"
    assert element_of("Observation", "valueQuantity").node == "Quantity"
    assert element_of("Observation", "status").base == "status"


def test_backbone_elements_list_their_children_under_their_path():
    component = element_of("Observation", "component")
    assert component.nested and component.node == "Observation.component"
    assert element_of(component.node, "code").summary
    assert not element_of(component.node, "interpretation").summary


def test_a_content_reference_points_at_the_element_it_repeats():
    assert element_of("Questionnaire.item", "item").node == "Questionnaire.item"
    assert element_of("Observation.component", "referenceRange").node == "Observation.referenceRange"


def test_datatypes_have_their_own_entries_with_required_codes():
    assert element_of("HumanName", "use").codes.codes == ("usual", "official", "temp", "nickname", "anonymous", "old", "maiden")
    assert "<" in element_of("Quantity", "comparator").codes.members
    assert element_of("Timing.repeat", "dayOfWeek").codes is not None


def test_contained_resources_are_walked_by_their_own_type():
    assert element_of("Patient", "contained").node == RESOURCE


def test_an_unknown_element_has_no_flags():
    unknown = element_of("Patient", "favouriteColour")
    assert not unknown.summary and not unknown.mandatory and unknown.codes is None
    assert elements_of("NoSuchType") == {}


def test_the_binding_walk_skips_elements_that_cannot_hold_a_required_code():
    walked = binding_table()["Patient"]
    assert "gender" in walked and "name" in walked and "contained" in walked
    assert "birthDate" not in walked and "active" not in walked
    assert "_birthDate" in walked  # its extensions may carry an Identifier or a Quantity


def test_summary_true_drops_non_summary_elements_inside_backbone_elements():
    component = subset(BLOOD_PRESSURE, "true", None)["component"][0]
    assert component["code"] == BLOOD_PRESSURE["component"][0]["code"]
    assert "interpretation" not in component and "referenceRange" not in component


def test_summary_true_keeps_datatypes_inside_backbone_elements_whole():
    component = subset(BLOOD_PRESSURE, "true", None)["component"][0]
    assert component["valueQuantity"] == BLOOD_PRESSURE["component"][0]["valueQuantity"]


def test_summary_true_keeps_top_level_summary_elements_and_drops_the_rest():
    summary = subset(BLOOD_PRESSURE, "true", None)
    assert summary["status"] == "final" and summary["subject"] == BLOOD_PRESSURE["subject"] and summary["id"] == "bp"
    assert "note" not in summary


def test_summary_true_reduces_every_level_of_a_recursive_backbone_element():
    """StructureMap.group.rule.rule repeats the definition of StructureMap.group.rule, whose documentation is not summary."""
    rule = {"name": "copy", "source": [{"context": "src"}], "documentation": "Copies the source."}
    group = {"name": "main", "typeMode": "none", "input": [{"name": "src", "mode": "source"}], "rule": [{**rule, "rule": [rule]}]}
    structure_map = {"resourceType": "StructureMap", "url": "http://example.org/map", "name": "Map", "status": "draft", "group": [group]}
    outer = subset(structure_map, "true", None)["group"][0]["rule"][0]
    assert "documentation" not in outer and "documentation" not in outer["rule"][0]
    assert outer["rule"][0]["source"] == rule["source"]


def test_elements_keeps_the_mandatory_elements_that_were_not_asked_for():
    subsetted = subset(BLOOD_PRESSURE, None, "subject")
    assert subsetted["status"] == "final" and subsetted["code"] == BLOOD_PRESSURE["code"]
    assert "component" not in subsetted and "note" not in subsetted


def test_summary_text_keeps_only_the_mandatory_top_level_elements():
    subsetted = subset({**BLOOD_PRESSURE, "text": {"status": "generated", "div": "<div/>"}}, "text", None)
    assert set(subsetted) == {"resourceType", "id", "meta", "text", "status", "code"}
