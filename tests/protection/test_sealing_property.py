"""Sealing then opening gives back exactly the body that was sealed, whatever JSON a Patient holds at its protected
paths (and beside them); a sealed body holds only ciphertexts there, and they do not open as another patient's."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.errors import ProtectedValueUnreadable
from app.protection.keyfile import new_key_file
from app.protection.service import PROTECTION
from app.store import migrate
from app.store.db import make_engine
from tests.protection.conftest import protected_settings, running_app

PROTECTED_KEYS = ("name", "telecom", "address", "birthDate", "contact", "photo", "text")
SEALED = "ehr:sealed"

keys = st.text(min_size=1, max_size=12).filter(lambda key: key != SEALED)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4), max_leaves=12)
identifiers = st.lists(st.fixed_dictionaries({}, optional={"system": st.text(max_size=20), "value": json_values, "_value": json_values,
                                                           "use": st.sampled_from(["usual", "official"])}), max_size=3)


@st.composite
def patients(draw) -> dict:
    body = {"resourceType": "Patient", "id": draw(st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True))}
    for key in PROTECTED_KEYS:
        if draw(st.booleans()):
            body[key] = draw(json_values)
        if draw(st.integers(0, 3)) == 0:
            body[f"_{key}"] = draw(json_values)
    if draw(st.booleans()):
        body["identifier"] = draw(identifiers)
    body.update(draw(st.dictionaries(st.sampled_from(["gender", "active", "extension", "maritalStatus", "link"]), json_values, max_size=3)))
    return body


@pytest.fixture(scope="module")
def protection(tmp_path_factory):
    """The Protection a server has, with the default paths, on a database of its own (its keys are all it reads)."""
    folder = tmp_path_factory.mktemp("sealing")
    new_key_file(folder / "kek.json")
    url = f"sqlite:///{folder / 'ehr.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    with running_app(protected_settings(url, folder / "kek.json")) as app:
        yield app.extensions["ehr.engine"].get_execution_options()[PROTECTION]


def sealed_places(body: dict) -> list:
    """The values at the protected paths of a sealed body (and their primitive extensions)."""
    places = [body[key] for key in body if key.lstrip("_") in PROTECTED_KEYS]
    for identifier in body.get("identifier", []):
        places += [identifier[key] for key in ("value", "_value") if key in identifier]
    return places


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=patients())
def test_sealing_then_opening_any_patient_gives_back_the_same_body(protection, body):
    sealed = protection.sealed("Patient", body["id"], body)
    assert protection.opened("Patient", body["id"], sealed) == body
    assert all(isinstance(value, str) and value.startswith("enc:v1:") for value in sealed_places(sealed))
    assert {key: value for key, value in sealed.items() if key.lstrip("_") not in (*PROTECTED_KEYS, "identifier", SEALED)} == \
        {key: value for key, value in body.items() if key.lstrip("_") not in (*PROTECTED_KEYS, "identifier")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=patients())
def test_a_sealed_body_does_not_open_as_another_patients(protection, body):
    sealed = protection.sealed("Patient", body["id"], body)
    if not sealed_places(sealed):
        return
    with pytest.raises(ProtectedValueUnreadable):
        protection.opened("Patient", body["id"] + "x", sealed)


def contained_items():
    """What a `contained` list may hold: Patients, other resources, and (from a careless client) anything else."""
    return st.lists(patients() | st.fixed_dictionaries({"resourceType": st.sampled_from(["Observation", "Medication"])}) | json_values, max_size=3)


@st.composite
def holders(draw) -> dict:
    """An Observation containing resources, or a Bundle whose entries hold some."""
    if draw(st.booleans()):
        return {"resourceType": "Observation", "id": "holder", "status": "final", "contained": draw(contained_items())}
    entries = st.fixed_dictionaries({}, optional={"fullUrl": st.text(max_size=20), "resource": patients() | json_values}) | json_values
    return {"resourceType": "Bundle", "id": "holder", "type": "collection", "entry": draw(st.lists(entries, max_size=3))}


def nested_patients(body: dict) -> list[dict]:
    items = body.get("contained", []) if body["resourceType"] == "Observation" else [
        entry.get("resource") for entry in body["entry"] if isinstance(entry, dict)]
    return [item for item in items if isinstance(item, dict) and item.get("resourceType") == "Patient"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=holders())
def test_sealing_then_opening_any_resource_holding_patients_gives_back_the_same_body(protection, body):
    sealed = protection.sealed(body["resourceType"], body["id"], body)
    assert protection.opened(body["resourceType"], body["id"], sealed) == body
    for patient in nested_patients(sealed):
        assert all(isinstance(value, str) and value.startswith("enc:v1:") for value in sealed_places(patient))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(), context=st.text(min_size=1, max_size=40), cut=st.integers(0, 200))
def test_a_sealed_text_opens_as_it_was_only_where_it_was_sealed_and_unaltered(protection, text, context, cut):
    """What the HL7 store keeps beside resources (an ACK, an error quoting a message): any text round trips, is never
    readable in its sealed form, and neither another place nor a cut or altered copy opens."""
    sealed = protection.sealed_text(text, context)
    assert sealed.startswith("enc:v1:") and sealed.isascii() and protection.opened_text(sealed, context) == text
    assert protection.opened_text(None, context) is None
    start = sealed.index(":", len("enc:v1:")) + 1  # the nonce and ciphertext, after the key id (without it: text in the clear)
    flipped = start + cut % (len(sealed) - start - 4)  # not in the last quantum, whose padding bits no decoder reads
    altered_character = sealed[:flipped] + ("A" if sealed[flipped] != "A" else "B") + sealed[flipped + 1:]
    for altered in (sealed[:start + cut % (len(sealed) - start)], altered_character):
        with pytest.raises(ProtectedValueUnreadable):
            protection.opened_text(altered, context)
    with pytest.raises(ProtectedValueUnreadable):
        protection.opened_text(sealed, context + "x")
