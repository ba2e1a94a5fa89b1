"""A GET entry of a batch pages by the server's configured page size (EHR_PAGE_SIZE), not a built-in one."""
import pytest

from app.config import Settings
from app.web import create_app


@pytest.fixture
def small_pages_client(database_url):
    app = create_app(Settings(auth=False, database_url=database_url, default_page_size=2, max_page_size=3))
    yield app.test_client()
    app.extensions["ehr.engine"].dispose()


def batch(*urls: str) -> dict:
    return {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": url}} for url in urls]}


def test_batch_searches_use_the_configured_page_sizes(small_pages_client):
    for family in ("Ash", "Birch", "Cedar", "Dogwood"):
        small_pages_client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]})
    response = small_pages_client.post("/fhir", json=batch("Patient", "Patient?_count=100", "Patient/_history"))
    default, capped, history = [entry["resource"] for entry in response.get_json()["entry"]]
    assert len(default["entry"]) == 2
    assert len(capped["entry"]) == 3
    assert len(history["entry"]) == 2
