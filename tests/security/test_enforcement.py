"""The FHIR API enforces SMART tokens (app/security/bearer.py, app/store/access.py): 401 without a live token, 403 for
what its scopes do not name, and a patient's token confined to that patient's compartment in every interaction, on
SQLite and PostgreSQL."""
import secrets
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from app.config import Settings
from app.model.instants import utc_now
from app.security.tokens import TokenContext, find_token, revoke_token, save_token
from app.store.unit import writing

VITAL_SIGNS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@pytest.fixture
def settings(database_url):
    """The app of these tests enforces tokens, as a server does unless EHR_AUTH=off."""
    return Settings(database_url=database_url)


def token_for(engine, scope: str, patient: str | None = None, fhir_user: str | None = None, lifetime: int = 600) -> str:
    """A token as the token endpoint stores it after a grant (what the API checks), without the grant's ceremony."""
    token = secrets.token_urlsafe(32)
    context = TokenContext("test-app", scope, "someone" if fhir_user else None, fhir_user, patient)
    with engine.begin() as connection:
        save_token(connection, context, {"access_token": token, "expires_in": lifetime}, utc_now())
    return token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def observation(resource_id: str, patient: str, category: str = "vital-signs", code: str = "8867-4") -> dict:
    return {
        "resourceType": "Observation", "id": resource_id, "status": "final", "subject": {"reference": f"Patient/{patient}"},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]}, "valueQuantity": {"value": 60, "unit": "/min"},
        "effectiveDateTime": "2026-11-01T10:00:00Z",
    }


@pytest.fixture
def records(engine):
    """Two patients, each with a vital sign and a lab result, and a practitioner; written as a trusted entrance does."""
    with writing(engine) as unit:
        unit.update("Practitioner", "doc", {"resourceType": "Practitioner", "id": "doc"})
        for patient in ("ana", "bob"):
            unit.update("Patient", patient, {"resourceType": "Patient", "id": patient, "generalPractitioner": [{"reference": "Practitioner/doc"}]})
            unit.update("Observation", f"{patient}-pulse", observation(f"{patient}-pulse", patient))
            unit.update("Observation", f"{patient}-lab", observation(f"{patient}-lab", patient, "laboratory", "2345-7"))


def ids(response) -> set[str]:
    assert response.status_code == 200, response.get_json()
    return {f"{entry['resource']['resourceType']}/{entry['resource']['id']}" for entry in response.get_json().get("entry", [])}


def records_of(found: set[str]) -> set[str]:
    """`found` without AuditEvents: a patient's token reads those about her, her own reads' among them."""
    return {key for key in found if not key.startswith("AuditEvent/")}


def outcome_text(response) -> str:
    return " ".join(issue["diagnostics"] for issue in response.get_json()["issue"])


# Authentication.

def test_without_a_token_the_api_answers_401_with_a_bearer_challenge(client, records):
    response = client.get("/fhir/Patient/ana")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="ehr"'
    assert response.get_json()["resourceType"] == "OperationOutcome" and "Authorization: Bearer" in outcome_text(response)


def test_the_capability_statement_and_smart_configuration_need_no_token(client):
    assert client.get("/fhir/metadata").status_code == 200
    assert client.get("/fhir/.well-known/smart-configuration").status_code == 200


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    "])
def test_another_scheme_or_an_empty_token_is_invalid_request(client, header):
    response = client.get("/fhir/Patient", headers={"Authorization": header})
    assert response.status_code == 401 and 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_an_unknown_expired_revoked_or_tampered_token_is_invalid_token(client, engine, records):
    expired = token_for(engine, "system/*.rs", lifetime=1)
    revoked = token_for(engine, "system/*.rs")
    with engine.begin() as connection:
        revoke_token(connection, find_token(connection, revoked).id, utc_now())
    with engine.begin() as connection:  # move the expired token's expiry into the past
        from app.security.tables import oauth_token
        connection.execute(oauth_token.update().values(expires_at=utc_now() - timedelta(seconds=5)).where(oauth_token.c.scope == "system/*.rs",
                                                                                                          oauth_token.c.revoked_at.is_(None)))
    valid = token_for(engine, "system/Patient.rs")
    tampered = valid[:-1] + ("A" if valid[-1] != "A" else "B")
    assert client.get("/fhir/Patient/ana", headers=bearer(valid)).status_code == 200
    for token in ("not-a-token-we-issued", expired, revoked, tampered):
        response = client.get("/fhir/Patient/ana", headers=bearer(token))
        assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"], token


def test_with_auth_off_no_token_is_needed(database_url, records):
    from app.web import create_app

    app = create_app(Settings(database_url=database_url, auth=False))
    assert app.test_client().get("/fhir/Patient/ana").status_code == 200
    app.extensions["ehr.engine"].dispose()


# Scopes name types and permissions.

def test_a_type_or_permission_the_scopes_do_not_name_is_403(client, engine, records):
    token = token_for(engine, "system/Observation.rs")
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    refused = client.get("/fhir/Patient/ana", headers=bearer(token))
    assert refused.status_code == 403 and "Read of Patient is not allowed by the token's scopes (system/Observation.rs)" in outcome_text(refused)
    assert refused.get_json()["issue"][0]["code"] == "forbidden"
    assert client.post("/fhir/Observation", json=observation("x", "ana"), headers=bearer(token)).status_code == 403
    assert client.delete("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 403
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200  # the delete did nothing


def test_read_without_search_cannot_search(client, engine, records):
    token = token_for(engine, "system/Observation.r")
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200
    assert client.get("/fhir/Observation", headers=bearer(token)).status_code == 403
    assert client.get("/fhir/Observation/_history", headers=bearer(token)).status_code == 403


def test_a_system_search_leaves_out_the_types_the_token_cannot_search(client, engine, records):
    token = token_for(engine, "system/Patient.rs")
    assert ids(client.get("/fhir?_id=ana,ana-pulse", headers=bearer(token))) == {"Patient/ana"}
    assert client.get("/fhir?_id=ana", headers=bearer(token_for(engine, "system/Patient.r"))).status_code == 403


def test_v1_scopes_are_enforced_like_their_v2_letters(client, engine, records):
    token = token_for(engine, "system/Observation.read")
    assert ids(client.get("/fhir/Observation?code=8867-4", headers=bearer(token))) == {"Observation/ana-pulse", "Observation/bob-pulse"}
    assert client.put("/fhir/Observation/ana-pulse", json=observation("ana-pulse", "ana"), headers=bearer(token)).status_code == 403


# A patient's token sees that patient's compartment only.

@pytest.fixture
def ana_token(engine, records):
    return token_for(engine, "patient/*.cruds", patient="ana", fhir_user="Patient/ana")


def test_a_patient_reads_her_own_record_and_the_others_do_not_exist_for_her(client, ana_token):
    assert client.get("/fhir/Patient/ana", headers=bearer(ana_token)).status_code == 200
    assert client.get("/fhir/Observation/ana-lab", headers=bearer(ana_token)).status_code == 200
    for url in ("/fhir/Patient/bob", "/fhir/Observation/bob-lab", "/fhir/Observation/bob-lab/_history/1", "/fhir/Observation/bob-lab/_history"):
        response = client.get(url, headers=bearer(ana_token))
        assert response.status_code == 404, url


def test_her_searches_find_only_her_resources(client, ana_token):
    assert ids(client.get("/fhir/Observation", headers=bearer(ana_token))) == {"Observation/ana-pulse", "Observation/ana-lab"}
    assert ids(client.get("/fhir/Observation?subject=Patient/bob", headers=bearer(ana_token))) == set()
    assert ids(client.get("/fhir/Patient", headers=bearer(ana_token))) == {"Patient/ana"}
    counted = client.get("/fhir/Observation?_summary=count", headers=bearer(ana_token)).get_json()
    assert counted["total"] == 2


def test_included_resources_outside_her_compartment_are_left_out(client, ana_token):
    found = ids(client.get("/fhir/Patient?_revinclude=Observation:subject&_include=Patient:general-practitioner", headers=bearer(ana_token)))
    assert found == {"Patient/ana", "Observation/ana-pulse", "Observation/ana-lab"}  # the practitioner is not in her compartment


def test_a_practitioner_token_includes_what_it_may_read(client, engine, records):
    token = token_for(engine, "user/*.rs", fhir_user="Practitioner/doc")
    found = ids(client.get("/fhir/Patient?_id=ana&_include=Patient:general-practitioner", headers=bearer(token)))
    assert found == {"Patient/ana", "Practitioner/doc"}
    assert ids(client.get("/fhir/Observation?code=2345-7", headers=bearer(token))) == {"Observation/ana-lab", "Observation/bob-lab"}


def test_a_patient_users_user_scopes_reach_her_own_compartment(client, engine, records):
    token = token_for(engine, "user/Observation.rs", fhir_user="Patient/bob")
    assert ids(client.get("/fhir/Observation", headers=bearer(token))) == {"Observation/bob-pulse", "Observation/bob-lab"}


def test_a_user_bound_to_no_fhir_identity_gets_nothing_from_user_scopes(client, engine, records):
    token = token_for(engine, "user/Observation.rs")
    assert client.get("/fhir/Observation", headers=bearer(token)).status_code == 403


def test_history_lists_only_her_versions(client, ana_token):
    assert ids(client.get("/fhir/Observation/_history", headers=bearer(ana_token))) == {"Observation/ana-pulse", "Observation/ana-lab"}
    everything = ids(client.get("/fhir/_history", headers=bearer(ana_token)))
    assert records_of(everything) == {"Patient/ana", "Observation/ana-pulse", "Observation/ana-lab"}
    assert everything - records_of(everything)  # and the AuditEvents of her own reads just now, which are about her


def test_everything_is_her_compartment_and_another_patients_is_not_found(client, ana_token):
    mine = records_of(ids(client.get("/fhir/Patient/ana/$everything", headers=bearer(ana_token))))
    assert mine == {"Patient/ana", "Observation/ana-pulse", "Observation/ana-lab"}
    assert records_of(ids(client.get("/fhir/Patient/$everything", headers=bearer(ana_token)))) == mine
    assert client.get("/fhir/Patient/bob/$everything", headers=bearer(ana_token)).status_code == 404


def test_lastn_and_stats_count_only_her_observations(client, engine, ana_token):
    assert ids(client.get("/fhir/Observation/$lastn?patient=Patient/ana&max=5", headers=bearer(ana_token))) == {"Observation/ana-pulse", "Observation/ana-lab"}
    assert ids(client.get("/fhir/Observation/$lastn?patient=Patient/bob&max=5", headers=bearer(ana_token))) == set()
    stats = "/fhir/Observation/$stats?subject=Patient/{}&code=8867-4&system=http://loinc.org&statistic=count"
    system = bearer(token_for(engine, "system/Observation.rs"))
    assert client.get(stats.format("bob"), headers=bearer(ana_token)).get_json() != client.get(stats.format("bob"), headers=system).get_json()
    assert client.get(stats.format("ana"), headers=bearer(ana_token)).get_json() == client.get(stats.format("ana"), headers=system).get_json()


def test_she_writes_in_her_compartment_and_nowhere_else(client, engine, ana_token):
    created = client.post("/fhir/Observation", json=observation("new", "ana"), headers=bearer(ana_token))
    assert created.status_code == 201
    refused = client.post("/fhir/Observation", json=observation("new", "bob"), headers=bearer(ana_token))
    assert refused.status_code == 403 and "would be in the record of Patient/bob" in outcome_text(refused)
    moved = client.put("/fhir/Observation/ana-pulse", json=observation("ana-pulse", "bob"), headers=bearer(ana_token))
    assert moved.status_code == 403
    assert client.put("/fhir/Observation/bob-pulse", json=observation("bob-pulse", "ana"), headers=bearer(ana_token)).status_code == 403
    deleted = client.delete("/fhir/Observation/bob-lab", headers=bearer(ana_token))  # for her, it does not exist
    assert deleted.status_code == 200 and "nothing to delete" in outcome_text(deleted)
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/bob"}]
    patched = client.patch("/fhir/Observation/ana-lab", json=patch, headers={**bearer(ana_token), "Content-Type": "application/json-patch+json"})
    assert patched.status_code == 403
    system = bearer(token_for(engine, "system/Observation.rs"))
    assert ids(client.get("/fhir/Observation?subject=Patient/bob", headers=system)) == {"Observation/bob-pulse", "Observation/bob-lab"}
    assert client.get("/fhir/Observation/ana-pulse", headers=system).get_json()["subject"]["reference"] == "Patient/ana"
    assert len(client.get("/fhir/Observation/ana-lab/_history", headers=system).get_json()["entry"]) == 1  # nothing was written


def test_a_conditional_create_does_not_reveal_a_match_outside_her_compartment(client, ana_token):
    body = observation("x", "ana")
    created = client.post("/fhir/Observation", json=body, headers={**bearer(ana_token), "If-None-Exist": "_id=bob-pulse"})
    assert created.status_code == 201 and created.get_json()["id"] != "bob-pulse"


def test_chains_and_has_look_only_at_what_she_may_see(client, engine, ana_token):
    system = bearer(token_for(engine, "system/*.cruds"))
    client.put("/fhir/Patient/ana", json={"resourceType": "Patient", "id": "ana", "name": [{"family": "Ames"}]}, headers=system)
    client.put("/fhir/Patient/bob", json={"resourceType": "Patient", "id": "bob", "name": [{"family": "Ames"}]}, headers=system)
    assert ids(client.get("/fhir/Observation?subject:Patient.name=Ames&code=8867-4", headers=bearer(ana_token))) == {"Observation/ana-pulse"}
    assert ids(client.get("/fhir/Patient?_has:Observation:subject:code=8867-4", headers=bearer(ana_token))) == {"Patient/ana"}
    # Bob's Observation performed by her would make Bob match her _has, were _has to look at it.
    client.put("/fhir/Observation/bob-by-ana", json={**observation("bob-by-ana", "bob", code="1234-5"), "performer": [{"reference": "Patient/ana"}]},
               headers=system)
    assert ids(client.get("/fhir/Patient?_has:Observation:performer:code=1234-5", headers=bearer(ana_token))) == {"Patient/ana"}
    assert ids(client.get("/fhir/Patient?_has:Observation:subject:code=1234-5", headers=bearer(ana_token))) == set()


def test_a_chain_cannot_probe_what_she_may_not_read(client, engine, ana_token):
    system = bearer(token_for(engine, "system/*.cruds"))
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Secret"}]}, headers=system)
    client.put("/fhir/Observation/ana-pulse", json={**observation("ana-pulse", "ana"), "performer": [{"reference": "Practitioner/doc"}]},
               headers=system)
    assert client.get("/fhir/Practitioner/doc", headers=bearer(ana_token)).status_code == 404
    for url in ("/fhir/Observation?performer:Practitioner.name=Secret", "/fhir/Observation/$lastn?patient=Patient/ana&performer:Practitioner.name=Secret"):
        assert ids(client.get(url, headers=bearer(ana_token))) == set(), url
    assert ids(client.get("/fhir/Observation?performer:Practitioner.name=Secret", headers=system)) == {"Observation/ana-pulse"}


def test_a_transaction_that_writes_outside_her_compartment_writes_nothing(client, engine, ana_token):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("t1", "ana"), "request": {"method": "PUT", "url": "Observation/t1"}},
        {"resource": observation("t2", "bob"), "request": {"method": "PUT", "url": "Observation/t2"}},
    ]}
    assert client.post("/fhir", json=bundle, headers=bearer(ana_token)).status_code == 403
    system = bearer(token_for(engine, "system/Observation.rs"))
    assert client.get("/fhir/Observation/t1", headers=system).status_code == 404


def test_a_batch_answers_each_entry_as_the_interaction_alone_would(client, engine, ana_token):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/ana-pulse"}},
        {"request": {"method": "GET", "url": "Observation/bob-pulse"}},
        {"request": {"method": "GET", "url": "Observation?code=8867-4"}},
        {"request": {"method": "DELETE", "url": "Observation/bob-lab"}},
    ]}
    entries = client.post("/fhir", json=bundle, headers=bearer(ana_token)).get_json()["entry"]
    assert [entry["response"]["status"][:3] for entry in entries] == ["200", "404", "200", "204"]  # nothing to delete, for her
    assert client.get("/fhir/Observation/bob-lab", headers=bearer(token_for(engine, "system/*.rs"))).status_code == 200
    assert {entry["resource"]["id"] for entry in entries[2]["resource"]["entry"]} == {"ana-pulse"}


# A v2 scope's query narrows it.

def test_a_query_restricted_scope_reaches_only_what_its_query_matches(client, engine, records):
    token = token_for(engine, f"patient/Observation.rs?category={VITAL_SIGNS}", patient="ana", fhir_user="Patient/ana")
    assert ids(client.get("/fhir/Observation", headers=bearer(token))) == {"Observation/ana-pulse"}
    assert client.get("/fhir/Observation/ana-lab", headers=bearer(token)).status_code == 404
    assert client.get("/fhir/Observation/ana-pulse", headers=bearer(token)).status_code == 200


def test_a_query_restricted_write_scope_writes_only_what_its_query_matches(client, engine, records):
    token = bearer(token_for(engine, f"patient/Observation.cruds?category={VITAL_SIGNS}", patient="ana", fhir_user="Patient/ana"))
    assert client.post("/fhir/Observation", json=observation("v", "ana"), headers=token).status_code == 201
    lab = client.post("/fhir/Observation", json=observation("l", "ana", "laboratory"), headers=token)
    assert lab.status_code == 403 and "would be outside" in outcome_text(lab)
    assert client.put("/fhir/Observation/ana-pulse", json=observation("ana-pulse", "ana", "laboratory"), headers=token).status_code == 403


def test_two_restricted_scopes_reach_what_either_matches(client, engine, records):
    labs = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    token = token_for(engine, f"system/Observation.rs?category={VITAL_SIGNS} system/Observation.rs?category={labs}&subject=Patient/bob")
    assert ids(client.get("/fhir/Observation", headers=bearer(token))) == {"Observation/ana-pulse", "Observation/bob-pulse", "Observation/bob-lab"}


# The HL7 v2 entrance.

ADT = "MSH|^~\\&|ADT|HOSP|EHR|HOSP|20261101120000||ADT^A01|MSG1|P|2.5\rPID|1||900^^^HOSP^MR||Doe^Jane||19800101|F\r"


def test_sending_hl7_needs_a_token_that_writes_everything(client, engine, records):
    headers = {"Content-Type": "x-application/hl7-v2+er7"}
    assert client.post("/hl7v2", data=ADT, headers=headers).status_code == 401
    refused = client.post("/hl7v2", data=ADT, headers={**headers, **bearer(token_for(engine, "system/Patient.cru"))})
    assert refused.status_code == 403 and "system/*.cruds" in outcome_text(refused)
    accepted = client.post("/hl7v2", data=ADT, headers={**headers, **bearer(token_for(engine, "system/*.cruds"))})
    assert accepted.status_code == 200 and b"MSA|AA|MSG1" in accepted.data
    clinician = bearer(token_for(engine, "user/*.cruds", fhir_user="Practitioner/doc"))  # reaches everything, but is no backend
    assert client.post("/hl7v2", data=ADT, headers={**headers, **clinician}).status_code == 403
    assert client.get("/hl7v2/messages", headers=bearer(token_for(engine, "patient/*.rs", patient="ana"))).status_code == 403
    assert client.get("/hl7v2/messages", headers=bearer(token_for(engine, "system/*.rs"))).status_code == 200


# Browser apps on other origins (CORS).

def test_a_browser_app_on_another_origin_may_preflight_and_call_the_api(client, engine, records):
    preflight = client.options("/fhir/Observation/ana-pulse", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    response = client.get("/fhir/Observation/ana-pulse", headers={"Origin": "https://app.example", **bearer(token_for(engine, "system/*.rs"))})
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example" and "ETag" in response.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    token = client.options("/auth/token", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert token.headers["Access-Control-Allow-Origin"] == "https://app.example"


def test_the_sign_in_page_gets_no_cors_headers(client):
    assert "Access-Control-Allow-Origin" not in client.get("/auth/login", headers={"Origin": "https://app.example"}).headers


def test_cors_origins_can_be_limited(database_url):
    from app.web import create_app

    app = create_app(Settings(database_url=database_url, cors_origins=("https://app.example",)))
    client = app.test_client()
    allowed = client.get("/fhir/metadata", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in client.get("/fhir/metadata", headers={"Origin": "https://evil.example"}).headers
    app.extensions["ehr.engine"].dispose()


# What a limited token must not learn or change (found by review).

def test_she_cannot_write_into_another_patients_record_through_a_parameter_that_names_her(client, engine, ana_token):
    both = {**observation("both", "bob"), "performer": [{"reference": "Patient/ana"}]}
    refused = client.post("/fhir/Observation", json=both, headers=bearer(ana_token))
    assert refused.status_code == 403 and "Patient/bob" in outcome_text(refused)
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/bob"}, "asserter": {"reference": "Patient/ana"}}
    assert client.post("/fhir/Condition", json=condition, headers=bearer(ana_token)).status_code == 403


def test_a_deleted_resource_is_not_found_for_a_limited_token_and_cannot_be_taken_over(client, engine, ana_token):
    system = bearer(token_for(engine, "system/*.cruds"))
    assert client.delete("/fhir/Observation/bob-lab", headers=system).status_code == 200
    assert client.get("/fhir/Observation/bob-lab", headers=system).status_code == 410
    for response in (client.get("/fhir/Observation/bob-lab", headers=bearer(ana_token)),
                     client.get("/fhir/Observation/bob-lab/_history/2", headers=bearer(ana_token)),
                     client.patch("/fhir/Observation/bob-lab", json=[], headers={**bearer(ana_token), "Content-Type": "application/json-patch+json"})):
        assert response.status_code == 404 and response.headers.get("ETag") is None
    taken = client.put("/fhir/Observation/bob-lab", json=observation("bob-lab", "ana"), headers=bearer(ana_token))
    assert taken.status_code == 403


def test_a_query_restricted_scope_shows_no_older_version_it_cannot_judge(client, engine, records):
    system = bearer(token_for(engine, "system/*.cruds"))
    assert client.put("/fhir/Observation/ana-lab", json=observation("ana-lab", "ana", "vital-signs"), headers=system).status_code == 200
    token = bearer(token_for(engine, f"patient/Observation.rs?category={VITAL_SIGNS}", patient="ana", fhir_user="Patient/ana"))
    assert client.get("/fhir/Observation/ana-lab/_history/2", headers=token).status_code == 200
    assert client.get("/fhir/Observation/ana-lab/_history/1", headers=token).status_code == 404  # it was a lab result then
    assert ids(client.get("/fhir/Observation/ana-lab/_history", headers=token)) == {"Observation/ana-lab"}
    assert len(client.get("/fhir/Observation/ana-lab/_history", headers=token).get_json()["entry"]) == 1


def test_a_conditional_requests_chains_look_only_at_what_the_token_may_search(client, engine, records):
    system = bearer(token_for(engine, "system/*.cruds"))
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Secret"}]}, headers=system)
    patients_only = bearer(token_for(engine, "system/Patient.cruds"))  # no Practitioner, Observation or AuditEvent scope
    ana = {"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/doc"}]}
    for criteria in ("_id=ana&general-practitioner:Practitioner.name=Secret", "_id=ana&_has:Observation:subject:code=2345-7",
                     "_id=ana&_has:AuditEvent:patient:_lastUpdated=gt2000-01-01"):
        created = client.post("/fhir/Patient", json=ana, headers={**patients_only, "If-None-Exist": criteria})
        assert created.status_code == 201, criteria  # what it may not search never matches, so tells it nothing
    client.get("/fhir/Patient/ana", headers=system)  # an AuditEvent about Ana, for the last criteria
    ana_token = bearer(token_for(engine, "patient/*.cruds", patient="ana", fhir_user="Patient/ana"))
    mine = client.post("/fhir/Observation", json=observation("c", "ana"), headers={**ana_token, "If-None-Exist": "subject:Patient._id=ana&code=8867-4"})
    assert mine.status_code == 200 and mine.get_json()["id"] == "ana-pulse"  # her own record matches through the chain


def test_a_stored_scope_that_no_longer_parses_is_an_invalid_token_not_a_crash(client, engine, records):
    from app.security.tables import oauth_token

    token = token_for(engine, "system/*.rs")
    with engine.begin() as connection:
        connection.execute(oauth_token.update().values(scope="system/Observation.rs?date=garbage").where(oauth_token.c.scope == "system/*.rs"))
    response = client.get("/fhir/Observation", headers=bearer(token))
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# Patient A's token reaches nothing of patient B's, through any route.

STATS = "code=8867-4&system=http://loinc.org&statistic=count"
CROSS_PATIENT_REQUESTS = [
    ("GET", "/fhir/Patient/bob", None), ("GET", "/fhir/Observation/bob-pulse", None),
    ("GET", "/fhir/Observation/bob-pulse/_history", None), ("GET", "/fhir/Observation/bob-pulse/_history/1", None),
    ("GET", "/fhir/Patient/bob/_history", None), ("GET", "/fhir/Observation/_history", None), ("GET", "/fhir/_history", None),
    ("GET", "/fhir/Observation?subject=Patient/bob", None), ("GET", "/fhir/Observation?patient=bob", None),
    ("GET", "/fhir/Observation?_id=bob-pulse,bob-lab", None), ("GET", "/fhir/Patient?_id=bob", None),
    ("GET", "/fhir/Observation?_include=Observation:subject", None), ("GET", "/fhir/Patient?_revinclude=Observation:subject", None),
    ("GET", "/fhir/Observation?_include:iterate=Observation:subject&_revinclude:iterate=Observation:subject", None),
    ("GET", "/fhir/Observation?subject:Patient._id=bob", None), ("GET", "/fhir/Patient?_has:Observation:subject:_id=bob-pulse", None),
    ("GET", "/fhir?_type=Patient,Observation&_id=bob,bob-pulse", None), ("GET", "/fhir?_id=bob,bob-pulse", None),
    ("GET", "/fhir/Observation?_total=accurate&subject=Patient/bob", None), ("GET", "/fhir/Observation?_summary=count&subject=Patient/bob", None),
    ("GET", "/fhir/Patient/bob/$everything", None), ("GET", "/fhir/Patient/$everything", None),
    ("GET", "/fhir/Observation/$lastn?patient=Patient/bob", None), ("GET", f"/fhir/Observation/$stats?subject=Patient/bob&{STATS}", None),
    ("POST", "/fhir/Observation/_search", "subject=Patient/bob"),
    ("POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Observation/bob-pulse"}}, {"request": {"method": "GET", "url": "Observation?subject=Patient/bob"}},
        {"request": {"method": "GET", "url": "Patient/bob/$everything"}}]}),
    ("PUT", "/fhir/Observation/bob-pulse", observation("bob-pulse", "bob", code="0000-0")),
    ("PUT", "/fhir/Observation?_id=bob-pulse", observation("bob-pulse", "ana", code="0000-0")),
    ("PATCH", "/fhir/Observation/bob-pulse", [{"op": "replace", "path": "/status", "value": "cancelled"}]),
    ("DELETE", "/fhir/Observation/bob-pulse", None), ("DELETE", "/fhir/Observation?_id=bob-pulse", None),
    ("POST", "/fhir/Observation", observation("x", "bob")),
    ("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation("t", "bob"), "request": {"method": "POST", "url": "Observation"}}]}),
]


def resources_in(value) -> list[dict]:
    """Every resource anywhere in a response body (entries, contained, Parameters parts)."""
    if isinstance(value, list):
        return [found for item in value for found in resources_in(item)]
    if not isinstance(value, dict):
        return []
    own = [value] if "resourceType" in value and "id" in value else []
    return own + [found for item in value.values() for found in resources_in(item)]


@pytest.mark.parametrize("method, url, body", CROSS_PATIENT_REQUESTS, ids=[f"{m} {u}" for m, u, _ in CROSS_PATIENT_REQUESTS])
def test_patient_as_token_reaches_nothing_of_patient_bs(client, engine, ana_token, method, url, body):
    headers = bearer(ana_token)
    if method == "PATCH":
        headers["Content-Type"] = "application/json-patch+json"
    sent = {"data": body, "content_type": "application/x-www-form-urlencoded"} if isinstance(body, str) else {"json": body}
    response = client.open(url, method=method, headers=headers, **sent)
    assert response.status_code < 500
    shown = resources_in(response.get_json())
    assert not [r for r in shown if r["id"].startswith("bob") or "Patient/bob" in str(r.get("subject"))], shown
    if response.status_code == 200 and "_summary=count" in url or "_total" in url:
        assert response.get_json().get("total", 0) == 0
    system = bearer(token_for(engine, "system/*.rs"))
    assert client.get("/fhir/Observation/bob-pulse", headers=system).get_json()["meta"]["versionId"] == "1"
    assert ids(client.get("/fhir/Observation?subject=Patient/bob", headers=system)) == {"Observation/bob-pulse", "Observation/bob-lab"}


# Fuzzed: no Authorization header and no granted scope makes the API fail.

HEADER_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=120)
SCOPE_TEXT = st.lists(st.one_of(
    st.sampled_from(["patient/*.rs", "user/Observation.cruds", "system/*.read", "admin", "launch", "patient/Observation.rs?category=x",
                     "user/*.s?_tag=a|b", "patient/Patient.r", "openid"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs")), min_size=1, max_size=30),
), max_size=4).map(" ".join)


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=HEADER_TEXT)
def test_no_authorization_header_makes_the_api_fail(client, header):
    response = client.get("/fhir/Observation", headers={"Authorization": header})
    assert response.status_code == 401 and response.get_json()["resourceType"] == "OperationOutcome"


@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scope=SCOPE_TEXT, patient=st.sampled_from([None, "ana", "bob", "nobody"]),
       fhir_user=st.sampled_from([None, "Patient/ana", "Practitioner/doc", "RelatedPerson/x"]))
def test_no_granted_scope_makes_the_api_fail(client, engine, records, scope, patient, fhir_user):
    token = bearer(token_for(engine, scope, patient=patient, fhir_user=fhir_user))
    for url in ("/fhir/Observation?code=8867-4", "/fhir/Patient/ana", "/fhir/Patient/$everything", "/fhir?_id=ana"):
        response = client.get(url, headers=token)
        assert response.status_code in (200, 401, 403, 404), (url, response.get_json())
