"""Fitting a body to its model's shape: True only where the fhir.resources model accepts the body; anything the
shape cannot account for is left to the model. Every body a client or a feed writes is judged by the fit first
(app/model/validation.py model_issues), so a fit the model would refuse is invalid data stored."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.model.shapes import fits_model
from app.model.validation import built_model_issues
from tests.model.test_bindings import changed

OBSERVATION = {
    "resourceType": "Observation",
    "meta": {"source": "urn:ehr:hl7v2:message:1"},
    "identifier": [{"system": "urn:oid:1.2.3", "value": "F1/8867-4"}],
    "status": "final",
    "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/originalText", "valueString": "F"}]},
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2025-03-01T08:30:00+01:00",
    "issued": "2025-03-01T08:45:00Z",
    "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    "referenceRange": [{"low": {"value": 55}, "high": {"value": 110}, "text": "55-110"}],
    "note": [{"authorString": "Dr Jones", "time": "2025-03-01", "text": "Seated.\nCalm."}],
}
PATIENT = {
    "resourceType": "Patient",
    "name": [{"family": "Müller", "given": ["Hans", "Peter"], "period": {"start": "2020-01"}}],
    "telecom": [{"system": "phone", "value": "+49 30 1234567", "use": "home", "rank": 1}],
    "gender": "male",
    "birthDate": "1965-04-12",
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1965-04-12T08:30:00Z"}]},
    "deceasedBoolean": False,
    "multipleBirthInteger": 2,
    "contact": [{"relationship": [{"text": "Spouse"}], "name": {"family": "Müller"}}],
}
ODD_VALUES = ["", " ", "\u00a0", "a  b", 0, -1, 2**31, 1.5, True, "2025-13", "2025-02-30", "0000", "2025-01-01T10:00:00",
              "2025-01-01T10:00:00+15:00", "24:00:00", {}, [], ["x"], {"x": 1}, "x" * 70, "http://a b", "1e5", [None], [{}]]


def model_accepts(body: dict) -> bool:
    return not built_model_issues(body["resourceType"], body)


def element_paths(value, prefix=()):
    """The path of every element and list entry under `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*prefix, key)
        yield from element_paths(item, (*prefix, key))


@pytest.mark.parametrize("body", [OBSERVATION, PATIENT], ids=lambda body: body["resourceType"])
def test_a_valid_body_fits_its_models_shape(body):
    assert fits_model(body["resourceType"], body) and model_accepts(body)


@pytest.mark.parametrize("body", [OBSERVATION, PATIENT], ids=lambda body: body["resourceType"])
def test_a_body_with_any_element_replaced_by_an_odd_value_fits_only_if_the_model_accepts_it(body):
    for path in element_paths(body):
        if path == ("resourceType",):
            continue
        for value in ODD_VALUES:
            mutated = changed(body, path, value)
            if fits_model(body["resourceType"], mutated):
                assert model_accepts(mutated), (path, value)


@pytest.mark.parametrize("change", [
    {"unknownElement": "x"},  # the model forbids it
    {"valueString": "72"},  # a second type of value[x]
    {"status": None},  # a null: the model reads it as absent, and status is required
    {"contained": [{"resourceType": "Patient"}]},  # a nested resource: only the model checks it
    {"_status": {}},  # a primitive's extension element with no extension
    {"status__ext": {"extension": [{"url": "http://example.org/x", "valueString": "F"}]}},  # a field's Python name: the model takes it too
], ids=str)
def test_what_the_shape_cannot_vouch_for_is_left_to_the_model(change):
    assert not fits_model("Observation", {**OBSERVATION, **change})


def test_a_missing_required_element_is_left_to_the_model():
    body = {name: value for name, value in OBSERVATION.items() if name != "code"}
    assert not fits_model("Observation", body) and not model_accepts(body)


ENCOUNTER = {
    "resourceType": "Encounter", "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
    "subject": {"reference": "Patient/p1"}, "period": {"start": "2025-03-01T08:00:00Z", "end": "2025-03-01T09:00:00Z"},
    "participant": [{"individual": {"reference": "Practitioner/d1"}}],
    "location": [{"location": {"display": "Ward 3"}, "status": "completed"}],
}
# Names real bodies use, so that added keys often name an element (in the right place or the wrong one).
NAMES = ["system", "code", "value", "display", "text", "extension", "url", "valueString", "valueQuantity", "valueInteger",
         "reference", "start", "end", "use", "family", "given", "coding", "unit", "id", "low", "high", "modifierExtension",
         "_value", "_code", "status", "period", "type", "assigner", "rank", "div"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(ODD_VALUES[:16]) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(NAMES), children, max_size=3),
    max_leaves=8,
)


def dicts_in(value, prefix=()):
    """The path of every object in `value`, itself included."""
    if isinstance(value, dict):
        yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from dicts_in(item, (*prefix, key))


def subtrees(value):
    """Every value inside `value`: what a body edited with pieces of real bodies is made of."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        yield item
        yield from subtrees(item)


PIECES = [piece for body in (OBSERVATION, PATIENT, ENCOUNTER) for piece in subtrees(body)]


@st.composite
def edited_bodies(draw) -> dict:
    """A valid body with up to four edits: an element (or list entry) replaced, or a key added to an object, with a
    piece of a real body (often valid there, sometimes in a subtly wrong place) or with any JSON; or a key removed."""
    body = draw(st.sampled_from([OBSERVATION, PATIENT, ENCOUNTER]))
    for _ in range(draw(st.integers(1, 4))):
        value = draw(st.sampled_from(PIECES) | JSON)
        edit = draw(st.sampled_from(["replace", "add", "remove"]))
        if edit == "remove":
            path = draw(st.sampled_from([path for path in element_paths(body) if path != ("resourceType",)]))
            body = removed(body, path)
        elif edit == "replace":
            path = draw(st.sampled_from([path for path in element_paths(body) if path != ("resourceType",)]))
            body = changed(body, path, value)
        else:
            body = changed(body, (*draw(st.sampled_from(list(dicts_in(body)))), draw(st.sampled_from(NAMES))), value)
    return body


def removed(body: dict, path: tuple) -> dict:
    copied = changed(body, path, None)
    target = copied
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]
    return copied


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_bodies())
def test_a_body_edited_anywhere_with_any_json_fits_only_if_the_model_accepts_it(body):
    if fits_model(body["resourceType"], body):
        assert model_accepts(body), body
