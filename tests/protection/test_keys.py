"""Keys: a server or command that lacks the key the database's data keys were wrapped with refuses to work, saying why
in one line; `ehr keys init`, `list`, `promote` and `retire` do what an operator expects of them."""
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from app.config import ProtectionSettings, Settings
from app.errors import KeyUnavailableError
from app.protection.keyfile import new_key_file
from tests.protection.conftest import json_output, protected_settings, put, raw_database_text, run_ehr, running_app, search_ids

EHR = Path(sys.executable).with_name("ehr")
PATIENT = {"resourceType": "Patient", "id": "pat-k", "name": [{"family": "Keyholder"}], "birthDate": "1960-06-06"}


@pytest.fixture
def protected_database(client, database_url) -> str:
    """A database whose data keys were made under `key_file`, holding a patient with protected values."""
    put(client, PATIENT)
    return database_url


def one_line_error(result) -> str:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_server_with_another_key_file_refuses_to_start(protected_database, key_file, tmp_path):
    other = tmp_path / "other.json"
    new_key_file(other)
    with pytest.raises(KeyUnavailableError) as refused:
        with running_app(protected_settings(protected_database, other)):
            pass
    assert orjson.loads(key_file.read_bytes())["id"] in refused.value.diagnostics


def test_a_server_without_a_key_refuses_to_start_on_a_database_that_has_data_keys(protected_database):
    with pytest.raises(KeyUnavailableError) as refused:
        with running_app(protected_settings(protected_database, None)):
            pass
    assert "EHR_KEY_FILE" in refused.value.diagnostics


def test_a_server_given_the_key_file_text_in_ehr_key_reads_the_protected_values(protected_database, key_file):
    settings = Settings(auth=False, database_url=protected_database, protection=ProtectionSettings(key_text=key_file.read_text()))
    with running_app(settings) as app:
        assert app.test_client().get("/fhir/Patient/pat-k").get_json()["birthDate"] == PATIENT["birthDate"]


def test_commands_with_a_missing_key_file_fail_with_one_clear_line(protected_database, tmp_path):
    missing = tmp_path / "nowhere" / "kek.json"
    for command in (["keys", "list"], ["keys", "rewrap"], ["reindex"]):
        line = one_line_error(run_ehr(protected_database, *command, key_file=missing))
        assert str(missing) in line and "cannot read the key file" in line, command


def test_the_installed_command_with_a_missing_key_file_prints_one_line_and_fails(tmp_path):
    missing = tmp_path / "moved-away.json"  # read before any database is opened: one backend tells all
    env = {**os.environ, "EHR_DATABASE_URL": f"sqlite:///{tmp_path / 'ehr.db'}", "EHR_KEY_FILE": str(missing)}
    done = subprocess.run([str(EHR), "keys", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"Error: cannot read the key file {missing}: No such file or directory"]


def test_commands_with_a_key_that_is_not_a_key_file_fail_with_one_clear_line(protected_database, tmp_path):
    line = one_line_error(run_ehr(protected_database, "keys", "list", EHR_KEY='{"format": "something else"}'))
    assert "EHR_KEY is not a key-encryption key" in line


def test_commands_with_another_key_refuse_and_name_the_key_needed(protected_database, key_file, tmp_path):
    other = tmp_path / "other.json"
    new_key_file(other)
    line = one_line_error(run_ehr(protected_database, "keys", "list", key_file=other))
    assert orjson.loads(key_file.read_bytes())["id"] in line


def test_key_commands_without_a_key_say_that_protection_is_off(database_url):
    line = one_line_error(run_ehr(database_url, "keys", "list"))
    assert "Protection is off" in line and "EHR_KEY_FILE" in line


@pytest.mark.parametrize("command", [["keys", "list"], ["reindex"]])
def test_commands_without_a_key_on_a_database_with_data_keys_refuse_in_one_line(protected_database, command):
    line = one_line_error(run_ehr(protected_database, *command))
    assert "EHR_KEY_FILE" in line


def test_loading_files_without_a_key_into_a_protected_database_is_refused_and_stores_no_plaintext(protected_database, tmp_path):
    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(orjson.dumps({"resourceType": "Patient", "id": "pat-l", "name": [{"family": "Leakington"}]}).decode() + "\n")
    line = one_line_error(run_ehr(protected_database, "load", str(ndjson)))
    assert "EHR_KEY_FILE" in line
    assert "Leakington" not in raw_database_text(protected_database)


def test_loading_files_with_the_key_seals_what_they_hold(protected_database, key_file, tmp_path, client):
    ndjson = tmp_path / "patients.ndjson"
    ndjson.write_text(orjson.dumps({"resourceType": "Patient", "id": "pat-l", "name": [{"family": "Leakington"}]}).decode() + "\n")
    result = run_ehr(protected_database, "load", str(ndjson), key_file=key_file)
    assert result.exit_code == 0, result.output
    assert "Leakington" not in raw_database_text(protected_database)
    assert search_ids(client, "Patient?family=leak") == {"pat-l"}


def test_keys_init_writes_a_file_only_its_owner_can_read_and_prints_its_key_id(database_url, tmp_path):
    path = tmp_path / "new-kek.json"
    result = run_ehr(database_url, "keys", "init", "--file", str(path))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.stdout.strip() == orjson.loads(path.read_bytes())["id"]


def test_keys_init_never_overwrites_a_key_file(database_url, key_file):
    before = key_file.read_bytes()
    line = one_line_error(run_ehr(database_url, "keys", "init", "--file", str(key_file)))
    assert "never overwritten" in line and key_file.read_bytes() == before


def test_keys_list_shows_one_primary_value_key_and_one_primary_index_key_wrapped_by_the_key_file(protected_database, key_file):
    keys = json_output(run_ehr(protected_database, "keys", "list", key_file=key_file))
    assert sorted((key["purpose"], key["primary"]) for key in keys) == [("index", True), ("value", True)]
    assert {key["kekId"] for key in keys} == {orjson.loads(key_file.read_bytes())["id"]}


def test_promote_and_retire_of_an_unknown_key_say_there_is_no_such_key(protected_database, key_file):
    for command in ("promote", "retire"):
        line = one_line_error(run_ehr(protected_database, "keys", command, "nosuchkey", key_file=key_file))
        assert "no data key 'nosuchkey'" in line


def test_retiring_a_primary_key_is_refused(protected_database, key_file):
    keys = json_output(run_ehr(protected_database, "keys", "list", key_file=key_file))
    for key in keys:
        line = one_line_error(run_ehr(protected_database, "keys", "retire", key["id"], key_file=key_file))
        assert f"{key['id']} is the primary {key['purpose']} key" in line
    assert len(json_output(run_ehr(protected_database, "keys", "list", key_file=key_file))) == 2


def test_rekey_moves_the_data_keys_to_a_new_key_file_and_the_old_one_no_longer_opens_them(protected_database, key_file, tmp_path):
    new = tmp_path / "new-kek.json"
    new_id = new_key_file(new).id
    rekeyed = json_output(run_ehr(protected_database, "keys", "rekey", EHR_KEY_FILE=f"{new}{os.pathsep}{key_file}"))
    assert rekeyed["kekId"] == new_id
    with running_app(protected_settings(protected_database, new)) as app:
        assert app.test_client().get("/fhir/Patient/pat-k").get_json()["name"] == PATIENT["name"]
    with pytest.raises(KeyUnavailableError):
        with running_app(protected_settings(protected_database, key_file)):
            pass
    assert {key["kekId"] for key in json_output(run_ehr(protected_database, "keys", "list", key_file=new))} == {new_id}
