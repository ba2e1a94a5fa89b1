"""What the authorization server publishes: SMART's /.well-known/smart-configuration, OpenID Connect discovery, and
the CapabilityStatement's security element, as the request reached the server or from EHR_BASE_URL."""
import requests

from app.config import Settings
from app.web import create_app

SMART_REQUIRED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "grant_types_supported",
                  "token_endpoint_auth_methods_supported", "scopes_supported", "response_types_supported",
                  "code_challenge_methods_supported", "capabilities")


def test_smart_configuration_has_every_required_field_and_its_endpoints_answer(live_server):
    root = live_server.removesuffix("/fhir")
    document = requests.get(f"{live_server}/.well-known/smart-configuration", timeout=10).json()
    assert all(document[field] for field in SMART_REQUIRED)
    assert document["code_challenge_methods_supported"] == ["S256"] and "plain" not in document["code_challenge_methods_supported"]
    assert {"launch-standalone", "client-public", "client-confidential-asymmetric", "permission-v2", "sso-openid-connect"} <= set(document["capabilities"])
    assert document["token_endpoint"] == f"{root}/auth/token" and document["issuer"] == live_server
    assert requests.get(document["jwks_uri"], timeout=10).json()["keys"]
    assert requests.post(document["token_endpoint"], data={}, timeout=10).json()["error"] == "unsupported_grant_type"
    assert requests.post(document["revocation_endpoint"], data={}, timeout=10).status_code in (400, 401)
    assert requests.get(document["authorization_endpoint"], allow_redirects=False, timeout=10).status_code == 302  # to sign in


def test_openid_discovery_sits_under_the_issuer(live_server):
    document = requests.get(f"{live_server}/.well-known/openid-configuration", timeout=10).json()
    assert document["issuer"] == live_server and document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["jwks_uri"] == live_server.removesuffix("/fhir") + "/auth/jwks"


def test_the_capability_statement_names_smart_and_its_oauth_uris(client):
    security = client.get("/fhir/metadata").json["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (uris,) = security["extension"]
    assert {entry["url"]: entry["valueUri"] for entry in uris["extension"]} == {
        "authorize": "http://localhost/auth/authorize", "token": "http://localhost/auth/token",
        "revoke": "http://localhost/auth/revoke", "introspect": "http://localhost/auth/introspect",
    }


def test_behind_a_proxy_everything_published_is_beside_the_public_base(database_url):
    app = create_app(Settings(database_url=database_url, base_url="https://ehr.example.org/fhir"))
    try:
        document = app.test_client().get("/fhir/.well-known/smart-configuration", headers={"Host": "10.0.0.5:8080"}).json
    finally:
        app.extensions["ehr.engine"].dispose()
    assert document["issuer"] == "https://ehr.example.org/fhir"
    assert document["authorization_endpoint"] == "https://ehr.example.org/auth/authorize"
    assert document["jwks_uri"] == "https://ehr.example.org/auth/jwks"
