"""Which statements PostgreSQL plans once per connection (a write's statement, a row read by its key) and which it
plans with their values every time (searches), from the first write on: the plans it keeps look rows up by their
indexes also when the tables are new and empty, so they stay right as the tables grow."""
import re

import psycopg
from psycopg import sql
from sqlalchemy import event, text

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


def statements_prepared_by_a_session(database_url: str, seen: list | None = None) -> list[tuple[int, int, str]]:
    """Run writes_reads_and_searches through a new app, then list what its connections prepared; each statement marked
    PREPARED, with its parameters, goes into `seen`."""
    app = create_app(Settings(auth=False, database_url=database_url))
    engine = app.extensions["ehr.engine"]

    def note_prepared(_connection, _cursor, statement, parameters, context, _executemany):
        if seen is not None and context.execution_options.get(db.PREPARED):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note_prepared)
    try:
        writes_reads_and_searches(app.test_client())
        return prepared_statements(engine)
    finally:
        engine.dispose()


def test_writes_and_reads_by_key_are_planned_once_and_searches_every_time(database_url):
    if not database_url.startswith("postgresql"):
        return  # SQLite plans every statement itself
    prepared = statements_prepared_by_a_session(database_url)
    kept = [statement for generic, _custom, statement in prepared if generic > 0]
    assert any(statement.startswith("WITH") and "UPDATE resource SET" in statement for statement in kept), prepared
    assert any(statement.startswith("WITH") and "INSERT INTO resource (" in statement for statement in kept), prepared
    assert any(statement.startswith("SELECT resource.pk") and "FOR UPDATE" not in statement for statement in kept), prepared
    assert not any("search_token" in statement and not statement.startswith("WITH") for _, _, statement in prepared), prepared


def test_on_a_new_database_the_plans_kept_look_rows_up_by_their_indexes(database_url):
    """The generic plan of every prepared statement, made while the tables hold a few rows, scans no table: a plan
    that did would stay as the tables grow (nothing re-plans it on a database without autovacuum)."""
    if not database_url.startswith("postgresql"):
        return
    seen = []
    statements_prepared_by_a_session(database_url, seen)
    plans = {statement: generic_plan(database_url, statement, parameters) for statement, parameters in seen}
    assert len(plans) >= 4, list(plans)  # a create's, an update's, a delete's statement and the read by key
    scanning = {statement: plan for statement, plan in plans.items() if "Seq Scan" in plan}
    assert not scanning, scanning


def generic_plan(database_url: str, statement: str, parameters: dict) -> str:
    """EXPLAIN of `statement`'s generic plan (the one PostgreSQL keeps), with `parameters` for its placeholders."""
    names = []

    def numbered(match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("SET plan_cache_mode = force_generic_plan")
        connection.execute("PREPARE kept AS " + re.sub(r"%\((\w+)\)s", numbered, statement).replace("%%", "%"))
        values = sql.SQL(", ").join(sql.Literal(parameters[name]) for name in names)
        explain = sql.SQL("EXPLAIN (COSTS OFF) EXECUTE kept ({})").format(values)
        return "\n".join(row[0] for row in connection.execute(explain))
