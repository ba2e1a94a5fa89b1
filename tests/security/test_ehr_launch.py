"""SMART EHR launch: the EHR (here `ehr launch`) makes a `launch` bound to the patient and encounter open in it; the app
it starts asks for the `launch` scope with that value, and its token carries that patient and encounter, even for a
practitioner's patient/ scopes. On SQLite and PostgreSQL, over HTTP with authlib's client."""
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from app.security.accounts import ClientRegistration, add_user, register_client
from app.security.tokens import Launch, save_launch
from tests.security.test_standalone_launch import REDIRECT_URI, hidden
from tests.test_cli import ehr

SCOPES = "launch openid fhirUser patient/Observation.rs patient/Patient.r offline_access"
DOCTOR_PASSWORD = "stethoscope!"


@pytest.fixture
def ward(engine, client):
    """Ana's chart open in the EHR for Dr Doc; a confidential SMART app registered for SCOPES: its client."""
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    client.put("/fhir/Practitioner/doc", json={"resourceType": "Practitioner", "id": "doc"})
    client.put("/fhir/Encounter/visit-1", json={"resourceType": "Encounter", "id": "visit-1", "status": "in-progress",
                                                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                                "subject": {"reference": "Patient/ana-1"}})
    with engine.begin() as connection:
        add_user(connection, "doc", DOCTOR_PASSWORD, "Practitioner/doc")
        add_user(connection, "nurse", "another password", "Practitioner/doc")
        return register_client(connection, ClientRegistration("Med Reconciler", (REDIRECT_URI,), SCOPES, "client_secret_basic"))


@pytest.fixture
def urls(live_server):
    root = live_server.removesuffix("/fhir")
    return {"fhir": live_server, "authorize": f"{root}/auth/authorize", "token": f"{root}/auth/token"}


def new_launch(engine, ward: dict, username: str = "doc", lifetime: timedelta = timedelta(minutes=10), client_id: str | None = None) -> str:
    value = generate_token(24)
    with engine.begin() as connection:
        save_launch(connection, value, Launch("ana-1", "visit-1", username, client_id or ward["client_id"], datetime.now(timezone.utc) + lifetime))
    return value


def launched_by(user: str, password: str, url: str) -> requests.Response:
    """The practitioner signs in and allows everything on the consent page; returns the consent page and the answer."""
    browser = requests.Session()
    login = browser.get(url, timeout=10)
    signed_in = browser.post(login.url, data={"csrf_token": hidden(login.text, "csrf_token"), "next": hidden(login.text, "next"),
                                              "username": user, "password": password}, allow_redirects=False, timeout=10)
    consent = browser.get(urls_root(login.url) + signed_in.headers["Location"], allow_redirects=False, timeout=10)
    if consent.status_code != 200:
        return consent, consent  # the request went back to the app as an error
    offered = re.findall(r'name="approved_scope" value="([^"]*)"', consent.text)
    answer = browser.post(consent.url, data={"csrf_token": hidden(consent.text, "csrf_token"), "approved_scope": offered,
                                             "decision": "approve"}, allow_redirects=False, timeout=10)
    return consent, answer


def urls_root(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def start(ward: dict, urls: dict, launch: str | None, scope: str = SCOPES):
    verifier = generate_token(48)
    session = OAuth2Session(ward["client_id"], ward["client_secret"], redirect_uri=REDIRECT_URI, scope=scope, code_challenge_method="S256")
    extra = {"launch": launch} if launch else {}
    url, state = session.create_authorization_url(urls["authorize"], code_verifier=verifier, aud=urls["fhir"], **extra)
    return session, url, verifier


def test_an_ehr_launch_gives_the_apps_token_the_patient_and_encounter_open_in_the_ehr(engine, ward, urls):
    session, url, verifier = start(ward, urls, new_launch(engine, ward))
    consent, answer = launched_by("doc", DOCTOR_PASSWORD, url)
    assert "Patient/ana-1" in consent.text and "Encounter/visit-1" in consent.text
    token = session.fetch_token(urls["token"], authorization_response=answer.headers["Location"], code_verifier=verifier)
    assert token["patient"] == "ana-1" and token["encounter"] == "visit-1"
    assert {"launch", "patient/Observation.rs"} <= set(token["scope"].split())
    refreshed = session.refresh_token(urls["token"], refresh_token=token["refresh_token"])
    assert refreshed["patient"] == "ana-1" and refreshed["encounter"] == "visit-1"


@pytest.mark.parametrize("case, error", [
    ("no launch scope", "invalid_scope"), ("unknown launch", "invalid_request"), ("expired launch", "invalid_request"),
    ("another user's launch", "invalid_request"), ("another app's launch", "invalid_request"),
])
def test_a_launch_that_cannot_be_used_goes_back_to_the_app_as_an_error(engine, ward, urls, case, error):
    launch = {"no launch scope": lambda: new_launch(engine, ward), "unknown launch": lambda: "never-made",
              "expired launch": lambda: new_launch(engine, ward, lifetime=timedelta(seconds=-1)),
              "another user's launch": lambda: new_launch(engine, ward, username="nurse"),
              "another app's launch": lambda: new_launch(engine, ward, client_id="another-app")}[case]()
    scope = SCOPES.replace("launch ", "") if case == "no launch scope" else SCOPES
    _, url, _ = start(ward, urls, launch, scope)
    _, answer = launched_by("doc", DOCTOR_PASSWORD, url)
    returned = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert answer.status_code == 302 and returned["error"] == [error], returned


def test_a_patient_cannot_use_a_launch_made_for_someone_else_to_reach_another_patient(engine, ward, urls, client):
    """A patient signs in on an app started with a practitioner's launch (for Ana): refused, never Ana's context."""
    client.put("/fhir/Patient/bob-1", json={"resourceType": "Patient", "id": "bob-1"})
    with engine.begin() as connection:
        add_user(connection, "bob", "bob's password", "Patient/bob-1")
    _, url, _ = start(ward, urls, new_launch(engine, ward))
    _, answer = launched_by("bob", "bob's password", url)
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["invalid_request"]


def test_ehr_launch_command_prints_a_launch_and_the_fhir_base(database_url, ward, tmp_path):
    app = ("--client", ward["client_id"])
    made = ehr(database_url, "launch", "--patient", "Patient/ana-1", "--encounter", "Encounter/visit-1", "--username", "doc", *app, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    printed = orjson.loads(made.stdout)
    assert len(printed["launch"]) >= 24 and printed["iss"] == "http://127.0.0.1:8080/fhir"
    missing = ehr(database_url, "launch", "--patient", "Patient/nobody", "--username", "doc", *app, cwd=tmp_path)
    assert missing.returncode != 0 and "Patient/nobody does not exist" in missing.stderr
    stranger = ehr(database_url, "launch", "--patient", "Patient/ana-1", "--username", "ghost", *app, cwd=tmp_path)
    assert stranger.returncode != 0 and "There is no user 'ghost'" in stranger.stderr
    unknown_app = ehr(database_url, "launch", "--patient", "Patient/ana-1", "--username", "doc", "--client", "nope", cwd=tmp_path)
    assert unknown_app.returncode != 0 and "There is no client 'nope'" in unknown_app.stderr
