"""The admin API (app/security/admin.py) and introspection by a resource server: driven by a backend service that
gets its `admin` token from the token endpoint with authlib's client, on SQLite and PostgreSQL."""
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

from app.store.unit import writing
from tests.security.test_backend_services import registered, token_url  # noqa: F401 (fixture)
from tests.security.test_enforcement import token_for


@pytest.fixture
def admin_api(live_server):
    return live_server.removesuffix("/fhir") + "/auth/admin"


@pytest.fixture
def admin_session(engine, token_url):  # noqa: F811
    """A backend service registered for the admin scope, with the token it got for it."""
    client = registered(engine, scope="system/*.rs admin", auth_method="client_secret_basic")
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="admin")
    token = session.fetch_token(token_url, grant_type="client_credentials")
    assert token["scope"] == "admin"
    return session


def test_without_an_admin_token_the_admin_api_answers_401_or_403(engine, admin_api):
    anonymous = requests.get(f"{admin_api}/clients", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_token"
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    reader = requests.get(f"{admin_api}/clients", headers={"Authorization": f"Bearer {token_for(engine, 'system/*.cruds')}"}, timeout=10)
    assert reader.status_code == 403 and reader.json()["error"] == "insufficient_scope"


def test_an_admin_registers_lists_and_removes_a_client(admin_session, admin_api, engine, token_url):  # noqa: F811
    added = admin_session.post(f"{admin_api}/clients", json={"name": "Lab sync", "scope": "system/Observation.cruds", "type": "secret"})
    assert added.status_code == 201 and set(added.json()) == {"client_id", "client_secret"}
    client_id = added.json()["client_id"]
    listed = {client["client_id"]: client for client in admin_session.get(f"{admin_api}/clients").json()}
    assert listed[client_id]["scope"] == "system/Observation.cruds" and "secret_hash" not in str(listed[client_id])
    lab = OAuth2Session(client_id, added.json()["client_secret"], scope="system/Observation.rs")
    assert lab.fetch_token(token_url, grant_type="client_credentials")["scope"] == "system/Observation.rs"
    removed = admin_session.delete(f"{admin_api}/clients/{client_id}")
    assert removed.json() == {"removed": client_id, "revokedTokens": 1}
    assert admin_session.delete(f"{admin_api}/clients/{client_id}").status_code == 404


@pytest.mark.parametrize("body, complaint", [
    ({"name": "x", "scope": "system/*.rs", "type": "telepathy"}, "'type' must be one of"),
    ({"name": "x", "scope": "system/Nothing.rs", "type": "secret"}, "not a FHIR R4 resource type"),
    ({"name": "x", "scope": "patient/*.rs", "type": "public", "redirect_uris": "https://a.example/cb"}, "must be a list"),
    ({"name": "x", "scope": "system/*.rs", "type": "jwks", "jwks": "not a key set"}, "JWK Set"),
    ({"scope": "system/*.rs", "type": "secret"}, "'name' is required"),
])
def test_what_cannot_be_registered_is_a_400_saying_why(admin_session, admin_api, body, complaint):
    refused = admin_session.post(f"{admin_api}/clients", json=body)
    assert refused.status_code == 400 and complaint in refused.json()["error_description"]


def test_an_admin_adds_a_login_for_an_existing_patient(admin_session, admin_api, engine):
    with writing(engine) as unit:
        unit.update("Patient", "ana", {"resourceType": "Patient", "id": "ana"})
    added = admin_session.post(f"{admin_api}/users", json={"username": "ana", "password": "correct horse", "fhirUser": "Patient/ana"})
    assert added.status_code == 201 and added.json() == {"username": "ana", "fhirUser": "Patient/ana"}
    assert admin_session.post(f"{admin_api}/users", json={"username": "ana", "password": "correct horse"}).status_code == 400
    missing = admin_session.post(f"{admin_api}/users", json={"username": "bob", "password": "correct horse", "fhirUser": "Patient/bob"})
    assert missing.status_code == 404
    assert admin_session.post(f"{admin_api}/users", json=["not", "an", "object"]).status_code == 400


def test_a_resource_server_registered_for_admin_introspects_any_token(engine, live_server):
    introspect = live_server.removesuffix("/fhir") + "/auth/introspect"
    resource_server = registered(engine, scope="admin", auth_method="client_secret_basic")
    other = registered(engine, scope="system/*.rs", auth_method="client_secret_basic")
    someone_elses = token_for(engine, "system/*.rs")
    answer = requests.post(introspect, data={"token": someone_elses}, auth=(resource_server["client_id"], resource_server["client_secret"]), timeout=10)
    assert answer.json()["active"] is True and answer.json()["scope"] == "system/*.rs"
    not_admin = requests.post(introspect, data={"token": someone_elses}, auth=(other["client_id"], other["client_secret"]), timeout=10)
    assert not_admin.json() == {"active": False}


@pytest.mark.parametrize("path, body", [
    ("/clients", {"name": "x", "scope": "system/*.rs", "type": []}),
    ("/clients", {"name": "x", "scope": "system/*.rs", "type": {}}),
    ("/clients", {"name": "a\x00b", "scope": "system/*.rs", "type": "secret"}),
    ("/clients", {"name": "x" * 100_000, "scope": "system/*.rs", "type": "secret"}),
    ("/clients", {"name": "x", "scope": "system/*.rs", "type": "jwks_uri", "jwks_uri": "https://a.example/" + "x" * 3000}),
    ("/users", {"username": "a\x00b", "password": "correct horse"}),
    ("/users", {"username": "u" * 1000, "password": "correct horse"}),
    ("/users", {"username": "ana", "password": "p" * 2000}),
    ("/users", {"username": "ana", "password": "correct horse", "fhirUser": {"reference": "Patient/ana"}}),
])
def test_odd_bodies_are_400s_not_crashes(admin_session, admin_api, path, body):
    response = admin_session.post(f"{admin_api}{path}", json=body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_an_odd_client_id_to_remove_is_not_found(admin_session, admin_api):
    assert admin_session.delete(f"{admin_api}/clients/a%00b").status_code == 404
    assert admin_session.delete(f"{admin_api}/clients/{'x' * 100}").status_code == 404


def test_a_revoked_token_stops_working_at_once_in_the_worker_that_revoked_it(engine, database_url):
    from app.config import Settings
    from app.web import create_app
    from tests.security.test_enforcement import bearer

    app = create_app(Settings(database_url=database_url))
    secured = app.test_client()
    client = registered(engine, scope="system/*.rs", auth_method="client_secret_basic")
    basic = (client["client_id"], client["client_secret"])
    token = secured.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/Patient.rs"}, auth=basic).get_json()["access_token"]
    assert secured.get("/fhir/Patient", headers=bearer(token)).status_code == 200  # now cached in this worker
    assert secured.post("/auth/revoke", data={"token": token}, auth=basic).status_code == 200
    assert secured.get("/fhir/Patient", headers=bearer(token)).status_code == 401
    app.extensions["ehr.engine"].dispose()
