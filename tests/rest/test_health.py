"""Probes for load balancers, and the refusal to start on a database without the current schema."""
import pytest
from sqlalchemy import text

from app.config import Settings
from app.store import migrate
from app.store.db import make_engine
from app.store.migrate import SchemaNotCurrent
from app.web import create_app


def test_healthz_answers_200_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_answers_200_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


def test_the_probes_need_no_fhir_accept_header(client):
    assert client.get("/healthz", headers={"Accept": "text/plain"}).status_code == 200
    assert client.get("/readyz", headers={"Accept": "text/html"}).status_code == 200


def test_a_server_on_a_database_without_schema_refuses_to_start(tmp_path):
    with pytest.raises(SchemaNotCurrent) as refusal:
        create_app(Settings(auth=False, database_url=f"sqlite:///{tmp_path / 'empty.db'}"))
    assert "ehr db upgrade" in str(refusal.value)


def test_a_server_on_a_database_at_an_unknown_revision_refuses_to_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'from-another-branch'"))
    engine.dispose()
    with pytest.raises(SchemaNotCurrent) as refusal:
        create_app(Settings(auth=False, database_url=url))
    assert "ehr db upgrade" in str(refusal.value)


@pytest.fixture
def migrated_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'ehr.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield url, engine
    engine.dispose()


def test_a_server_on_a_freshly_migrated_database_starts_and_is_ready(migrated_sqlite):
    url, _ = migrated_sqlite
    app = create_app(Settings(auth=False, database_url=url))
    try:
        assert app.test_client().get("/readyz").status_code == 200
    finally:
        app.extensions["ehr.engine"].dispose()


def test_readyz_answers_503_when_the_schema_stops_being_current(migrated_sqlite):
    url, engine = migrated_sqlite
    app = create_app(Settings(auth=False, database_url=url))
    try:
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
        client = app.test_client()
        response = client.get("/readyz")
        assert response.status_code == 503
        assert "ehr db upgrade" in response.get_json()["reason"]
        assert client.get("/healthz").status_code == 200
    finally:
        app.extensions["ehr.engine"].dispose()
