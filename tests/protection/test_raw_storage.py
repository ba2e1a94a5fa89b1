"""What someone holding a copy of the database reads in it: with protection on, none of a person's protected values,
in any column of any table (current bodies, history, search index rows), while what is not protected stays readable."""
import copy

import pytest
from sqlalchemy import select

from app.store.schema import resource, resource_history
from tests.protection.conftest import put, raw_database_text, search_ids
from tests.protection.people import PATIENT, PEOPLE, PLAIN_VALUES, PROTECTED_VALUES

SEARCHES = ("Patient?family=zyxwvu", "Patient?family:exact=Zyxwvutson", "Patient?given=quentin", "Patient?birthdate=1931-07",
            "Patient?identifier=urn:mrn|MRN-778899", "Patient?phone=555-0199", "Patient?address-postalcode=QX9",
            "Patient?address-city=vexford", "RelatedPerson?name=kestrel", "Practitioner?telecom=555-0777")


@pytest.fixture
def written(client):
    """Each person written, then updated once (a second version in history), and found by protected values."""
    for body in PEOPLE:
        put(client, body)
        put(client, {**copy.deepcopy(body), "active": False})
    for query in SEARCHES:
        assert search_ids(client, query), query


def test_no_protected_value_is_readable_in_any_table(written, database_url):
    raw = raw_database_text(database_url)
    readable = [value for value in PROTECTED_VALUES if value in raw or value.casefold() in raw.casefold()]
    assert readable == []


def test_what_is_not_protected_stays_readable_in_the_database(written, database_url):
    raw = raw_database_text(database_url)
    assert [value for value in PLAIN_VALUES if value not in raw] == []
    assert PATIENT["id"] in raw and "enc:v1:" in raw


def test_the_stored_bodies_hold_ciphertexts_where_the_protected_values_were(written, engine):
    with engine.connect() as connection:
        bodies = [row.body for table in (resource, resource_history)
                  for row in connection.execute(select(table.c.body).where(table.c.res_id == PATIENT["id"]))]
    assert len(bodies) == 3
    for body in bodies:
        assert body["gender"] == "female"
        for name in ("name", "telecom", "address", "birthDate", "_birthDate", "photo", "contact", "text"):
            assert body[name].startswith("enc:v1:"), name
        assert [identifier["system"] for identifier in body["identifier"]] == ["urn:mrn", "urn:nhs"]
        assert all(identifier["value"].startswith("enc:v1:") for identifier in body["identifier"])
