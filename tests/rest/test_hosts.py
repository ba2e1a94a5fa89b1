"""The Host header: a client cannot have its own host copied into Location, fullUrl and links (EHR_ALLOWED_HOSTS)."""
import pytest

from app.config import Settings, load_settings
from app.web import create_app

FHIR_JSON = {"Content-Type": "application/fhir+json"}
PATIENT = {"resourceType": "Patient", "name": [{"family": "Berg"}]}
EVIL = "evil.example:666"


def post_patient(client, host: str):
    return client.post("/fhir/Patient", json=PATIENT, headers={**FHIR_JSON, "Host": host})


@pytest.fixture
def make_client(database_url):
    apps = []

    def make_client(bind_host: str | None = None, **settings):
        apps.append(create_app(Settings(auth=False, database_url=database_url, **settings), bind_host))
        return apps[-1].test_client()

    yield make_client
    for app in apps:
        app.extensions["ehr.engine"].dispose()


def test_a_host_the_server_does_not_answer_to_gets_a_400_outcome_and_nothing_is_written(client):
    response = post_patient(client, EVIL)
    assert response.status_code == 400
    issue = response.json["issue"][0]
    assert response.json["resourceType"] == "OperationOutcome" and issue["code"] == "invalid"
    assert "'evil.example:666' is not trusted" in issue["diagnostics"] and "EHR_ALLOWED_HOSTS" in issue["diagnostics"]
    assert client.get("/fhir/Patient").json.get("total", 0) == 0
    assert client.get("/fhir/Patient").json.get("entry") is None


def test_routes_outside_fhir_refuse_that_host_too(client):
    for path in ("/healthz", "/readyz", "/hl7v2/messages"):
        assert client.get(path, headers={"Host": EVIL}).status_code == 400


@pytest.mark.parametrize("host", ["localhost", "localhost:9999", "127.0.0.1:8080"])
def test_loopback_names_at_any_port_are_answered_with_links_at_that_host(client, host):
    response = post_patient(client, host)
    assert response.status_code == 201
    assert response.headers["Location"].startswith(f"http://{host}/fhir/Patient/")


def test_the_address_the_server_binds_is_answered(make_client):
    client = make_client(bind_host="10.1.2.3")
    assert post_patient(client, "10.1.2.3:8080").headers["Location"].startswith("http://10.1.2.3:8080/fhir/")
    assert post_patient(client, EVIL).status_code == 400


def test_only_the_allowed_hosts_and_their_subdomains_are_answered(make_client):
    client = make_client(allowed_hosts=("ehr.example", ".hospital.example"))
    assert post_patient(client, "ehr.example:8443").headers["Location"].startswith("http://ehr.example:8443/fhir/")
    assert post_patient(client, "ward.hospital.example").status_code == 201
    assert post_patient(client, "localhost").status_code == 400
    assert post_patient(client, EVIL).status_code == 400


def test_with_a_base_url_every_link_uses_it_whatever_the_host(make_client):
    client = make_client(base_url="https://ehr.example/fhir")
    created = post_patient(client, EVIL)
    assert created.headers["Location"].startswith("https://ehr.example/fhir/Patient/")
    found = client.get("/fhir/Patient?name=berg&_count=1", headers={"Host": EVIL})
    assert found.json["entry"][0]["fullUrl"].startswith("https://ehr.example/fhir/Patient/")
    assert all(link["url"].startswith("https://ehr.example/fhir/Patient?") for link in found.json["link"])
    history = client.get("/fhir/Patient/_history", headers={"Host": EVIL}).get_data(as_text=True)
    assert "evil" not in history + found.get_data(as_text=True) + str(created.headers)


def test_allowed_hosts_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("EHR_ALLOWED_HOSTS", " ehr.example, .hospital.example:8443 ,")
    assert load_settings().allowed_hosts == ("ehr.example", ".hospital.example:8443")
    monkeypatch.setenv("EHR_ALLOWED_HOSTS", " , ")
    assert load_settings().allowed_hosts is None  # the default, not "any host"
