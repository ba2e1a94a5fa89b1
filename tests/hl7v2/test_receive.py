"""Store, then apply, then acknowledge: through POST /hl7v2 and the service, on SQLite and PostgreSQL."""
from sqlalchemy import func, select

from app.store.schema import hl7_message
from interop.hl7v2.service import receive, replay, stored_message

A01 = "\r".join([
    "MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102030405||ADT^A01^ADT_A01|{control}|P|2.5.1",
    "EVN|A01|20250102030405",
    "PID|1||{mrn}^^^NORTH&1.2.840.114350&ISO^MR||{family}^Anna^^^^^L||19800101|F",
    "PV1|1|I|W1^101^1||||1234^Jones^Bob^^^Dr|||||||||||||V{mrn}|||||||||||||||||||||||||20250102030000",
]) + "\r"
UNSUPPORTED = "MSH|^~\\&|SCHED|NORTH|EHR|CENTRAL|20250102030405||SIU^S12|S1|P|2.5.1\rSCH|1\r"


def a01(control: str = "C1", mrn: str = "55501", family: str = "Berg") -> bytes:
    return A01.format(control=control, mrn=mrn, family=family).encode()


def msa(ack: str) -> list[str]:
    return next(line for line in ack.split("\r") if line.startswith("MSA")).split("|")


def count_messages(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(hl7_message)).scalar()


def test_an_a01_is_applied_and_acknowledged_over_http(client):
    response = client.post("/hl7v2", data=a01(), content_type="x-application/hl7-v2+er7")
    assert response.status_code == 200
    assert msa(response.get_data(as_text=True))[1:3] == ["AA", "C1"]
    patients = client.get("/fhir/Patient?identifier=55501").get_json()
    assert len(patients["entry"]) == 1
    patient = patients["entry"][0]["resource"]
    assert patient["name"][0]["family"] == "Berg"
    assert patient["meta"]["source"].startswith("urn:ehr:hl7v2:message:")
    provenance = client.get(f"/fhir/Provenance?target=Patient/{patient['id']}").get_json()["entry"][0]["resource"]
    assert provenance["entity"][0]["what"]["identifier"]["system"] == "urn:ehr:hl7v2:message"


def test_a_resent_message_gets_its_first_ack_and_is_not_applied_twice(engine):
    first = receive(engine, a01(), "test")
    second = receive(engine, a01(), "test")
    assert (first.status, second.status) == ("applied", "applied")
    assert second.ack == first.ack
    assert second.message_id == first.message_id
    assert count_messages(engine) == 1


def test_a_later_message_about_the_same_patient_updates_it(client, engine):
    receive(engine, a01("C1", family="Berg"), "test")
    receive(engine, a01("C2", family="Berg-Lund"), "test")
    entries = client.get("/fhir/Patient?identifier=55501").get_json()["entry"]
    assert [entry["resource"]["name"][0]["family"] for entry in entries] == ["Berg-Lund"]


def test_an_unsupported_type_is_stored_and_answered_ar_200(engine):
    receipt = receive(engine, UNSUPPORTED.encode(), "test")
    assert receipt.status == "rejected"
    assert msa(receipt.ack)[1] == "AR"
    assert "|200^Unsupported message type^HL70357|" in receipt.ack or "|201^" in receipt.ack
    row = stored_message(engine, receipt.message_id)
    assert (row.status, row.message_type) == ("rejected", "SIU^S12")
    assert row.raw == UNSUPPORTED.encode()


def test_garbage_is_stored_rejected_and_gets_400_over_http(client, engine):
    response = client.post("/hl7v2", data=b"\x00\x01 not hl7", content_type="text/plain")
    assert response.status_code == 400
    with engine.connect() as connection:
        row = connection.execute(select(hl7_message)).one()
    assert (row.status, row.raw) == ("rejected", b"\x00\x01 not hl7")


def test_a_mapping_error_is_kept_with_its_reason_and_replays_after_a_fix(engine):
    without_identifier = a01().replace(b"PID|1||55501^^^NORTH&1.2.840.114350&ISO^MR|", b"PID|1|||")
    receipt = receive(engine, without_identifier, "test")
    assert receipt.status == "error"
    assert msa(receipt.ack)[1] == "AE"
    assert "|PID^1^3|101^" in receipt.ack
    assert stored_message(engine, receipt.message_id).error
    assert replay(engine, receipt.message_id).status == "error"  # the same message fails the same way


def test_a_message_that_repeats_what_is_stored_writes_no_new_version(client, engine):
    first = receive(engine, a01("R1"), "test")
    assert receive(engine, a01("R2"), "test").status == "applied"  # the same content under a new control id
    patient = client.get("/fhir/Patient?identifier=55501").get_json()["entry"][0]["resource"]
    assert patient["meta"]["versionId"] == "1"
    assert patient["meta"]["source"] == f"urn:ehr:hl7v2:message:{first.message_id}"  # still the message that wrote it


def test_a_batch_is_stored_and_refused_with_a_reason_naming_it(engine):
    batch = b"BHS|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102\r" + a01("B1") + b"BTS|1\r"
    receipt = receive(engine, batch, "test")
    assert (receipt.status, msa(receipt.ack)[1:3]) == ("rejected", ["AR", "B1"])
    assert "|BHS^1|200^Unsupported message type^HL70357|E|||An HL7 batch (BHS) is not taken" in receipt.ack
    assert stored_message(engine, receipt.message_id).raw == batch


def test_a_batch_holding_no_message_is_stored_as_not_hl7(engine):
    receipt = receive(engine, b"BHS|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102\rBTS|0\r", "test")
    assert (receipt.status, receipt.ack, receipt.unreadable) == ("rejected", None, True)
    assert stored_message(engine, receipt.message_id).error == "The data holds no MSH segment."
