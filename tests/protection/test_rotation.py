"""Rotating data keys while the server keeps serving: `ehr keys add`, `promote`, `rewrap` and `retire` of a value key
and of an index key, with another thread creating and updating patients all along. Every patient reads back as last
written, searches keep finding them, and the old key is retired only once nothing uses it."""
import re
import threading
import time
from datetime import timedelta

import pytest

import app.protection.commands
import app.protection.service
import app.store.rewrap
from app.protection.service import Protection
from app.store.rewrap import key_uses, rewrap
from tests.protection.conftest import FHIR_JSON, failure, json_output, run_ehr, search_ids

PATIENTS = 200
MAX_ROUNDS = 400  # at most 800 writes by the writer thread: rewrap, which goes on to the last row, ends
RING_REFRESH_SECONDS = 0.2  # how stale a server's key ring may be (10 s in production), so that tests wait less


@pytest.fixture(autouse=True)
def quick_rotation(monkeypatch):
    monkeypatch.setattr(app.protection.service, "RING_REFRESH_SECONDS", RING_REFRESH_SECONDS)
    monkeypatch.setattr(app.protection.commands, "SEEN_EVERYWHERE", timedelta(seconds=2 * RING_REFRESH_SECONDS))
    monkeypatch.setattr(app.store.rewrap, "BATCH_SIZE", 50)  # many batches, so that writes fall between them


def seeded_patient(number: int) -> dict:
    return {"resourceType": "Patient", "name": [{"family": f"Rotason{number:03d}", "given": ["Seed"]}],
            "identifier": [{"system": "urn:rot", "value": f"R-{number:03d}"}], "birthDate": f"19{number % 100:02d}-0{1 + number % 9}-1{number % 10}"}


@pytest.fixture
def seeded(client) -> dict[str, dict]:
    return seed(client, PATIENTS)


def seed(client, count: int) -> dict[str, dict]:
    """`count` patients, created in one transaction: id -> body, in the order of their numbers."""
    bodies = [seeded_patient(number) for number in range(count)]
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": body, "request": {"method": "POST", "url": "Patient"}} for body in bodies]}
    response = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200, response.get_json()
    ids = [entry["response"]["location"].split("/")[1] for entry in response.get_json()["entry"]]
    return {resource_id: {**body, "id": resource_id} for resource_id, body in zip(ids, bodies)}


class Writer(threading.Thread):
    """Another client creating new patients and updating seeded ones (their given name) until stopped (or after
    MAX_ROUNDS); `expected` holds what each patient it wrote should read back as, `failures` every answer that was not
    a success."""

    def __init__(self, app, seeded: dict[str, dict]):
        super().__init__(daemon=True)
        self.client, self.seeded, self.stopping = app.test_client(), list(seeded.values()), threading.Event()
        self.expected: dict[str, dict] = {}
        self.failures: list = []

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set() and number < MAX_ROUNDS:
            created = {"resourceType": "Patient", "id": f"w{number:04d}", "name": [{"family": f"Writerson{number:04d}"}],
                       "identifier": [{"system": "urn:rot", "value": f"W-{number:04d}"}], "birthDate": "1999-09-09"}
            seeded = self.seeded[number % len(self.seeded)]
            updated = {**seeded, "name": [{**seeded["name"][0], "given": [f"Given{number:04d}"]}]}
            for body in (created, updated):
                response = self.client.put(f"/fhir/Patient/{body['id']}", json=body, headers=FHIR_JSON)
                if response.status_code in (200, 201):
                    self.expected[body["id"]] = body
                else:
                    self.failures.append((body["id"], response.status_code, response.get_json()))
            number += 1

    def stop(self) -> None:
        """Stop, and wait for the write under way (stopping twice is stopping once)."""
        self.stopping.set()
        self.join(timeout=60)
        assert not self.is_alive()


@pytest.fixture
def writing(app):
    """Starts a Writer on `app` for the seeded patients given; stops it at the end, whatever happened."""
    writers = []

    def start(seeded: dict[str, dict]) -> Writer:
        writers.append(Writer(app, seeded))
        writers[-1].start()
        return writers[-1]

    yield start
    for writer in writers:
        writer.stop()


def primary_key_id(database_url, key_file, purpose: str) -> str:
    keys = json_output(run_ehr(database_url, "keys", "list", key_file=key_file))
    return next(key["id"] for key in keys if key["purpose"] == purpose and key["primary"])


def new_primary_key(database_url, key_file, purpose: str) -> str:
    added = json_output(run_ehr(database_url, "keys", "add", "--purpose", purpose, key_file=key_file))
    assert added["primary"] is False
    assert json_output(run_ehr(database_url, "keys", "promote", added["id"], key_file=key_file)) == {"id": added["id"], "primary": True}
    return added["id"]


def refused_retire(database_url, key_file, key_id: str) -> str:
    result = run_ehr(database_url, "keys", "retire", key_id, key_file=key_file)
    assert result.exit_code != 0, result.output
    assert "ehr keys rewrap" in result.output
    return result.output


def rewrapped_by_command(database_url, key_file) -> dict:
    return json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file))


def every_patient(client) -> dict[str, dict]:
    bundle = client.get("/fhir/Patient?_count=1000").get_json()
    assert not [link for link in bundle["link"] if link["relation"] == "next"]
    return {entry["resource"]["id"]: entry["resource"] for entry in bundle["entry"]}


def assert_every_patient_reads_as_written(client, expected: dict[str, dict]) -> None:
    stored = every_patient(client)
    assert set(stored) == set(expected)
    wrong = [resource_id for resource_id, body in expected.items() if {name: stored[resource_id].get(name) for name in body} != body]
    assert wrong == []
    for resource_id in (*list(expected)[:3], *list(expected)[-3:]):
        assert client.get(f"/fhir/Patient/{resource_id}").get_json()["name"] == expected[resource_id]["name"]


def test_retiring_a_value_key_still_in_use_is_refused_with_the_count_of_rows_using_it(app, client, database_url, key_file):
    seed(client, 12)
    old = primary_key_id(database_url, key_file, "value")
    new_primary_key(database_url, key_file, "value")
    refusal = refused_retire(database_url, key_file, old)
    assert f"{2 * 12} stored rows still use {old}" in refusal  # each patient's current and history row
    assert key_uses(app.extensions["ehr.engine"], old) == 2 * 12


def test_retiring_an_index_key_replaced_before_any_rewrap_is_refused(client, database_url, key_file):
    seed(client, 12)
    old = primary_key_id(database_url, key_file, "index")
    new_primary_key(database_url, key_file, "index")
    assert old in refused_retire(database_url, key_file, old)
    assert old in {key["id"] for key in json_output(run_ehr(database_url, "keys", "list", key_file=key_file))}


def test_value_key_rotation_under_writes_leaves_every_patient_readable_and_the_old_key_retired(seeded, writing, app, client, database_url, key_file):
    old = primary_key_id(database_url, key_file, "value")
    writer = writing(seeded)
    new = new_primary_key(database_url, key_file, "value")
    count = int(re.search(rf"(\d+) stored rows still use {old}", refused_retire(database_url, key_file, old)).group(1))
    assert count >= PATIENTS
    written_before = len(writer.expected)
    assert rewrapped_by_command(database_url, key_file)["rewrapped"] > 0
    writer.stop()
    assert writer.failures == [] and len(writer.expected) > written_before
    rewrapped_by_command(database_url, key_file)  # the final rewrap, once the writer is done
    assert key_uses(app.extensions["ehr.engine"], old) == 0
    assert json_output(run_ehr(database_url, "keys", "retire", old, key_file=key_file)) == {"retired": old}
    assert {key["id"] for key in json_output(run_ehr(database_url, "keys", "list", key_file=key_file)) if key["purpose"] == "value"} == {new}
    time.sleep(RING_REFRESH_SECONDS)
    assert_every_patient_reads_as_written(client, {**seeded, **writer.expected})


def test_index_key_rotation_under_writes_keeps_searches_finding_every_patient(seeded, writing, app, client, database_url, key_file):
    old = primary_key_id(database_url, key_file, "index")
    writer = writing(seeded)
    new_primary_key(database_url, key_file, "index")
    time.sleep(2 * RING_REFRESH_SECONDS)  # as `ehr keys rewrap` waits: every server now blinds new rows under the new key
    numbered, written = list(seeded), []
    for batch, _ in enumerate(rewrap(app.extensions["ehr.engine"], rebuild_index=True)):
        written.append(len(writer.expected))
        if batch == 4:
            writer.stop()  # rewrap goes on to the last row: it would chase a writer faster than itself for ever
        number = (batch * 37) % PATIENTS
        assert search_ids(client, f"Patient?identifier=urn:rot|R-{number:03d}") == {numbered[number]}, batch
        assert search_ids(client, f"Patient?family:exact=Rotason{number:03d}") == {numbered[number]}, batch
        assert client.get("/fhir/Patient?family=rotason&_summary=count").get_json()["total"] == PATIENTS, batch
    writer.stop()
    assert writer.failures == [] and written[3] > written[0]  # the writer wrote between rewrap's batches
    assert rewrapped_by_command(database_url, key_file)["rows"] > 0  # the final rewrap, once the writer is done
    assert json_output(run_ehr(database_url, "keys", "retire", old, key_file=key_file)) == {"retired": old}
    time.sleep(RING_REFRESH_SECONDS)
    created = [resource_id for resource_id in writer.expected if resource_id.startswith("w")]
    assert client.get("/fhir/Patient?family=rotason&_summary=count").get_json()["total"] == PATIENTS
    assert client.get("/fhir/Patient?family=writerson&_summary=count").get_json()["total"] == len(created)
    assert search_ids(client, f"Patient?identifier=urn:rot|W-{created[-1][1:]}") == {created[-1]}
    assert search_ids(client, "Patient?birthdate=1999-09-09&_count=1000") == set(created)
    for number in (0, 123, PATIENTS - 1):
        assert search_ids(client, f"Patient?identifier=R-{number:03d}") == {numbered[number]}


def test_key_commands_run_while_the_server_writes_succeed(client, writing, database_url, key_file):
    writer = writing(seed(client, 20))
    for purpose in ("value", "index"):
        new_primary_key(database_url, key_file, purpose)
        for _ in range(2):
            result = run_ehr(database_url, "keys", "rewrap", key_file=key_file)
            assert result.exit_code == 0, (purpose, failure(result))
    writer.stop()
    assert writer.failures == []


def test_a_write_under_way_when_the_servers_key_ring_refreshes_stays_findable_after_the_old_index_key_is_retired(
        client, database_url, key_file, monkeypatch):
    seed(client, 3)
    old = primary_key_id(database_url, key_file, "index")
    new_primary_key(database_url, key_file, "index")  # this server still blinds under `old` until its ring refreshes
    blind_rows = Protection.blind_rows

    def blind_rows_then_ring_refresh(self, *arguments):
        rows = blind_rows(self, *arguments)
        self.ring_cache = None  # the refresh falls here, in the middle of the write
        return rows

    monkeypatch.setattr(Protection, "blind_rows", blind_rows_then_ring_refresh)
    straddler = {"resourceType": "Patient", "name": [{"family": "Straddlewick"}]}
    straddler_id = client.post("/fhir/Patient", json=straddler, headers=FHIR_JSON).get_json()["id"]
    monkeypatch.setattr(Protection, "blind_rows", blind_rows)
    assert rewrapped_by_command(database_url, key_file)["rows"] > 0
    assert json_output(run_ehr(database_url, "keys", "retire", old, key_file=key_file)) == {"retired": old}
    time.sleep(RING_REFRESH_SECONDS)
    assert search_ids(client, "Patient?family=straddlewick") == {straddler_id}
