"""Fuzzing with hypothesis: whatever a frame holds (a real message with characters inserted, deleted or replaced,
separators in the wrong places, control characters, other scripts, fields cut short), reading it never fails with an
internal error, and its answer is an ACK with an MSA-1 of table 0008 (AA/AE/AR, or CA/CE/CR when MSH-15 asks for an
accept acknowledgement) and the frame's control id when it has one; over
HTTP it is never a 500."""
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import Settings
from app.web import create_app
from interop.hl7v2.service import Senders, read
from tests.conftest import BACKENDS

SAMPLES = [path.read_bytes() for path in sorted((Path(__file__).parent / "messages").glob("*.hl7"))]
ACK_CODES = ("AA", "AE", "AR", "CA", "CE", "CR")
PIECES = ["|", "^", "~", "\\", "&", "\r", "\n", '""', "\\X0D\\", "\\E\\", "\x00", "\x0b", "\x1c", "\t", " ", "MSH|",
          "OBX|1|NM|", "PID|", "2024", "19800101", "-1", "1e309", "ä", "测", "\U0001F600", "\ufeff"]


def msa_fields(ack: str) -> list[str]:
    """MSA's fields, split by the ACK's own field separator (it answers in the sender's)."""
    separator = ack[3]
    return next(line for line in ack.split("\r") if line.startswith("MSA")).split(separator)


@st.composite
def mutated_messages(draw) -> bytes:
    """A sample message with a few edits: each puts a piece (a separator, a control character, a segment start...)
    or arbitrary text at a random place, or removes a random run."""
    text = draw(st.sampled_from(SAMPLES)).decode("utf-8", errors="replace")
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(text)))
        end = min(len(text), start + draw(st.integers(0, 12)))
        insert = draw(st.one_of(st.sampled_from(PIECES), st.text(max_size=8), st.just("")))
        text = text[:start] + insert + text[end:]
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16-le"]))
    return text.encode(encoding, errors="replace")


frames = st.one_of(
    mutated_messages(),
    st.binary(max_size=300).map(lambda tail: b"MSH|^~\\&|" + tail),
    st.binary(max_size=300),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_any_frame_is_read_without_an_internal_error_and_answered(frame):
    reading = read(frame, "fuzz", Senders())
    answer = msa_fields(reading.acks.answer)
    assert answer[1] in ACK_CODES
    assert "Internal error" not in reading.acks.answer
    if reading.header and reading.header.control_id:
        assert answer[2] == reading.header.control_id


@pytest.fixture(scope="module", params=BACKENDS)
def shared_client(request, database_urls):
    """One app per backend for the module: hypothesis runs many examples in one test, and function-scoped fixtures
    are not set up again between them."""
    return create_app(Settings(auth=False, database_url=database_urls[request.param])).test_client()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames)
def test_any_frame_posted_over_http_is_answered_never_a_500(shared_client, frame):
    response = shared_client.post("/hl7v2", data=frame, content_type="x-application/hl7-v2+er7")
    assert response.status_code in (200, 400, 413, 503)
    if response.status_code == 200:
        assert msa_fields(response.data.decode(response.mimetype_params["charset"]))[1] in ACK_CODES
