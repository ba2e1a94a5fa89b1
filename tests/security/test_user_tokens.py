"""`ehr tokens issue`, the token response a user's grant gives (launch context, id_token), and the server's signing
keys published at /auth/jwks, on SQLite and PostgreSQL."""
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet

from app.security.keys import PUBLISHED_FOR, ROTATE_AFTER, public_key_set, signing_key_for
from app.security.tokens import live_access_token
from tests.test_cli import ehr

APP_SCOPES = "launch/patient openid fhirUser profile patient/Observation.rs patient/Patient.r offline_access"


@pytest.fixture
def ana(client, database_url, tmp_path):
    """A patient with a login, and a public app registered for APP_SCOPES: (client_id, patient id)."""
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    added = ehr(database_url, "users", "add", "--username", "ana", "--password-stdin", "--patient", "Patient/ana-1", cwd=tmp_path,
                stdin="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    app = ehr(database_url, "clients", "add", "--name", "Growth chart", "--redirect-uri", "https://app.example/cb", "--scope", APP_SCOPES,
              "--public", cwd=tmp_path)
    return orjson.loads(app.stdout)["client_id"]


def issued(database_url, tmp_path, *args) -> dict:
    result = ehr(database_url, "tokens", "issue", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def test_tokens_issue_prints_a_token_response_with_the_patient_in_context(database_url, engine, tmp_path, ana):
    token = issued(database_url, tmp_path, "--username", "ana", "--client", ana, "--scope",
                   "launch/patient patient/Observation.rs patient/Condition.rs offline_access", "--expires-in", "600")
    assert token["token_type"] == "Bearer" and token["expires_in"] == 600 and token["patient"] == "ana-1"
    assert token["scope"].split() == ["patient/Observation.rs", "launch/patient", "offline_access"]  # Condition is not registered
    assert "id_token" not in token and len(token["refresh_token"]) >= 40
    with engine.connect() as connection:
        stored = live_access_token(connection, token["access_token"], datetime.now(timezone.utc))
    assert (stored.client_id, stored.username, stored.fhir_user, stored.patient) == (ana, "ana", "Patient/ana-1", "ana-1")
    assert stored.scope == token["scope"]


def test_with_openid_and_fhiruser_the_id_token_is_signed_by_a_key_published_at_jwks(database_url, tmp_path, ana, live_server):
    token = issued(database_url, tmp_path, "--username", "ana", "--client", ana, "--scope", "openid fhirUser patient/Patient.r")
    jwks = requests.get(live_server.removesuffix("/fhir") + "/auth/jwks", timeout=10)
    assert jwks.status_code == 200 and "max-age" in jwks.headers["Cache-Control"]
    assert all("d" not in key and key["kty"] == "RSA" for key in jwks.json()["keys"])
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(jwks.json()), algorithms=["RS256"]).claims
    assert claims["aud"] == ana and claims["sub"] == "ana" and claims["iss"] == "http://127.0.0.1:8080/fhir"
    assert claims["fhirUser"] == "http://127.0.0.1:8080/fhir/Patient/ana-1"
    assert claims["exp"] > claims["iat"] >= int(datetime.now(timezone.utc).timestamp()) - 60


def test_openid_alone_asks_for_no_identity_so_no_id_token(database_url, tmp_path, ana):
    assert "id_token" not in issued(database_url, tmp_path, "--username", "ana", "--client", ana, "--scope", "openid patient/Patient.r")


@pytest.mark.parametrize("scope, complaint", [
    ("system/*.rs", "system/ scopes and admin are for backend services"),
    ("admin", "system/ scopes and admin are for backend services"),
    ("user/*.rs", "None of the scopes asked for is registered"),
    ("patient/Observation.sr", "in that order"),
])
def test_tokens_issue_refuses_what_cannot_be_granted(database_url, tmp_path, ana, scope, complaint):
    result = ehr(database_url, "tokens", "issue", "--username", "ana", "--client", ana, "--scope", scope, cwd=tmp_path)
    assert result.returncode != 0 and complaint in result.stderr and "Traceback" not in result.stderr


def test_patient_scopes_need_a_patient_user(database_url, client, tmp_path, ana):
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc"})
    ehr(database_url, "users", "add", "--username", "doc", "--password-stdin", "--practitioner", "Practitioner/doc", cwd=tmp_path,
        stdin="stethoscope!\n")
    result = ehr(database_url, "tokens", "issue", "--username", "doc", "--client", ana, "--scope", "patient/Observation.rs", cwd=tmp_path)
    assert result.returncode != 0 and "patient/ scopes need a patient in context" in result.stderr


@pytest.mark.parametrize("args, complaint", [
    (["--username", "nobody", "--client", "CLIENT"], "There is no user 'nobody'"),
    (["--username", "ana", "--client", "nope"], "There is no client 'nope'"),
    (["--username", "ana", "--client", "CLIENT", "--expires-in", "0"], "--expires-in"),
])
def test_tokens_issue_names_a_missing_user_or_client_or_a_bad_lifetime(database_url, tmp_path, ana, args, complaint):
    args = [ana if arg == "CLIENT" else arg for arg in args]
    result = ehr(database_url, "tokens", "issue", *args, "--scope", "openid", cwd=tmp_path)
    assert result.returncode != 0 and complaint in result.stderr


def test_a_signing_key_is_made_once_then_rotated_and_old_ones_stop_being_published(engine):
    start = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as connection:
        first = signing_key_for(connection, start)
        assert signing_key_for(connection, start + ROTATE_AFTER - timedelta(seconds=1)).kid == first.kid
        second = signing_key_for(connection, start + ROTATE_AFTER)
        assert second.kid != first.kid
        both = [key["kid"] for key in public_key_set(connection, start + ROTATE_AFTER)["keys"]]
        later = [key["kid"] for key in public_key_set(connection, start + PUBLISHED_FOR + timedelta(seconds=1))["keys"]]
    assert both == [second.kid, first.kid]
    assert first.kid not in later and second.kid in later
