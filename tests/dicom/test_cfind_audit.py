"""C-FIND queries in the audit trail (app/store/audit.py dicom_query_events), with pynetdicom's SCU as the peer: an
AuditEvent per patient whose studies a query matched, naming the calling AE, that patient, the ImagingStudies and the
query as sent; one without a patient when nothing matched; and no matches answered when the record cannot be written.
On SQLite and PostgreSQL."""
import base64
from io import BytesIO

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom.dsutils import decode

from app.model.validation import validate_resource
from tests.dicom.test_cstore import c_find, ct, imaging_study, sent
from tests.security.test_audit import audit_events

DICOM = "http://dicom.nema.org/resources/ontology/DCM"


def query_events(app, engine) -> list[dict]:
    return [event for event in audit_events(app, engine) if event["type"]["code"] == "110112"]


def query_of(event: dict) -> Dataset:
    """The query data set an AuditEvent records, decoded in the transfer syntax it names."""
    [entity] = [entity for entity in event["entity"] if "query" in entity]
    syntax = UID(entity["detail"][0]["valueString"])
    return decode(BytesIO(base64.b64decode(entity["query"])), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)


def named(event: dict) -> set[str]:
    """The resources an AuditEvent names, without their versions."""
    return {entity["what"]["reference"].split("/_history/")[0] for entity in event["entity"] if "reference" in entity.get("what", {})}


def test_a_c_find_is_audited_as_a_query_by_the_calling_ae_once_per_patient(scp, client, app, engine):
    first, second = ct(PatientID="AUDIT-1"), ct(PatientID="AUDIT-2")
    assert sent(scp.port, first, second) == [0x0000, 0x0000]
    studies = [imaging_study(client, dataset.StudyInstanceUID) for dataset in (first, second)]
    answers = c_find(scp.port, "STUDY", calling="READING-ROOM", PatientID="AUDIT-*", StudyInstanceUID="")
    assert [status for status, _ in answers] == [0xFF00, 0xFF00, 0x0000]
    events = query_events(app, engine)
    assert sorted(sorted(named(event)) for event in events) == sorted(
        sorted([f"ImagingStudy/{study['id']}", study["subject"]["reference"]]) for study in studies)
    for event in events:
        validate_resource(event)
        assert event["type"] == {"system": DICOM, "code": "110112", "display": "Query"} and event["action"] == "E"
        assert event["outcome"] == "0" and event["source"]["observer"]["display"]
        agent, us = event["agent"]
        assert agent["who"]["identifier"] == {"system": "urn:ehr:dicom:ae-title", "value": "READING-ROOM"}
        assert agent["requestor"] is True and agent["network"] == {"address": "127.0.0.1", "type": "2"}
        assert us["who"]["identifier"]["value"] == "EHR" and us["requestor"] is False and us["type"]["coding"][0]["code"] == "110152"
        [patient] = [entity for entity in event["entity"] if entity["role"]["code"] == "1"]
        assert patient["what"]["reference"].startswith("Patient/")
        query = query_of(event)
        assert query.QueryRetrieveLevel == "STUDY" and query.PatientID == "AUDIT-*" and "StudyInstanceUID" in query


def test_an_instance_level_c_find_names_the_imaging_study_of_the_instance(scp, client, app, engine):
    dataset = ct(PatientID="AUDIT-3")
    assert sent(scp.port, dataset) == [0x0000]
    study = imaging_study(client, dataset.StudyInstanceUID)
    answers = c_find(scp.port, "IMAGE", StudyInstanceUID=dataset.StudyInstanceUID, SOPInstanceUID="")
    assert [status for status, _ in answers] == [0xFF00, 0x0000]
    [event] = query_events(app, engine)
    assert named(event) == {study["subject"]["reference"], f"ImagingStudy/{study['id']}"}
    assert query_of(event).QueryRetrieveLevel == "IMAGE"


def test_a_c_find_that_matches_nothing_is_audited_without_a_patient(scp, app, engine):
    assert [status for status, _ in c_find(scp.port, "STUDY", PatientID="NOBODY", StudyInstanceUID="")] == [0x0000]
    [event] = query_events(app, engine)
    validate_resource(event)
    assert named(event) == set() and [entity["role"]["code"] for entity in event["entity"]] == ["24"]
    assert event["agent"][0]["who"]["identifier"]["value"] == "WORKSTATION" and query_of(event).PatientID == "NOBODY"


def test_a_c_find_whose_audit_cannot_be_written_is_answered_as_a_failure_without_matches(scp, client, app, engine, monkeypatch):
    dataset = ct(PatientID="AUDIT-4")
    assert sent(scp.port, dataset) == [0x0000]
    imaging_study(client, dataset.StudyInstanceUID)

    def failing_write(engine, events):
        raise OSError("the database is gone")

    monkeypatch.setattr("interop.dicom.scp.write_audit_events", failing_write)
    assert c_find(scp.port, "STUDY", PatientID="AUDIT-4", StudyInstanceUID="") == [(0xC001, None)]
    assert query_events(app, engine) == []
