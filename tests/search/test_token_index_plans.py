"""Token searches find their matches through search_token's hash indexes, which leave out the rows without a hash in
their column (migration 0011): each search's condition must let the planner use them, on SQLite and PostgreSQL, with
protection off and on (blind rows are looked up by the same hashes)."""
import re

import pytest
from sqlalchemy import event

from app.config import ProtectionSettings, Settings
from app.protection.keyfile import new_key_file

SEARCHES = (
    "Patient?identifier=urn:mrn|MRN-1", "Patient?identifier=urn:mrn|", "Patient?identifier=MRN-1", "Patient?identifier=|MRN-1",
    "Patient?identifier:not=urn:mrn|MRN-1", "Patient?gender=female", "Observation?code=http://loinc.org|8867-4", "Observation?code=8867-4",
)
BLIND_SEARCHES = ("Patient?family=plan", "Patient?family:exact=Planner", "Patient?birthdate=1970-01-02")  # token rows when protected
PLAN_USES_A_HASH_INDEX = re.compile(r"(Index (Only )?Scan using|Bitmap Index Scan on|SEARCH .* INDEX) ix_search_token_(code|sys_code|sys)\b")


@pytest.fixture(params=["off", "on"])
def settings(request, database_url, tmp_path):
    protection = ProtectionSettings()
    if request.param == "on":
        new_key_file(tmp_path / "kek.json")
        protection = ProtectionSettings(key_file=str(tmp_path / "kek.json"))
    return Settings(auth=False, database_url=database_url, protection=protection)


def test_each_token_search_reads_a_hash_index(app, client, settings):
    for number in range(3):
        client.post("/fhir/Patient", json={
            "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": f"MRN-{number}"}],
            "name": [{"family": "Planner"}], "gender": "female", "birthDate": "1970-01-02",
        })
        client.post("/fhir/Observation", json={
            "resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        })
    engine = app.extensions["ehr.engine"]
    for query in SEARCHES + (BLIND_SEARCHES if settings.protection.on else ()):
        statements = token_statements(engine, lambda: client.get(f"/fhir/{query}"))
        assert statements, query
        plans = [plan_of(engine, *statement) for statement in statements]
        assert all(PLAN_USES_A_HASH_INDEX.search(plan) for plan in plans), (query, plans)


def token_statements(engine, search) -> list[tuple]:
    captured = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().startswith(("SELECT", "WITH")) and "search_token" in statement:
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = search()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, response.get_json()
    return captured


def plan_of(engine, statement: str, parameters) -> str:
    """The plan of a statement, with sequential scans priced out on PostgreSQL: whether a hash index can serve it, not
    whether the planner prefers it for a few rows."""
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        if engine.dialect.name == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + statement, parameters)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
        plan = "\n".join(" ".join(map(str, row)) for row in cursor.fetchall())
        connection.rollback()
    return plan
