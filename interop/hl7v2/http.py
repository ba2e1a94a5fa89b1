"""`POST /hl7v2`: an HL7 v2 message over HTTP, answered with its ACK; the same service as the MLLP listener.
`GET /hl7v2/messages`: the message store, as `ehr hl7 list` and `ehr hl7 show` give it."""
import codecs
from datetime import datetime, timezone

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from app.errors import RETRY_AFTER_SECONDS, BadRequest, NotFound, UnsupportedMediaType
from app.model.instants import format_instant
from app.model.numbers import whole_number
from app.rest.negotiation import media_type_and_params, read_raw_body
from app.security.bearer import request_access
from interop.hl7v2.service import (MESSAGE_STATUSES, NOT_STORED_STATUS, MessageQuery, receive, stored_message, stored_messages,
                                   written_resources)

hl7v2 = Blueprint("hl7v2", __name__)
ER7_MEDIA_TYPE = "x-application/hl7-v2+er7"
HL7_MEDIA_TYPES = frozenset({ER7_MEDIA_TYPE, "application/hl7-v2"})
MAX_MESSAGE_ID = 2**63 - 1
IANA_CHARSETS = {"cp1252": "windows-1252", "latin-1": "ISO-8859-1", "ascii": "US-ASCII"}


@hl7v2.before_request
def authenticate():
    """A sender writes resources of every type, and the message store holds every patient's messages: both need a
    backend service's token that reaches everything (unless EHR_AUTH=off)."""
    if request.method == "POST":
        request_access().require_system("cu", "Sending HL7 v2 messages")
    else:
        request_access().require_system("rs", "Reading the HL7 v2 message store")


@hl7v2.post("/hl7v2")
def receive_message():
    """The ACK of the message in the body: 200 for every message with an MSH (AA, AE or AR in MSA-1, or what MSH-15
    asks for), 400 (with an AR) for bytes that are not HL7 v2, 503 (with an AR or CE) when the database failed and the
    message was not stored: send it again."""
    check_hl7_media_type()
    receipt = receive(current_app.extensions["ehr.engine"], read_raw_body(), f"http:{request.remote_addr}")
    body = (receipt.ack or "").encode(receipt.codec, errors="replace")
    status, headers = 200, {}
    if receipt.unreadable:
        status = 400
    elif receipt.status == NOT_STORED_STATUS:
        status, headers = 503, {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return Response(body, status, headers, content_type=f"{ER7_MEDIA_TYPE}; charset={http_charset(receipt.codec)}")


def http_charset(codec: str) -> str:
    """The IANA name of a Python codec, which HTTP clients know: cp1252 is windows-1252, latin-1 ISO-8859-1."""
    name = codecs.lookup(codec).name
    return IANA_CHARSETS.get(name) or name.upper().replace("ISO8859-", "ISO-8859-")


def check_hl7_media_type() -> None:
    """415 unless the body is declared an HL7 v2 message: a browser page may post text/plain (or a form) anywhere
    without asking first (CORS), so text/plain is taken only where EHR_HL7_TEXT_PLAIN says so."""
    accepted = HL7_MEDIA_TYPES | ({"text/plain"} if current_app.config["EHR_SETTINGS"].hl7_text_plain else set())
    media_type = media_type_and_params(request.headers.get("Content-Type", ""))[0]
    if media_type not in accepted:
        raise UnsupportedMediaType(f"Content-Type {media_type or '(none)'} is not taken here; send {' or '.join(sorted(accepted))}.")


@hl7v2.get("/hl7v2/messages")
def list_messages():
    """The stored messages, newest first, filtered as `ehr hl7 list` is: status, sender, facility, type, control-id,
    since and until (ISO 8601, UTC unless an offset is given), _count; `next` links to the older ones."""
    query = message_query()
    rows = stored_messages(current_app.extensions["ehr.engine"], query)
    more = {"next": url_for("hl7v2.list_messages", **{**request.args, "before": rows[-1].id}, _external=True)} if len(rows) == query.limit else {}
    return jsonify(messages=[message_summary(row) for row in rows], **more)


@hl7v2.get("/hl7v2/messages/<int:message_id>")
def show_message(message_id: int):
    """One message: its record, the resources it wrote, the message as received and the ACK it got."""
    engine = current_app.extensions["ehr.engine"]
    row = stored_message(engine, message_id)
    if row is None:
        raise NotFound(f"No HL7 message {message_id}.")
    return jsonify(**message_summary(row), peer=row.peer, version=row.version, codec=row.codec,
                   resources=written_resources(engine, message_id),
                   message=row.raw.decode(row.codec or "utf-8", errors="replace"), ack=row.ack)


def message_query() -> MessageQuery:
    args = request.args
    status = args.get("status")
    if status is not None and status not in MESSAGE_STATUSES:
        raise BadRequest(f"status={status} is none of {', '.join(MESSAGE_STATUSES)}.")
    return MessageQuery(
        status, args.get("sender"), args.get("facility"), args.get("type"), args.get("control-id"),
        moment_argument("since"), moment_argument("until"), whole_number_argument("before"), whole_number_argument("_count", 1000) or 50,
    )


def moment_argument(name: str) -> datetime | None:
    """An ISO 8601 moment; a '+' sent unencoded before an offset arrives as a space, and is read as '+'."""
    text = request.args.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "+") if "T" in text else text)
    except ValueError:
        raise BadRequest(f"{name}={text} is not an ISO 8601 date or date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def whole_number_argument(name: str, maximum: int = MAX_MESSAGE_ID) -> int | None:
    """A whole number from 1, capped at `maximum` (a larger `before` means every message, a larger `_count` the most)."""
    text = request.args.get(name)
    if text is None:
        return None
    number = whole_number(text, maximum)
    if not number:
        raise BadRequest(f"{name}={text} is not a whole number from 1.")
    return number


def message_summary(row) -> dict:
    return {
        "id": row.id, "receivedAt": format_instant(row.received_at), "status": row.status,
        "sendingApplication": row.sending_application, "sendingFacility": row.sending_facility,
        "type": row.message_type, "controlId": row.control_id, "error": row.error,
        "warnings": (row.warnings or "").splitlines(), "reusesControlIdOf": row.reuses_control_id_of,
    }
