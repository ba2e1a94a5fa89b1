"""SMART standalone patient launch: the authorization code flow with PKCE, driven by authlib's OAuth 2.0 client over
real HTTP through our sign-in and consent pages, as a patient's app would; and what the server refuses."""
import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from app.security.accounts import ClientRegistration, add_user, register_client
from app.security.tokens import live_access_token

REDIRECT_URI = "https://growth-chart.example/callback"
APP_SCOPES = "launch/patient openid fhirUser patient/Observation.rs patient/Patient.r"
PASSWORD = "correct horse battery"


@pytest.fixture
def urls(live_server):
    root = live_server.removesuffix("/fhir")
    return {"fhir": live_server, "authorize": f"{root}/auth/authorize", "token": f"{root}/auth/token", "jwks": f"{root}/auth/jwks"}


@pytest.fixture
def app_id(engine, client):
    """A public SMART app, and Ana, a patient with a login."""
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")
        return register_client(connection, ClientRegistration("Growth Chart", (REDIRECT_URI,), APP_SCOPES, "none"))["client_id"]


def hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def sign_in_and_consent(browser: requests.Session, authorize_url: str, decision: str = "approve", untick: tuple[str, ...] = ()) -> requests.Response:
    """What the patient does in the browser: the sign-in page, then the consent page; returns the redirect to the app."""
    login = browser.get(authorize_url, timeout=10)
    assert login.status_code == 200 and "Sign in" in login.text and login.headers["X-Frame-Options"] == "DENY"
    consent = browser.post(login.url, data={"csrf_token": hidden(login.text, "csrf_token"), "next": hidden(login.text, "next"),
                                            "username": "ana", "password": PASSWORD}, timeout=10)
    assert consent.status_code == 200 and "to use your records?" in consent.text, consent.text
    offered = re.findall(r'name="approved_scope" value="([^"]*)"', consent.text)
    chosen = [scope for scope in offered if scope not in untick]
    return browser.post(consent.url, data={"csrf_token": hidden(consent.text, "csrf_token"), "approved_scope": chosen, "decision": decision},
                        allow_redirects=False, timeout=10)


def start(app_id: str, urls: dict, scope: str = APP_SCOPES) -> tuple[OAuth2Session, str, str]:
    verifier = generate_token(48)
    session = OAuth2Session(app_id, redirect_uri=REDIRECT_URI, scope=scope, code_challenge_method="S256")
    url, state = session.create_authorization_url(urls["authorize"], code_verifier=verifier, aud=urls["fhir"], nonce="n-0S6_WzA2Mj")
    return session, url, state, verifier


def test_a_patient_launches_an_app_standalone_and_it_gets_her_token(app_id, urls):
    session, url, state, verifier = start(app_id, urls)
    browser = requests.Session()
    answer = sign_in_and_consent(browser, url)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(REDIRECT_URI + "?")
    assert "Allow “Growth Chart”" in browser.get(url, timeout=10).text  # signed in now: the consent page names the app
    returned = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert returned["state"] == [state]
    token = session.fetch_token(urls["token"], authorization_response=answer.headers["Location"], code_verifier=verifier)
    assert token["patient"] == "ana-1" and set(token["scope"].split()) == set(APP_SCOPES.split())
    claims = jwt.decode(token["id_token"], KeySet.import_key_set(requests.get(urls["jwks"], timeout=10).json()), algorithms=["RS256"]).claims
    assert claims["aud"] == app_id and claims["fhirUser"] == urls["fhir"] + "/Patient/ana-1" and claims["nonce"] == "n-0S6_WzA2Mj"


def test_the_patient_can_approve_a_subset_of_the_scopes(app_id, urls):
    session, url, _, verifier = start(app_id, urls)
    answer = sign_in_and_consent(requests.Session(), url, untick=("patient/Observation.rs", "openid", "fhirUser"))
    token = session.fetch_token(urls["token"], authorization_response=answer.headers["Location"], code_verifier=verifier)
    assert token["scope"].split() == ["patient/Patient.r", "launch/patient"] and "id_token" not in token


def test_deny_sends_access_denied_back_to_the_app_with_its_state(app_id, urls):
    _, url, state, _ = start(app_id, urls)
    answer = sign_in_and_consent(requests.Session(), url, decision="deny")
    returned = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert returned["error"] == ["access_denied"] and returned["state"] == [state] and "code" not in returned


def test_a_code_is_used_once_and_only_with_its_verifier(app_id, urls):
    session, url, _, verifier = start(app_id, urls)
    location = sign_in_and_consent(requests.Session(), url).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "client_id": app_id}
    wrong = requests.post(urls["token"], data={**form, "code_verifier": generate_token(48)}, timeout=10)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    again = requests.post(urls["token"], data={**form, "code_verifier": verifier}, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # the failed attempt used it up


def authorize_query(app_id: str, urls: dict, **changes) -> dict:
    verifier = generate_token(48)
    query = {"response_type": "code", "client_id": app_id, "redirect_uri": REDIRECT_URI, "scope": APP_SCOPES, "state": "s-1",
             "aud": urls["fhir"], "code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}
    return {key: value for key, value in {**query, **changes}.items() if value is not None}


def signed_in_browser(urls: dict) -> requests.Session:
    browser = requests.Session()
    login = browser.get(urls["authorize"], timeout=10)
    browser.post(login.url, data={"csrf_token": hidden(login.text, "csrf_token"), "next": "/auth/authorize", "username": "ana",
                                  "password": PASSWORD}, timeout=10)
    return browser


@pytest.mark.parametrize("changes, error", [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain", "code_challenge": "a" * 50}, "invalid_request"),
    ({"aud": "https://elsewhere.example/fhir"}, "invalid_request"),
    ({"aud": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
def test_a_request_without_s256_pkce_or_for_another_server_goes_back_to_the_app_as_an_error(app_id, urls, changes, error):
    answer = signed_in_browser(urls).get(urls["authorize"], params=authorize_query(app_id, urls, **changes), allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    returned = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert answer.headers["Location"].startswith(REDIRECT_URI) and returned["error"] == [error] and returned["state"] == ["s-1"]


@pytest.mark.parametrize("changes", [{"redirect_uri": "https://growth-chart.example/callback/other"}, {"redirect_uri": "https://evil.example/cb"},
                                     {"client_id": "unknown"}])
def test_a_redirect_uri_not_registered_exactly_or_an_unknown_app_is_shown_an_error_page_never_redirected(app_id, urls, changes):
    answer = signed_in_browser(urls).get(urls["authorize"], params=authorize_query(app_id, urls, **changes), allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "cannot continue" in answer.text and "Location" not in answer.headers


def test_a_wrong_password_shows_the_sign_in_page_again(app_id, urls):
    browser = requests.Session()
    login = browser.get(urls["authorize"], params=authorize_query(app_id, urls), timeout=10)
    again = browser.post(login.url, data={"csrf_token": hidden(login.text, "csrf_token"), "next": hidden(login.text, "next"),
                                          "username": "ana", "password": "not it"}, timeout=10)
    assert again.status_code == 401 and "Wrong username or password" in again.text


def test_the_sign_in_form_needs_its_csrf_token(app_id, urls):
    browser = requests.Session()
    login = browser.get(urls["authorize"], timeout=10)
    forged = browser.post(login.url, data={"next": "/auth/authorize", "username": "ana", "password": PASSWORD}, timeout=10)
    assert forged.status_code == 400


def test_the_consent_form_needs_its_csrf_token(app_id, urls):
    browser = signed_in_browser(urls)
    query = authorize_query(app_id, urls)
    forged = browser.post(urls["authorize"], params=query, data={"approved_scope": ["patient/Patient.r"], "decision": "approve"}, allow_redirects=False, timeout=10)
    assert forged.status_code == 400 and "Location" not in forged.headers


def test_after_sign_in_the_browser_only_goes_back_to_an_authorization_request(urls):
    browser = requests.Session()
    login = browser.get(urls["authorize"].replace("/authorize", "/login"), params={"next": "https://evil.example/"}, timeout=10)
    assert hidden(login.text, "next") == "/auth/authorize"


def test_a_confidential_app_exchanges_its_code_with_its_secret_and_still_needs_pkce(engine, client, urls):
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")
        app = register_client(connection, ClientRegistration("Portal", (REDIRECT_URI,), APP_SCOPES, "client_secret_basic"))
    verifier = generate_token(48)
    session = OAuth2Session(app["client_id"], app["client_secret"], redirect_uri=REDIRECT_URI, scope="patient/Patient.r", code_challenge_method="S256")
    url, _ = session.create_authorization_url(urls["authorize"], code_verifier=verifier, aud=urls["fhir"])
    location = sign_in_and_consent(requests.Session(), url).headers["Location"]
    token = session.fetch_token(urls["token"], authorization_response=location, code_verifier=verifier)
    assert token["scope"] == "patient/Patient.r" and token["patient"] == "ana-1"


def test_a_practitioner_cannot_grant_patient_scopes_in_a_standalone_launch(engine, client, urls, app_id):
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc"})
    with engine.begin() as connection:
        add_user(connection, "doc", "stethoscope!", "Practitioner/doc")
    browser = requests.Session()
    login = browser.get(urls["authorize"], params=authorize_query(app_id, urls), timeout=10)
    consent = browser.post(login.url, data={"csrf_token": hidden(login.text, "csrf_token"), "next": hidden(login.text, "next"),
                                            "username": "doc", "password": "stethoscope!"}, timeout=10)
    answer = browser.post(consent.url, data={"csrf_token": hidden(consent.text, "csrf_token"), "approved_scope": ["patient/Patient.r"],
                                             "decision": "approve"}, allow_redirects=False, timeout=10)
    returned = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert returned["error"] == ["invalid_scope"] and "patient in context" in returned["error_description"][0]


def launch_with(app_id: str, urls: dict, scope: str) -> tuple[OAuth2Session, dict]:
    session, url, _, verifier = start(app_id, urls, scope=scope)
    location = sign_in_and_consent(requests.Session(), url).headers["Location"]
    return session, session.fetch_token(urls["token"], authorization_response=location, code_verifier=verifier)


@pytest.fixture
def offline_app(engine, client):
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")
        scopes = f"{APP_SCOPES} offline_access online_access"
        return register_client(connection, ClientRegistration("Growth Chart", (REDIRECT_URI,), scopes, "none"))["client_id"]


def test_offline_access_gives_a_refresh_token_that_rotates_on_use(offline_app, urls, engine):
    session, first = launch_with(offline_app, urls, "launch/patient patient/Observation.rs offline_access")
    assert first["refresh_token"] and "offline_access" in first["scope"].split()
    second = session.refresh_token(urls["token"], refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert second["patient"] == "ana-1" and second["scope"] == first["scope"]
    with engine.connect() as connection:
        now = datetime.now(timezone.utc)
        assert live_access_token(connection, first["access_token"], now) is None
        assert live_access_token(connection, second["access_token"], now) is not None


def test_a_used_refresh_token_coming_back_revokes_its_whole_chain(offline_app, urls, engine):
    """Someone holds a copy of a refresh token the app already used: the chain is revoked, the newest token too."""
    session, first = launch_with(offline_app, urls, "launch/patient patient/Observation.rs offline_access")
    second = session.refresh_token(urls["token"], refresh_token=first["refresh_token"])
    third = session.refresh_token(urls["token"], refresh_token=second["refresh_token"])
    reused = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                "client_id": offline_app}, timeout=10)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    with engine.connect() as connection:
        assert live_access_token(connection, third["access_token"], datetime.now(timezone.utc)) is None
    newest = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": third["refresh_token"],
                                                "client_id": offline_app}, timeout=10)
    assert newest.status_code == 400 and newest.json()["error"] == "invalid_grant"
    _, other = launch_with(offline_app, urls, "launch/patient patient/Observation.rs offline_access")  # another chain is untouched
    with engine.connect() as connection:
        assert live_access_token(connection, other["access_token"], datetime.now(timezone.utc)) is not None


def test_a_refresh_may_narrow_the_scopes_but_never_widen_them_past_the_grant(offline_app, urls):
    session, first = launch_with(offline_app, urls, "launch/patient patient/Observation.rs patient/Patient.r online_access")
    narrower = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                                  "client_id": offline_app, "scope": "patient/Patient.r online_access"}, timeout=10)
    assert narrower.status_code == 200 and narrower.json()["scope"].split() == ["patient/Patient.r", "online_access"]
    wider = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": narrower.json()["refresh_token"],
                                               "client_id": offline_app, "scope": "patient/*.rs online_access"}, timeout=10)
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    again = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": narrower.json()["refresh_token"],
                                               "client_id": offline_app}, timeout=10)
    assert again.status_code == 200 and again.json()["scope"] == first["scope"]  # without scope=, what the patient granted


def test_without_offline_or_online_access_there_is_no_refresh_token(offline_app, urls):
    _, token = launch_with(offline_app, urls, "launch/patient patient/Observation.rs")
    assert "refresh_token" not in token


def test_a_revoked_refresh_token_cannot_be_used(offline_app, urls):
    _, token = launch_with(offline_app, urls, "launch/patient patient/Observation.rs offline_access")
    requests.post(urls["token"].replace("/token", "/revoke"), data={"token": token["refresh_token"], "client_id": offline_app}, timeout=10)
    refused = requests.post(urls["token"], data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": offline_app}, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_the_smart_python_client_finds_the_endpoints_and_launches(app_id, urls):
    """fhirclient (SMART's own Python client) reads the endpoints from the CapabilityStatement, sends PKCE and aud."""
    from fhirclient import client as smart_client

    smart = smart_client.FHIRClient(settings={"app_id": app_id, "api_base": urls["fhir"], "redirect_uri": REDIRECT_URI,
                                              "scope": "launch/patient openid fhirUser patient/Patient.r"})
    answer = sign_in_and_consent(requests.Session(), smart.authorize_url)
    smart.handle_callback(answer.headers["Location"])
    assert smart.ready and smart.patient_id == "ana-1"
    assert smart.patient.id == "ana-1"


@pytest.mark.parametrize("changes, error", [
    ({"scope": "patient/Foo.rs openid"}, "invalid_scope"),
    ({"nonce": "n" * 300}, "invalid_request"),
])
def test_a_malformed_scope_or_an_overlong_nonce_goes_back_to_the_app_as_an_error(app_id, urls, changes, error):
    answer = signed_in_browser(urls).get(urls["authorize"], params=authorize_query(app_id, urls, **changes), allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == [error]
