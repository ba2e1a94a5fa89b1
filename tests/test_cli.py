"""The `ehr` console script as an operator runs it, against SQLite and PostgreSQL databases."""
import os
import shlex
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import psycopg
import pytest
import requests
from sqlalchemy.engine import make_url

from app.demo import demo_bundle
from app.store import migrate
from app.store.db import make_engine
from interop.hl7v2.service import receive
from tests.conftest import ADMIN_URL, libpq_url
from tests.hl7v2.test_outbox import Peer, a01, enhanced

EHR = Path(sys.executable).with_name("ehr")
COMMAND_TIMEOUT_SECONDS = 300


def ehr(database_url: str, *args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script with EHR_DATABASE_URL set, as an operator would."""
    env = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "off"}
    return subprocess.run([str(EHR), *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_SECONDS)


@pytest.fixture(params=("sqlite", "postgresql"))
def fresh_database_url(request, tmp_path):
    """A database that exists but has no schema yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'ehr.db'}"
        return
    admin = make_url(ADMIN_URL)
    name = f"ehr_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_revision(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def patient(resource_id: str, family: str) -> dict:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}


def write_ndjson(path: Path, lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else orjson.dumps(line).decode()) + "\n" for line in lines))
    return path


def synthea_bundle(patient_uuid: str, observation_uuid: str) -> dict:
    observation = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"urn:uuid:{patient_uuid}"},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    return {
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{patient_uuid}", "resource": {"resourceType": "Patient", "name": [{"family": "Chen"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": f"urn:uuid:{observation_uuid}", "resource": observation, "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def total(client, type_name: str) -> int:
    return client.get(f"/fhir/{type_name}?_total=accurate").get_json()["total"]


def system_history_size(client) -> int:
    return len(client.get("/fhir/_history?_count=1000").get_json().get("entry", []))


def version_of(client, type_name: str, resource_id: str) -> str:
    response = client.get(f"/fhir/{type_name}/{resource_id}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["meta"]["versionId"]


# ehr db upgrade / ehr serve


def test_db_upgrade_creates_the_schema_and_prints_the_revision(fresh_database_url, tmp_path):
    result = ehr(fresh_database_url, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"revision {migrate.head_revision()}" in result.stdout
    assert schema_revision(fresh_database_url) == migrate.head_revision()


def test_db_upgrade_of_a_current_database_changes_nothing_and_succeeds(database_url, tmp_path):
    result = ehr(database_url, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert schema_revision(database_url) == migrate.head_revision()


def test_a_database_without_a_schema_has_no_revision(fresh_database_url):
    assert schema_revision(fresh_database_url) is None


def test_db_current_reports_the_revision_the_code_needs(fresh_database_url, tmp_path):
    ehr(fresh_database_url, "db", "upgrade", cwd=tmp_path)
    result = ehr(fresh_database_url, "db", "current", cwd=tmp_path)
    assert result.stdout.split() == ["current:", migrate.head_revision(), "needed:", migrate.head_revision()]


def test_serve_on_an_unmigrated_database_exits_with_a_message_naming_db_upgrade(fresh_database_url, tmp_path):
    result = ehr(fresh_database_url, "serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode != 0
    assert "ehr db upgrade" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["demo"], ["load", "patient.json"], ["reindex"], ["hl7", "list"]])
def test_a_command_on_a_database_without_schema_says_in_one_line_to_run_db_upgrade(fresh_database_url, tmp_path, command):
    (tmp_path / "patient.json").write_bytes(orjson.dumps(patient("p1", "Berg")))
    result = ehr(fresh_database_url, *command, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stdout == ""
    last_line = result.stderr.strip().splitlines()[-1]  # `ehr load` draws its progress bar first
    assert last_line.startswith("Error: ") and "has no schema: run `ehr db upgrade`" in last_line


def test_db_upgrade_of_a_postgresql_database_that_does_not_exist_says_to_create_it(tmp_path):
    name = f"ehr_missing_{uuid.uuid4().hex[:10]}"
    result = ehr(make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False), "db", "upgrade", cwd=tmp_path)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: database {name} does not exist: create it with `createdb ") and line.endswith(f" {name}`")


def test_a_command_on_a_database_server_that_does_not_answer_says_so_in_one_line(tmp_path):
    port = free_port()
    result = ehr(f"postgresql+psycopg://postgres@127.0.0.1:{port}/ehr", "hl7", "list", cwd=tmp_path)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot connect to the database postgresql+psycopg://postgres@127.0.0.1:{port}/ehr: ")
    assert "Connection refused" in line


def test_a_command_on_an_sqlite_file_that_cannot_be_opened_says_so_in_one_line(tmp_path):
    result = ehr(f"sqlite:///{tmp_path}", "demo", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"Error: the SQLite database {tmp_path} cannot be opened: unable to open database file"]


def test_hl7_replay_of_a_message_that_does_not_exist_says_so_and_exits_1(database_url, tmp_path):
    result = ehr(database_url, "hl7", "replay", "999", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: No HL7 message 999."]


def test_serve_on_a_migrated_database_answers_the_fhir_api(database_url, tmp_path):
    port = free_port()
    env = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "off"}
    server = subprocess.Popen([str(EHR), "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        response = wait_for(f"http://127.0.0.1:{port}/fhir/metadata", server)
        assert response.status_code == 200
        assert response.json()["resourceType"] == "CapabilityStatement"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_answers_its_own_address_and_refuses_another_host(database_url, tmp_path):
    port = free_port()
    env = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "off"}
    server = subprocess.Popen([str(EHR), "serve", "--host", "127.0.0.2", "--port", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(f"http://127.0.0.2:{port}/fhir/metadata", server).status_code == 200
        refused = requests.get(f"http://127.0.0.2:{port}/fhir/metadata", headers={"Host": "evil.example:666"}, timeout=30)
        assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_for(url: str, server: subprocess.Popen, seconds: float = 60) -> requests.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"ehr serve exited with {server.returncode}: {server.stderr.read().decode()}")
        try:
            return requests.get(url, timeout=5)
        except requests.ConnectionError:
            time.sleep(0.2)
    pytest.fail(f"ehr serve did not answer {url} within {seconds} s")


# ehr demo


def test_demo_loads_the_demo_data_into_an_empty_database(database_url, client, tmp_path):
    result = ehr(database_url, "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"Loaded: {len(demo_bundle()['entry'])} created, 0 updated, 0 unchanged, 0 rejected." in result.stdout
    assert total(client, "Patient") == 5
    assert total(client, "Practitioner") == 3


def test_demo_prints_a_command_whose_token_reads_the_demo_through_the_secured_api(database_url, tmp_path):
    from app.config import Settings
    from app.web import create_app

    printed = ehr(database_url, "demo", cwd=tmp_path).stdout
    command = shlex.split(printed.strip().splitlines()[-1])
    assert command[1:5] == ["tokens", "issue", "--username", "demo-clinician"]
    issued = ehr(database_url, *command[1:], cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr
    app = create_app(Settings(database_url=database_url))
    secured = app.test_client()
    assert secured.get("/fhir/Patient/demo-patient-1").status_code == 401
    read = secured.get("/fhir/Patient/demo-patient-1", headers={"Authorization": f"Bearer {orjson.loads(issued.stdout)['access_token']}"})
    assert read.status_code == 200 and read.get_json()["id"] == "demo-patient-1"
    assert shlex.split(ehr(database_url, "demo", cwd=tmp_path).stdout.strip().splitlines()[-1]) == command  # the same app again
    app.extensions["ehr.engine"].dispose()


def test_second_demo_loads_nothing(database_url, client, tmp_path):
    ehr(database_url, "demo", cwd=tmp_path)
    versions = system_history_size(client)
    result = ehr(database_url, "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "already holds resources" in result.stdout
    assert system_history_size(client) == versions
    assert version_of(client, "Patient", "demo-patient-1") == "1"


def test_demo_leaves_a_database_that_already_has_data_alone(database_url, client, tmp_path):
    client.put("/fhir/Patient/mine", json=patient("mine", "Mine"))
    result = ehr(database_url, "demo", cwd=tmp_path)
    assert "already holds resources" in result.stdout
    assert total(client, "Patient") == 1


# ehr load


def test_load_prints_created_and_rejected_counts_with_reasons_and_exits_1(database_url, client, tmp_path):
    path = write_ndjson(tmp_path / "patients.ndjson", [
        patient("load-1", "Garcia"),
        patient("load-2", "Chen"),
        "{this is not json",
        {**patient("load-3", "Okafor"), "birthDate": "yesterday"},
        patient("load-4", "Novak"),
    ])
    result = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "Loaded: 3 created, 0 updated, 0 unchanged, 2 rejected." in result.stdout
    assert "rejected patients.ndjson:3: not valid JSON" in result.stdout
    assert "rejected patients.ndjson:4:" in result.stdout and "Patient.birthDate" in result.stdout
    assert total(client, "Patient") == 3
    assert client.get("/fhir/Patient/load-3").status_code == 404


def test_loading_the_same_file_twice_reports_everything_unchanged_and_writes_no_version(database_url, client, tmp_path):
    path = write_ndjson(tmp_path / "patients.ndjson", [patient("load-1", "Garcia"), patient("load-2", "Chen"), patient("load-3", "Okafor")])
    first = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Loaded: 3 created, 0 updated, 0 unchanged, 0 rejected." in first.stdout
    second = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Loaded: 0 created, 0 updated, 3 unchanged, 0 rejected." in second.stdout
    assert [version_of(client, "Patient", f"load-{n}") for n in (1, 2, 3)] == ["1", "1", "1"]
    assert system_history_size(client) == 3


def test_loading_a_changed_file_updates_the_changed_resources(database_url, client, tmp_path):
    path = write_ndjson(tmp_path / "patients.ndjson", [patient("load-1", "Garcia"), patient("load-2", "Chen")])
    ehr(database_url, "load", str(path), cwd=tmp_path)
    write_ndjson(path, [patient("load-1", "Garcia-Lopez"), patient("load-2", "Chen")])
    result = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert "Loaded: 0 created, 1 updated, 1 unchanged, 0 rejected." in result.stdout
    assert client.get("/fhir/Patient/load-1").get_json()["name"][0]["family"] == "Garcia-Lopez"
    assert version_of(client, "Patient", "load-1") == "2"


def test_synthea_bundle_loads_under_its_urn_uuids_with_the_reference_rewritten(database_url, client, tmp_path):
    patient_uuid, observation_uuid = str(uuid.uuid4()), str(uuid.uuid4())
    path = tmp_path / "synthea.json"
    path.write_bytes(orjson.dumps(synthea_bundle(patient_uuid, observation_uuid)))
    result = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Loaded: 2 created" in result.stdout
    assert client.get(f"/fhir/Patient/{patient_uuid}").get_json()["name"] == [{"family": "Chen"}]
    observation = client.get(f"/fhir/Observation/{observation_uuid}").get_json()
    assert observation["subject"] == {"reference": f"Patient/{patient_uuid}"}


def test_loading_a_synthea_bundle_twice_changes_nothing(database_url, client, tmp_path):
    path = tmp_path / "synthea.json"
    path.write_bytes(orjson.dumps(synthea_bundle(str(uuid.uuid4()), str(uuid.uuid4()))))
    ehr(database_url, "load", str(path), cwd=tmp_path)
    versions = system_history_size(client)
    result = ehr(database_url, "load", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Loaded: 0 created, 0 updated, 2 unchanged, 0 rejected." in result.stdout
    assert system_history_size(client) == versions
    assert (total(client, "Patient"), total(client, "Observation")) == (1, 1)


def test_load_of_several_files_reports_one_summary(database_url, client, tmp_path):
    first = write_ndjson(tmp_path / "a.ndjson", [patient("load-1", "Garcia")])
    second = tmp_path / "b.json"
    second.write_bytes(orjson.dumps(patient("load-2", "Chen")))
    result = ehr(database_url, "load", str(first), str(second), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Loaded: 2 created, 0 updated, 0 unchanged, 0 rejected." in result.stdout
    assert total(client, "Patient") == 2


def test_load_of_a_missing_file_says_so_and_loads_nothing(database_url, client, tmp_path):
    result = ehr(database_url, "load", str(tmp_path / "nowhere.ndjson"), cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere.ndjson" in result.stderr and "does not exist" in result.stderr
    assert total(client, "Patient") == 0


def test_hl7_destination_acks_and_deliver_as_an_operator_runs_them(database_url, engine, tmp_path):
    peer = Peer(answer="CR")
    try:
        added = ehr(database_url, "hl7", "destination", "add", "ADT1", f"127.0.0.1:{peer.port}", cwd=tmp_path)
        assert added.returncode == 0, added.stderr
        assert f"ADT1|*\tmllp://127.0.0.1:{peer.port}" in ehr(database_url, "hl7", "destination", "list", cwd=tmp_path).stdout
        receive(engine, enhanced(a01("CLI1")), "test")
        delivered = ehr(database_url, "hl7", "deliver", "--once", cwd=tmp_path)
        assert delivered.stdout.strip() == "Delivery attempts: 1 failed."
        header, listed = ehr(database_url, "hl7", "acks", "list", "--status", "failed", cwd=tmp_path).stdout.split("\n", 1)
        assert header.startswith("ID\tMESSAGE\tSTATUS")
        ack_id = listed.split("\t")[0]
        assert "The peer answered CR." in listed
        peer.answer = "CA"
        assert ehr(database_url, "hl7", "acks", "resend", ack_id, cwd=tmp_path).stdout.strip() == "Queued 1 ACKs again."
        assert ehr(database_url, "hl7", "deliver", "--once", cwd=tmp_path).stdout.strip() == "Delivery attempts: 1 sent."
        assert ehr(database_url, "hl7", "destination", "remove", "ADT1", cwd=tmp_path).returncode == 0
        assert ehr(database_url, "hl7", "destination", "list", cwd=tmp_path).stdout == ""
    finally:
        peer.stop()
