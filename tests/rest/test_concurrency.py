"""Many clients writing at the same moment, over real HTTP, on SQLite and on PostgreSQL.

Each test releases N requests together with a barrier and checks what the
clients and the resource's history show afterwards: two writers never both win,
no version is skipped or written twice, and nobody sees a 500.
"""
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests

CLIENTS = 12
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
TIMEOUT_SECONDS = 60


def race(calls):
    """Run each call in its own thread, all released at once; return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def patient(resource_id: str, family: str = "Garcia") -> dict:
    return {"resourceType": "Patient", "id": resource_id, "name": [{"family": family, "given": ["Maria"]}]}


def put(base: str, body: dict, **headers):
    url = f"{base}/{body['resourceType']}/{body['id']}"
    return lambda: requests.put(url, json=body, headers={**FHIR_JSON, **headers}, timeout=TIMEOUT_SECONDS)


def post(base: str, body: dict):
    url = f"{base}/{body['resourceType']}"
    return lambda: requests.post(url, json=body, headers=FHIR_JSON, timeout=TIMEOUT_SECONDS)


def delete(base: str, type_name: str, resource_id: str):
    return lambda: requests.delete(f"{base}/{type_name}/{resource_id}", headers=FHIR_JSON, timeout=TIMEOUT_SECONDS)


def statuses(responses) -> Counter:
    return Counter(response.status_code for response in responses)


def history_versions(base: str, type_name: str, resource_id: str) -> list[str]:
    """The versionIds of the instance history, as listed (newest first)."""
    response = requests.get(f"{base}/{type_name}/{resource_id}/_history", params={"_count": 1000}, timeout=TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return [entry["response"]["etag"].removeprefix('W/"').rstrip('"') for entry in response.json().get("entry", [])]


def read(base: str, type_name: str, resource_id: str) -> dict:
    response = requests.get(f"{base}/{type_name}/{resource_id}", timeout=TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    return response.json()


def create_first_version(base: str, resource_id: str) -> None:
    response = put(base, patient(resource_id))()
    assert response.status_code == 201, response.text


def test_concurrent_updates_with_the_same_if_match_have_exactly_one_winner(live_server):
    create_first_version(live_server, "race-if-match")
    calls = [put(live_server, patient("race-if-match", f"Family{n}"), **{"If-Match": 'W/"1"'}) for n in range(CLIENTS)]
    responses = race(calls)
    assert statuses(responses) == {200: 1, 412: CLIENTS - 1}
    winner = next(response for response in responses if response.status_code == 200)
    assert winner.headers["ETag"] == 'W/"2"'
    current = read(live_server, "Patient", "race-if-match")
    assert (current["meta"]["versionId"], current["name"][0]["family"]) == ("2", winner.json()["name"][0]["family"])
    assert history_versions(live_server, "Patient", "race-if-match") == ["2", "1"]


def test_losers_of_an_if_match_race_get_an_operation_outcome_saying_to_read_again(live_server):
    create_first_version(live_server, "race-losers")
    calls = [put(live_server, patient("race-losers", f"Family{n}"), **{"If-Match": 'W/"1"'}) for n in range(CLIENTS)]
    losers = [response for response in race(calls) if response.status_code == 412]
    assert len(losers) == CLIENTS - 1
    for response in losers:
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert 'W/"2"' in outcome["issue"][0]["diagnostics"]


def test_concurrent_put_creates_of_one_new_id_with_the_same_content_make_exactly_one_version(live_server):
    responses = race([put(live_server, patient("race-create")) for _ in range(CLIENTS)])
    assert statuses(responses) == {201: 1, 200: CLIENTS - 1}
    assert {response.headers["ETag"] for response in responses} == {'W/"1"'}
    assert read(live_server, "Patient", "race-create")["meta"]["versionId"] == "1"
    assert history_versions(live_server, "Patient", "race-create") == ["1"]


def test_concurrent_put_creates_of_one_new_id_with_different_content_make_one_create_and_the_rest_updates(live_server):
    responses = race([put(live_server, patient("race-create-each", f"Family{n}")) for n in range(CLIENTS)])
    assert statuses(responses) == {201: 1, 200: CLIENTS - 1}
    assert sorted(int(response.headers["ETag"][3:-1]) for response in responses) == list(range(1, CLIENTS + 1))
    assert history_versions(live_server, "Patient", "race-create-each") == [str(v) for v in range(CLIENTS, 0, -1)]


def test_concurrent_creates_all_succeed_with_distinct_ids(live_server):
    responses = race([post(live_server, patient("ignored", f"Family{n}")) for n in range(CLIENTS)])
    assert statuses(responses) == {201: CLIENTS}
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == CLIENTS
    listed = requests.get(f"{live_server}/Patient", params={"_count": 100, "_total": "accurate"}, timeout=TIMEOUT_SECONDS).json()
    assert listed["total"] == CLIENTS
    assert {entry["resource"]["id"] for entry in listed["entry"]} == ids


def test_concurrent_updates_without_if_match_all_succeed_with_no_gap_or_duplicate_in_history(live_server):
    create_first_version(live_server, "race-last-writer")
    responses = race([put(live_server, patient("race-last-writer", f"Family{n}")) for n in range(CLIENTS)])
    assert statuses(responses) == {200: CLIENTS}
    assert sorted(int(response.headers["ETag"][3:-1]) for response in responses) == list(range(2, CLIENTS + 2))
    assert history_versions(live_server, "Patient", "race-last-writer") == [str(v) for v in range(CLIENTS + 1, 0, -1)]
    assert read(live_server, "Patient", "race-last-writer")["meta"]["versionId"] == str(CLIENTS + 1)


def test_every_concurrent_update_is_kept_in_history_exactly_once(live_server):
    create_first_version(live_server, "race-kept")
    race([put(live_server, patient("race-kept", f"Family{n}")) for n in range(CLIENTS)])
    response = requests.get(f"{live_server}/Patient/race-kept/_history", params={"_count": 1000}, timeout=TIMEOUT_SECONDS)
    families = Counter(entry["resource"]["name"][0]["family"] for entry in response.json()["entry"])
    assert families == Counter({"Garcia": 1, **{f"Family{n}": 1 for n in range(CLIENTS)}})


def test_concurrent_deletes_write_one_deletion_and_none_fails(live_server):
    create_first_version(live_server, "race-delete")
    responses = race([delete(live_server, "Patient", "race-delete") for _ in range(CLIENTS)])
    assert not [response for response in responses if response.status_code >= 500]
    assert [response.headers.get("ETag") for response in responses].count('W/"2"') == 1
    assert history_versions(live_server, "Patient", "race-delete") == ["2", "1"]
    assert requests.get(f"{live_server}/Patient/race-delete", timeout=TIMEOUT_SECONDS).status_code == 410
