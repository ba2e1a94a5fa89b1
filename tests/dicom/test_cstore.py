"""The C-STORE SCP with real senders (pynetdicom's SCU, dcmtk's storescu): objects stored before success, read back
from blob storage, duplicates and unreadable objects answered as DICOM says, unknown SOP classes and unknown calling AEs
refused, and the ImagingStudy found over FHIR on the right Patient. On SQLite and PostgreSQL."""
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

from click.testing import CliRunner
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import (
    ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, JPEGLSLossless, generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import (
    CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage, StudyRootQueryRetrieveInformationModelFind, UltrasoundImageStorage,
    Verification,
)
from sqlalchemy import func, select

from app.cli import main

from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.mapping import dicomweb_address
from interop.dicom.scp import ScpSettings, StorageServer
from interop.dicom.service import DicomStore, Instance, Unstorable
from interop.dicom.tables import dicom_instance, dicom_quarantine
from tests.hl7v2.conftest import self_signed
from tests.hl7v2.test_receive import a01

CT, MR = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
HL7 = {"Content-Type": "x-application/hl7-v2+er7"}


def sent(port: int, *datasets: Dataset, calling: str = "MODALITY", abort: bool = False) -> list[int]:
    """Each dataset sent over one association by pynetdicom's SCU; the statuses answered."""
    ae = AE(ae_title=calling)
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", port, ae_title="EHR")
    assert association.is_established
    statuses = [association.send_c_store(dataset).Status for dataset in datasets]
    association.abort() if abort else association.release()
    return statuses


def ct(**changes) -> Dataset:
    """The CT test file as another instance (new SOP Instance UID, in a study of `changes`' UIDs or a new one)."""
    dataset = dcmread(CT)
    dataset.SOPInstanceUID = changes.pop("SOPInstanceUID", generate_uid())
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.StudyInstanceUID = changes.pop("StudyInstanceUID", generate_uid())
    dataset.SeriesInstanceUID = changes.pop("SeriesInstanceUID", generate_uid())
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    return dataset


def imaging_study(client, study_uid: str, timeout: float = 15.0) -> dict:
    """The ImagingStudy of a study, once the SCP's update after the association has written it."""
    deadline = time.monotonic() + timeout
    while True:
        bundle = client.get(f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study_uid}").get_json()
        if bundle.get("entry"):
            return bundle["entry"][0]["resource"]
        assert time.monotonic() < deadline, f"no ImagingStudy for {study_uid}"
        time.sleep(0.1)


def count(app, table) -> int:
    with app.extensions["ehr.engine"].connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar()


def test_c_echo_is_answered(scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    association = ae.associate("127.0.0.1", scp.port, ae_title="EHR")
    assert association.send_c_echo().Status == 0x0000
    association.release()


def test_a_ct_and_an_mr_are_stored_and_found_as_imaging_studies_on_their_patients(scp, client, storage, app):
    ct_dataset, mr_dataset = dcmread(CT), dcmread(MR)
    assert sent(scp.port, ct_dataset, mr_dataset) == [0x0000, 0x0000]
    study = imaging_study(client, ct_dataset.StudyInstanceUID)
    assert study["status"] == "available" and study["numberOfSeries"] == 1 and study["numberOfInstances"] == 1
    assert study["started"] == "2004-01-19T07:27:30-05:00"  # with the file's TimezoneOffsetFromUTC
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}]
    [series] = study["series"]
    assert series["uid"] == ct_dataset.SeriesInstanceUID and series["modality"]["code"] == "CT"
    assert series["instance"] == [{"uid": ct_dataset.SOPInstanceUID, "number": 1,
                                   "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}}]
    patient = client.get(f"/fhir/{study['subject']['reference']}").get_json()
    assert patient["identifier"][0]["value"] == "1CT1" and patient["name"] == [{"family": "CompressedSamples", "given": ["CT1"]}]
    assert patient["meta"]["tag"][0]["code"] == "reconcile"  # made from the DICOM patient module: to be reconciled
    assert imaging_study(client, mr_dataset.StudyInstanceUID)["modality"][0]["code"] == "MR"
    provenance = client.get(f"/fhir/Provenance?target=ImagingStudy/{study['id']}").get_json()["entry"][0]["resource"]
    assert provenance["entity"][0]["what"]["identifier"] == {"system": "urn:dicom:uid", "value": f"urn:oid:{ct_dataset.StudyInstanceUID}"}
    assert study["meta"]["source"] == f"urn:ehr:dicom:study:{ct_dataset.StudyInstanceUID}"
    stored = dcmread(BytesIO(DicomStore(app.extensions["ehr.engine"], storage).stored_bytes(
        f"instances/{ct_dataset.StudyInstanceUID}/{ct_dataset.SeriesInstanceUID}/{ct_dataset.SOPInstanceUID}.dcm")))
    assert stored.PixelData == ct_dataset.PixelData and stored.PatientName == ct_dataset.PatientName


def test_a_study_sent_in_parts_becomes_one_imaging_study_with_every_series(scp, client):
    study_uid, series_uid = generate_uid(), generate_uid()
    first = [ct(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, InstanceNumber=number) for number in (2, 1)]
    assert sent(scp.port, *first) == [0x0000, 0x0000]
    imaging_study(client, study_uid)
    other = ct(StudyInstanceUID=study_uid, SeriesNumber=7, Modality="CT", SeriesDescription="Bone", Laterality="L", BodyPartExamined="CHEST")
    assert sent(scp.port, other) == [0x0000]
    deadline = time.monotonic() + 15
    while (study := imaging_study(client, study_uid))["numberOfInstances"] != 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert study["numberOfSeries"] == 2
    assert [instance["number"] for instance in study["series"][0]["instance"]] == [1, 2]
    assert study["series"][1]["description"] == "Bone" and study["series"][1]["bodySite"] == {"display": "CHEST"}
    assert study["series"][1]["laterality"]["code"] == "7771000"


def test_a_duplicate_is_answered_success_and_stored_once(scp, app):
    dataset = ct()
    assert sent(scp.port, dataset) == [0x0000]
    assert sent(scp.port, dataset) == [0x0000]
    assert count(app, dicom_instance) == 1


def test_an_object_without_a_study_uid_is_quarantined_and_answered_cannot_understand(scp, app):
    dataset = ct()
    del dataset.StudyInstanceUID
    assert sent(scp.port, dataset) == [0xC000]
    assert count(app, dicom_instance) == 0
    with app.extensions["ehr.engine"].connect() as connection:
        [row] = connection.execute(select(dicom_quarantine)).all()
    assert "StudyInstanceUID" in row.reason


def test_garbage_bytes_are_quarantined_by_the_service(app, storage):
    store = DicomStore(app.extensions["ehr.engine"], storage)
    outcome = store.store(b"\x00" * 128 + b"DICM" + b"not really", "test")
    assert outcome.status == 0xC000 and outcome.reason
    assert count(app, dicom_quarantine) == 1


def test_an_unknown_sop_class_is_refused_when_the_association_is_negotiated(scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.3.4.5.6.7.8", ExplicitVRLittleEndian)
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    association = ae.associate("127.0.0.1", scp.port, ae_title="EHR")
    assert [context.abstract_syntax for context in association.accepted_contexts] == [CTImageStorage]
    association.release()


def test_an_instance_acknowledged_before_an_abort_is_kept(scp, client, app):
    dataset = ct()
    assert sent(scp.port, dataset, abort=True) == [0x0000]
    assert imaging_study(client, dataset.StudyInstanceUID)["numberOfInstances"] == 1
    assert sent(scp.port, ct()) == [0x0000]  # the server still serves


def test_calling_ae_titles_not_allowed_are_refused(app, storage):
    settings = ScpSettings(port=0, calling_ae_titles=("MODALITY",))
    server = StorageServer(DicomStore(app.extensions["ehr.engine"], storage), settings).start()
    try:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context(Verification)
        assert not ae.associate("127.0.0.1", server.port, ae_title="EHR").is_established
        assert sent(server.port, ct(), calling="MODALITY") == [0x0000]
    finally:
        server.shutdown()


def test_a_modality_and_an_adt_feed_meet_on_one_patient(scp, client):
    assert client.post("/hl7v2", data=a01("D1", mrn="77123", family="Imager"), headers=HL7).status_code == 200
    [entry] = client.get("/fhir/Patient?identifier=77123").get_json()["entry"]
    issuer = Dataset()  # PID-3's assigning authority NORTH&1.2.840.114350&ISO, as DICOM says it
    issuer.UniversalEntityID, issuer.UniversalEntityIDType = "1.2.840.114350", "ISO"
    dataset = ct(PatientID="77123", IssuerOfPatientID="NORTH", IssuerOfPatientIDQualifiersSequence=[issuer])
    assert sent(scp.port, dataset) == [0x0000]
    assert imaging_study(client, dataset.StudyInstanceUID)["subject"]["reference"] == f"Patient/{entry['resource']['id']}"
    assert len(client.get("/fhir/Patient?identifier=77123").get_json()["entry"]) == 1


def test_dcmtk_storescu_stores_files(scp, client, tmp_path):
    files = []
    for number in range(3):
        path = tmp_path / f"ct{number}.dcm"
        ct(StudyInstanceUID="1.2.826.0.1.3680043.8.498.1", SeriesInstanceUID="1.2.826.0.1.3680043.8.498.2", InstanceNumber=number + 1).save_as(path)
        files.append(str(path))
    done = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "EHR", "127.0.0.1", str(scp.port), *files], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert imaging_study(client, "1.2.826.0.1.3680043.8.498.1")["numberOfInstances"] == 3


PYNETDICOM_SENT = ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm", "test-SR.dcm")


def test_pynetdicoms_storescu_stores_a_folder_each_object_in_its_own_transfer_syntax(scp, app, client, tmp_path):
    """pynetdicom's storescu application, proposing each file's own transfer syntax (-cx): every object is stored as
    sent (implicit VR, JPEG, RLE, multi-frame, SR) and mapped."""
    folder = tmp_path / "send"
    folder.mkdir()
    syntaxes = {}
    for name in PYNETDICOM_SENT:
        dataset = dcmread(get_testdata_file(name))
        syntaxes[dataset.SOPInstanceUID] = dataset.file_meta.TransferSyntaxUID
        (folder / name).write_bytes(Path(get_testdata_file(name)).read_bytes())
    done = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "-aet", "MODALITY", "-aec", "EHR", "-cx", "127.0.0.1", str(scp.port),
                           str(folder), "-r"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with app.extensions["ehr.engine"].connect() as connection:
        stored = dict(connection.execute(select(dicom_instance.c.sop_instance_uid, dicom_instance.c.transfer_syntax_uid)).all())
        studies = set(connection.execute(select(dicom_instance.c.study_uid)).scalars())
    assert stored == syntaxes
    for study_uid in studies:
        assert imaging_study(client, study_uid)["numberOfInstances"] >= 1


def test_the_scp_serves_dicom_over_tls(app, storage, tmp_path):
    certificate, key = self_signed(tmp_path, "scp")
    settings = ScpSettings(port=0, tls_certificate=str(certificate), tls_key=str(key))
    server = StorageServer(DicomStore(app.extensions["ehr.engine"], storage), settings).start()
    try:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        context = ssl.create_default_context(cafile=str(certificate))
        association = ae.associate("127.0.0.1", server.port, ae_title="EHR", tls_args=(context, "127.0.0.1"))
        assert association.is_established
        assert association.send_c_store(ct()).Status == 0x0000
        association.release()
        plain = AE(ae_title="MODALITY")
        plain.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
        assert not plain.associate("127.0.0.1", server.port, ae_title="EHR").is_established
    finally:
        server.shutdown()


def c_find(port: int, level: str, calling: str = "WORKSTATION", **keys) -> list[tuple[int, Dataset | None]]:
    """Each status a C-FIND by `calling` was answered, with its identifier."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    association = ae.associate("127.0.0.1", port, ae_title="EHR")
    query = Dataset()
    query.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(query, keyword, value)
    answers = [(status.Status, identifier) for status, identifier in association.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)]
    association.release()
    return answers


def found_by_c_find(port: int, level: str, **keys) -> list[Dataset]:
    return [identifier for status, identifier in c_find(port, level, **keys) if status == 0xFF00]


def test_c_find_answers_studies_series_and_instances_as_qido_does(scp, client):
    report = ct(AccessionNumber="ACC-9", PatientID="FIND-1", Modality="SR")
    other = ct(PatientID="FIND-2", StudyDate="19990101")
    assert sent(scp.port, report, other) == [0x0000, 0x0000]
    imaging_study(client, report.StudyInstanceUID)
    imaging_study(client, other.StudyInstanceUID)
    [study] = found_by_c_find(scp.port, "STUDY", PatientID="FIND-1", StudyInstanceUID="", PatientName="", ModalitiesInStudy="",
                              NumberOfStudyRelatedInstances="")
    assert study.StudyInstanceUID == report.StudyInstanceUID and str(study.PatientName) == "CompressedSamples^CT1"
    assert study.ModalitiesInStudy == "SR" and study.NumberOfStudyRelatedInstances == 1 and study.RetrieveAETitle == "EHR"
    assert [answer.StudyInstanceUID for answer in found_by_c_find(scp.port, "STUDY", StudyDate="-20000101", StudyInstanceUID="")] == [
        other.StudyInstanceUID]
    assert [answer.AccessionNumber for answer in found_by_c_find(scp.port, "STUDY", AccessionNumber="ACC*")] == ["ACC-9"]
    [series] = found_by_c_find(scp.port, "SERIES", StudyInstanceUID=report.StudyInstanceUID, SeriesInstanceUID="", Modality="")
    assert series.SeriesInstanceUID == report.SeriesInstanceUID and series.Modality == "SR"
    [instance] = found_by_c_find(scp.port, "IMAGE", StudyInstanceUID=report.StudyInstanceUID, SOPInstanceUID="")
    assert instance.SOPInstanceUID == report.SOPInstanceUID
    named = ct(PatientID="FIND-Ü", PatientName="Yamada^Tarou=山田^太郎", SpecificCharacterSet=["", "ISO 2022 IR 87"])
    named.SpecificCharacterSet = "ISO_IR 192"
    assert sent(scp.port, named) == [0x0000]
    imaging_study(client, named.StudyInstanceUID)
    [found] = found_by_c_find(scp.port, "STUDY", PatientID="FIND-Ü", PatientName="")
    assert found.SpecificCharacterSet == "ISO_IR 192" and str(found.PatientName) == "Yamada^Tarou=山田^太郎"


def test_dcmtk_findscu_finds_a_study(scp, client):
    dataset = ct(PatientID="FIND-3")
    assert sent(scp.port, dataset) == [0x0000]
    imaging_study(client, dataset.StudyInstanceUID)
    done = subprocess.run(["findscu", "-S", "-aet", "WORKSTATION", "-aec", "EHR", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=FIND-3",
                           "-k", "StudyInstanceUID", "127.0.0.1", str(scp.port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert dataset.StudyInstanceUID in done.stderr + done.stdout


def test_imaging_studies_name_the_dicomweb_endpoint_when_the_public_base_is_known(app, storage, client):
    address = dicomweb_address("https://ehr.example.org/fhir/")
    assert address == "https://ehr.example.org/dicomweb"
    server = StorageServer(DicomStore(app.extensions["ehr.engine"], storage, address), ScpSettings(port=0)).start()
    try:
        first, second = ct(), ct()
        assert sent(server.port, first) == [0x0000] and sent(server.port, second) == [0x0000]
        endpoints = {imaging_study(client, dataset.StudyInstanceUID)["endpoint"][0]["reference"] for dataset in (first, second)}
    finally:
        server.shutdown()
    [endpoint] = endpoints  # one Endpoint for the server, named by every study
    body = client.get(f"/fhir/{endpoint}").get_json()
    assert body["address"] == address and body["connectionType"]["code"] == "dicom-wado-rs" and body["status"] == "active"
    assert body["meta"]["source"] == f"urn:ehr:dicom:study:{first.StudyInstanceUID}"
    provenances = client.get(f"/fhir/Provenance?target={endpoint}").get_json()["entry"]
    assert [entry["resource"]["meta"]["source"] for entry in provenances] == [body["meta"]["source"]]


def test_the_first_copy_of_an_instance_stays_when_two_senders_store_it_at_once(app, storage):
    """Two objects with one SOP Instance UID and other content, stored at the same moment: one copy is kept, and its
    row and bytes are the same object's."""
    first, second = ct(), None
    second = ct(SOPInstanceUID=first.SOPInstanceUID, StudyInstanceUID=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID,
                PatientID="OTHER")
    store = DicomStore(app.extensions["ehr.engine"], storage)
    objects = []
    for dataset in (first, second):
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        objects.append(buffer.getvalue())
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda data: store.store(data, "test"), objects))
    assert [outcome.status for outcome in outcomes] == [0x0000, 0x0000]
    kept = dcmread(BytesIO(store.stored_bytes(
        f"instances/{first.StudyInstanceUID}/{first.SeriesInstanceUID}/{first.SOPInstanceUID}.dcm")))
    with app.extensions["ehr.engine"].connect() as connection:
        [row] = connection.execute(select(dicom_instance.c.patient)).all()
    assert kept.PatientID in row.patient and count(app, dicom_instance) == 1


def test_a_quarantined_object_is_stored_by_a_replay_once_it_reads(app, client, database_url, tmp_path, monkeypatch):
    """A reading defect quarantines an object; after the fix `ehr dicom-quarantine replay` stores it and writes its
    ImagingStudy, and an object that still does not read stays, with its reason."""
    storage = tmp_path / "dicom"
    store = DicomStore(app.extensions["ehr.engine"], DirectoryBlobStore(storage))
    dataset, broken = ct(), ct()
    del broken.SOPInstanceUID
    encoded = []
    for item in (dataset, broken):
        buffer = BytesIO()
        item.save_as(buffer, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    read = Instance.read
    monkeypatch.setattr(Instance, "read", classmethod(lambda cls, data: (_ for _ in ()).throw(Unstorable("a defect"))))
    assert store.store(encoded[0], "test").status == 0xC000
    monkeypatch.setattr(Instance, "read", read)
    assert store.store(encoded[1], "test").status == 0xC000
    env = {"EHR_DATABASE_URL": database_url, "EHR_DICOM_STORAGE": str(storage), "EHR_AUTH": "off"}
    listed = CliRunner().invoke(main, ["dicom-quarantine", "list"], env=env)
    assert listed.exit_code == 0 and "a defect" in listed.output and "no SOPInstanceUID" in listed.output
    ids = [line.split("\t")[0] for line in listed.output.splitlines()[1:]]
    replayed = CliRunner().invoke(main, ["dicom-quarantine", "replay", *ids], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert f"stored {dataset.SOPInstanceUID}" in replayed.output and "still quarantined: The object has no SOPInstanceUID" in replayed.output
    assert imaging_study(client, dataset.StudyInstanceUID)["numberOfInstances"] == 1
    assert count(app, dicom_quarantine) == 1 and len(list((storage / "quarantine").iterdir())) == 1
    assert CliRunner().invoke(main, ["dicom-quarantine", "replay", "999999"], env=env).exit_code == 1


def test_an_instance_uid_stored_in_another_study_is_quarantined_as_a_conflict(scp, app, storage, client):
    """A sender reuses a SOP Instance UID in another study: the first copy, its row and its ImagingStudy stay; the new
    object is kept in quarantine, answered as not understood with the reason in its Error Comment, and leaves no file
    of its own among the instances."""
    first = ct()
    assert sent(scp.port, first) == [0x0000]
    before = imaging_study(client, first.StudyInstanceUID)
    reused = ct(SOPInstanceUID=first.SOPInstanceUID)
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(reused.SOPClassUID, reused.file_meta.TransferSyntaxUID)
    association = ae.associate("127.0.0.1", scp.port, ae_title="EHR")
    answer = association.send_c_store(reused)
    association.release()
    assert answer.Status == 0xC000 and answer.ErrorComment.startswith("Stored already in another study or series")
    with app.extensions["ehr.engine"].connect() as connection:
        [row] = connection.execute(select(dicom_instance.c.study_uid)).all()
        [quarantined] = connection.execute(select(dicom_quarantine.c.reason)).all()
    assert row.study_uid == first.StudyInstanceUID and f"in study {first.StudyInstanceUID}" in quarantined.reason
    assert list((storage.root / "instances" / reused.StudyInstanceUID).rglob("*.dcm")) == []
    assert imaging_study(client, first.StudyInstanceUID) == before
    assert client.get(f"/fhir/ImagingStudy?identifier=urn:dicom:uid|urn:oid:{reused.StudyInstanceUID}").get_json().get("entry") is None


def test_a_sender_offering_several_transfer_syntaxes_is_asked_for_explicit_vr_uncompressed(scp):
    """Of what a sender proposes, Explicit VR Little Endian is taken before Implicit (DICOMweb may not give Implicit
    back), uncompressed before compressed and lossless before lossy (a sender is never asked to compress lossily when
    it offers otherwise), and the retired Big Endian last."""
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian, JPEGBaseline8Bit, ExplicitVRLittleEndian])
    ae.add_requested_context(SecondaryCaptureImageStorage, [JPEGBaseline8Bit, JPEG2000Lossless])
    ae.add_requested_context(MRImageStorage, [ExplicitVRBigEndian, JPEGLSLossless])
    ae.add_requested_context(UltrasoundImageStorage, [JPEGBaseline8Bit])
    association = ae.associate("127.0.0.1", scp.port, ae_title="EHR")
    accepted = {context.abstract_syntax: context.transfer_syntax[0] for context in association.accepted_contexts}
    association.release()
    assert accepted == {CTImageStorage: ExplicitVRLittleEndian, SecondaryCaptureImageStorage: JPEG2000Lossless, MRImageStorage: JPEGLSLossless,
                        UltrasoundImageStorage: JPEGBaseline8Bit}
