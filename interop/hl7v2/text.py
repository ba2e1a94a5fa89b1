"""From the bytes a sender framed to a parsed message: character set, segment endings, then python-hl7.

python-hl7 splits segments on `\\r` only and its MLLP reader decodes strict ASCII; real
feeds send `\\n` or `\\r\\n`, a UTF-8 byte-order mark, and Latin-1 or UTF-8 text. So the
raw block is decoded here by the character set MSH-18 declares, its segment endings are
made `\\r`, and only then is it parsed.
"""
import hashlib
from dataclasses import dataclass

import hl7

BYTE_ORDER_MARK = b"\xef\xbb\xbf"
# MSH-18 values (HL7 table 0211) -> Python codecs. An absent MSH-18 means ASCII in the standard;
# senders that omit it mostly send UTF-8, which ASCII text also is.
CHARACTER_SETS = {
    "": "utf-8", "ASCII": "ascii", "UNICODE UTF-8": "utf-8", "UNICODE": "utf-8", "UTF-8": "utf-8",
    "8859/1": "latin-1", "8859/2": "iso8859-2", "8859/3": "iso8859-3", "8859/4": "iso8859-4",
    "8859/5": "iso8859-5", "8859/6": "iso8859-6", "8859/7": "iso8859-7", "8859/8": "iso8859-8",
    "8859/9": "iso8859-9", "8859/15": "iso8859-15", "UNICODE UTF-16": "utf-16",
}
# Control characters other than tab and line breaks are no text FHIR can hold: a NUL (padding) is read as nothing, the
# others (a form feed between a report's pages) as a space. The raw bytes are stored as received.
CONTROL_CHARACTERS = {0x00: None, **{code: " " for code in (*range(0x01, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))}}
# Text that is not valid in the declared (or default) set is read as Windows-1252, which decodes
# any byte, rather than refused: the message is kept and mapped, and the charset used is recorded.
FALLBACK_CODEC = "cp1252"


NO_SEPARATORS = ("MSH-1 and MSH-2 name no usable separators: a field separator and four encoding characters are needed, "
                 "all different and none a letter, digit or space, as the standard's bar, caret, tilde, backslash and ampersand.")


class UnreadableMessage(ValueError):
    """Bytes that are not an HL7 v2 message at all: no MSH segment to answer."""


class MalformedMessage(UnreadableMessage):
    """Text that starts as an HL7 v2 message but that python-hl7 cannot parse (broken separators, say): its MSH is
    answered as far as it can be read."""

    def __init__(self, reason: str, decoded: "DecodedMessage"):
        super().__init__(reason)
        self.decoded = decoded


@dataclass(frozen=True)
class DecodedMessage:
    text: str  # segments separated by \r
    codec: str  # the Python codec the bytes were read with
    repairs: tuple[str, ...] = ()  # what was read other than as sent, for warnings


def decode(raw: bytes) -> DecodedMessage:
    """The message's text, read with the character set its MSH-18 names."""
    raw = raw.removeprefix(BYTE_ORDER_MARK).strip(b"\r\n\t \x00")
    if not raw.startswith((b"MSH", b"FHS", b"BHS")):
        raise UnreadableMessage("The data does not start with an MSH segment.")
    codec = codec_for(declared_character_set(raw))
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        codec, text = FALLBACK_CODEC, raw.decode(FALLBACK_CODEC, errors="replace")
    return DecodedMessage(with_carriage_returns(text.translate(CONTROL_CHARACTERS)), codec)


def codec_for(character_set: str) -> str:
    """The Python codec of an MSH-18 value; UTF-8 for none or one we do not know."""
    return CHARACTER_SETS.get(character_set.strip().upper(), "utf-8")


def declared_character_set(raw: bytes) -> str:
    """MSH-18 read from the bytes (its name is ASCII in every character set); the first repetition."""
    header = raw.split(b"\r", 1)[0].split(b"\n", 1)[0]
    separator = header[3:4]  # MSH-1, the field separator, is the byte after "MSH"
    fields = header.split(separator) if separator else []
    if len(fields) <= 17:
        return ""
    repetition = header[5:6] if len(header) > 5 else b"~"
    return fields[17].split(repetition)[0].decode("ascii", errors="replace").strip().upper()


def with_carriage_returns(text: str) -> str:
    """Segments separated by \\r alone, whatever line endings the sender used."""
    return "\r".join(line for line in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if line.strip())


def parse(raw: bytes) -> tuple[hl7.Message, DecodedMessage]:
    """The parsed message; UnreadableMessage for bytes that are not HL7, MalformedMessage for a message whose MSH-1 and
    MSH-2 name no usable separators, or that python-hl7 cannot parse (it raises assertion, index and value errors)."""
    decoded = decode(raw)
    separator, encoding = declared_separators(decoded.text)
    if decoded.text.startswith("MSH") and not usable_separators(separator, encoding):
        decoded, encoding = with_doubled_characters_read_once(decoded, separator, encoding)
    try:
        message = hl7.parse(decoded.text)
        has_msh = any(str(segment[0]) == "MSH" for segment in message)
    except Exception as error:  # noqa: BLE001 - whatever the parser raises, the frame is answered, not lost
        raise MalformedMessage(f"The message cannot be parsed: {type(error).__name__} {error}".strip(), decoded) from None
    if not has_msh:  # a batch header with no message in it
        raise UnreadableMessage("The data holds no MSH segment.")
    msh = message.segment("MSH")
    if decoded.text.startswith("MSH") and (len(msh) < 3 or str(msh[2]) != encoding):  # python-hl7 misreads an MSH ending at MSH-2
        raise MalformedMessage("The MSH segment ends at MSH-2: it names no sender, message type or control id.", decoded)
    return message, decoded


def declared_separators(text: str) -> tuple[str, str]:
    """MSH-1 and MSH-2 as the first line of `text` declares them: python-hl7 misreads an MSH that ends at MSH-2."""
    first = text.split("\r", 1)[0]
    separator = first[3:4]
    return separator, (first[4:].split(separator, 1)[0] if separator else "")


def with_doubled_characters_read_once(decoded: DecodedMessage, separator: str, encoding: str) -> tuple[DecodedMessage, str]:
    """A sender whose configuration escaped its backslash sends MSH-2 as ^~\\\\&: an encoding character written twice
    in a row is read once, with a warning, when the four encoding characters remain. Any other unusable MSH-1 or MSH-2
    is refused."""
    single = "".join(character for index, character in enumerate(encoding) if not index or character != encoding[index - 1])
    if single == encoding or len(single) < 4 or not usable_separators(separator, single):
        raise MalformedMessage(NO_SEPARATORS, decoded)
    text = "MSH" + separator + single + decoded.text[4 + len(encoding):]
    repair = f"MSH-2 {quoted(encoding)} repeats an encoding character: read as {quoted(single)}."
    return DecodedMessage(text, decoded.codec, (*decoded.repairs, repair)), single


def usable_separators(field_separator: str, encoding_characters: str) -> bool:
    """One field separator and two to five encoding characters, all different and none a letter, digit or space."""
    characters = field_separator + encoding_characters
    return (len(field_separator) == 1 and 2 <= len(encoding_characters) <= 5 and len(set(characters)) == len(characters)
            and not any(character.isalnum() or character.isspace() for character in characters))


def content_hash(text: str) -> str:
    """SHA-256 of a message's text with MSH-7 (its time) and MSH-10 (its control id) left out: the same for a re-send,
    which a sender may build again at another time, and different for another message under a reused control id."""
    first, _, rest = text.partition("\r")
    fields = first.split(first[3:4]) if len(first) > 3 else [first]
    for number in (7, 10):  # MSH-n is fields[n - 1]: fields[1] is MSH-2
        if len(fields) > number - 1:
            fields[number - 1] = ""
    return hashlib.sha256((first[3:4].join(fields) + "\r" + rest).encode("utf-8", errors="surrogatepass")).hexdigest()


def quoted(value: str, limit: int = 200) -> str:
    """A sender's value quoted in an error text: at most `limit` characters of it, so that one huge bad field does not
    make a huge error."""
    return f"'{value}'" if len(value) <= limit else f"'{value[:limit]}...' ({len(value)} characters)"


def patient_key(raw: bytes) -> bytes:
    """PID-3's first identifier as bytes, b"" without one: the key that keeps one patient's messages in order.

    Read from the bytes with two splits, because parsing a whole message only to choose its
    worker would double the listener's dearest step."""
    for separator in (b"\rPID", b"\nPID"):
        _, found, rest = raw.partition(separator)
        if found and len(rest) > 1:
            fields = rest.split(rest[0:1], 4)
            return fields[3].split(b"~")[0].split(b"^")[0] if len(fields) > 3 else b""
    return b""
