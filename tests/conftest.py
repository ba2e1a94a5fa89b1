"""Fixtures: every storage and API test runs on SQLite and on PostgreSQL.

PostgreSQL is required: a missing server fails the run (it is never skipped).
EHR_TEST_POSTGRES_URL names a server and maintenance database to create the
test database from (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres).
"""
import os
import threading
import uuid

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from werkzeug.serving import make_server

from app.config import Settings
from app.store import metadata, migrate
from app.store.db import make_engine
from app.web import create_app
from interop.hl7v2 import tables as hl7_tables  # noqa: F401  registers the feed's tables, emptied between tests
from interop.dicom import tables as dicom_tables  # noqa: F401  likewise

BACKENDS = ("sqlite", "postgresql")
ADMIN_URL = os.environ.get("EHR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def libpq_url(url) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url():
    admin = make_url(ADMIN_URL)
    name = f"ehr_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL is required for the test suite and is not reachable at {ADMIN_URL}: {error}")
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_urls(postgres_url, tmp_path_factory):
    sqlite_path = tmp_path_factory.mktemp("sqlite") / "ehr.db"
    urls = {"sqlite": f"sqlite:///{sqlite_path}", "postgresql": postgres_url}
    for url in urls.values():
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
    return urls


@pytest.fixture(params=BACKENDS)
def database_url(request, database_urls):
    """A migrated, empty database of each backend."""
    url = database_urls[request.param]
    engine = make_engine(url)
    empty_tables(engine)
    engine.dispose()
    return url


def empty_tables(engine) -> None:
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url):
    return Settings(auth=False, database_url=database_url)


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    app.extensions["ehr.engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def live_server(app):
    """The app served over real HTTP by werkzeug in a thread; yields the FHIR base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/fhir"
    server.shutdown()
    thread.join()
