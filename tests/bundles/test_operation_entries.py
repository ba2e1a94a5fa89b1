"""Operations invoked by Bundle entries (GET with the query, POST with a Parameters resource), as over REST."""
import pytest
from sqlalchemy import func, select

from app.bundles import process_bundle
from app.errors import MethodNotAllowed, UnsupportedOperation
from app.store.db import read_unit, write_unit
from app.store.resources import update_resource
from app.store.schema import resource

BASE = "http://127.0.0.1:8080/fhir"
LOINC = "http://loinc.org"


def bundle(*entries, kind="batch"):
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(method, url, body=None):
    return {"request": {"method": method, "url": url}, **({"resource": body} if body is not None else {})}


def parameters(**values):
    return {"resourceType": "Parameters", "parameter": [{"name": name, **value} for name, value in values.items()]}


def heart_rate(id_, value, day):
    return {
        "resourceType": "Observation", "id": id_, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/ann"},
        "effectiveDateTime": f"2025-02-0{day}T08:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


@pytest.fixture
def ann(engine):
    with write_unit(engine) as connection:
        for body in ({"resourceType": "Patient", "id": "ann"}, heart_rate("hr-1", 60, 1), heart_rate("hr-2", 80, 2)):
            update_resource(connection, body["resourceType"], body["id"], body)


def results(response) -> list[tuple[str, dict | None]]:
    return [(item["response"]["status"], item.get("resource") or item["response"].get("outcome")) for item in response["entry"]]


def ids(searchset: dict) -> list[str]:
    return [item["resource"]["id"] for item in searchset.get("entry", [])]


def test_batch_get_entry_invokes_lastn_with_the_urls_query(engine, ann):
    [(status, searchset)] = results(process_bundle(engine, bundle(entry("GET", "Observation/$lastn?patient=Patient/ann")), BASE))
    assert (status, searchset["type"], ids(searchset)) == ("200 OK", "searchset", ["hr-2"])


def test_batch_post_entry_invokes_stats_with_its_parameters_resource(engine, ann):
    inputs = parameters(subject={"valueString": "Patient/ann"}, coding={"valueCoding": {"system": LOINC, "code": "8867-4"}}, statistic={"valueCode": "average"})
    [(status, result)] = results(process_bundle(engine, bundle(entry("POST", "Observation/$stats", inputs)), BASE))
    assert (status, result["resourceType"]) == ("200 OK", "Parameters")
    assert result["parameter"][0]["resource"]["component"][0]["valueQuantity"]["value"] == 70


def test_batch_entries_invoke_everything_and_validate_at_type_and_instance_level(engine, ann):
    response = process_bundle(engine, bundle(
        entry("GET", "Patient/ann/$everything?_type=Observation"),
        entry("POST", "Patient/$everything"),
        entry("POST", "Patient/$validate", {"resourceType": "Patient", "gender": "female"}),
    ), BASE)
    (first, everything), (second, every_patient), (third, outcome) = results(response)
    assert (first, sorted(ids(everything))) == ("200 OK", ["hr-1", "hr-2"])
    assert (second, sorted(ids(every_patient))) == ("200 OK", ["ann", "hr-1", "hr-2"])
    assert (third, outcome["issue"][0]["severity"]) == ("200 OK", "information")


def test_batch_entries_with_an_unknown_operation_or_a_wrong_method_fail_alone(engine, ann):
    response = process_bundle(engine, bundle(
        entry("GET", "Patient/$export"),
        entry("DELETE", "Observation/$stats"),
        entry("POST", "Observation/$lastn", {"resourceType": "Patient"}),
        entry("GET", "Observation/$lastn?patient=ann"),
    ), BASE)
    assert [status for status, _ in results(response)] == ["501 Not Implemented", "405 Method Not Allowed", "400 Bad Request", "200 OK"]
    assert results(response)[0][1]["issue"][0]["code"] == "not-supported"
    with read_unit(engine) as connection:
        assert connection.execute(select(func.count()).select_from(resource).where(resource.c.deleted.is_(False))).scalar() == 3


def test_transaction_get_entry_invokes_an_operation_after_the_writes(engine, ann):
    response = process_bundle(engine, bundle(
        entry("GET", "Observation/$lastn?patient=ann&max=5"),
        entry("PUT", "Observation/hr-3", heart_rate("hr-3", 90, 3)),
        kind="transaction",
    ), BASE)
    (status, searchset), _ = results(response)
    assert (status, ids(searchset)) == ("200 OK", ["hr-3", "hr-2", "hr-1"])


@pytest.mark.parametrize("method, url, error", [("GET", "Patient/$export", UnsupportedOperation), ("DELETE", "Observation/$stats", MethodNotAllowed)])
def test_transaction_with_an_operation_it_cannot_invoke_fails_whole_naming_the_entry(engine, ann, method, url, error):
    transaction = bundle(entry("PUT", "Observation/hr-3", heart_rate("hr-3", 90, 3)), entry(method, url), kind="transaction")
    with pytest.raises(error, match=rf"Bundle.entry\[1\] \({method} {url.replace('$', '[$]')}\)"):
        process_bundle(engine, transaction, BASE)
    with read_unit(engine) as connection:
        assert connection.execute(select(func.count()).select_from(resource).where(resource.c.res_id == "hr-3")).scalar() == 0
