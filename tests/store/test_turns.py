"""Long work pauses for the other requests of an event-loop worker (app/store/turns.py), and only there."""
import time

import pytest

from app.store import turns

ENTRIES = 40


def transaction(count: int) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"}, "subject": {"reference": "Patient/paused"},
                      "valueQuantity": {"value": n, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}},
         "request": {"method": "POST", "url": "Observation"}}
        for n in range(count)
    ]}


@pytest.fixture
def pauses(monkeypatch):
    """The sleeps let_others_run takes, each turn over at once."""
    taken = []
    monkeypatch.setattr(turns, "TURN_SECONDS", 0)
    monkeypatch.setattr(time, "sleep", taken.append)
    return taken


@pytest.mark.parametrize("cooperative", [True, False])
def test_a_transaction_pauses_at_each_of_its_resources_only_under_an_event_loop(client, pauses, monkeypatch, cooperative):
    monkeypatch.setattr(turns, "is_cooperative", lambda: cooperative)
    assert client.put("/fhir/Patient/paused", json={"resourceType": "Patient", "id": "paused"}).status_code == 201
    pauses.clear()
    response = client.post("/fhir", json=transaction(ENTRIES))
    assert response.status_code == 200
    # parsing, validation, index extraction and the integrity check each pause once per entry
    assert len(pauses) >= (4 * ENTRIES if cooperative else 0) and set(pauses) <= {turns.PAUSE_SECONDS}
    assert cooperative or not pauses


def test_a_process_is_cooperative_only_once_gevent_patched_its_clock():
    assert turns.is_cooperative() is False  # the test process runs threads
