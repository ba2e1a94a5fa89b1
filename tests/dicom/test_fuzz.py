"""Whatever a client sends to DICOMweb, the answer is a DICOM or FHIR answer, never a server error (hypothesis)."""
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.dicom.test_dicomweb import CT, multipart

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
