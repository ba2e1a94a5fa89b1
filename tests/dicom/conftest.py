"""The DICOM tests' app: its DICOMweb objects under the test's own folder."""
import pytest

from app.config import Settings


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(auth=False, database_url=database_url, dicom_storage=str(tmp_path / "dicom"))


@pytest.fixture
def dicomweb(live_server) -> str:
    """The base URL of DICOMweb on a live server."""
    return live_server.removesuffix("/fhir") + "/dicomweb"
