"""DICOMweb over real HTTP with `requests`: STOW-RS stores objects through the service the C-STORE SCP uses, and
WADO-RS gives them back byte for byte, with their metadata as DICOM JSON. On SQLite and PostgreSQL."""
import secrets
import time
from email import policy
from email.parser import BytesParser
from io import BytesIO
from pathlib import Path

import requests
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import func, select, text

from app.config import Settings
from app.search.index import hash64
from app.web import create_app
from interop.dicom import http
from interop.dicom.tables import dicom_instance, dicom_study, dicom_study_pending
from tests.dicom.test_cstore import HL7, ct
from tests.hl7v2.test_merge import admission, merge
from tests.security.test_audit import audit_events
from tests.security.test_enforcement import bearer, token_for

CT, MR = (open(get_testdata_file(name), "rb").read() for name in ("CT_small.dcm", "MR_small.dcm"))
JSON = "application/dicom+json"


def multipart(*objects: bytes, part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = secrets.token_hex(8)
    body = b"".join(f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + item + b"\r\n" for item in objects)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


def stow(url: str, *objects: bytes) -> requests.Response:
    body, content_type = multipart(*objects)
    return requests.post(url, data=body, headers={"Content-Type": content_type, "Accept": JSON}, timeout=30)


def parts_of(response: requests.Response) -> list[bytes]:
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode() + response.content)
    return [part.get_payload(decode=True) for part in message.walk() if not part.is_multipart()]


def encoded(dataset) -> bytes:
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_stow_stores_objects_that_wado_gives_back_byte_for_byte(dicomweb, live_server):
    answer = stow(f"{dicomweb}/studies", CT, MR)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == JSON
    referenced = answer.json()["00081199"]["Value"]
    assert [item["00081155"]["Value"][0] for item in referenced] == ["1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
                                                                      "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"]
    instance_url = referenced[0]["00081190"]["Value"][0]
    retrieved = requests.get(instance_url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=30)
    assert retrieved.status_code == 200 and retrieved.headers["Content-Type"].startswith('multipart/related; type="application/dicom"')
    assert parts_of(retrieved) == [CT]
    study_url = instance_url.split("/series/")[0]
    assert parts_of(requests.get(study_url, timeout=30)) == [CT]
    [metadata] = requests.get(f"{study_url}/metadata", timeout=30).json()
    assert metadata["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert metadata["7FE00010"] == {"vr": "OW", "BulkDataURI": f"{instance_url}/bulkdata/7FE00010"}
    bundle = requests.get(f"{live_server}/ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
                          timeout=30).json()
    assert bundle["entry"][0]["resource"]["numberOfInstances"] == 1  # the ImagingStudy is written before STOW answers


def test_stow_answers_202_naming_what_failed_and_409_when_nothing_was_stored(dicomweb):
    partly = stow(f"{dicomweb}/studies", CT, b"not a DICOM object")
    assert partly.status_code == 202
    assert partly.json()["00081198"]["Value"] == [{"00081197": {"vr": "US", "Value": [0xC000]}}]
    assert stow(f"{dicomweb}/studies", b"garbage").status_code == 409


def test_stow_to_a_study_refuses_an_instance_of_another(dicomweb):
    study_uid = generate_uid()
    answer = stow(f"{dicomweb}/studies/{study_uid}", encoded(ct(StudyInstanceUID=study_uid)), encoded(ct()))
    assert answer.status_code == 202
    [failed] = answer.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]


def test_stow_refuses_other_media_types(dicomweb):
    body, _ = multipart(CT)
    assert requests.post(f"{dicomweb}/studies", data=body, headers={"Content-Type": "application/dicom"}, timeout=30).status_code == 415
    body, content_type = multipart(b"{}", part_type="application/dicom+json")
    assert requests.post(f"{dicomweb}/studies", data=body, headers={"Content-Type": content_type}, timeout=30).status_code == 415


def test_wado_answers_404_for_what_is_not_stored_and_406_for_a_transcoding(dicomweb):
    assert requests.get(f"{dicomweb}/studies/1.2.3", timeout=30).status_code == 404
    stow(f"{dicomweb}/studies", CT)
    study_url = f"{dicomweb}/studies/1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert requests.get(study_url, headers={"Accept": accept}, timeout=30).status_code == 406
    stored_syntax = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    same = requests.get(study_url, headers={"Accept": stored_syntax}, timeout=30)
    assert same.status_code == 200 and parts_of(same) == [CT] and b"transfer-syntax=1.2.840.10008.1.2.1\r\n" in same.content


CT_STUDY, MR_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322", "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


def found_uids(url: str, keyword_tag: str = "0020000D") -> list[str]:
    answer = requests.get(url, headers={"Accept": JSON}, timeout=30)
    assert answer.status_code == 200, answer.text
    return [match[keyword_tag]["Value"][0] for match in answer.json()]


def test_qido_finds_studies_by_patient_date_modality_and_accession(dicomweb):
    accession = ct(AccessionNumber="ACC-2024-7", StudyDate="20240305", PatientID="QIDO-1")
    assert stow(f"{dicomweb}/studies", CT, MR, encoded(accession)).status_code == 200
    studies = requests.get(f"{dicomweb}/studies", timeout=30).json()
    assert {study["0020000D"]["Value"][0] for study in studies} == {CT_STUDY, MR_STUDY, accession.StudyInstanceUID}
    ct_study = next(study for study in studies if study["0020000D"]["Value"][0] == CT_STUDY)
    assert ct_study["00100010"]["Value"] == [{"Alphabetic": "CompressedSamples^CT1"}] and ct_study["00080061"]["Value"] == ["CT"]
    assert ct_study["00201206"]["Value"] == [1] and ct_study["00201208"]["Value"] == [1]  # series, instances
    assert ct_study["00081190"]["Value"] == [f"{dicomweb}/studies/{CT_STUDY}"]
    assert found_uids(f"{dicomweb}/studies?PatientID=1CT1") == [CT_STUDY]
    assert found_uids(f"{dicomweb}/studies?00100020=4MR1") == [MR_STUDY]
    assert found_uids(f"{dicomweb}/studies?PatientID=nobody") == []
    assert found_uids(f"{dicomweb}/studies?ModalitiesInStudy=MR") == [MR_STUDY]
    assert found_uids(f"{dicomweb}/studies?StudyDate=20040826") == [MR_STUDY]
    assert set(found_uids(f"{dicomweb}/studies?StudyDate=20040101-20041231")) == {CT_STUDY, MR_STUDY}
    assert found_uids(f"{dicomweb}/studies?StudyDate=20240101-") == [accession.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?AccessionNumber=ACC-2024*") == [accession.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?StudyInstanceUID={CT_STUDY},{MR_STUDY}&limit=1&offset=1") == [CT_STUDY]


def test_qido_lists_a_studys_series_and_instances(dicomweb):
    study_uid, series_uid = generate_uid(), generate_uid()
    objects = [encoded(ct(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=number)) for number in (1, 2)]
    report = ct(StudyInstanceUID=study_uid, Modality="SR")
    assert stow(f"{dicomweb}/studies", *objects, encoded(report)).status_code == 200
    series = requests.get(f"{dicomweb}/studies/{study_uid}/series", timeout=30).json()
    assert sorted((item["00080060"]["Value"][0], item["00201209"]["Value"][0]) for item in series) == [("CT", 2), ("SR", 1)]
    assert found_uids(f"{dicomweb}/studies/{study_uid}/series?Modality=SR", "0020000E") == [report.SeriesInstanceUID]
    instances = found_uids(f"{dicomweb}/studies/{study_uid}/series/{series_uid}/instances", "00080018")
    assert len(instances) == 2
    assert found_uids(f"{dicomweb}/instances?SOPInstanceUID={instances[0]}", "00080018") == [instances[0]]
    assert len(found_uids(f"{dicomweb}/series?StudyInstanceUID={study_uid}", "0020000E")) == 2


def test_qido_refuses_what_names_no_attribute(dicomweb):
    assert requests.get(f"{dicomweb}/studies?NoSuchAttribute=1", timeout=30).status_code == 400
    assert requests.get(f"{dicomweb}/studies?limit=many", timeout=30).status_code == 400


PYDICOM_FILES = sorted(Path(get_testdata_file("CT_small.dcm")).parent.glob("*.dcm"))


def test_every_pydicom_test_file_is_stored_or_refused_with_a_reason_and_every_study_mapped(dicomweb, live_server, app):
    """pydicom's own test files (every transfer syntax it knows, big endian, no file meta, truncated, bad VRs, SR,
    RT, waveforms...): each is stored (200) or refused with a failure reason (409), none is a server error, and every
    study stored gets its ImagingStudy."""
    answers = {path.name: stow(f"{dicomweb}/studies", path.read_bytes()) for path in PYDICOM_FILES}
    assert {name: (answer.status_code, answer.text[:300]) for name, answer in answers.items() if answer.status_code not in (200, 409)} == {}
    stored = {name for name, answer in answers.items() if answer.status_code == 200}
    assert {"CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "test-SR.dcm", "rtplan.dcm", "waveform_ecg.dcm"} <= stored
    for name, answer in answers.items():
        if answer.status_code == 409:
            assert answer.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000], name
    with app.extensions["ehr.engine"].connect() as connection:
        studies = set(connection.execute(select(dicom_instance.c.study_uid)).scalars())
        assert connection.execute(select(func.count()).select_from(dicom_study_pending)).scalar() == 0
    mapped = {entry["resource"]["identifier"][0]["value"].removeprefix("urn:oid:")
              for entry in requests.get(f"{live_server}/ImagingStudy?_count=1000", timeout=30).json().get("entry", [])}
    assert mapped == studies


def test_dicomweb_takes_tokens_that_reach_every_study(database_url, tmp_path):
    """Storing needs a backend service that writes everything (as /hl7v2); finding and retrieving, a token that reads
    ImagingStudies and Patients: a clinician's user/ scopes do, a token for other types does not."""
    app = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
    try:
        client, engine = app.test_client(), app.extensions["ehr.engine"]
        body, content_type = multipart(CT)
        headers = {"Content-Type": content_type}
        assert client.post("/dicomweb/studies", data=body, headers=headers).status_code == 401
        clinician = bearer(token_for(engine, "user/*.cruds", fhir_user="Practitioner/doc"))
        assert client.post("/dicomweb/studies", data=body, headers={**headers, **clinician}).status_code == 403
        assert client.post("/dicomweb/studies", data=body, headers={**headers, **bearer(token_for(engine, "system/*.cruds"))}).status_code == 200
        assert client.get("/dicomweb/studies", headers=clinician).status_code == 200
        viewer = bearer(token_for(engine, "user/ImagingStudy.rs user/Patient.rs", fhir_user="Practitioner/doc"))
        assert client.get(f"/dicomweb/studies/{CT_STUDY}", headers=viewer).status_code == 200
        studies_only = client.get("/dicomweb/studies", headers=bearer(token_for(engine, "user/ImagingStudy.rs", fhir_user="Practitioner/doc")))
        assert studies_only.status_code == 403 and "user/Patient.rs" in studies_only.get_data(as_text=True)  # the answers name patients
        assert client.get("/dicomweb/studies", headers=bearer(token_for(engine, "user/Observation.rs", fhir_user="Practitioner/doc"))).status_code == 403
    finally:
        engine.dispose()


def test_a_patients_token_finds_and_retrieves_her_own_studies_alone(database_url, tmp_path):
    """A patient's app (patient/ scopes) sees over DICOMweb the studies of the ImagingStudies it may read, whose
    Patient it may read too: QIDO-RS lists hers alone, WADO-RS of another's study is a 404, as if it did not exist."""
    app = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
    try:
        client, engine = app.test_client(), app.extensions["ehr.engine"]
        other = ct(PatientID="OTHER-1")
        body, content_type = multipart(CT, encoded(other))
        assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type, **bearer(token_for(engine, "system/*.cruds"))}).status_code == 200
        clinician = bearer(token_for(engine, "user/*.rs", fhir_user="Practitioner/doc"))
        [entry] = client.get("/fhir/Patient?identifier=1CT1", headers=clinician).get_json()["entry"]
        patient = bearer(token_for(engine, "patient/*.rs", patient=entry["resource"]["id"]))
        listed = client.get("/dicomweb/studies", headers=patient)
        assert listed.status_code == 200 and [match["0020000D"]["Value"][0] for match in listed.get_json()] == [CT_STUDY]
        assert client.get(f"/dicomweb/studies?StudyInstanceUID={other.StudyInstanceUID}", headers=patient).get_json() == []
        assert len(client.get("/dicomweb/instances", headers=patient).get_json()) == 1
        assert client.get(f"/dicomweb/studies/{CT_STUDY}/metadata", headers=patient).status_code == 200
        assert client.get(f"/dicomweb/studies/{other.StudyInstanceUID}", headers=patient).status_code == 404
        assert client.get(f"/dicomweb/studies/{other.StudyInstanceUID}/metadata", headers=patient).status_code == 404
        assert client.get(f"/dicomweb/studies/{other.StudyInstanceUID}", headers=clinician).status_code == 200
        studies_only = client.get("/dicomweb/studies", headers=bearer(token_for(engine, "patient/ImagingStudy.rs", patient=entry["resource"]["id"])))
        assert studies_only.status_code == 403 and "Patient" in studies_only.get_data(as_text=True)  # the answers name her
        stranger = bearer(token_for(engine, "patient/*.rs", patient="nobody"))
        assert client.get("/dicomweb/studies", headers=stranger).get_json() == []
    finally:
        engine.dispose()


def test_dicomweb_reads_are_audited_as_searches_of_the_studies(database_url, tmp_path):
    app = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
    try:
        client, engine = app.test_client(), app.extensions["ehr.engine"]
        body, content_type = multipart(CT)
        assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type, **bearer(token_for(engine, "system/*.cruds"))}).status_code == 200
        viewer = bearer(token_for(engine, "user/*.rs", fhir_user="Practitioner/doc"))
        before = len(audit_events(app, engine))
        assert client.get("/dicomweb/studies?PatientID=1CT1", headers=viewer).status_code == 200
        assert client.get(f"/dicomweb/studies/{CT_STUDY}/metadata", headers=viewer).status_code == 200
        events = audit_events(app, engine)[before:]
        assert len(events) == 2  # one per request, each naming the study's patient
        assert all(any(entity.get("what", {}).get("reference", "").startswith("Patient/") for entity in event["entity"]) for event in events)
    finally:
        engine.dispose()


def test_qido_matches_names_times_and_wildcards_as_ps3_4_says(dicomweb):
    named = ct(PatientID="WILD-42", PatientName="Müller^Anna", StudyTime="143000", AccessionNumber="abc-1", StudyID="S7")
    assert stow(f"{dicomweb}/studies", CT, encoded(named)).status_code == 200
    assert found_uids(f"{dicomweb}/studies?PatientName=müll*") == [named.StudyInstanceUID]  # names: without regard to case
    assert found_uids(f"{dicomweb}/studies?PatientName=Compressed*") == [CT_STUDY]
    assert found_uids(f"{dicomweb}/studies?PatientID=WILD-*") == [named.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?StudyTime=140000-150000") == [named.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?StudyID=S7") == [named.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?AccessionNumber=ABC*") == []  # other keys: case-sensitive
    assert found_uids(f"{dicomweb}/studies?AccessionNumber=abc*") == [named.StudyInstanceUID]


def test_a_study_follows_its_patient_through_an_adt_merge(dicomweb, client):
    """A modality sent a study under MRN 2; the ADT feed merges patient 2 into 1: QIDO by MRN 1 finds the study."""
    assert client.post("/hl7v2", data=admission("M1", mrn="1"), headers=HL7).status_code == 200
    issuer = Dataset()
    issuer.UniversalEntityID, issuer.UniversalEntityIDType = "1.2.840.114350", "ISO"
    study = ct(PatientID="2", IssuerOfPatientID="NORTH", IssuerOfPatientIDQualifiersSequence=[issuer])
    assert stow(f"{dicomweb}/studies", encoded(study)).status_code == 200
    assert found_uids(f"{dicomweb}/studies?PatientID=2") == [study.StudyInstanceUID]
    assert found_uids(f"{dicomweb}/studies?PatientID=1") == []
    assert client.post("/hl7v2", data=merge("M2", survivor="1", merged="2"), headers=HL7).status_code == 200
    assert found_uids(f"{dicomweb}/studies?PatientID=1") == [study.StudyInstanceUID]


def test_a_large_study_sent_an_instance_per_request_is_versioned_together_a_little_later(dicomweb, live_server, monkeypatch):
    """Past IMMEDIATE_UPDATE_LIMIT instances, STOW-RS leaves the ImagingStudy to a later update of this process, which
    takes every request of the meantime in one version (rebuilding it per request costs the whole study each time)."""
    monkeypatch.setattr(http, "IMMEDIATE_UPDATE_LIMIT", 2)
    monkeypatch.setattr(http, "LATER_UPDATE_SECONDS", 3.0)
    first = ct()
    instances = [first] + [ct(StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=n)
                           for n in range(2, 5)]
    url = f"{live_server}/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{first.StudyInstanceUID}"
    counts = []
    for instance in instances:
        assert stow(f"{dicomweb}/studies", encoded(instance)).status_code == 200
        counts.append(requests.get(url, timeout=30).json()["entry"][0]["resource"]["numberOfInstances"])
    assert counts == [1, 2, 2, 2]  # the first two before each answer; the next two left for later
    deadline = time.monotonic() + 30
    while (study := requests.get(url, timeout=30).json()["entry"][0]["resource"])["numberOfInstances"] != 4:
        assert time.monotonic() < deadline, "the later update did not come"
        time.sleep(0.2)
    assert study["meta"]["versionId"] == "3"


def test_an_implicit_vr_object_is_given_back_in_explicit_vr(dicomweb):
    """PS3.18 8.7.3: web services do not use Implicit VR Little Endian; the same data set comes back in Explicit VR."""
    implicit = Path(get_testdata_file("MR_small_implicit.dcm")).read_bytes()
    answer = stow(f"{dicomweb}/studies", implicit)
    assert answer.status_code == 200
    url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    retrieved = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'}, timeout=30)
    assert retrieved.status_code == 200 and b"transfer-syntax=1.2.840.10008.1.2.1\r\n" in retrieved.content
    [part] = parts_of(retrieved)
    given, stored = dcmread(BytesIO(part)), dcmread(BytesIO(implicit))
    assert given.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1" and not given.is_implicit_VR
    assert given.PixelData == stored.PixelData and given.PatientName == stored.PatientName and given.SOPInstanceUID == stored.SOPInstanceUID


def test_an_imaging_study_a_patient_writes_naming_anothers_study_gives_no_access_to_it(database_url, tmp_path):
    """A patient's app that may write ImagingStudies writes one about her naming another patient's Study Instance
    UID: DICOMweb still confines her to the studies whose ImagingStudy the feed wrote, a search by her PatientID does
    not find his study, and the other study is still updated (its own ImagingStudy, not the forged one)."""
    app = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
    try:
        client, engine = app.test_client(), app.extensions["ehr.engine"]
        system = bearer(token_for(engine, "system/*.cruds"))
        hers, his = ct(PatientID="ALICE-1"), ct(PatientID="BOB-1")
        body, content_type = multipart(encoded(hers), encoded(his))
        assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type, **system}).status_code == 200
        [alice] = client.get("/fhir/Patient?identifier=ALICE-1", headers=system).get_json()["entry"]
        alice_id = alice["resource"]["id"]
        forger = bearer(token_for(engine, "patient/*.cruds", patient=alice_id))
        forged = {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{alice_id}"},
                  "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{his.StudyInstanceUID}"}]}
        assert client.post("/fhir/ImagingStudy", json=forged, headers=forger).status_code == 201
        assert [match["0020000D"]["Value"][0] for match in client.get("/dicomweb/studies", headers=forger).get_json()] == [hers.StudyInstanceUID]
        assert client.get(f"/dicomweb/studies/{his.StudyInstanceUID}/metadata", headers=forger).status_code == 404
        assert client.get("/dicomweb/studies?PatientID=BOB-1", headers=forger).get_json() == []
        by_patient = client.get("/dicomweb/studies?PatientID=ALICE-1", headers=system).get_json()
        assert [match["0020000D"]["Value"][0] for match in by_patient] == [hers.StudyInstanceUID]  # not his too
        more = ct(StudyInstanceUID=his.StudyInstanceUID, SeriesInstanceUID=his.SeriesInstanceUID, PatientID="BOB-1")
        body, content_type = multipart(encoded(more))
        assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type, **system}).status_code == 200
        studies = client.get(f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{his.StudyInstanceUID}", headers=system).get_json()["entry"]
        assert sorted(entry["resource"].get("numberOfInstances", 0) for entry in studies) == [0, 2]
    finally:
        engine.dispose()


def test_a_later_update_comes_back_for_a_study_another_update_held(dicomweb, live_server, app, monkeypatch):
    """A later update that finds the study held by another process's update (PostgreSQL's advisory lock) tries again
    in its next round, instead of leaving the ImagingStudy behind its instances."""
    monkeypatch.setattr(http, "IMMEDIATE_UPDATE_LIMIT", 1)
    monkeypatch.setattr(http, "LATER_UPDATE_SECONDS", 0.5)
    first = ct()
    second = ct(StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=2)
    url = f"{live_server}/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{first.StudyInstanceUID}"
    assert stow(f"{dicomweb}/studies", encoded(first)).status_code == 200
    engine = app.extensions["ehr.engine"]
    with engine.connect() as holder:
        if engine.dialect.name == "postgresql":
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": hash64("dicom study", first.StudyInstanceUID)})
        assert stow(f"{dicomweb}/studies", encoded(second)).status_code == 200
        if engine.dialect.name == "postgresql":
            time.sleep(2)  # rounds that find the study held
            assert requests.get(url, timeout=30).json()["entry"][0]["resource"]["numberOfInstances"] == 1
            holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": hash64("dicom study", first.StudyInstanceUID)})
    deadline = time.monotonic() + 30
    while requests.get(url, timeout=30).json()["entry"][0]["resource"]["numberOfInstances"] != 2:
        assert time.monotonic() < deadline, "the study held was not updated later"
        time.sleep(0.2)


def test_studies_stored_before_their_imaging_study_id_was_kept_are_audited_and_updated_by_dicomweb_alone(database_url, tmp_path, monkeypatch):
    """After migration 0013 a study has no ImagingStudy id yet and a mark: a server running DICOMweb alone (no `ehr
    dicom`) takes the marks on its first request, and until then reads of the study are audited by its identifier."""
    monkeypatch.setattr(http, "LATER_UPDATE_SECONDS", 0.3)
    app = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
    try:
        client, engine = app.test_client(), app.extensions["ehr.engine"]
        body, content_type = multipart(CT)
        assert client.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type, **bearer(token_for(engine, "system/*.cruds"))}).status_code == 200
        with engine.begin() as connection:  # as migration 0013 leaves a study stored before it
            connection.execute(dicom_study.update().values(imaging_study=None))
            connection.execute(dicom_study_pending.insert().values(study_uid=CT_STUDY))
        restarted = create_app(Settings(database_url=database_url, dicom_storage=str(tmp_path / "dicom")))
        viewer = bearer(token_for(engine, "user/*.rs", fhir_user="Practitioner/doc"))
        before = len(audit_events(app, engine))
        assert restarted.test_client().get(f"/dicomweb/studies/{CT_STUDY}/metadata", headers=viewer).status_code == 200  # starts the sweep
        [event] = audit_events(app, engine)[before:]
        assert any(entity.get("what", {}).get("reference", "").startswith("ImagingStudy/") for entity in event["entity"])
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                if connection.execute(select(dicom_study.c.imaging_study)).scalar() is not None:
                    break
            assert time.monotonic() < deadline, "the marks left were not taken"
            time.sleep(0.2)
        restarted.extensions["ehr.engine"].dispose()
    finally:
        engine.dispose()
