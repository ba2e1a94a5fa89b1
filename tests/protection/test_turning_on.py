"""Turning protection on for a database written without it: the server reads what is there as before, and `ehr keys
rewrap` encrypts it in place (current and history rows, and the index rows that held plaintext), after which searches
by protected values find it."""
import copy
from datetime import timedelta

import pytest
from sqlalchemy import select

import app.protection.commands
import app.protection.service
import app.store.rewrap
from app.errors import DatabaseUnavailable
from app.store.rewrap import rewrap
from app.store.schema import INDEX_TABLES
from tests.protection.conftest import failure, json_output, protected_settings, put, raw_database_text, run_ehr, running_app, search_ids
from tests.protection.people import PATIENT, PEOPLE, PLAIN_VALUES, PROTECTED_VALUES, without_meta

SEARCHES = {
    "Patient?family=zyxwvu": {"pat-a"}, "Patient?given=quentin": {"pat-a"}, "Patient?birthdate=1931-07": {"pat-a"},
    "Patient?identifier=urn:mrn|MRN-778899": {"pat-a"}, "Patient?phone=555-0199": {"pat-a"},
    "Patient?address-postalcode=QX9": {"pat-a"}, "RelatedPerson?name=kestrel": {"rel-a"},
    "RelatedPerson?identifier=RP-3141592": {"rel-a"}, "Practitioner?telecom=555-0777": {"doc-a"},
}


@pytest.fixture
def written_without_a_key(database_url) -> str:
    """Each person written twice (two versions) by a server without a key."""
    with running_app(protected_settings(database_url, None)) as app:
        client = app.test_client()
        for body in PEOPLE:
            put(client, body)
            put(client, {**copy.deepcopy(body), "active": True})
    return database_url


def readable(database_url: str) -> list[str]:
    raw = raw_database_text(database_url).casefold()
    return [value for value in PROTECTED_VALUES if value.casefold() in raw]


def test_a_database_written_without_a_key_holds_the_values_in_plaintext(written_without_a_key):
    assert readable(written_without_a_key) == list(PROTECTED_VALUES)


def test_a_server_with_a_key_reads_what_was_written_without_one(written_without_a_key, key_file):
    with running_app(protected_settings(written_without_a_key, key_file)) as app:
        client = app.test_client()
        for body in PEOPLE:
            assert without_meta(client.get(f"/fhir/{body['resourceType']}/{body['id']}/_history/1").get_json()) == without_meta(body)


def test_rewrap_encrypts_everything_a_database_written_without_a_key_holds(written_without_a_key, key_file):
    with running_app(protected_settings(written_without_a_key, key_file)):
        rewrapped = json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
    assert rewrapped["rewrapped"] == 3 * len(PEOPLE)  # each person's current row and the history rows of its two versions
    assert readable(written_without_a_key) == []
    raw = raw_database_text(written_without_a_key)
    assert [value for value in PLAIN_VALUES if value not in raw] == []


def test_after_rewrap_searches_find_and_reads_return_what_was_written_without_a_key(written_without_a_key, key_file):
    with running_app(protected_settings(written_without_a_key, key_file)) as app:
        json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        client = app.test_client()
        assert {query: search_ids(client, query) for query in SEARCHES} == SEARCHES
        for body in PEOPLE:
            kind = f"/fhir/{body['resourceType']}/{body['id']}"
            assert without_meta(client.get(kind).get_json()) == without_meta({**body, "active": True})
            assert without_meta(client.get(f"{kind}/_history/1").get_json()) == without_meta(body)


def test_a_second_rewrap_changes_nothing(written_without_a_key, key_file):
    """And on PostgreSQL it reads fewer rows: SQL tells that the history rows are sealed as configured."""
    with running_app(protected_settings(written_without_a_key, key_file)):
        first = json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        again = json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
    assert again["rewrapped"] == 0 and first["rewrapped"] > 0
    assert again["rows"] < first["rows"] if written_without_a_key.startswith("postgresql") else again["rows"] == first["rows"]


def test_the_direct_rewrap_of_the_store_encrypts_as_the_command_does(written_without_a_key, key_file):
    with running_app(protected_settings(written_without_a_key, key_file)) as app:
        batches = list(rewrap(app.extensions["ehr.engine"]))
        assert sum(changed for _, changed in batches) > 0
        assert search_ids(app.test_client(), "Patient?family=zyxwvu") == {PATIENT["id"]}
    assert readable(written_without_a_key) == []


@pytest.mark.parametrize("processes", [1, 2])
def test_rewrap_goes_through_every_row_once_in_batches_of_batch_size(written_without_a_key, key_file, monkeypatch, processes):
    """Its batches are key ranges found up front (on PostgreSQL, with 2 processes, rewrapped by two processes forked
    from this one): none is larger than BATCH_SIZE, and together they hold every current and history row once."""
    monkeypatch.setattr(app.store.rewrap, "BATCH_SIZE", 2)
    with running_app(protected_settings(written_without_a_key, key_file)) as app_:
        batches = list(rewrap(app_.extensions["ehr.engine"], processes=processes))
    current, history = len(PEOPLE), len(PEOPLE) * 2  # a current row and two history rows each, 3 and 6
    assert [seen for seen, _ in batches] == [2, 1] + [2, 2, 2]
    assert sum(changed for _, changed in batches) == current + history
    assert readable(written_without_a_key) == []


def test_a_batch_the_database_gave_up_on_is_tried_again_and_nothing_is_missed(written_without_a_key, key_file, monkeypatch):
    """A deadlock with a writer or a dropped connection rolls a batch back whole (DatabaseUnavailable): rewrap tries it
    again, and every row ends up sealed."""
    monkeypatch.setattr(app.store.rewrap, "BATCH_SIZE", 2)
    monkeypatch.setattr(app.store.rewrap, "RETRY_PAUSE_SECONDS", 0)
    failures, rewrap_batch = [], app.store.rewrap.rewrapped_batch

    def failing_once_per_table(engine, table_name, *arguments):
        if table_name not in failures:
            failures.append(table_name)
            raise DatabaseUnavailable("deadlock detected")
        return rewrap_batch(engine, table_name, *arguments)

    monkeypatch.setattr(app.store.rewrap, "rewrapped_batch", failing_once_per_table)
    with running_app(protected_settings(written_without_a_key, key_file)) as app_:
        batches = list(rewrap(app_.extensions["ehr.engine"]))
    assert failures == ["resource", "resource_history"]
    assert sum(changed for _, changed in batches) == len(PEOPLE) * 3
    assert readable(written_without_a_key) == []


@pytest.mark.parametrize("purpose", [None, "index"])
def test_the_index_rows_rewrap_leaves_are_those_a_reindex_writes(written_without_a_key, key_file, purpose, monkeypatch):
    """Turning protection on (and then rotating the index key) rebuilds only the rows of the parameters that read
    protected elements; with the others' rows kept, each resource has exactly the rows a fresh extraction gives."""
    monkeypatch.setattr(app.protection.service, "RING_REFRESH_SECONDS", 0.2)
    monkeypatch.setattr(app.protection.commands, "SEEN_EVERYWHERE", timedelta(seconds=0.4))
    with running_app(protected_settings(written_without_a_key, key_file)) as app_:
        engine = app_.extensions["ehr.engine"]
        json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        if purpose:
            added = json_output(run_ehr(written_without_a_key, "keys", "add", "--purpose", purpose, key_file=key_file))
            json_output(run_ehr(written_without_a_key, "keys", "promote", added["id"], key_file=key_file))
            json_output(run_ehr(written_without_a_key, "keys", "rewrap", key_file=key_file))
        rewrapped = index_rows_by_table(engine)
        reindexed = run_ehr(written_without_a_key, "reindex", key_file=key_file)
        assert reindexed.exit_code == 0, failure(reindexed)
        assert index_rows_by_table(engine) == rewrapped


def index_rows_by_table(engine) -> dict[str, list]:
    with engine.connect() as connection:
        return {name: sorted(map(repr, connection.execute(select(*(column for column in table.c))).all()))
                for name, table in INDEX_TABLES.items()}
