"""Store, then apply, then acknowledge: through POST /hl7v2 and the service, on SQLite and PostgreSQL."""
import http.client
import json
import threading

import pytest
from sqlalchemy import func, select
from werkzeug.serving import make_server

from app.config import Settings
from interop.hl7v2.tables import hl7_message
from app.web import create_app
from interop.hl7v2.service import receive, receive_all, replay, stored_message

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


def test_garbage_is_stored_rejected_and_gets_400_with_an_ar_over_http(client, engine):
    response = client.post("/hl7v2", data=b"\x00\x01 not hl7", content_type="x-application/hl7-v2+er7")
    assert response.status_code == 400
    assert msa(response.get_data(as_text=True))[1] == "AR"
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


def test_a_batch_holding_no_message_is_stored_as_not_hl7_and_answered_ar(engine):
    receipt = receive(engine, b"BHS|^~\\&|ADT1|NORTH|EHR|CENTRAL|20250102\rBTS|0\r", "test")
    assert (receipt.status, msa(receipt.ack)[1:3], receipt.unreadable) == ("rejected", ["AR", ""], True)
    assert stored_message(engine, receipt.message_id).error == "The data holds no MSH segment."


# Re-sends and reused control ids


def test_a_resend_built_again_at_another_time_is_still_a_resend(engine):
    first = receive(engine, a01("RS1"), "test")
    rebuilt = a01("RS1").replace(b"|20250102030405||ADT^A01", b"|20250102040000||ADT^A01")  # another MSH-7
    again = receive(engine, rebuilt, "test")
    assert again.message_id == first.message_id
    assert count_messages(engine) == 1


def test_another_message_under_a_reused_control_id_is_stored_and_applied_as_new(engine, client, caplog):
    first = receive(engine, a01("RESTART", mrn="70001", family="First"), "test")
    second = receive(engine, a01("RESTART", mrn="70002", family="Second"), "test")
    assert second.message_id != first.message_id
    assert (second.status, msa(second.ack)[1:3]) == ("applied", ["AA", "RESTART"])
    assert client.get("/fhir/Patient?identifier=70002").get_json()["entry"][0]["resource"]["name"][0]["family"] == "Second"
    assert stored_message(engine, second.message_id).reuses_control_id_of == first.message_id
    assert stored_message(engine, first.message_id).reuses_control_id_of is None
    assert any("reuses the control id RESTART" in record.message for record in caplog.records)


def test_reuse_within_one_batch_is_marked_too(engine):
    first, second, resent = receive_all(engine, [(a01("SAME", mrn="70011"), "test"), (a01("SAME", mrn="70012"), "test"),
                                                 (a01("SAME", mrn="70012"), "test")])
    assert len({first.message_id, second.message_id}) == 2 and resent.message_id == second.message_id
    assert stored_message(engine, second.message_id).reuses_control_id_of == first.message_id


def forget_content_hashes_and_acks(engine) -> None:
    """The rows as the version before content hashes stored them: no hash, and no ACK for a message with MSH-15 NE."""
    with engine.begin() as connection:
        connection.execute(hl7_message.update().values(content_hash=None, ack=None))


def test_a_message_stored_before_content_hashes_is_still_recognised_when_resent_and_answered(engine):
    first = receive(engine, a01("OLD1"), "test")
    forget_content_hashes_and_acks(engine)
    again = receive(engine, a01("OLD1"), "test")
    assert again.message_id == first.message_id
    assert msa(again.ack)[1:3] == ["AA", "OLD1"]  # none was stored: the re-send is answered all the same


def test_another_message_under_the_control_id_of_one_stored_before_content_hashes_is_applied(engine, client):
    first = receive(engine, a01("OLD2", mrn="70101", family="First"), "test")
    forget_content_hashes_and_acks(engine)
    second = receive(engine, a01("OLD2", mrn="70102", family="Second"), "test")
    assert second.message_id != first.message_id
    assert stored_message(engine, second.message_id).reuses_control_id_of == first.message_id
    assert client.get("/fhir/Patient?identifier=70102").get_json()["entry"][0]["resource"]["name"][0]["family"] == "Second"


# HTTP: media types and the body limit


def test_an_hl7_media_type_is_required_over_http(client):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/json"):
        response = client.post("/hl7v2", data=a01("CT1"), content_type=content_type)
        assert response.status_code == 415, content_type
        assert "x-application/hl7-v2+er7" in response.get_json()["issue"][0]["diagnostics"]
    assert client.post("/hl7v2", data=a01("CT2"), content_type="application/hl7-v2; charset=utf-8").status_code == 200


@pytest.mark.parametrize("msh18, raw_name, http_name", [("8859/1", "Müller", "ISO-8859-1"), ("", "M\xfcller", "windows-1252")])
def test_the_ack_over_http_names_its_charset_as_http_clients_know_it(client, msh18, raw_name, http_name):
    """A Latin-1 message is answered in Latin-1; bytes not valid in the declared set (UTF-8 by default) are read as
    Windows-1252, and the answer says so with the IANA names, not Python's (latin-1, cp1252)."""
    text = a01("CS1", family="Berg").decode().replace("|P|2.5.1", "|P|2.5.1||||||" + msh18).replace("Berg", raw_name)
    response = client.post("/hl7v2", data=text.encode("latin-1"), content_type="x-application/hl7-v2+er7")
    assert response.mimetype_params["charset"] == http_name
    assert msa(response.data.decode(http_name))[1] == "AA"


def test_text_plain_is_taken_where_configured(database_url):
    app = create_app(Settings(auth=False, database_url=database_url, hl7_text_plain=True))
    try:
        response = app.test_client().post("/hl7v2", data=a01("TP1"), content_type="text/plain")
        assert (response.status_code, msa(response.get_data(as_text=True))[1]) == (200, "AA")
    finally:
        app.extensions["ehr.engine"].dispose()


@pytest.fixture
def small_server(database_url):
    """The app with a 1,000-byte body limit, served over real HTTP (chunked bodies need a real server)."""
    app = create_app(Settings(auth=False, database_url=database_url, max_body_bytes=1000))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, app.extensions["ehr.engine"]
    server.shutdown()
    thread.join()
    app.extensions["ehr.engine"].dispose()


def post_chunked(port: int, path: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunks = (body[start:start + 100] for start in range(0, len(body), 100))
    connection.request("POST", path, body=chunks, headers={"Content-Type": content_type}, encode_chunked=True)
    response = connection.getresponse()
    return response.status, response.read()


def test_a_chunked_hl7_body_over_the_limit_is_413_and_nothing_is_stored(small_server):
    port, engine = small_server
    body = a01("BIG1") + b"NTE|1||" + b"x" * 2000 + b"\r"
    status, _ = post_chunked(port, "/hl7v2", body, "x-application/hl7-v2+er7")
    assert status == 413
    assert count_messages(engine) == 0


def test_a_chunked_hl7_body_under_the_limit_is_applied(small_server):
    port, engine = small_server
    status, answer = post_chunked(port, "/hl7v2", a01("SMALL1"), "x-application/hl7-v2+er7")
    assert (status, msa(answer.decode())[1]) == (200, "AA")


def test_a_chunked_fhir_body_over_the_limit_is_413_not_400(small_server):
    port, _ = small_server
    body = json.dumps({"resourceType": "Patient", "name": [{"family": "x" * 2000}]}).encode()
    status, answer = post_chunked(port, "/fhir/Patient", body, "application/fhir+json")
    assert status == 413
    assert json.loads(answer)["issue"][0]["code"] == "too-costly"


# The message store over HTTP


def test_the_message_list_over_http_filters_and_pages(client, engine):
    receive(engine, a01("L1", mrn="71001"), "test")
    receive(engine, UNSUPPORTED.encode(), "test")
    receive(engine, a01("L3", mrn="71003"), "test")
    listed = client.get("/hl7v2/messages?type=ADT&_count=1").get_json()
    assert [message["controlId"] for message in listed["messages"]] == ["L3"]
    older = client.get(listed["next"].removeprefix("http://localhost")).get_json()
    assert [message["controlId"] for message in older["messages"]] == ["L1"]
    assert [m["controlId"] for m in client.get("/hl7v2/messages?status=rejected").get_json()["messages"]] == ["S1"]
    assert client.get("/hl7v2/messages?sender=SCHED&facility=NORTH").get_json()["messages"][0]["type"] == "SIU^S12"
    assert client.get("/hl7v2/messages?since=2999-01-01").get_json()["messages"] == []
    assert client.get("/hl7v2/messages?status=nonsense").status_code == 400


@pytest.mark.parametrize("query, status", [
    ("before=%C2%B2", 400), ("_count=%C2%B2", 400), ("_count=0", 400), ("before=x", 400),
    ("before=99999999999999999999999999", 200), ("_count=99999999999999999999999999", 200),
])
def test_the_message_list_answers_odd_numbers_with_400_or_a_list_never_500(client, query, status):
    response = client.get(f"/hl7v2/messages?{query}")
    assert response.status_code == status
    assert status == 400 or "messages" in response.get_json()


def test_one_message_over_http_lists_the_resources_it_wrote(client, engine):
    receipt = receive(engine, a01("SHOW1", mrn="71101"), "test")
    shown = client.get(f"/hl7v2/messages/{receipt.message_id}").get_json()
    assert shown["status"] == "applied" and shown["message"].startswith("MSH|")
    patient_id = client.get("/fhir/Patient?identifier=71101").get_json()["entry"][0]["resource"]["id"]
    assert f"Patient/{patient_id}" in shown["resources"]
    assert {reference.split("/")[0] for reference in shown["resources"]} == {"Patient", "Practitioner", "Location", "Encounter"}
    assert client.get("/hl7v2/messages/999999").status_code == 404
