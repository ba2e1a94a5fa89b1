"""The DICOM tests' app (its DICOMweb objects under the test's own folder), and a running C-STORE SCP."""
import pytest

from app.config import Settings
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.scp import ScpSettings, StorageServer
from interop.dicom.service import DicomStore


@pytest.fixture
def settings(database_url, tmp_path):
    return Settings(auth=False, database_url=database_url, dicom_storage=str(tmp_path / "dicom"))


@pytest.fixture
def dicomweb(live_server) -> str:
    """The base URL of DICOMweb on a live server."""
    return live_server.removesuffix("/fhir") + "/dicomweb"


@pytest.fixture
def storage(tmp_path):
    """The SCP's blob store: the folder the app's DICOMweb reads."""
    return DirectoryBlobStore(tmp_path / "dicom")


@pytest.fixture
def scp(app, storage):
    server = StorageServer(DicomStore(app.extensions["ehr.engine"], storage), ScpSettings(port=0)).start()
    yield server
    server.shutdown()
