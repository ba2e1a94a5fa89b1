"""OAuth clients and users of the authorization server: `ehr clients` and `ehr users` as an operator runs them, and
what they store, on SQLite and PostgreSQL."""
import json

import orjson
import pytest
from argon2 import PasswordHasher
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select

from app.security.accounts import AccountError, ClientRegistration, find_client, register_client
from app.model.instants import utc_now
from app.security.tables import app_user, oauth_client
from app.security.tokens import TokenContext, live_access_token, save_token
from app.store.unit import writing
from tests.test_cli import ehr

APP_SCOPES = "launch/patient openid fhirUser patient/Observation.rs offline_access"


def public_key_set(*keys) -> dict:
    return {"keys": [key.as_dict(private=False) for key in keys]}


@pytest.fixture
def jwks_file(tmp_path):
    path = tmp_path / "jwks.json"
    keys = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}), ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    path.write_text(json.dumps(public_key_set(*keys)))
    return path


def registered(result) -> dict:
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def test_clients_add_public_prints_only_a_client_id_and_clients_list_shows_it(database_url, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "Growth chart", "--redirect-uri", "https://app.example/cb",
                           "--redirect-uri", "http://localhost:9000/cb", "--scope", APP_SCOPES, "--public", cwd=tmp_path))
    assert set(added) == {"client_id"}
    (listed,) = registered(ehr(database_url, "clients", "list", cwd=tmp_path))
    assert listed == {"client_id": added["client_id"], "name": "Growth chart", "auth_method": "none", "scope": APP_SCOPES,
                      "redirect_uris": ["https://app.example/cb", "http://localhost:9000/cb"], "jwks_uri": None, "keys": []}


def test_clients_add_secret_prints_the_secret_once_and_stores_only_its_hash(database_url, engine, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "Portal", "--redirect-uri", "https://portal.example/cb",
                           "--scope", "user/*.rs openid", "--secret", cwd=tmp_path))
    assert len(added["client_secret"]) >= 40
    with engine.connect() as connection:
        client = find_client(connection, added["client_id"])
        stored = connection.execute(select(oauth_client.c.secret_hash)).scalar_one()
    assert added["client_secret"] not in stored and client.auth_method == "client_secret_basic"
    assert client.check_secret(added["client_secret"]) and not client.check_secret(added["client_secret"] + "x")
    assert added["client_secret"] not in ehr(database_url, "clients", "list", cwd=tmp_path).stdout


def test_clients_add_jwks_registers_a_backend_service_with_its_public_keys(database_url, engine, tmp_path, jwks_file):
    added = registered(ehr(database_url, "clients", "add", "--name", "Hospital sync", "--scope", "system/*.rs",
                           "--jwks", str(jwks_file), cwd=tmp_path))
    with engine.connect() as connection:
        client = find_client(connection, added["client_id"])
    assert client.auth_method == "private_key_jwt" and [key["kid"] for key in client.jwks["keys"]] == ["rsa-1", "ec-1"]


def test_clients_add_jwks_uri_registers_where_the_keys_are_fetched(database_url, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "EHR vendor", "--scope", "system/Patient.cruds",
                           "--jwks-uri", "https://vendor.example/.well-known/jwks.json", cwd=tmp_path))
    (listed,) = registered(ehr(database_url, "clients", "list", cwd=tmp_path))
    assert listed["client_id"] == added["client_id"] and listed["jwks_uri"] == "https://vendor.example/.well-known/jwks.json"


@pytest.mark.parametrize("arguments, complaint", [
    (["--redirect-uri", "https://a.example/cb", "--scope", "patient/Observation.sr", "--public"], "in that order"),
    (["--redirect-uri", "https://a.example/cb", "--scope", "patient/Obs.rs", "--public"], "'Obs' is not a FHIR R4 resource type"),
    (["--redirect-uri", "http://a.example/cb", "--scope", "openid", "--public"], "must be https"),
    (["--redirect-uri", "https://a.example/cb#x", "--scope", "openid", "--public"], "without a fragment"),
    (["--redirect-uri", "cb", "--scope", "openid", "--public"], "absolute"),
    (["--scope", "openid", "--public"], "at least one redirect URI"),
    (["--redirect-uri", "https://a.example/cb", "--scope", "openid", "--public", "--secret"], "exactly one of"),
    (["--redirect-uri", "https://a.example/cb", "--scope", "openid"], "exactly one of"),
    (["--scope", "system/*.rs", "--jwks-uri", "http://vendor.example/jwks"], "must be https"),
])
def test_clients_add_refuses_a_bad_registration_saying_why_and_stores_nothing(database_url, tmp_path, arguments, complaint):
    result = ehr(database_url, "clients", "add", "--name", "App", *arguments, cwd=tmp_path)
    assert result.returncode != 0 and complaint in result.stderr and "Traceback" not in result.stderr
    assert registered(ehr(database_url, "clients", "list", cwd=tmp_path)) == []


def test_clients_add_refuses_a_key_set_with_a_private_key(database_url, tmp_path):
    path = tmp_path / "private.json"
    path.write_text(json.dumps({"keys": [RSAKey.generate_key(2048, parameters={"kid": "k"}).as_dict(private=True)]}))
    result = ehr(database_url, "clients", "add", "--name", "Leaky", "--scope", "system/*.rs", "--jwks", str(path), cwd=tmp_path)
    assert result.returncode != 0 and "no private part" in result.stderr


def test_clients_remove_removes_and_says_so_for_an_unknown_id(database_url, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "Old app", "--redirect-uri", "https://a.example/cb",
                           "--scope", "openid", "--public", cwd=tmp_path))
    assert registered(ehr(database_url, "clients", "remove", added["client_id"], cwd=tmp_path)) == {"removed": added["client_id"], "revokedTokens": 0}
    assert registered(ehr(database_url, "clients", "list", cwd=tmp_path)) == []
    again = ehr(database_url, "clients", "remove", added["client_id"], cwd=tmp_path)
    assert again.returncode != 0 and "There is no client" in again.stderr


def test_users_add_binds_a_login_to_an_existing_patient_with_an_argon2_hash(database_url, engine, client, tmp_path):
    client.put("/fhir/Patient/ana", json={"resourceType": "Patient", "id": "ana"})
    result = registered(ehr(database_url, "users", "add", "--username", "ana", "--password-stdin", "--patient", "Patient/ana",
                            cwd=tmp_path, stdin="correct horse battery\n"))
    assert result == {"username": "ana", "fhirUser": "Patient/ana"}
    with engine.connect() as connection:
        row = connection.execute(select(app_user)).one()
    assert row.fhir_user == "Patient/ana" and "correct horse" not in row.password_hash
    assert PasswordHasher().verify(row.password_hash, "correct horse battery")


def test_users_add_binds_a_practitioner(database_url, client, tmp_path):
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc"})
    result = ehr(database_url, "users", "add", "--username", "dr.who", "--password-stdin", "--practitioner", "Practitioner/doc",
                 cwd=tmp_path, stdin="tardis-blue-box\n")
    assert registered(result)["fhirUser"] == "Practitioner/doc"


@pytest.mark.parametrize("arguments, password, complaint", [
    (["--patient", "Patient/nobody"], "long enough pass", "Patient/nobody does not exist"),
    (["--practitioner", "Patient/ana"], "long enough pass", "--practitioner takes Practitioner/ID"),
    (["--patient", "Patient/ana"], "short", "at least 8 characters"),
])
def test_users_add_refuses_a_missing_identity_a_wrong_type_or_a_short_password(database_url, tmp_path, client, arguments, password, complaint):
    client.put("/fhir/Patient/ana", json={"resourceType": "Patient", "id": "ana"})
    result = ehr(database_url, "users", "add", "--username", "ana", "--password-stdin", *arguments, cwd=tmp_path, stdin=password + "\n")
    assert result.returncode != 0 and complaint in result.stderr and "Traceback" not in result.stderr


def test_users_add_refuses_a_second_user_with_the_same_name(database_url, tmp_path):
    first = ehr(database_url, "users", "add", "--username", "sam", "--password-stdin", cwd=tmp_path, stdin="first password\n")
    second = ehr(database_url, "users", "add", "--username", "sam", "--password-stdin", cwd=tmp_path, stdin="other password\n")
    assert first.returncode == 0 and second.returncode != 0 and "already a user named 'sam'" in second.stderr


def test_register_client_refuses_a_scope_outside_the_grammar_before_storing(engine):
    registration = ClientRegistration("App", ("https://a.example/cb",), "patient/Observation.rs", "magic")
    with engine.begin() as connection, pytest.raises(AccountError, match="Unknown client authentication"):
        register_client(connection, registration)


def test_registered_clients_are_kept_apart_from_resources(engine):
    """The client table is the authorization server's own: a unit of work sees no resource for it."""
    with engine.begin() as connection:
        register_client(connection, ClientRegistration("App", ("https://a.example/cb",), "openid", "none"))
    with writing(engine) as unit:
        assert not unit.has_resources()


def test_a_secret_client_without_redirect_uris_is_a_backend_service(database_url, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "Nightly export", "--scope", "system/*.rs", "--secret", cwd=tmp_path))
    assert set(added) == {"client_id", "client_secret"}


def test_removing_a_client_revokes_its_tokens(database_url, engine, tmp_path):
    added = registered(ehr(database_url, "clients", "add", "--name", "Backend", "--scope", "system/*.rs", "--secret", cwd=tmp_path))
    context = TokenContext(added["client_id"], "system/*.rs")
    with engine.begin() as connection:
        save_token(connection, context, {"access_token": "t1", "expires_in": 300}, utc_now())
        save_token(connection, context, {"access_token": "t2", "expires_in": 300}, utc_now())
    removed = registered(ehr(database_url, "clients", "remove", added["client_id"], cwd=tmp_path))
    assert removed["revokedTokens"] == 2
    with engine.connect() as connection:
        assert live_access_token(connection, "t1", utc_now()) is None and live_access_token(connection, "t2", utc_now()) is None
