"""Acknowledgements (HL7 v2.5.1 chapter 2.9): MSA echoes MSH-10, sender and receiver swap, version kept.

Every message gets one answer on its connection, whatever MSH-15 says: MLLP is a request and
answer protocol, and real senders wait for an answer to each frame. Original mode (MSH-15 and
MSH-16 empty) answers AA, AE or AR once the message is applied or kept in error. Enhanced mode
answers with the accept acknowledgement: CA once the message is committed to the store,
whatever its mapping gave, CR for what is refused at accept level (a type, event or sender we
do not take, bytes that cannot be parsed), or CE when the store could not take it (the
database failed): then the sender re-sends, as it does after an AR in original mode. A sender
that asks for no accept acknowledgement (MSH-15 NE) gets the application outcome (AA, AE or
AR) instead: HL7 v2.8.2 chapter 2 notes that NE with an application acknowledgement is
original mode. The application acknowledgement AA or AE that MSH-16 asks for (table 0155: AL
always, NE never, ER on error only, SU on success only; a value outside the table as AL)
follows, when MSH-15 is not NE, as a message of its own on the sender's outbound channel
(outbox.py); none follows a CR or CE. Warnings (a value read liberally) go as ERR segments of
severity W with the application outcome.

python-hl7's Message.create_ack fails on an MSH-9 without components and writes no ERR
segment, so the ACK is assembled here from the message's own separators and raw fields.
"""
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple
from uuid import uuid4

import hl7

from interop.hl7v2.text import declared_separators, quoted, usable_separators

REFUSED = "AR"  # the outcome of what is refused before it is applied: answered CR in enhanced mode
NOT_STORED = "CE"  # the outcome of what the store could not take (the database failed): AR in original mode
ERROR_TEXTS = {  # HL7 table 0357
    0: "Message accepted", 100: "Segment sequence error", 101: "Required field missing", 102: "Data type error",
    103: "Table value not found", 104: "Value too long", 200: "Unsupported message type", 201: "Unsupported event code",
    202: "Unsupported processing id", 203: "Unsupported version id", 204: "Unknown key identifier",
    205: "Duplicate key identifier", 206: "Application record locked", 207: "Application internal error",
}
ACK_TYPES = ("AL", "NE", "ER", "SU")  # HL7 table 0155
FIRST_VERSION_WITH_ERR_2 = (2, 5)
STANDARD_SEPARATORS = ("|", "^~\\&")


@dataclass(frozen=True)
class ErrorDetail:
    """What an ERR segment says: the HL7 error code, severity (table 0516: E error, W warning) and where in the
    message (segment, its sequence, field)."""

    code: int
    text: str
    segment: str | None = None
    sequence: int | None = None
    field: int | None = None
    severity: str = "E"


@dataclass(frozen=True)
class Header:
    """The MSH fields an acknowledgement needs, as raw (still escaped) field text; blank fields are empty."""

    field_separator: str
    encoding_characters: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    character_set: str

    @classmethod
    def of(cls, message: hl7.Message) -> "Header":
        msh = message.segment("MSH")
        return cls(raw_field(msh, 1), raw_field(msh, 2), *(raw_field(msh, number).strip() for number in HEADER_FIELDS))

    @classmethod
    def salvaged(cls, text: str) -> "Header":
        """The MSH fields of text python-hl7 cannot parse, as far as they can be read, so that it can be answered. The
        fields are split by the sender's field separator when it can be one; encoding characters that cannot be used
        give the standard ones. A field separator that cannot be used (none, a letter, one of ^~\\&) echoes nothing:
        split by it, the fields would not be the sender's."""
        line = text.split("\r", 1)[0]
        separator, encoding = declared_separators(line) if line.startswith("MSH") else ("", "")
        if not usable_separators(separator, encoding):
            encoding = STANDARD_SEPARATORS[1]
        if not usable_separators(separator, encoding):
            return cls(*STANDARD_SEPARATORS, *("" for _ in HEADER_FIELDS))
        fields = line.split(separator)
        return cls(separator, encoding, *((fields[number - 1] if number - 1 < len(fields) else "").strip() for number in HEADER_FIELDS))

    @property
    def type_name(self) -> str:
        """MSH-9 with its components joined by ^ whatever the sender's separator: ADT^A01^ADT_A01."""
        component = self.encoding_characters[:1] or "^"
        return "^".join(self.message_type.split(component))

    @property
    def enhanced_mode(self) -> bool:
        return bool(self.accept_ack_type or self.application_ack_type)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        digits = self.version.split(self.encoding_characters[:1] or "^")[0].split(".")
        return tuple(int(part) for part in digits if part.isdigit())

    def ack_type_warnings(self) -> list[ErrorDetail]:
        """MSH-15 and MSH-16 values outside table 0155, which are read as AL: every message gets an answer."""
        return [ErrorDetail(103, f"MSH-{number} {quoted(value)} is not in HL7 table 0155 (AL, NE, ER, SU): read as AL.", "MSH", 1, number, "W")
                for number, value in ((15, self.accept_ack_type), (16, self.application_ack_type))
                if value and value.upper() not in ACK_TYPES]


HEADER_FIELDS = (3, 4, 5, 6, 9, 10, 11, 12, 15, 16, 18)  # the MSH fields after the separators that Header keeps
ANSWER_VERSION = "2.5.1"  # of the answer to a message that names none (or bytes whose MSH cannot be read): MSH-12 is required


def raw_field(segment, number: int) -> str:
    """Field `number` of a segment as sent (escapes kept), '' when the segment is shorter."""
    return str(segment[number]) if len(segment) > number else ""


class Acknowledgements(NamedTuple):
    """What a message's outcome sends back."""

    answer: str  # on the message's own connection (or HTTP response)
    application: str | None  # an application ACK for the sender's outbound channel; None: none is due
    requested: bool = True  # False: MSH-15 asked for no answer on the connection, which gets one all the same


def acknowledgements(header: Header, code: str, details: tuple[ErrorDetail, ...] = ()) -> Acknowledgements:
    """The acknowledgements for a message whose outcome is `code` (AA, AE, AR or NOT_STORED), by its MSH-15 and
    MSH-16; `details` are the ERR segments of the application outcome (an error, warnings).

    The connection always gets one answer: MLLP is a request and answer protocol, and real senders wait for an
    answer to each frame whatever MSH-15 says. MSH-15 chooses its kind: the application outcome (AA, AE, AR) in
    original mode and when MSH-15 is NE, else the accept outcome (CA, CR, CE)."""
    original = REFUSED if code == NOT_STORED else code
    accept_type = header.accept_ack_type.upper()
    if not header.enhanced_mode or accept_type == "NE":
        wants_answer = not header.enhanced_mode or wanted(header.application_ack_type or "NE", code == "AA")
        return Acknowledgements(acknowledgement(header, original, details), None, wants_answer)
    accepted = code not in (REFUSED, NOT_STORED)
    accept_code = "CA" if accepted else "CR" if code == REFUSED else "CE"
    accept = acknowledgement(header, accept_code, () if accepted else details)
    wants_application = wanted(header.application_ack_type or "NE", code == "AA")
    application = acknowledgement(header, code, details, asks_accept_ack=True) if wants_application and accepted else None
    return Acknowledgements(accept, application, wanted(accept_type or "AL", accepted))


def acknowledgement(header: Header, code: str, details: tuple[ErrorDetail, ...] = (), asks_accept_ack: bool = False) -> str:
    """An ACK message with MSA-1 `code` and an ERR segment per detail; one sent on its own channel asks for an accept
    ACK (MSH-15 AL), so that its delivery is confirmed, and for no application ACK (MSH-16 NE): acknowledging it
    would never end."""
    separator = header.field_separator
    msa = ["MSA", code, header.control_id]
    errors = [detail for detail in details if detail.severity == "E"]
    if errors and header.version_tuple and header.version_tuple < FIRST_VERSION_WITH_ERR_2:  # ERR-1 has no text: MSA-3 does
        msa.append(escape(errors[0].text, header))
    segments = [msh_segment(header, new_control_id(), asks_accept_ack), separator.join(msa)]
    segments += [err_segment(header, detail) for detail in details]
    return "\r".join(segments) + "\r"


def wanted(ack_type: str, succeeded: bool) -> bool:
    """Table 0155: AL always, NE never, ER only on error or reject, SU only on success; another value as AL."""
    kind = ack_type.upper()
    return kind not in ACK_TYPES or kind == "AL" or (kind == "ER" and not succeeded) or (kind == "SU" and succeeded)


def msh_segment(header: Header, ack_id: str, asks_accept_ack: bool = False) -> str:
    component = header.encoding_characters[:1] or "^"
    event = header.message_type.split(component)[1] if component in header.message_type else ""
    fields = [
        "MSH", header.encoding_characters, header.receiving_application, header.receiving_facility,
        header.sending_application, header.sending_facility, datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S%z"), "",
        component.join(["ACK", event, "ACK"]) if event else "ACK", ack_id, header.processing_id or "P", header.version or ANSWER_VERSION,
        "", "", *(("AL", "NE") if asks_accept_ack else ("", "")), "", header.character_set,
    ]
    return header.field_separator.join(fields).rstrip(header.field_separator)


def err_segment(header: Header, error: ErrorDetail) -> str:
    """ERR-2 location, ERR-3 code and ERR-4 severity from v2.5 on; ERR-1 (segment^sequence^field^code&text) before
    it, which has no severity."""
    component = header.encoding_characters[:1] or "^"
    subcomponent = header.encoding_characters[3:4] or "&"
    location = [error.segment or "", str(error.sequence or ""), str(error.field or "")]
    text = escape(error.text, header)
    if header.version_tuple and header.version_tuple < FIRST_VERSION_WITH_ERR_2:
        code = subcomponent.join([str(error.code), ERROR_TEXTS.get(error.code, ""), "HL70357"])
        return header.field_separator.join(["ERR", component.join([*location, code])])
    code = component.join([str(error.code), ERROR_TEXTS.get(error.code, ""), "HL70357"])
    return header.field_separator.join(["ERR", "", component.join(location).rstrip(component), code, error.severity, "", "", text])


def escape(text: str, header: Header) -> str:
    """Free text in a field: the message's own delimiters escaped (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\), line breaks as \\.br\\."""
    escape_character = header.encoding_characters[2:3] or "\\"
    replacements = [(escape_character, "E"), (header.field_separator, "F")] + list(
        zip(header.encoding_characters[:1] + header.encoding_characters[1:2] + header.encoding_characters[3:4], "SRT")
    )
    escaped = "".join(
        next((f"{escape_character}{name}{escape_character}" for special, name in replacements if char == special), char)
        for char in text
    )
    return escaped.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{escape_character}.br{escape_character}")


def new_control_id() -> str:
    """Unique across processes (several workers acknowledge at once), and within MSH-10's 20 characters."""
    return "A" + uuid4().hex[:19]
