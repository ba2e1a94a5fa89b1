"""ACKs: MSA-2 echoes MSH-10, sender and receiver swap, version and character set kept, ERR by version, MSH-15/16."""
import hl7
import pytest

from interop.hl7v2.ack import ErrorDetail, Header, acknowledgement, acknowledgements


def header(version: str = "2.5.1", accept: str = "", application: str = "", charset: str = "") -> Header:
    msh = f"MSH|^~\\&|LAB|NORTH|EHR|CENTRAL|20250102030405||ORU^R01^ORU_R01|MSG00042|P|{version}|||{accept}|{application}||{charset}"
    return Header.of(hl7.parse(msh + "\rPID|1||1^^^H^MR"))


def segments(ack: str) -> dict[str, list[str]]:
    return {line.split("|")[0]: line.split("|") for line in ack.strip("\r").split("\r")}


def test_aa_echoes_the_control_id_and_swaps_sender_and_receiver():
    ack = segments(acknowledgement(header(), "AA"))
    assert ack["MSA"][1:3] == ["AA", "MSG00042"]
    assert ack["MSH"][2:6] == ["EHR", "CENTRAL", "LAB", "NORTH"]
    assert ack["MSH"][8] == "ACK^R01^ACK"
    assert ack["MSH"][11] == "2.5.1"
    assert "ERR" not in ack


def test_the_ack_keeps_the_character_set():
    assert segments(acknowledgement(header(charset="8859/1"), "AA"))["MSH"][17] == "8859/1"


def test_ae_in_v251_carries_err2_location_and_err3_code():
    error = ErrorDetail(101, "PID-3 has no identifier", "PID", 1, 3)
    err = segments(acknowledgement(header(), "AE", (error,)))["ERR"]
    assert err[2] == "PID^1^3"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"
    assert err[7] == "PID-3 has no identifier"


def test_ae_before_v25_carries_err1():
    err = segments(acknowledgement(header("2.3"), "AE", (ErrorDetail(101, "missing", "PID", 1, 3),)))["ERR"]
    assert err[1] == "PID^1^3^101&Required field missing&HL70357"


def test_error_text_is_escaped_with_the_messages_delimiters():
    err = segments(acknowledgement(header(), "AE", (ErrorDetail(207, "a|b^c&d~e\\f\nline"),)))["ERR"]
    assert err[7] == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\line"


@pytest.mark.parametrize(("accept", "code", "expected", "requested"), [
    ("AL", "AA", "CA", True), ("AL", "AE", "CA", True), ("AL", "AR", "CR", True),  # kept in error is still committed: CA
    ("AL", "CE", "CE", True),  # the store failed
    ("ER", "AA", "CA", False), ("ER", "AE", "CA", False), ("ER", "AR", "CR", True),
    ("SU", "AA", "CA", True), ("SU", "AE", "CA", True), ("SU", "AR", "CR", False),
    ("ZZ", "AA", "CA", True),  # outside table 0155: as AL
])
def test_enhanced_mode_always_answers_with_the_accept_ack_and_notes_whether_msh15_asked_for_it(accept, code, expected, requested):
    acks = acknowledgements(header(accept=accept, application="NE"), code, (ErrorDetail(207, "x"),) if code != "AA" else ())
    assert (msa_code(acks.answer), acks.application, acks.requested) == (expected, None, requested)


@pytest.mark.parametrize(("code", "expected"), [("AA", "AA"), ("AE", "AE"), ("AR", "AR"), ("CE", "AR")])
def test_msh15_ne_with_msh16_ne_still_gets_the_application_outcome_on_the_connection(code, expected):
    acks = acknowledgements(header(accept="NE", application="NE"), code)
    assert (msa_code(acks.answer), acks.application, acks.requested) == (expected, None, False)


def msa_code(ack: str | None) -> str | None:
    return segments(ack)["MSA"][1] if ack else None


def test_original_mode_answers_on_the_connection_and_queues_nothing():
    acks = acknowledgements(header(), "AE", (ErrorDetail(207, "x"),))
    assert (msa_code(acks.answer), acks.application) == ("AE", None)


@pytest.mark.parametrize(("application", "code", "expected"), [
    ("AL", "AA", "AA"), ("AL", "AE", "AE"), ("AL", "AR", None),  # no application ACK follows a CR
    ("NE", "AA", None), ("", "AA", None),
    ("ER", "AA", None), ("ER", "AE", "AE"), ("ER", "AR", None),
    ("SU", "AA", "AA"), ("SU", "AE", None),
])
def test_enhanced_mode_queues_the_application_ack_msh16_asks_for(application, code, expected):
    acks = acknowledgements(header(accept="AL", application=application), code, (ErrorDetail(207, "x"),) if code != "AA" else ())
    assert msa_code(acks.answer) == ("CR" if code == "AR" else "CA")
    assert msa_code(acks.application) == expected


def test_the_accept_ack_of_a_message_kept_in_error_has_no_err_and_a_refusal_has_one():
    error = ErrorDetail(200, "Unsupported message type")
    assert "ERR" not in segments(acknowledgements(header(accept="AL"), "AE", (ErrorDetail(101, "missing"),)).answer)
    assert segments(acknowledgements(header(accept="AL"), "AR", (error,)).answer)["ERR"][3].startswith("200^")


def test_every_ack_has_its_own_control_id():
    assert len({segments(acknowledgement(header(), "AA"))["MSH"][9] for _ in range(1000)}) == 1000


def test_an_application_ack_on_its_own_channel_asks_for_an_accept_ack_and_no_application_ack():
    msh = segments(acknowledgements(header(accept="AL", application="AL"), "AA").application)["MSH"]
    assert (msh[14], msh[15]) == ("AL", "NE")
    assert msh[2:6] == ["EHR", "CENTRAL", "LAB", "NORTH"]


def test_no_accept_ack_but_an_application_ack_is_answered_on_the_connection_as_in_original_mode():
    acks = acknowledgements(header(accept="NE", application="AL"), "AE", (ErrorDetail(101, "missing", "PID", 1, 3),))
    assert (msa_code(acks.answer), acks.application) == ("AE", None)
    assert segments(acks.answer)["ERR"][2] == "PID^1^3"
    assert "AL" not in segments(acks.answer)["MSH"][14:16]  # an ACK on the connection asks for nothing back


def test_before_v25_the_error_text_goes_in_msa3():
    ack = segments(acknowledgement(header("2.3"), "AE", (ErrorDetail(101, "PID-3 | missing", "PID", 1, 3),)))
    assert ack["MSA"][1:4] == ["AE", "MSG00042", "PID-3 \\F\\ missing"]
    assert len(segments(acknowledgement(header("2.5.1"), "AE", (ErrorDetail(101, "x"),)))["MSA"]) == 3
