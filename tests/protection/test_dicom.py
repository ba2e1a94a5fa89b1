"""DICOM objects with protection on: the stored bytes (which name the patient) are sealed in blob storage, and so is
the patient module kept with each instance; the patient reads back in the clear over FHIR. On SQLite and PostgreSQL."""
from datetime import timedelta
from io import BytesIO

from pydicom import dcmread
from pydicom.data import get_testdata_file

import app.protection.commands as app_protection_commands
import app.protection.service as app_protection_service
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.scp import ScpSettings, StorageServer
from interop.dicom.service import DicomStore
from tests.dicom.test_cstore import imaging_study, sent
from tests.protection.conftest import json_output, raw_database_text, run_ehr


def test_a_stored_object_names_its_patient_nowhere_on_disk_or_in_the_database(app, client, database_url, tmp_path):
    blobs = DirectoryBlobStore(tmp_path / "dicom")
    server = StorageServer(DicomStore(app.extensions["ehr.engine"], blobs), ScpSettings(port=0)).start()
    try:
        dataset = dcmread(get_testdata_file("CT_small.dcm"))
        assert sent(server.port, dataset) == [0x0000]
        study = imaging_study(client, dataset.StudyInstanceUID)
    finally:
        server.shutdown()
    assert client.get(f"/fhir/{study['subject']['reference']}").get_json()["name"] == [{"family": "CompressedSamples", "given": ["CT1"]}]
    [stored] = [path for path in (tmp_path / "dicom").rglob("*.dcm")]
    assert stored.read_bytes().startswith(b"enc:v1:") and b"CompressedSamples" not in stored.read_bytes()
    assert "CompressedSamples" not in raw_database_text(database_url)  # the patient module and the Patient are sealed
    opened = DicomStore(app.extensions["ehr.engine"], blobs).stored_bytes(str(stored.relative_to(tmp_path / "dicom")))
    assert dcmread(BytesIO(opened)).PatientName == "CompressedSamples^CT1"


def test_rewrap_seals_stored_objects_again_and_retire_waits_for_it(app, client, database_url, key_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EHR_DICOM_STORAGE", str(tmp_path / "dicom"))
    monkeypatch.setattr(app_protection_service, "RING_REFRESH_SECONDS", 0.2)
    monkeypatch.setattr(app_protection_commands, "SEEN_EVERYWHERE", timedelta(seconds=0.4))
    blobs = DirectoryBlobStore(tmp_path / "dicom")
    store = DicomStore(app.extensions["ehr.engine"], blobs)
    dataset = dcmread(get_testdata_file("CT_small.dcm"))
    encoded = BytesIO()
    dataset.save_as(encoded, enforce_file_format=True)
    assert store.store(encoded.getvalue(), "test").status == 0x0000
    old = next(key["id"] for key in json_output(run_ehr(database_url, "keys", "list", key_file=key_file)) if key["purpose"] == "value")
    new = json_output(run_ehr(database_url, "keys", "add", "--purpose", "value", key_file=key_file))["id"]
    json_output(run_ehr(database_url, "keys", "promote", new, key_file=key_file))
    refused = run_ehr(database_url, "keys", "retire", old, key_file=key_file)
    assert refused.exit_code != 0 and "still use" in refused.output
    json_output(run_ehr(database_url, "keys", "rewrap", key_file=key_file, EHR_DICOM_STORAGE=str(tmp_path / "dicom")))
    assert json_output(run_ehr(database_url, "keys", "retire", old, key_file=key_file)) == {"retired": old}
    [stored] = [path for path in (tmp_path / "dicom").rglob("*.dcm")]
    assert stored.read_bytes().startswith(f"enc:v1:{new}:".encode())
    assert store.stored_bytes(str(stored.relative_to(tmp_path / "dicom"))) == encoded.getvalue()
