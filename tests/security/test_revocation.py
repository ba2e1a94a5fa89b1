"""Revocation (RFC 7009) and introspection (RFC 7662) of issued tokens, by the client they were issued to, over HTTP
with authlib's OAuth 2.0 client and plain requests, on SQLite and PostgreSQL."""
from datetime import datetime, timezone

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from app.security.accounts import ClientRegistration, add_user, find_client, find_user, register_client
from app.security.tokens import live_access_token
from app.security.user_tokens import UserGrant, issue_user_token
from app.store.unit import writing


@pytest.fixture
def auth_url(live_server):
    return live_server.removesuffix("/fhir") + "/auth"


def backend_client(engine, scope="system/*.rs") -> dict:
    with engine.begin() as connection:
        return register_client(connection, ClientRegistration("Sync", ("https://sync.example/cb",), scope, "client_secret_basic"))


def system_token(auth_url: str, client: dict) -> str:
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="system/Patient.rs")
    return session.fetch_token(f"{auth_url}/token", grant_type="client_credentials")["access_token"]


def is_live(engine, token: str) -> bool:
    with engine.connect() as connection:
        return live_access_token(connection, token, datetime.now(timezone.utc)) is not None


def test_a_client_revokes_its_token_with_authlibs_client_and_it_stops_being_live(engine, auth_url):
    client = backend_client(engine)
    token = system_token(auth_url, client)
    assert is_live(engine, token)
    session = OAuth2Session(client["client_id"], client["client_secret"])
    response = session.revoke_token(f"{auth_url}/revoke", token, token_type_hint="access_token")
    assert response.status_code == 200 and not is_live(engine, token)


def test_revoking_an_unknown_or_already_revoked_token_still_answers_200(engine, auth_url):
    client = backend_client(engine)
    token = system_token(auth_url, client)
    for value in (token, token, "never-issued"):
        response = requests.post(f"{auth_url}/revoke", data={"token": value}, auth=(client["client_id"], client["client_secret"]), timeout=10)
        assert response.status_code == 200


def test_a_client_cannot_revoke_another_clients_token(engine, auth_url):
    owner, other = backend_client(engine), backend_client(engine)
    token = system_token(auth_url, owner)
    response = requests.post(f"{auth_url}/revoke", data={"token": token}, auth=(other["client_id"], other["client_secret"]), timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant" and is_live(engine, token)


def test_revocation_needs_the_clients_credentials(engine, auth_url):
    client = backend_client(engine)
    token = system_token(auth_url, client)
    response = requests.post(f"{auth_url}/revoke", data={"token": token}, auth=(client["client_id"], "wrong"), timeout=10)
    assert response.status_code == 401 and is_live(engine, token)


def test_introspection_tells_the_client_what_its_token_grants_then_that_it_is_revoked(engine, auth_url):
    client = backend_client(engine)
    token = system_token(auth_url, client)
    credentials = (client["client_id"], client["client_secret"])
    answer = requests.post(f"{auth_url}/introspect", data={"token": token}, auth=credentials, timeout=10).json()
    assert answer["active"] is True and answer["scope"] == "system/Patient.rs" and answer["client_id"] == client["client_id"]
    assert 0 < answer["exp"] - answer["iat"] <= 300 and "patient" not in answer
    requests.post(f"{auth_url}/revoke", data={"token": token}, auth=credentials, timeout=10)
    assert requests.post(f"{auth_url}/introspect", data={"token": token}, auth=credentials, timeout=10).json() == {"active": False}


def test_introspection_of_a_patient_token_gives_its_launch_context(engine, auth_url):
    with writing(engine) as unit:
        unit.update("Patient", "ana-1", {"resourceType": "Patient", "id": "ana-1"})
    app = backend_client(engine, scope="launch/patient patient/Observation.rs openid fhirUser")
    with engine.begin() as connection:
        add_user(connection, "ana", "correct horse battery", "Patient/ana-1")
        grant = UserGrant(find_client(connection, app["client_id"]), find_user(connection, "ana"), "launch/patient patient/Observation.rs",
                          3600, "https://ehr.example/fhir")
        token = issue_user_token(connection, grant, datetime.now(timezone.utc))["access_token"]
    answer = requests.post(f"{auth_url}/introspect", data={"token": token}, auth=(app["client_id"], app["client_secret"]), timeout=10).json()
    assert answer["active"] and answer["patient"] == "ana-1" and answer["sub"] == "ana" and answer["fhirUser"] == "Patient/ana-1"


def test_another_clients_token_and_an_unknown_one_introspect_as_inactive(engine, auth_url):
    owner, other = backend_client(engine), backend_client(engine)
    token = system_token(auth_url, owner)
    for value in (token, "never-issued"):
        answer = requests.post(f"{auth_url}/introspect", data={"token": value}, auth=(other["client_id"], other["client_secret"]), timeout=10)
        assert answer.status_code == 200 and answer.json() == {"active": False}


@pytest.mark.parametrize("path", ["revoke", "introspect"])
def test_a_request_without_a_token_parameter_is_invalid_request(engine, auth_url, path):
    client = backend_client(engine)
    response = requests.post(f"{auth_url}/{path}", data={}, auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_a_public_app_revokes_its_own_token_by_naming_its_client_id(engine, auth_url):
    with writing(engine) as unit:
        unit.update("Patient", "ana-1", {"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        app = register_client(connection, ClientRegistration("Growth chart", ("https://app.example/cb",), "patient/*.rs", "none"))
        add_user(connection, "ana", "correct horse battery", "Patient/ana-1")
        grant = UserGrant(find_client(connection, app["client_id"]), find_user(connection, "ana"), "patient/Observation.rs", 3600, "https://ehr.example/fhir")
        token = issue_user_token(connection, grant, datetime.now(timezone.utc))["access_token"]
    response = requests.post(f"{auth_url}/revoke", data={"token": token, "client_id": app["client_id"]}, timeout=10)
    assert response.status_code == 200 and not is_live(engine, token)
