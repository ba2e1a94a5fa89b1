"""Decoding what senders really send: byte-order marks, \\n and \\r\\n segment endings, MSH-18 character sets."""
import pytest

from interop.hl7v2.text import MalformedMessage, UnreadableMessage, decode, parse, patient_key

HEADER = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20250102030405||ADT^A08^ADT_A01|C1|P|2.5.1"


def message(charset: str = "", separator: str = "\r") -> str:
    msh = HEADER + ("||||||" + charset if charset else "")
    return separator.join([msh, "PID|1||12345^^^HOSP^MR||Müller^Jürgen"]) + separator


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_any_segment_ending_gives_two_segments(separator):
    parsed, _ = parse(message(separator=separator).encode())
    assert [str(segment[0]) for segment in parsed] == ["MSH", "PID"]
    assert parsed["PID.5.1.1"] == "Müller"


def test_a_utf8_byte_order_mark_is_dropped():
    parsed, decoded = parse(b"\xef\xbb\xbf" + message("UNICODE UTF-8").encode())
    assert decoded.codec == "utf-8"
    assert parsed["PID.5.1.2"] == "Jürgen"


def test_latin1_declared_in_msh18_is_decoded_as_latin1():
    parsed, decoded = parse(message("8859/1").encode("latin-1"))
    assert decoded.codec == "latin-1"
    assert parsed["PID.5.1.1"] == "Müller"


def test_undeclared_latin1_bytes_fall_back_instead_of_failing():
    decoded = decode(message().encode("latin-1"))
    assert decoded.codec == "cp1252"
    assert "Müller" in decoded.text


def test_ascii_declared_but_utf8_sent_is_still_read():
    decoded = decode(message("ASCII").encode("utf-8"))
    assert decoded.codec == "cp1252"
    assert "PID|1||12345" in decoded.text


@pytest.mark.parametrize("raw", [b"", b"hello world", b"\x00\x01\x02garbage", b"PID|1||123"])
def test_bytes_without_msh_are_unreadable(raw):
    with pytest.raises(UnreadableMessage):
        decode(raw)


@pytest.mark.parametrize("separator", ["\r", "\n"])
def test_patient_key_is_the_first_pid3_identifier(separator):
    assert patient_key(message(separator=separator).encode()) == b"12345"


def test_patient_key_of_a_message_without_pid_is_empty():
    assert patient_key((HEADER + "\r").encode()) == b""


def test_a_backslash_written_twice_in_msh2_is_read_once_with_a_note():
    parsed, decoded = parse(message().replace("^~\\&", "^~\\\\&").encode())
    assert str(parsed.segment("MSH")[2]) == "^~\\&"
    assert str(parsed.segment("PID")[5][0][1]) == "Jürgen"  # components split by the caret, as the sender meant
    assert decoded.repairs and "'^~\\\\&'" in decoded.repairs[0]


@pytest.mark.parametrize("encoding", ["^^\\&", "^~\\\\\\", "^~&&"])
def test_msh2_that_loses_an_encoding_character_when_read_once_is_still_refused(encoding):
    with pytest.raises(MalformedMessage):
        parse(message().replace("^~\\&", encoding, 1).encode())
