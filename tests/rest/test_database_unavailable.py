"""While the database is away, every call that needs it answers 503 with Retry-After (an OperationOutcome of issue
type `transient` on FHIR routes), and calls succeed again once it is back; on PostgreSQL and SQLite for real."""
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.store import db, migrate
from app.store.db import make_engine
from app.web import create_app
from tests.conftest import ADMIN_URL, BACKENDS, libpq_url
from tests.hl7v2.test_receive import a01, msa

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "name": [{"family": "Berg"}]}
TRANSACTION = {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}}]}
FHIR_CALLS = [
    ("GET", "/fhir/Patient/p1", None),
    ("GET", "/fhir/Patient?name=berg", None),
    ("GET", "/fhir/Patient/p1/_history", None),
    ("GET", "/fhir/Patient/p1/$everything", None),
    ("POST", "/fhir/Patient", PATIENT),
    ("PUT", "/fhir/Patient/p1", {**PATIENT, "id": "p1"}),
    ("POST", "/fhir", TRANSACTION),
]


class PostgresqlDatabase:
    """A database of our own, which the test takes away: its sessions ended and its name changed."""

    def __init__(self):
        self.name = f"ehr_away_{uuid.uuid4().hex[:10]}"
        self.admin(f'CREATE DATABASE "{self.name}"')
        self.url = make_url(ADMIN_URL).set(database=self.name).render_as_string(hide_password=False)

    @staticmethod
    def admin(*statements: str) -> None:
        with psycopg.connect(libpq_url(make_url(ADMIN_URL)), autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def end_sessions(self) -> None:
        self.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def take_away(self, app) -> None:
        self.end_sessions()
        self.admin(f'ALTER DATABASE "{self.name}" RENAME TO "{self.name}_away"')

    def bring_back(self) -> None:
        self.admin(f'ALTER DATABASE "{self.name}_away" RENAME TO "{self.name}"')

    def drop(self) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)', f'DROP DATABASE IF EXISTS "{self.name}_away" WITH (FORCE)')


class SqliteDatabase:
    """A database file the test takes away: a directory stands at its path, which SQLite cannot open."""

    def __init__(self, directory: Path):
        self.path = directory / "ehr.db"
        self.url = f"sqlite:///{self.path}"

    def take_away(self, app) -> None:
        app.extensions["ehr.engine"].dispose()  # an open SQLite connection would go on reading the moved file
        self.path.rename(self.path.with_suffix(".away"))
        self.path.mkdir()

    def bring_back(self) -> None:
        self.path.rmdir()
        self.path.with_suffix(".away").rename(self.path)

    def drop(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def database(request, tmp_path):
    database = PostgresqlDatabase() if request.param == "postgresql" else SqliteDatabase(tmp_path)
    engine = make_engine(database.url)
    migrate.upgrade(engine)
    engine.dispose()
    yield database
    database.drop()


@pytest.fixture
def app(database, monkeypatch):
    monkeypatch.setattr(db, "SIZE_CHECK_SECONDS", 0)  # every checkout asks the table's size, also of a dead connection
    app = create_app(Settings(auth=False, database_url=database.url))
    yield app
    app.extensions["ehr.engine"].dispose()


@pytest.fixture
def client(app):
    client = app.test_client()
    assert client.put("/fhir/Patient/p1", json={**PATIENT, "id": "p1"}, headers=FHIR_JSON).status_code == 201
    return client


def call(client, method: str, path: str, body):
    return client.open(path, method=method, json=body, headers=FHIR_JSON if body else {})


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"
    outcome = response.json
    assert outcome["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in outcome["issue"]] == ["transient"]
    assert "try again" in outcome["issue"][0]["diagnostics"] or "again later" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("method", "path", "body"), FHIR_CALLS)
def test_a_fhir_call_answers_503_transient_with_retry_after_while_the_database_is_away(database, app, client, method, path, body):
    database.take_away(app)
    try:
        assert_unavailable(call(client, method, path, body))
    finally:
        database.bring_back()


def test_calls_succeed_again_once_the_database_is_back(database, app, client):
    database.take_away(app)
    assert_unavailable(client.get("/fhir/Patient/p1"))
    database.bring_back()
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON).status_code == 201


def test_hl7v2_calls_answer_503_while_the_database_is_away(database, app, client):
    database.take_away(app)
    try:
        pushed = client.post("/hl7v2", data=a01(), content_type="x-application/hl7-v2+er7")
        assert pushed.status_code == 503 and pushed.headers["Retry-After"] == "5"
        assert msa(pushed.get_data(as_text=True))[1:3] == ["AR", "C1"]
        assert_unavailable(client.get("/hl7v2/messages"))
        assert client.get("/readyz").status_code == 503
    finally:
        database.bring_back()


def test_a_pooled_postgresql_connection_the_server_ended_answers_503_once_then_the_pool_is_renewed(tmp_path):
    database = PostgresqlDatabase()
    try:
        engine = make_engine(database.url)
        migrate.upgrade(engine)
        engine.dispose()
        app = create_app(Settings(auth=False, database_url=database.url))
        client = app.test_client()
        assert client.get("/fhir/Patient?name=berg").status_code == 200
        database.end_sessions()
        assert_unavailable(client.get("/fhir/Patient?name=berg"))
        assert client.get("/fhir/Patient?name=berg").status_code == 200
        app.extensions["ehr.engine"].dispose()
    finally:
        database.drop()
