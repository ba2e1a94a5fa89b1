"""Whatever a client sends to DICOMweb, the answer is a DICOM or FHIR answer, never a server error (hypothesis)."""
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.dicom.test_dicomweb import CT, encoded, multipart

KEYS = st.sampled_from(["PatientID", "PatientName", "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "StudyInstanceUID",
                        "SeriesInstanceUID", "SOPInstanceUID", "Modality", "SeriesNumber", "InstanceNumber", "limit", "offset", "00100020",
                        "includefield", "IssuerOfPatientID", "StudyID", "NoSuchKey", "7FE00010"])
VALUES = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | st.sampled_from(["*", "?", "20240101-", "-", "\\", ",", "%", "_", "[a]", "\x00", "1\x00"])
UIDS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=70) | st.sampled_from(["1.2.3", "1.2\x00", "01.2"])
PATHS = st.sampled_from(["/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", "/dicomweb/studies/{}/series",
                         "/dicomweb/studies/{}/instances", "/dicomweb/studies/1.2.3/series/{}/instances", "/dicomweb/studies/{}/metadata",
                         "/dicomweb/studies/{}", "/dicomweb/studies/1.2.3/series/{}", "/dicomweb/studies/1.2.3/series/4.5/instances/{}/metadata"])
FUZZ = hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def stored(client):
    body, content_type = multipart(CT)
    assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type}).status_code == 200
    return client


@FUZZ
@given(path=PATHS, uid=UIDS, pairs=st.lists(st.tuples(KEYS, VALUES), max_size=4))
def test_a_query_is_answered_or_refused_never_a_server_error(stored, path, uid, pairs):
    query = "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs)
    assert stored.get(f"{path.format(quote(uid, safe=''))}?{query}").status_code in (200, 400, 404)


@FUZZ
@given(parts=st.lists(st.binary(max_size=400) | st.sampled_from([CT[:132], CT[:400], CT[:-100], b"\x00" * 128 + b"DICM"]), min_size=1, max_size=3))
def test_any_bytes_stored_are_stored_or_refused_never_a_server_error(client, parts):
    body, content_type = multipart(*parts)
    assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type}).status_code in (200, 202, 409)


ACCEPTS = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60) | st.sampled_from([
    "multipart/related; type=application/octet-stream; transfer-syntax=*", 'multipart/related; type="image/dicom-rle"; q=0',
    "application/octet-stream", "video/mp4", "image/*, */*;q=0", "multipart/related; type=*/*; transfer-syntax=1.2.3"])
FRAME_LISTS = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=12) | st.sampled_from(["1", "2,1", "0", "3"])
BULK_PATHS = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"), min_size=1, max_size=10)
                      | st.sampled_from(["7FE00010", "60003000", "0", "00540016"]), min_size=1, max_size=4)


@pytest.fixture
def multiframe(client):
    """A two-frame RLE image stored; its instance path."""
    dataset = dcmread(get_testdata_file("SC_rgb_rle_2frame.dcm"))
    body, content_type = multipart(encoded(dataset))
    assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type}).status_code == 200
    return f"/dicomweb/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}/instances/{dataset.SOPInstanceUID}"


@FUZZ
@given(frames=FRAME_LISTS, path=BULK_PATHS, accept=ACCEPTS)
def test_frames_and_bulk_data_are_answered_or_refused_never_a_server_error(client, multiframe, frames, path, accept):
    headers = {"Accept": accept}
    assert client.get(f"{multiframe}/frames/{quote(frames, safe=',')}", headers=headers).status_code in (200, 400, 404, 406)
    assert client.get(f"{multiframe}/bulkdata/{'/'.join(quote(part, safe='') for part in path)}", headers=headers).status_code in (200, 400, 404, 406)
    assert client.get(multiframe, headers=headers).status_code in (200, 406)
