"""EHR_PROTECTED_PATHS: which element paths are protected. `+` adds to the default and `-` takes from it, any other
list replaces it, and a path that names no element is refused in words that say what is wrong; a server protects what
the list names, and `ehr keys rewrap` brings stored resources to a changed list."""
import pytest

from app.protection.paths import DEFAULT_PROTECTED_PATHS, PathError, protected_paths
from tests.protection.conftest import json_output, protected_settings, put, raw_database_text, run_ehr, running_app, search_ids
from tests.protection.people import PRACTITIONER, without_meta

NOTE = {"resourceType": "Observation", "id": "obs-n", "status": "final", "code": {"text": "Smoking status"},
        "valueQuantity": {"value": 5, "unit": "cigarettes/day"}, "note": [{"text": "Confided a secret about Gallowglass Farm"}]}


def texts(spec: str | None, type_name: str) -> list[str]:
    return [path.text for path in protected_paths(spec).of(type_name)]


def test_unset_the_default_paths_are_protected():
    assert texts(None, "Patient") == ["name", "telecom", "address", "birthDate", "identifier.value", "contact", "photo", "text"]
    assert texts("", "Practitioner") == ["telecom", "address", "identifier.value", "text"]
    assert texts(None, "Observation") == []
    assert set(protected_paths(None).by_type) == {path.split(".")[0] for path in DEFAULT_PROTECTED_PATHS}


def test_a_plus_entry_adds_a_path_to_the_default():
    assert texts("+Observation.note", "Observation") == ["note"]
    assert texts("+Observation.note", "Patient") == texts(None, "Patient")


def test_a_minus_entry_takes_a_path_from_the_default():
    assert texts("-Practitioner.text", "Practitioner") == ["telecom", "address", "identifier.value"]
    assert texts("-Practitioner.text", "Patient") == texts(None, "Patient")


def test_plus_and_minus_entries_combine():
    paths = protected_paths(" +Observation.note , -Practitioner.text,-Patient.photo ")
    assert [path.text for path in paths.of("Observation")] == ["note"]
    assert "text" not in [path.text for path in paths.of("Practitioner")]
    assert "photo" not in [path.text for path in paths.of("Patient")] and "name" in [path.text for path in paths.of("Patient")]


def test_a_plain_list_replaces_the_default():
    paths = protected_paths("Patient.name,Observation.note")
    assert set(paths.by_type) == {"Patient", "Observation"}
    assert [path.text for path in paths.of("Patient")] == ["name"]
    assert paths.of("Practitioner") == ()


def test_a_choice_element_protects_each_of_its_typed_keys():
    (deceased,) = protected_paths("Patient.deceased").of("Patient")
    assert set(deceased.steps[0]) == {"deceasedBoolean", "deceasedDateTime"}


def test_the_search_parameters_reading_protected_paths_follow_the_list():
    only_names = protected_paths("Patient.name").parameters
    assert {("Patient", "family"), ("Patient", "given"), ("Patient", "name")} <= only_names
    assert ("Patient", "birthdate") not in only_names and ("Patient", "identifier") not in only_names
    assert ("Patient", "gender") not in protected_paths(None).parameters


@pytest.mark.parametrize("spec, words", [
    ("Patient.nosuch", ["'Patient.nosuch'", "no element 'nosuch'"]),
    ("Patient.id", ["'Patient.id'", "id cannot be protected"]),
    ("Patient.meta", ["meta cannot be protected"]),
    ("Nope.name", ["'Nope.name'", "does not serve Nope"]),
    ("patient", ["'patient' is not an element path such as Patient.name"]),
    ("Patient.name,patient.birthDate", ["'patient.birthDate' is not an element path"]),
    ("Patient.birthDate.value", ["'Patient.birthDate.value'", "primitive value"]),
    ("+Patient.nosuch", ["'Patient.nosuch'", "no element 'nosuch'"]),
    ("-Patient.gender", ["removes Patient.gender", "which the default does not protect"]),
])
def test_a_path_that_names_no_protectable_element_is_refused_saying_why(spec, words):
    with pytest.raises(PathError) as refused:
        protected_paths(spec)
    assert [word for word in words if word not in str(refused.value)] == []


def test_a_server_with_a_bad_path_refuses_to_start(database_url, key_file):
    with pytest.raises(PathError, match="Patient.nosuch"):
        with running_app(protected_settings(database_url, key_file, paths="+Patient.nosuch")):
            pass


def test_commands_with_a_bad_path_fail_with_one_clear_line(database_url, key_file):
    result = run_ehr(database_url, "keys", "list", key_file=key_file, EHR_PROTECTED_PATHS="Patient.id")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: 'Patient.id': id cannot be protected; the server reads it to store and find resources."]


def test_an_added_path_round_trips_and_is_not_readable_in_the_database(database_url, key_file):
    with running_app(protected_settings(database_url, key_file, paths="+Observation.note")) as app:
        client = app.test_client()
        assert without_meta(put(client, NOTE)) == without_meta(NOTE)
        assert without_meta(client.get("/fhir/Observation/obs-n").get_json()) == without_meta(NOTE)
        assert search_ids(client, "Observation?code:text=smoking") == {"obs-n"}
    raw = raw_database_text(database_url)
    assert "Gallowglass" not in raw and "Confided" not in raw
    assert "Smoking status" in raw and "cigarettes/day" in raw


def test_a_search_by_a_quantity_that_reads_a_protected_element_is_refused_saying_why(database_url, key_file):
    with running_app(protected_settings(database_url, key_file, paths="+Observation.value")) as app:
        client = app.test_client()
        put(client, NOTE)
        response = client.get("/fhir/Observation?value-quantity=5")
        assert response.status_code == 400
        assert "protected" in response.get_json()["issue"][0]["diagnostics"]
        assert without_meta(client.get("/fhir/Observation/obs-n").get_json()) == without_meta(NOTE)
    assert "cigarettes/day" not in raw_database_text(database_url)


def test_a_removed_path_is_stored_in_plaintext_and_searchable_as_before(database_url, key_file):
    with running_app(protected_settings(database_url, key_file, paths="-Patient.birthDate")) as app:
        client = app.test_client()
        put(client, {"resourceType": "Patient", "id": "p1", "birthDate": "1931-07-19", "name": [{"family": "Hiddenname"}]})
        assert search_ids(client, "Patient?birthdate=gt1930") == {"p1"}
        assert client.get("/fhir/Patient?_sort=birthdate").status_code == 200
    raw = raw_database_text(database_url)
    assert "1931-07-19" in raw and "Hiddenname" not in raw


def test_rewrap_after_the_list_changed_brings_stored_resources_to_it(database_url, key_file):
    with running_app(protected_settings(database_url, key_file)) as app:
        put(app.test_client(), PRACTITIONER)
        put(app.test_client(), NOTE)
    assert "Hexhamworth</div>" not in raw_database_text(database_url)
    changed = "+Observation.note,-Practitioner.text"
    with running_app(protected_settings(database_url, key_file, paths=changed)) as app:
        client = app.test_client()
        assert without_meta(client.get("/fhir/Practitioner/doc-a").get_json()) == without_meta(PRACTITIONER)  # as written, before rewrap
        assert json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file, EHR_PROTECTED_PATHS=changed))["rewrapped"] > 0
        assert without_meta(client.get("/fhir/Practitioner/doc-a").get_json()) == without_meta(PRACTITIONER)
        assert without_meta(client.get("/fhir/Observation/obs-n").get_json()) == without_meta(NOTE)
        assert search_ids(client, "Practitioner?identifier=NPI-2718281") == {"doc-a"}
    raw = raw_database_text(database_url)
    assert "Hexhamworth</div>" in raw and "Gallowglass" not in raw and "NPI-2718281" not in raw


def test_rewrap_with_nothing_protected_brings_every_stored_value_back_to_plaintext(database_url, key_file):
    """EHR_PROTECTED_PATHS=none with a key: `ehr keys rewrap` opens what is stored (how protection is turned off)."""
    with running_app(protected_settings(database_url, key_file)) as app:
        put(app.test_client(), PRACTITIONER)
    assert "NPI-2718281" not in raw_database_text(database_url)
    assert json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file, EHR_PROTECTED_PATHS="none"))["rewrapped"] > 0
    assert "NPI-2718281" in raw_database_text(database_url)
    with running_app(protected_settings(database_url, key_file, paths="none")) as app:
        assert without_meta(app.test_client().get("/fhir/Practitioner/doc-a").get_json()) == without_meta(PRACTITIONER)
