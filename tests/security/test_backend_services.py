"""SMART Backend Services: a hospital's or EHR vendor's service gets a system token from the token endpoint with
`client_credentials`, authenticating with a JWT it signs (private_key_jwt) or with its secret. Driven by authlib's
OAuth 2.0 client over real HTTP, and by hand-made assertions for what a real client would never send."""
import contextlib
import http.server
import json
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey
from sqlalchemy import select

from app.config import Settings
from app.security.accounts import ClientRegistration, register_client
from app.security.tables import oauth_token
from app.security.tokens import live_access_token, token_hash
from app.web import create_app

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def token_url(live_server):
    return live_server.removesuffix("/fhir") + "/auth/token"


@pytest.fixture
def rsa_key():
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


def registered(engine, scope="system/Observation.rs system/Patient.rs", auth_method="private_key_jwt", **keys) -> dict:
    redirect_uris = ("https://app.example/cb",) if auth_method != "private_key_jwt" else ()
    with engine.begin() as connection:
        return register_client(connection, ClientRegistration("Hospital sync", redirect_uris, scope, auth_method, **keys))


def public_set(*keys) -> dict:
    return {"keys": [key.as_dict(private=False) for key in keys]}


def assertion(client_id: str, key, audience: str, alg: str = "RS384", lifetime: int = 240, jti: str | None = None, **changes) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": now + lifetime, "jti": jti or str(uuid.uuid4())}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, {**claims, **changes}, key, algorithms=[alg])


def ask(token_url: str, signed: str, scope: str = "system/Observation.rs") -> requests.Response:
    return requests.post(token_url, data={"grant_type": "client_credentials", "scope": scope,
                                          "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}, timeout=10)


def test_a_backend_service_gets_a_system_token_with_authlibs_client(engine, token_url, rsa_key):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    # authlib's client signs assertions for an hour unless told otherwise; SMART allows five minutes at most.
    signer = PrivateKeyJWT(token_url, alg="RS384", claims={"exp": int(time.time()) + 240})
    session = OAuth2Session(client_id, rsa_key.as_dict(private=True), token_endpoint_auth_method=signer, scope="system/Observation.rs")
    token = session.fetch_token(token_url, grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer" and token["scope"] == "system/Observation.rs"
    assert 0 < token["expires_in"] <= 300
    with engine.connect() as connection:
        issued = live_access_token(connection, token["access_token"], datetime.now(timezone.utc))
        stored = connection.execute(select(oauth_token.c.access_token_hash)).scalar_one()
    assert issued.client_id == client_id and issued.scope == "system/Observation.rs" and issued.patient is None
    assert stored == token_hash(token["access_token"]) and token["access_token"] not in stored


def test_an_es384_assertion_is_accepted(engine, token_url):
    key = ECKey.generate_key("P-384", parameters={"kid": "ec-1"})
    client_id = registered(engine, jwks=public_set(key))["client_id"]
    response = ask(token_url, assertion(client_id, key, token_url, alg="ES384"))
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"


def test_scopes_not_registered_are_left_out_of_the_grant(engine, token_url, rsa_key):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    response = ask(token_url, assertion(client_id, rsa_key, token_url), scope="system/Observation.rs system/Encounter.rs")
    assert response.status_code == 200 and response.json()["scope"] == "system/Observation.rs"


@pytest.mark.parametrize("scope, complaint", [
    ("system/Encounter.rs", "None of the scopes asked for is registered"),
    ("patient/Observation.rs", "only be granted system/ scopes"),
    ("system/Observation.sr", "in that order"),
    ("", "must ask for scopes"),
])
def test_a_scope_that_cannot_be_granted_is_invalid_scope(engine, token_url, rsa_key, scope, complaint):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    response = ask(token_url, assertion(client_id, rsa_key, token_url), scope=scope)
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    assert complaint in response.json()["error_description"]


def test_a_replayed_assertion_is_refused(engine, token_url, rsa_key):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    signed = assertion(client_id, rsa_key, token_url)
    assert ask(token_url, signed).status_code == 200
    again = ask(token_url, signed)
    assert again.status_code in (400, 401) and again.json()["error"] == "invalid_client"


@pytest.mark.parametrize("case", ["lives ten minutes", "expired", "wrong audience", "other key", "iss is not sub", "no jti", "HS256", "unknown client"])
def test_an_assertion_that_breaks_the_smart_rules_is_invalid_client(engine, token_url, rsa_key, case):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    other = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    signed = {
        "lives ten minutes": lambda: assertion(client_id, rsa_key, token_url, lifetime=600),
        "expired": lambda: assertion(client_id, rsa_key, token_url, lifetime=-10),
        "wrong audience": lambda: assertion(client_id, rsa_key, "https://elsewhere.example/token"),
        "other key": lambda: assertion(client_id, other, token_url),
        "iss is not sub": lambda: assertion(client_id, rsa_key, token_url, iss="someone-else"),
        "no jti": lambda: no_jti_assertion(client_id, rsa_key, token_url),
        "HS256": lambda: assertion(client_id, OctKey.generate_key(256, parameters={"kid": "rsa-1"}), token_url, alg="HS256"),
        "unknown client": lambda: assertion("nobody", rsa_key, token_url, iss="nobody"),
    }[case]()
    response = ask(token_url, signed)
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client", response.text
    with engine.connect() as connection:
        assert connection.execute(select(oauth_token)).first() is None


def no_jti_assertion(client_id, key, audience):
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": int(time.time()) + 120}
    return jwt.encode({"alg": "RS384", "kid": key.kid}, claims, key, algorithms=["RS384"])


@pytest.fixture
def jwks_server(rsa_key):
    """A client's own https-less (loopback) JWK Set URL, serving its public keys."""
    body = json.dumps(public_set(rsa_key)).encode()

    class KeySetHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/jwks.json")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if self.path != "/big" else body[:-1] + b', "padding": "' + b"x" * 100_000 + b'"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), KeySetHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()


def test_the_keys_are_fetched_from_the_clients_jwks_uri(engine, token_url, rsa_key, jwks_server):
    client_id = registered(engine, jwks_uri=jwks_server)["client_id"]
    assert ask(token_url, assertion(client_id, rsa_key, token_url)).status_code == 200


@pytest.mark.parametrize("path, complaint", [("/moved", "302"), ("/big", "larger than 64 KiB")])
def test_a_jwks_uri_is_not_followed_through_redirects_nor_read_past_64_kib(engine, token_url, rsa_key, jwks_server, path, complaint):
    client_id = registered(engine, jwks_uri=jwks_server.replace("/jwks.json", path))["client_id"]
    response = ask(token_url, assertion(client_id, rsa_key, token_url))
    assert response.status_code in (400, 401) and complaint in response.json()["error_description"]


def test_an_unreachable_jwks_uri_is_invalid_client_not_a_crash(engine, token_url, rsa_key):
    client_id = registered(engine, jwks_uri="http://127.0.0.1:9/jwks.json")["client_id"]
    response = ask(token_url, assertion(client_id, rsa_key, token_url))
    assert response.status_code in (400, 401) and "cannot be fetched" in response.json()["error_description"]


def test_a_confidential_client_gets_a_system_token_with_its_secret(engine, token_url):
    client = registered(engine, scope="system/*.rs", auth_method="client_secret_basic")
    session = OAuth2Session(client["client_id"], client["client_secret"], scope="system/Patient.rs")
    token = session.fetch_token(token_url, grant_type="client_credentials")
    assert token["scope"] == "system/Patient.rs"
    wrong = requests.post(token_url, data={"grant_type": "client_credentials", "scope": "system/Patient.rs"},
                          auth=(client["client_id"], "not-the-secret"), timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_a_public_client_cannot_use_client_credentials(engine, token_url):
    client_id = registered(engine, scope="patient/*.rs", auth_method="none")["client_id"]
    response = requests.post(token_url, data={"grant_type": "client_credentials", "client_id": client_id, "scope": "system/*.rs"}, timeout=10)
    assert response.status_code in (400, 401) and response.json()["error"] in ("invalid_client", "unauthorized_client")


@pytest.mark.parametrize("form, error", [
    ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
    ({}, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": ASSERTION_TYPE, "client_assertion": "abc"}, "invalid_client"),
    ({"grant_type": "client_credentials", "scope": "system/*.rs", "client_assertion_type": ASSERTION_TYPE,
      "client_assertion": "e30.e30.e30"}, "invalid_client"),
    ({"grant_type": "client_credentials", "scope": "system/*.rs"}, "invalid_client"),
])
def test_a_malformed_token_request_gets_an_oauth_error(client, form, error):
    response = client.post("/auth/token", data=form)
    assert response.status_code in (400, 401) and response.json["error"] == error


def test_the_token_endpoint_takes_only_post(client):
    assert client.get("/auth/token").status_code == 405


@given(st.text(max_size=300), st.text(max_size=60))
@examples(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_assertion_or_scope_makes_the_token_endpoint_fail(client, signed, scope):
    response = client.post("/auth/token", data={"grant_type": "client_credentials", "scope": scope,
                                                "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
    assert response.status_code in (400, 401) and "error" in response.json


@contextlib.contextmanager
def behind_a_proxy(database_url: str):
    """The app with EHR_BASE_URL https://ehr.example.org/fhir, and a backend client registered on it with its key."""
    app = create_app(Settings(database_url=database_url, base_url="https://ehr.example.org/fhir"))
    try:
        key = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
        yield app, registered(app.extensions["ehr.engine"], jwks=public_set(key))["client_id"], key
    finally:
        app.extensions["ehr.engine"].dispose()


def test_behind_a_proxy_the_audience_may_be_the_public_token_endpoint(database_url):
    """With EHR_BASE_URL https://ehr.example.org/fhir, a client signs for https://ehr.example.org/auth/token."""
    with behind_a_proxy(database_url) as (app, client_id, key):
        signed = assertion(client_id, key, "https://ehr.example.org/auth/token")
        form = {"grant_type": "client_credentials", "scope": "system/Patient.rs", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
        response = app.test_client().post("/auth/token", data=form, headers={"Host": "10.0.0.5:8080"})
        assert response.status_code == 200, response.json


def test_plain_http_from_another_host_without_a_public_https_base_is_an_oauth_error(database_url):
    app = create_app(Settings(database_url=database_url, allowed_hosts=("ehr.internal",)))
    try:
        response = app.test_client().post("/auth/token", data={"grant_type": "client_credentials"}, headers={"Host": "ehr.internal"})
        assert response.status_code == 400 and response.json["error"] == "insecure_transport"
    finally:
        app.extensions["ehr.engine"].dispose()


def test_behind_a_proxy_an_audience_taken_from_the_host_header_is_refused(database_url):
    """With EHR_BASE_URL any Host is answered, so the Host must not make another server's token URL acceptable."""
    with behind_a_proxy(database_url) as (app, client_id, key):
        signed = assertion(client_id, key, "https://evil.example/auth/token")
        form = {"grant_type": "client_credentials", "scope": "system/Patient.rs", "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}
        response = app.test_client().post("/auth/token", data=form, headers={"Host": "evil.example"}, base_url="https://evil.example")
        assert response.status_code in (400, 401) and response.json["error"] == "invalid_client"


def test_an_assertion_for_a_client_that_has_no_keys_is_invalid_client(engine, token_url, rsa_key):
    secret_client = registered(engine, scope="system/*.rs", auth_method="client_secret_basic")["client_id"]
    response = ask(token_url, assertion(secret_client, rsa_key, token_url))
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_an_overlong_jti_is_invalid_client(engine, token_url, rsa_key):
    client_id = registered(engine, jwks=public_set(rsa_key))["client_id"]
    response = ask(token_url, assertion(client_id, rsa_key, token_url, jti="j" * 300))
    assert response.status_code in (400, 401) and "jti is longer" in response.json()["error_description"]
