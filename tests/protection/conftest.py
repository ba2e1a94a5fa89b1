"""Fixtures: the server with field-level protection on (each test with a key file of its own), on SQLite and
PostgreSQL, and what an attacker holding a copy of the database would read in it.

`settings` here overrides tests/conftest.py's, so its `app`, `client` and `engine` fixtures serve a protected store.
"""
import gc
import sqlite3
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy.engine import make_url

from app.cli import main
from app.config import ProtectionSettings, Settings
from app.protection.keyfile import new_key_file
from app.web import create_app
from tests.conftest import libpq_url

FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def key_file(tmp_path) -> Path:
    """A new key-encryption key file, as `ehr keys init` writes it."""
    path = tmp_path / "kek.json"
    new_key_file(path)
    return path


@pytest.fixture
def settings(database_url, key_file) -> Settings:
    return protected_settings(database_url, key_file)


def protected_settings(database_url: str, key_file: Path | None, paths: str | None = None) -> Settings:
    protection = ProtectionSettings(key_file=str(key_file), paths=paths) if key_file else ProtectionSettings(paths=paths)
    return Settings(auth=False, database_url=database_url, protection=protection)


@contextmanager
def running_app(settings: Settings) -> Iterator[Flask]:
    """A server of its own (another process, as far as the database can tell), its engine disposed of at the end."""
    app = create_app(settings)
    try:
        yield app
    finally:
        app.extensions["ehr.engine"].dispose()


def run_ehr(database_url: str, *arguments: str, key_file: Path | None = None, **environment: str):
    """`ehr ...` as an operator runs it, with EHR_DATABASE_URL and (given a key file) EHR_KEY_FILE set."""
    env = {"EHR_DATABASE_URL": database_url, "EHR_AUTH": "off", "EHR_KEY_FILE": str(key_file) if key_file else None,
           "EHR_KEY": None, "EHR_PROTECTED_PATHS": None, **environment}
    result = CliRunner().invoke(main, list(arguments), env=env)
    gc.collect()  # the command's engine: its pooled connections close now, not at the end of the run
    return result


def json_output(result) -> object:
    assert result.exit_code == 0, failure(result)
    return orjson.loads(result.stdout)


def failure(result) -> str:
    """What a command printed, and where it raised what it did not catch."""
    if result.exc_info is None or isinstance(result.exception, SystemExit):
        return result.output
    return result.output + "".join(traceback.format_exception(*result.exc_info)[-6:])


def put(client, body: dict) -> dict:
    response = client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=FHIR_JSON)
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def search_ids(client, query: str) -> set[str]:
    response = client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.get_json()
    return {entry["resource"]["id"] for entry in response.get_json().get("entry", []) if entry["search"]["mode"] == "match"}


def raw_database_text(database_url: str) -> str:
    """Every value of every column of every table (resource bodies, history, search index rows, keys...), as text."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        with sqlite3.connect(url.database) as connection:
            names = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return "\n".join(rendered(row) for name in names for row in connection.execute(f'SELECT * FROM "{name}"'))
    with psycopg.connect(libpq_url(url)) as connection:
        names = [row[0] for row in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
        assert "resource_history" in names and "search_string" in names
        return "\n".join(rendered(row) for name in names for row in connection.execute(f'SELECT * FROM "{name}"'))


def rendered(row) -> str:
    return " | ".join(rendered_value(value) for value in row)


def rendered_value(value) -> str:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()  # non-ASCII as it is, not \u-escaped
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("latin-1")
    return str(value)
