"""Several messages received together (as the MLLP listener passes a worker's waiting messages): one
transaction, and still each message's own outcome, on SQLite and PostgreSQL."""
from sqlalchemy import select

from app.model.instants import utc_now
from interop.hl7v2.tables import hl7_message
from interop.hl7v2 import service
from interop.hl7v2.service import receive_all, replay, stored_message
from tests.hl7v2.test_receive import a01 as a01_without_visit, msa

ORU = "\r".join([
    "MSH|^~\\&|LAB|NORTH|EHR|CENTRAL|20250102040000||ORU^R01^ORU_R01|{control}|P|2.5.1",
    "PID|1||{mrn}^^^NORTH&1.2.840.114350&ISO^MR||Berg^Anna^^^^^L||19800101|F",  # as in a01(): no change
    "OBR|1||F{control}|85353-1^Vital signs panel^LN|||20250102033000" + "|" * 18 + "F",
    "OBX|1|NM|8867-4^Heart rate^LN||{rate}|/min^/min^UCUM|||||F|||20250102033000",
]) + "\r"


def a01(control: str, mrn: str = "55501", family: str = "Berg") -> bytes:
    """test_receive's A01 with its visit number moved to PV1-19, so that it has an Encounter and a Practitioner."""
    return a01_without_visit(control, mrn, family).replace(b"|||||||||||||V", b"||||||||||||V")


def oru(control: str, mrn: str = "55501", rate: int = 72) -> bytes:
    return ORU.format(control=control, mrn=mrn, rate=rate).encode()


def entries(client, query: str) -> list[dict]:
    return [entry["resource"] for entry in client.get(f"/fhir/{query}").get_json().get("entry", [])]


def test_a_batch_is_applied_in_order_and_each_message_acknowledged(client, engine):
    receipts = receive_all(engine, [(a01("B1", family="Berg"), "test"), (oru("B2"), "test"), (a01("B3", family="Berg-Lund"), "test")])
    assert [msa(receipt.ack)[1:3] for receipt in receipts] == [["AA", "B1"], ["AA", "B2"], ["AA", "B3"]]
    assert len({receipt.message_id for receipt in receipts}) == 3
    patients = entries(client, "Patient?identifier=55501")
    assert [patient["name"][0]["family"] for patient in patients] == ["Berg-Lund"]
    assert patients[0]["meta"]["versionId"] == "2"  # the later message's change is a version of its own
    assert patients[0]["meta"]["source"].endswith(f":{receipts[2].message_id}")
    observation, = entries(client, "Observation?code=8867-4")
    assert observation["subject"]["reference"] == f"Patient/{patients[0]['id']}"
    assert len(entries(client, "Provenance")) == 3


def test_the_same_key_in_two_messages_of_a_batch_is_one_resource(client, engine):
    receipts = receive_all(engine, [(a01("K1", mrn="601"), "test"), (a01("K2", mrn="602"), "test")])
    assert [receipt.status for receipt in receipts] == ["applied", "applied"]
    assert len(entries(client, "Practitioner?identifier=1234")) == 1  # PV1-7 of both
    assert len(entries(client, "Patient")) == 2


def test_a_resend_inside_a_batch_gets_the_first_ack_and_is_applied_once(client, engine):
    first, again = receive_all(engine, [(oru("D1", rate=70), "test"), (oru("D1", rate=70), "test")])
    assert (again.message_id, again.ack, again.status) == (first.message_id, first.ack, "applied")
    assert len(entries(client, "Observation?code=8867-4")) == 1
    with engine.connect() as connection:
        assert len(connection.execute(select(hl7_message.c.id)).all()) == 1


def test_a_message_whose_write_fails_is_kept_in_error_and_the_others_applied(client, engine):
    for _ in range(2):  # two patients with the same MRN: the message's business key matches both
        response = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [
            {"system": "urn:oid:1.2.840.114350", "value": "777"}]})
        assert response.status_code == 201
    before, failing, after = receive_all(engine, [(oru("E1", mrn="701"), "test"), (oru("E2", mrn="777"), "test"), (oru("E3", mrn="702"), "test")])
    assert (before.status, failing.status, after.status) == ("applied", "error", "applied")
    assert msa(failing.ack)[1:3] == ["AE", "E2"]
    assert "More than one Patient" in stored_message(engine, failing.message_id).error
    assert len(entries(client, "Observation?code=8867-4")) == 2


def test_messages_without_a_control_id_are_each_applied(client, engine):
    without_id = [a01("", mrn="801"), a01("", mrn="802")]
    receipts = receive_all(engine, [(message, "test") for message in without_id])
    assert [receipt.status for receipt in receipts] == ["applied", "applied"]
    assert len({receipt.message_id for receipt in receipts}) == 2
    assert stored_message(engine, receipts[0].message_id).control_id is None
    assert len(entries(client, "Patient")) == 2


def test_a_mapper_that_fails_unexpectedly_keeps_the_message_in_error(engine, monkeypatch):
    def broken_mapper(message, systems):
        raise KeyError("PV1")

    monkeypatch.setattr(service, "map_message", broken_mapper)
    receipt, = receive_all(engine, [(a01("M1"), "test")])
    assert (receipt.status, msa(receipt.ack)[1]) == ("error", "AE")
    row = stored_message(engine, receipt.message_id)
    assert "Internal error while mapping" in row.error and row.raw == a01("M1")


def test_a_resend_of_a_message_stored_but_never_applied_applies_it(client, engine):
    """Earlier versions committed the bytes (status `received`) before applying them; a crash could leave them so."""
    with engine.begin() as connection:
        connection.execute(hl7_message.insert().values(
            received_at=utc_now(), updated_at=utc_now(), peer="test", sending_application="ADT1", sending_facility="NORTH",
            control_id="L1", status="received", raw=a01("L1", mrn="901")))
    receipt, = receive_all(engine, [(a01("L1", mrn="901"), "test")])
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    assert stored_message(engine, receipt.message_id).status == "applied"
    assert len(entries(client, "Patient?identifier=901")) == 1


def test_a_nul_character_in_the_header_does_not_refuse_the_message(engine):
    with_nul = a01("N1", mrn="902").replace(b"|ADT1|", b"|ADT\x001|")
    receipt, = receive_all(engine, [(with_nul, "test")])
    assert receipt.status in ("applied", "error") and receipt.ack
    row = stored_message(engine, receipt.message_id)
    assert (row.raw, row.sending_application) == (with_nul, "ADT1")


def test_a_message_with_a_nul_in_its_header_can_be_replayed(engine):
    without_identifier = a01("N2", mrn="903").replace(b"|ADT1|", b"|ADT\x001|").replace(b"PID|1||903^^^NORTH&1.2.840.114350&ISO^MR|", b"PID|1|||")
    receipt, = receive_all(engine, [(without_identifier, "test")])
    assert receipt.status == "error"
    assert replay(engine, receipt.message_id).status == "error"  # its AE, with the NUL echoed, is stored again
