"""ehr reindex rebuilds index rows, so searches answer again after the parameter data changes."""
from click.testing import CliRunner
from sqlalchemy import delete, func, select

from app.cli import main
from app.store.schema import INDEX_TABLES, resource

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def seed(client) -> None:
    for number in range(3):
        body = {"resourceType": "Patient", "id": f"p{number}", "name": [{"family": f"Family{number}"}], "gender": "female"}
        client.put(f"/fhir/Patient/p{number}", json=body, headers=FHIR_JSON)
    client.put("/fhir/Practitioner/d1", json={"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Doc"}]}, headers=FHIR_JSON)


def forget_index_rows(engine) -> None:
    with engine.begin() as connection:
        for table in INDEX_TABLES.values():
            connection.execute(delete(table))
        connection.execute(resource.update().values(index_mask=0))


def run_reindex(database_url, *arguments):
    return CliRunner().invoke(main, ["reindex", *arguments], env={"EHR_DATABASE_URL": database_url})


def test_reindex_makes_lost_index_rows_searchable_again(client, engine, database_url):
    seed(client)
    forget_index_rows(engine)
    assert client.get("/fhir/Patient?gender=female&_summary=count").json["total"] == 0
    result = run_reindex(database_url)
    assert result.exit_code == 0, result.output
    assert "Reindexed 4 resources" in result.output
    assert client.get("/fhir/Patient?gender=female&_summary=count").json["total"] == 3


def test_reindex_of_one_type_leaves_the_others_alone(client, engine, database_url):
    seed(client)
    forget_index_rows(engine)
    assert run_reindex(database_url, "--type", "Practitioner").exit_code == 0
    assert client.get("/fhir/Practitioner?name=doc&_summary=count").json["total"] == 1
    assert client.get("/fhir/Patient?gender=female&_summary=count").json["total"] == 0


def test_reindex_twice_leaves_the_same_rows(client, engine, database_url):
    seed(client)
    run_reindex(database_url)
    with engine.connect() as connection:
        before = [connection.execute(select(func.count()).select_from(table)).scalar() for table in INDEX_TABLES.values()]
    run_reindex(database_url)
    with engine.connect() as connection:
        after = [connection.execute(select(func.count()).select_from(table)).scalar() for table in INDEX_TABLES.values()]
    assert before == after and sum(after) > 0


def test_reindex_of_an_unknown_type_is_refused(database_url):
    result = run_reindex(database_url, "--type", "Spaceship")
    assert result.exit_code != 0 and "Spaceship" in result.output
