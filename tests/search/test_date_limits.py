"""Dates at the ends of FHIR's range, on both databases: instants that fall in year 0 or year 10000 in UTC are
stored and found, and searches, history and $stats at the ends of the range are answered, never a 500.

A valid FHIR instant may lie outside the datetimes Python holds once put in UTC
(`0001-01-01T00:00:00+14:00` is in year 0); the index clamps it to the first or last
moment it can hold (app/model/instants.py).
"""
from urllib.parse import quote

import pytest

from app.config import Settings
from app.web import create_app

FHIR_JSON = "application/fhir+json"
FIRST = "0001-01-01T00:00:00+14:00"  # 0000-12-31T10:00:00Z
LAST = "9999-12-31T23:59:59-12:00"  # 10000-01-01T11:59:59Z
OBSERVATIONS = {
    "o-first": {"effectiveInstant": FIRST, "issued": FIRST},  # issued is an instant too, though not searched
    "o-last": {"effectiveDateTime": LAST, "issued": LAST},
    "o-span": {"effectivePeriod": {"start": FIRST, "end": LAST}},
    "o-2024": {"effectiveDateTime": "2024-05-17T09:30:00Z"},
}


def observation(id_: str, fields: dict) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final", "code": {"text": "weight"}, **fields}


@pytest.fixture
def dated(client):
    for id_, fields in OBSERVATIONS.items():
        response = client.put(f"/fhir/Observation/{id_}", json=observation(id_, fields), content_type=FHIR_JSON)
        assert response.status_code == 201, response.get_json()
    return client


def found(client, query: str) -> set[str]:
    response = client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.get_json()
    return {entry["resource"]["id"] for entry in response.get_json().get("entry", [])}


@pytest.mark.parametrize("fields", [{"effectiveInstant": FIRST}, {"issued": LAST}, {"effectiveDateTime": LAST}], ids=["first", "last", "last-datetime"])
def test_instants_at_the_ends_of_the_fhir_range_are_created_and_read_back_as_sent(client, fields):
    response = client.post("/fhir/Observation", json=observation("x", fields), content_type=FHIR_JSON)
    assert response.status_code == 201, response.get_json()
    read = client.get(response.headers["Location"].split("/_history")[0]).get_json()
    assert {key: read[key] for key in fields} == fields


@pytest.mark.parametrize(("query", "expected"), [
    ("Observation?date=lt0001-01-02", {"o-first", "o-span"}),
    ("Observation?date=0001-01-01", {"o-first"}),
    ("Observation?date=ap0001", {"o-first", "o-span"}),
    ("Observation?date=sa9999-12-30", {"o-last"}),
    ("Observation?date=ge9999-12-31", {"o-last"}),
    ("Observation?date=ap9999", {"o-last", "o-span"}),
    ("Observation?date=2024", {"o-2024"}),
    ("Observation?date=ge2000&date=lt3000", {"o-2024", "o-span"}),
    ("Observation?date=eb0001-01-02", {"o-first"}),
    ("Observation?date=gt5000", {"o-last", "o-span"}),
])
def test_instants_at_the_ends_of_the_range_are_found_by_date_searches(dated, query, expected):
    assert found(dated, query) == expected


@pytest.mark.parametrize(("query", "expected"), [
    ("Patient?birthdate=ap9999", set()),
    ("Patient?birthdate=gt9999-12-31T23:59:59Z", set()),
    ("Patient?birthdate=9999-12-31T23:59:59.9999999Z", set()),
    ("Patient?birthdate=lt0001-01-01", set()),
    ("Patient?birthdate=eb0001", set()),
    ("Patient?birthdate=ap0001", set()),
    ("Patient?birthdate=sa0001", {"p1"}),
    ("Patient?_lastUpdated=sa9999-12-31", set()),
    ("Patient?_lastUpdated=ap9999-12-31T23:59:59.999Z", set()),
    ("Patient?_lastUpdated=lt0001-01-01T00:00:00%2B14:00", set()),
    ("Patient?_lastUpdated=gt0001-01-01T00:00:00%2B14:00", {"p1"}),
    ("Patient?_lastUpdated=ap0001", set()),
    ("Patient/_history?_since=9999-12-31T23:59:59.9999999Z", set()),
    ("Patient/_history?_since=0001-01-01T00:00:00%2B14:00", {"p1"}),
    ("Patient/_history?_at=9999", {"p1"}),
    ("Patient/p1/$everything?_since=9999-12-31T23:59:59-12:00", set()),
])
def test_searches_at_the_ends_of_the_date_range_are_answered(client, query, expected):
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1974-12-25"}
    assert client.put("/fhir/Patient/p1", json=patient, content_type=FHIR_JSON).status_code == 201
    assert found(client, query) == expected


@pytest.mark.parametrize("period_or_duration", ["period=9999-12-31/9999-12-31", "period=0001/0001-01-01", "period=/9999", "duration=1e300", "duration=99999999999"])
def test_stats_over_a_period_at_the_ends_of_the_range_is_answered(dated, period_or_duration):
    response = dated.get(f"/fhir/Observation/$stats?subject=Patient/p1&code=x&statistic=count&{period_or_duration}")
    assert response.status_code == 200, response.get_json()


def test_sorting_by_date_reads_the_clamped_ends_back_when_the_database_runs_east_of_utc(database_url):
    """PostgreSQL returns timestamps in the session's timezone: at +14:00 the last instant would be in year 10000."""
    separator = "&" if "?" in database_url else "?"
    url = database_url + (separator + "options=" + quote("-c timezone=Pacific/Kiritimati") if database_url.startswith("postgresql") else "")
    app = create_app(Settings(auth=False, database_url=url))
    client = app.test_client()
    try:
        for id_ in ("o-span", "o-2024"):
            client.put(f"/fhir/Observation/{id_}", json=observation(id_, OBSERVATIONS[id_]), content_type=FHIR_JSON)
        response = client.get("/fhir/Observation?_sort=-date")
        assert response.status_code == 200, response.get_json()
        assert [entry["resource"]["id"] for entry in response.get_json()["entry"]] == ["o-span", "o-2024"]
    finally:
        app.extensions["ehr.engine"].dispose()
