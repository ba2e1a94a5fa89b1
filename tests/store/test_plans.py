"""Which statements PostgreSQL plans once per connection (a write's statement, a row read by its key) and which it
plans with their values every time (searches): a connection to a large database prepares the first and never the
others; one to a small database, where a plan made once would scan tables that then grow, plans everything anew."""
from sqlalchemy import text

from app.config import Settings
from app.store import db
from app.web import create_app
from tests.store.test_statement_counts import FHIR_JSON, OBSERVATION

ROUNDS = 14  # psycopg prepares a statement at its 6th run, and PostgreSQL plans it 5 times before it may keep a plan


def prepared_statements(engine) -> list[tuple[int, int, str]]:
    """(generic plans, custom plans, text) of the statements prepared on every pooled connection."""
    connections = [engine.connect() for _ in range(max(1, engine.pool.checkedin()))]
    try:
        query = text("SELECT generic_plans, custom_plans, statement FROM pg_prepared_statements")
        return [tuple(row) for connection in connections for row in connection.execute(query)]
    finally:
        for connection in connections:
            connection.close()


def matches(client, url: str) -> int:
    return len(client.get(url).get_json().get("entry", []))


def writes_reads_and_searches(client) -> None:
    assert client.put("/fhir/Patient/plans", json={"resourceType": "Patient", "id": "plans"}, headers=FHIR_JSON).status_code == 201
    body = {**OBSERVATION, "subject": {"reference": "Patient/plans"}}
    observation_id = client.post("/fhir/Observation", json=body, headers=FHIR_JSON).get_json()["id"]
    for n in range(ROUNDS):
        updated = client.put(f"/fhir/Observation/{observation_id}", json={**body, "id": observation_id, "valueQuantity": {"value": n}}, headers=FHIR_JSON)
        assert updated.get_json()["meta"]["versionId"] == str(n + 2)
        assert client.get(f"/fhir/Observation/{observation_id}").get_json()["valueQuantity"]["value"] == n
        assert matches(client, "/fhir/Observation?code=http://loinc.org|8867-4&subject=Patient/plans") == n + 1
        assert client.post("/fhir/Observation", json=body, headers=FHIR_JSON).status_code == 201
    assert client.delete(f"/fhir/Observation/{observation_id}").status_code == 200
    assert matches(client, "/fhir/Observation?subject=Patient/plans") == ROUNDS


def statements_prepared_by_a_session(database_url: str) -> list[tuple[int, int, str]]:
    """Run writes_reads_and_searches through a new app, then list what its connections prepared."""
    app = create_app(Settings(auth=False, database_url=database_url))
    try:
        writes_reads_and_searches(app.test_client())
        return prepared_statements(app.extensions["ehr.engine"])
    finally:
        app.extensions["ehr.engine"].dispose()


def test_on_a_large_database_writes_and_reads_by_key_are_planned_once_and_searches_every_time(database_url, monkeypatch):
    if not database_url.startswith("postgresql"):
        return  # SQLite plans every statement itself
    monkeypatch.setattr(db, "GENERIC_PLAN_MIN_PAGES", 0)  # this database counts as large
    prepared = statements_prepared_by_a_session(database_url)
    kept = [statement for generic, _custom, statement in prepared if generic > 0]
    assert any(statement.startswith("WITH") and "UPDATE resource SET" in statement for statement in kept), prepared
    assert any(statement.startswith("WITH") and "INSERT INTO resource (" in statement for statement in kept), prepared
    assert any(statement.startswith("SELECT resource.pk") and "FOR UPDATE" not in statement for statement in kept), prepared
    assert not any("search_token" in statement and not statement.startswith("WITH") for _, _, statement in prepared), prepared


def test_on_a_small_database_every_statement_is_planned_with_its_values(database_url):
    if not database_url.startswith("postgresql"):
        return
    prepared = statements_prepared_by_a_session(database_url)
    assert prepared  # psycopg prepares what runs 5 times...
    assert all(generic == 0 for generic, _custom, _statement in prepared), prepared  # ...and each is planned anew
