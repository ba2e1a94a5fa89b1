"""The resources an HL7 v2 message creates are validated by their shape (app/model/shapes.py) instead of by building
their fhir.resources models, which judges every body the mapping builds as the models do; a body that does not fit,
from a client or from an update that combines a message with a stored body, builds its model."""
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.errors import InvalidResource
from app.model import validation
from app.model.shapes import fits_model
from app.model.validation import built_model_issues, validate_resource
from app.store.resources import StoredResource, WriteResult
from interop.hl7v2.service import Senders, apply_messages, read, receive, stored_message

MESSAGES = Path(__file__).parent / "messages"
SAMPLES = {path.name: path.read_text().replace("\n", "\r") for path in sorted(MESSAGES.glob("*.hl7"))}
A01 = SAMPLES["adt_a01_v251.hl7"]
# Values that test a primitive's rules once the mapping puts them in an element: spaces inside codes, whitespace
# without text, impossible and partial dates, offsets out of range, numbers too long for a float, URIs with spaces,
# control characters and NBSP as hex escapes, table codes that switch the mapping's paths.
ODD_VALUES = ["", '""', " ", "M  R", "a\tb", "\\X00A0\\", "\\X0B\\", "\\XC285\\", "\\.br\\", "\\F\\", "ä", "测", "\U0001F600",
              "2025", "202503", "20250301", "20250230", "2025130199", "0000", "00010101", "202503011230+1500", "20250301123060",
              "20250301123045.1234-0330", "1230", "1.5", "-0", ".5", "1e5", "9" * 20 + ".5", "9" * 400 + ".0", "0", "99999999999",
              "http://a b", "urn:oid:1.2.3", "ISO", "UUID", "URI", "UCUM", "L", "NM", "SN", "ST", "FT", "CWE", "DT", "TM",
              "DR", "NR", "ED", "RP", "Base64", "Hex", "A", "Y", "N", "F", "C", "P", "X", "<>", ">=", ":", "-", "MR", "SS",
              "mg/dL", "10*3/uL"]
RULE_BREAKERS = ["M  R", "mm  Hg", "a\tb", "9" * 400 + ".0"]  # codes with inner runs of whitespace; a decimal beyond a float
# (field, component) by segment where a value goes into an element as sent (a code, a number, a rank, a system), or
# picks the mapping's path (value types, identifier authorities, dates).
HOT_SPOTS = {
    "MSH": [(3, 1), (4, 1), (7, 1), (10, 1)], "PID": [(3, 1), (3, 4), (3, 5), (5, 1), (7, 1), (8, 1), (13, 2), (13, 3), (13, 18), (25, 1), (29, 1)],
    "OBX": [(2, 1), (3, 1), (3, 3), (5, 1), (5, 2), (5, 3), (6, 1), (6, 3), (7, 1), (8, 1), (11, 1), (14, 1)],
    "OBR": [(4, 1), (7, 1), (22, 1), (25, 1)], "PV1": [(2, 1), (3, 1), (19, 1), (19, 4), (44, 1)], "NK1": [(3, 1), (5, 3)],
}
TEXT = st.text(st.characters(exclude_characters="|^~&\\\r\n", exclude_categories=("Cs",)), max_size=10)


class RecordingUnit:
    """Stands in for a unit of work on an empty database: no business key finds a resource, and every create is
    recorded."""

    def __init__(self):
        self.created: list[dict] = []

    def matching_each(self, keys):
        return {key: [] for key in keys}

    def match_one(self, type_name, criteria):
        return None

    def create(self, body, expected_type=None):
        self.created.append(body)
        moment = datetime.now(timezone.utc)
        return WriteResult(StoredResource(body["resourceType"], str(len(self.created)), 1, moment, False, body), created=True)


def created_bodies(text: str) -> list[dict]:
    """What the service creates for a message on an empty database; [] when it refuses the message."""
    reading = read(text.encode(), "test", Senders())
    if reading.instructions is None:
        return []
    unit = RecordingUnit()
    apply_messages(unit, [(1, reading)])
    return unit.created


def verdict(body: dict):
    try:
        validate_resource(body)
    except InvalidResource as refused:
        return refused.diagnostics, refused.issues
    return None


def fits_exactly_when_the_model_accepts(body: dict) -> bool:
    return fits_model(body["resourceType"], body) == (not built_model_issues(body["resourceType"], body))


def with_field(text: str, line: int, field: int, component: int, value: str) -> str:
    """`text` with one component of one field of one segment (by index, MSH-1 and MSH-2 left alone) set to `value`."""
    segments = text.split("\r")
    fields = segments[line].split("|")
    field = max(field, 3) if fields[0] == "MSH" else field
    fields += [""] * (field + 1 - len(fields))
    components = fields[field].split("^")
    components += [""] * (component - len(components))
    components[component - 1] = value
    fields[field] = "^".join(components)
    segments[line] = "|".join(fields)
    return "\r".join(segments)


@st.composite
def edited_messages(draw) -> str:
    """A sample message with up to twelve components set to odd values or arbitrary text: anywhere, or where a value
    goes into an element as sent (HOT_SPOTS), there mostly to values that break an element's rules."""
    text = draw(st.sampled_from(sorted(SAMPLES.values())))
    for _ in range(draw(st.integers(1, 12))):
        line = draw(st.integers(0, text.count("\r") - 1))
        spots = HOT_SPOTS.get(text.split("\r")[line][:3])
        if spots and draw(st.booleans()):
            field, component = draw(st.sampled_from(spots))
            value = draw(st.one_of(st.sampled_from(RULE_BREAKERS), st.sampled_from(ODD_VALUES)))
        else:
            field, component = draw(st.integers(1, 45)), draw(st.integers(1, 20))
            value = draw(st.one_of(st.sampled_from(ODD_VALUES), TEXT))
        text = with_field(text, line, field, component, value)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(edited_messages())
def test_the_shape_check_and_the_model_agree_on_every_body_a_message_creates(text):
    created = created_bodies(text)
    assume(created)
    for body in created:
        assert fits_exactly_when_the_model_accepts(body)


ORU = SAMPLES["oru_r01_v251.hl7"]
NUMERIC_RESULT = ORU.split("\r").index(next(line for line in ORU.split("\r") if line.startswith("OBX|") and "|NM|" in line))


@pytest.mark.parametrize(("text", "line", "field", "component", "value"), [
    (A01, 2, 3, 5, "M  R"),  # PID-3.5, the identifier type, is a code: no runs of spaces inside
    (ORU, NUMERIC_RESULT, 6, 1, "mm  Hg"),  # OBX-6.1, the unit, is a code too
    (ORU, NUMERIC_RESULT, 5, 1, "9" * 400 + ".0"),  # beyond a float: infinite, which no decimal is
], ids=["identifier-type", "unit", "decimal"])
def test_a_value_that_breaks_its_elements_rule_is_refused_in_the_models_words(text, line, field, component, value):
    created = created_bodies(with_field(text, line, field, component, value))
    refused = [body for body in created if verdict(body)]
    assert refused and all(not fits_model(body["resourceType"], body) and built_model_issues(body["resourceType"], body) for body in refused)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_body_a_sample_message_creates_fits_its_models_shape(name):
    created = created_bodies(SAMPLES[name])
    assert created
    for body in created:
        assert fits_model(body["resourceType"], body), body["resourceType"]


@pytest.fixture
def models_built(monkeypatch) -> list[str]:
    """The types whose fhir.resources models validation builds, in order."""
    built = []
    real = validation.model_class

    def counted(type_name: str):
        built.append(type_name)
        return real(type_name)

    monkeypatch.setattr(validation, "model_class", counted)
    return built


@pytest.mark.parametrize("name", ["adt_a01_v251.hl7", "oru_r01_v251.hl7"])
def test_a_message_creates_its_resources_without_building_their_models(engine, models_built, name):
    receipt = receive(engine, SAMPLES[name].encode(), "test")
    assert receipt.status == "applied"
    assert models_built == []


def test_an_update_by_a_later_message_fits_its_shape_too(engine, models_built):
    receive(engine, A01.encode(), "test")
    later = A01.replace("|MSG00001|", "|MSG00002|").replace("M\\XFC\\ller^Hans^Peter", "Berg^Hans^Peter")
    assert receive(engine, later.encode(), "test").status == "applied"
    assert models_built == []


def test_a_clients_resource_builds_its_model_only_when_it_does_not_fit(client, models_built):
    response = client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "Berg"}]})
    assert response.status_code == 201 and models_built == []
    response = client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1980-13-01"})
    assert response.status_code == 400 and models_built == ["Patient"]
    assert response.json["issue"][0]["expression"] == ["Patient.birthDate"]


def test_a_mapped_value_the_model_refuses_is_refused_in_the_models_words(engine):
    odd_type = A01.replace("|AL|NE|", "|||").replace("^MR~123", "^M  R~123")  # a CX.5 type that is no FHIR code: two spaces inside
    expected = verdict(next(body for body in created_bodies(odd_type) if body["resourceType"] == "Patient"))
    receipt = receive(engine, odd_type.encode(), "test")
    assert (receipt.status, receipt.ack.split("\r")[1].split("|")[1]) == ("error", "AE")
    assert expected is not None and expected[0] in stored_message(engine, receipt.message_id).error
