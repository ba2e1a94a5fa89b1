"""The sign-in and consent pages in a real browser: Debian's Chromium, headless, driven by Selenium. A patient signs
in, unticks a scope, allows, and the app's redirect URI receives a code that exchanges for just what she left ticked."""
import http.server
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from app.security.accounts import ClientRegistration, add_user, register_client

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"  # Debian's packages, installed by `make test`
PASSWORD = "correct horse battery"
SCOPES = "launch/patient openid fhirUser patient/Observation.rs patient/Patient.r"


@pytest.fixture
def browser():
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def app_callback():
    """The app's redirect URI: a loopback server that records the query it is sent to."""
    received = []

    class Callback(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if urlsplit(self.path).path == "/callback":  # not the browser's /favicon.ico
                received.append(parse_qs(urlsplit(self.path).query))
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<title>App</title><p>Signed in.</p>")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/callback", received
    server.shutdown()


def test_a_patient_signs_in_and_allows_part_of_what_an_app_asks_for(browser, app_callback, live_server, engine, client):
    redirect_uri, received = app_callback
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")
        app_id = register_client(connection, ClientRegistration("Growth Chart", (redirect_uri,), SCOPES, "none"))["client_id"]
    root = live_server.removesuffix("/fhir")
    verifier = generate_token(48)
    session = OAuth2Session(app_id, redirect_uri=redirect_uri, scope=SCOPES, code_challenge_method="S256")
    url, state = session.create_authorization_url(f"{root}/auth/authorize", code_verifier=verifier, aud=live_server)

    browser.get(url)
    assert browser.title.startswith("Sign in")
    browser.find_element(By.ID, "username").send_keys("ana")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    WebDriverWait(browser, 10).until(expected_conditions.title_contains("Allow Growth Chart"))
    listed = {box.get_attribute("value"): box.find_element(By.XPATH, "..").text for box in browser.find_elements(By.NAME, "approved_scope")}
    assert listed["patient/Observation.rs"] == "Read and search your Observation records"
    assert all(box.is_selected() for box in browser.find_elements(By.NAME, "approved_scope"))
    browser.find_element(By.CSS_SELECTOR, "input[value='patient/Observation.rs']").click()
    browser.find_element(By.CSS_SELECTOR, "button[value=approve]").click()

    WebDriverWait(browser, 10).until(lambda _: received)
    (query,) = received
    assert query["state"] == [state]
    token = session.fetch_token(f"{root}/auth/token", code=query["code"][0], code_verifier=verifier)
    assert "patient/Observation.rs" not in token["scope"].split() and "patient/Patient.r" in token["scope"].split()
    assert token["patient"] == "ana-1"


def test_a_wrong_password_is_said_on_the_page(browser, live_server, engine, client):
    client.put("/fhir/Patient/ana-1", json={"resourceType": "Patient", "id": "ana-1"})
    with engine.begin() as connection:
        add_user(connection, "ana", PASSWORD, "Patient/ana-1")
    browser.get(live_server.removesuffix("/fhir") + "/auth/login")
    browser.find_element(By.ID, "username").send_keys("ana")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert browser.find_element(By.CSS_SELECTOR, "[role=alert]").text == "Wrong username or password."
