"""HL7 v2 data types as FHIR R4 data types (v2-to-FHIR IG, mappings/datatypes and mappings/codesystems).

Each function takes a `FieldValue` (one field repetition) and returns the FHIR JSON element,
or None when the repetition holds nothing to map. A value that breaks its v2 type is left out
with a warning (context.lenient), or, in a field that identifies what the message is about
(strict), refuses the message with MappingError 102 at the field's location.
"""
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

from interop.hl7v2.mapping import MappingError
from interop.hl7v2.mapping.fields import FieldValue, SegmentView
from interop.hl7v2.text import quoted

AUTHORITY_NAMESPACE = "urn:ehr:hl7v2:authority:"  # + HD.1, for assigning authorities without a universal id
CODE_SYSTEM_NAMESPACE = "urn:ehr:hl7v2:codesystem:"  # + CWE.3, for coding systems without a known URI
V2_TABLE = "http://terminology.hl7.org/CodeSystem/v2-"  # + the four-digit table number
IDENTIFIER_TYPES = V2_TABLE + "0203"

CODING_SYSTEMS = {  # HL7 table 0396 names -> FHIR code system URIs
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CDX": "http://hl7.org/fhir/sid/icd-9-cm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "ISO639": "urn:ietf:bcp:47",
}
HL7_TABLE_NAME = re.compile(r"HL7(\d{3,4})")
NAME_USES = {  # HL7 table 0200 -> name-use (IG NameType)
    "L": "official", "R": "official", "D": "usual", "M": "maiden", "N": "nickname",
    "BAD": "old", "MSK": "anonymous", "NAV": "temp", "TEMP": "temp",
}
ADDRESS_USES = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "BI": "billing"}  # table 0190
ADDRESS_TYPES = {"M": "postal", "SH": "postal"}
TELECOM_USES = {"PRN": "home", "WPN": "work", "PRS": "mobile"}  # table 0201 (ORN, VHN, EMR...: no FHIR use)
TELECOM_EQUIPMENT = {  # table 0202 -> (ContactPoint.system, use it implies)
    "PH": ("phone", None), "CP": ("phone", "mobile"), "FX": ("fax", None), "BP": ("pager", None),
    "INTERNET": ("email", None), "X.400": ("email", None),
    "MD": ("other", None), "SAT": ("other", None), "TDD": ("other", None), "TTY": ("other", None),
}
OID = re.compile(r"[0-2](\.(0|[1-9]\d*))+")  # what urn:oid: takes: an HD.2 typed ISO that is no OID is a name
DTM = re.compile(r"(?P<date>\d{4}(?:\d{2}){0,2})(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?(?P<offset>[+-]\d{4})?")
TIME = re.compile(r"(?P<time>\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)(?P<offset>[+-]\d{4})?")
ORIGINAL_TEXT = "http://hl7.org/fhir/StructureDefinition/originalText"


@dataclass
class MessageContext:
    """What the mapping of one message shares: who assigned an unqualified identifier, which time zone a time is in,
    the sending facility, the identifier systems an operator set per assigning authority, and the warnings about
    values read liberally."""

    authority: str | None  # identifier system for CX/XCN/EI without an assigning authority: the sender's
    utc_offset: str  # "+01:00"; "Z" when MSH-7 names no offset either
    facility: str = ""  # the sending facility's name (MSH-4, else MSH-3): where a location without PL.4 is
    message_time: str = ""  # MSH-7 as sent
    systems: Mapping[str, str] = field(default_factory=dict)  # assigning authority (upper case) -> identifier system
    warnings: list[MappingError] = field(default_factory=list)

    def lenient(self, error: MappingError, strict: bool = False) -> None:
        """A value that breaks its type or table: refused in a field that identifies (strict), else left out and
        warned about, so that one odd optional field does not refuse the whole message."""
        if strict:
            raise error
        if not any(str(earlier) == str(error) and earlier.sequence == error.sequence for earlier in self.warnings):  # a field read twice
            self.warnings.append(error)

    def local_system(self, table: str) -> str:
        """The code system of a sender's own codes for an HL7 table, for a code outside the table it sent."""
        return f"{CODE_SYSTEM_NAMESPACE}{quote(self.facility or 'local', safe='')}/v2-{table}"


def context_of(msh: SegmentView, systems: Mapping[str, str] = {}) -> MessageContext:  # noqa: B006 - never mutated
    """Unqualified identifiers belong to the sending facility (MSH-4, else MSH-3); times without offset are in MSH-7's."""
    sender = msh.field(4) if msh.field(4)() else msh.field(3)
    match = DTM.fullmatch(msh.field(7)())
    offset = match["offset"] if match and match["offset"] and valid_offset(match["offset"]) else None
    context = MessageContext(None, fhir_offset(offset) if offset else "Z", sender(1) or sender(2), msh.field(7)(), systems)
    context.authority = hd_system(sender, context)
    return context


def authority_system(namespace_id: str, universal_id: str, universal_id_type: str, context: MessageContext) -> str | None:
    return system_of_authority(namespace_id, universal_id, universal_id_type, context.systems)


def system_of_authority(namespace_id: str, universal_id: str, universal_id_type: str, systems: Mapping[str, str]) -> str | None:
    """An HD (assigning authority) as an identifier system: the system the operator set for its namespace id or
    universal id (ehr hl7 authority add, in `systems`); else urn:oid: for ISO, the URI itself, else our namespace. The
    DICOM feed names a patient's IssuerOfPatientID by it too, so that an ADT feed and a modality meet on one patient."""
    for name in (namespace_id, universal_id):
        if name and name.upper() in systems:
            return systems[name.upper()]
    kind = universal_id_type.upper()
    if universal_id and kind == "ISO" and OID.fullmatch(universal_id):
        return f"urn:oid:{universal_id}"
    if universal_id and kind == "UUID":
        return f"urn:uuid:{universal_id.lower()}"
    if universal_id and (kind in ("URI", "URL") or "://" in universal_id):
        return universal_id
    name = namespace_id or universal_id
    return AUTHORITY_NAMESPACE + quote(name, safe="") if name else None


def hd_system(hd: FieldValue, context: MessageContext, component: int = 1) -> str | None:
    """authority_system of an HD held in a field (component 1) or in a component's subcomponents."""
    if component == 1:
        return authority_system(hd(1), hd(2), hd(3), context)
    return authority_system(*(hd(component, part) for part in (1, 2, 3)), context)


def coding_system(name: str, default_table: str | None = None) -> str | None:
    """The URI of a v2 coding system name (CWE.3), or of `default_table` when the name is empty."""
    if not name:
        return V2_TABLE + default_table if default_table else None
    known = CODING_SYSTEMS.get(name.upper())
    if known:
        return known
    table = HL7_TABLE_NAME.fullmatch(name.upper())
    if table:
        return V2_TABLE + table[1].zfill(4)
    return CODE_SYSTEM_NAMESPACE + quote(name, safe="")


def coding(cwe: FieldValue, first: int = 1, default_table: str | None = None, width: int = 99) -> dict | None:
    """The coding in the CWE triplet starting at component `first` (code, display, coding system); CWE.7 (CWE.8
    for the second triplet) as its version. `width`: the CWE's component count, when known."""
    code = code_of(cwe, first)
    if not code:
        return None
    version_at = 7 if first == 1 else 8 if first == 4 else 0
    version = cwe(version_at) if version_at and width >= version_at else ""
    return compact({"system": coding_system(cwe(first + 2), default_table), "version": version, "code": code, "display": cwe(first + 1)})


def code_of(value: FieldValue, component: int = 1) -> str:
    """A component as a FHIR code, which has single spaces inside at most."""
    return " ".join(value(component).split())


def codeable_concept(cwe: FieldValue, default_table: str | None = None) -> dict | None:
    """CE/CWE/CNE: the triplets 1-3, 4-6 and 10-12 as codings; CWE.9, else a code-less CWE.2, as text."""
    width = cwe.width()
    if not width:
        return None
    triplets = (1, 4, 10)[: 1 + (width >= 4) + (width >= 10)]
    codings = [found for first in triplets if (found := coding(cwe, first, default_table if first == 1 else None, width))]
    text = (cwe(9) if width >= 9 else "") or ("" if codings else cwe(2))
    return compact({"coding": codings, "text": text}) or None


def identifier(cx: FieldValue, context: MessageContext, senders: bool = True) -> dict | None:
    """CX: CX.1 value, CX.4 assigning authority as system, CX.5 type (table 0203), CX.7/8 period. Without CX.4 the
    system is the sender's when `senders` (a business key: an MRN is local to who sent it), else none: an external or
    alternate id is no MRN, and in the MRNs' system it would match another patient's."""
    value = cx(1)
    if not value:
        return None
    return compact({
        "type": identifier_type(cx(5)),
        "system": hd_system(cx, context, 4) or (context.authority if senders else None),
        "value": value,
        "period": period(date_value(cx, context, 7), date_value(cx, context, 8)) if cx.width() >= 7 else None,
    })


def entity_identifier(ei: FieldValue, context: MessageContext, type_code: str) -> dict | None:
    """EI (order numbers): EI.1 value, EI.2-4 namespace as system (else the sender's), type from table 0203."""
    value = ei(1)
    if not value:
        return None
    system = authority_system(ei(2), ei(3), ei(4), context) or context.authority
    return compact({"type": identifier_type(type_code), "system": system, "value": value})


def identifier_type(code: str) -> dict | None:
    return {"coding": [{"system": IDENTIFIER_TYPES, "code": code}]} if code else None


def human_name(name: FieldValue, context: MessageContext, family_at: int = 1) -> dict | None:
    """XPN (family_at=1) or the name part of XCN (family_at=2): family, given + middle, suffix + degree, prefix, use,
    and for an XPN its validity (XPN.12-13, else XPN.10)."""
    width = name.width()
    if width < family_at:
        return None
    family, given, middle, suffix, prefix, degree = (name(family_at + offset) for offset in range(6))
    parts = compact({
        "family": family,
        "given": [part for part in (given, middle) if part],
        "prefix": [prefix] if prefix else [],
        "suffix": [part for part in (suffix, degree, name(14) if family_at == 1 else "") if part],
    })
    if not parts:
        return None
    name_type = name(family_at + 6) if family_at == 1 else name(10)
    valid = (period(date_time(name, context, 12), date_time(name, context, 13))
             or period(date_time(name, context, 10, 1), date_time(name, context, 10, 2))) if family_at == 1 and width >= 10 else None
    return compact({"use": NAME_USES.get(name_type.upper()), **parts, "period": valid})


def address(xad: FieldValue, context: MessageContext) -> dict | None:
    """XAD: street lines (XAD.1.1-3, XAD.2, XAD.19), city, state, postal code, country, county (XAD.9) as district,
    type XAD.7 as use or type, validity XAD.13-14 (else XAD.12)."""
    width = xad.width()
    if not width:
        return None
    kind = xad(7).upper()
    lines = [line for line in (xad(1), xad(1, 2), xad(1, 3), xad(2), xad(19)) if line]
    valid = period(date_time(xad, context, 13), date_time(xad, context, 14)) or period(
        date_time(xad, context, 12, 1), date_time(xad, context, 12, 2)) if width >= 12 else None
    found = compact({
        "use": ADDRESS_USES.get(kind), "type": ADDRESS_TYPES.get(kind), "line": lines, "city": xad(3), "district": xad(9),
        "state": xad(4), "postalCode": xad(5), "country": xad(6),
    })
    return {**found, **compact({"period": valid})} if found else None


def contact_point(xtn: FieldValue, context: MessageContext, default_use: str | None = None) -> dict | None:
    """XTN, v2.3 formatted number (XTN.1) or v2.5 parts: equipment XTN.3 -> system, use code XTN.2 -> use,
    XTN.13-14 validity, XTN.18 rank."""
    if not xtn.width():
        return None
    system, implied_use = TELECOM_EQUIPMENT.get(xtn(3).upper(), (None, None))
    use_code = xtn(2).upper()
    if system is None:
        system = "email" if use_code == "NET" or "@" in xtn(1) or (xtn(4) and not xtn(7) and not xtn(1)) else "phone"
    value = (xtn(4) or xtn(1)) if system == "email" else (xtn(12) or telephone_number(xtn) or xtn(1))
    if not value:
        return None
    use = implied_use or TELECOM_USES.get(use_code) or (None if use_code else default_use)
    wide = xtn.width() >= 13
    rank = int(xtn(18)) if wide and xtn(18).isdigit() and int(xtn(18)) > 0 else None
    valid = period(date_time(xtn, context, 13), date_time(xtn, context, 14)) if wide else None
    return compact({"system": system, "value": value, "use": use, "rank": rank, "period": valid})


def telephone_number(xtn: FieldValue) -> str:
    """XTN.5 country code, XTN.6 area code, XTN.7 local number, XTN.8 extension, as one dialable text."""
    if not xtn(7):
        return ""
    parts = (f"+{xtn(5)}" if xtn(5) else "", f"({xtn(6)})" if xtn(6) else "", xtn(7), f"ext. {xtn(8)}" if xtn(8) else "")
    return " ".join(part for part in parts if part)


def date_value(value: FieldValue, context: MessageContext, component: int = 1, subcomponent: int = 1) -> str | None:
    """DT/DTM/TS as a FHIR date: the date part at its precision (YYYY, YYYY-MM or YYYY-MM-DD)."""
    parts = dtm_parts(value, context, component, subcomponent)
    return fhir_date(parts["date"]) if parts else None


def date_time(value: FieldValue, context: MessageContext, component: int = 1, subcomponent: int = 1,
              strict: bool = False) -> str | None:
    """DTM/TS as a FHIR dateTime: a time needs a zone in FHIR, so one without offset takes MSH-7's (else UTC)."""
    parts = dtm_parts(value, context, component, subcomponent, strict)
    if not parts:
        return None
    if not parts["time"]:
        return fhir_date(parts["date"])
    offset = fhir_offset(parts["offset"]) if parts["offset"] else context.utc_offset
    return f"{fhir_date(parts['date'])}T{fhir_time(parts['time'])}{offset}"


def instant(value: FieldValue, context: MessageContext) -> str | None:
    """DTM as a FHIR instant, which needs a time to the second: None for a date alone."""
    moment = date_time(value, context)
    return moment if moment and "T" in moment else None


def time_value(value: FieldValue, context: MessageContext, strict: bool = False) -> str | None:
    """TM as a FHIR time (hh:mm:ss); FHIR times have no zone, so an offset sent is dropped."""
    text = value()
    match = TIME.fullmatch(text) if text else None
    if text and (not match or not is_real_moment("20000101", match["time"], match["offset"] or "+0000")):
        context.lenient(value.error(f"{quoted(text)} is not a time of the form HH[MM[SS[.S]]][+/-ZZZZ]", 102), strict)
        return None
    return fhir_time(match["time"]) if match else None


def dtm_parts(value: FieldValue, context: MessageContext, component: int = 1, subcomponent: int = 1,
              strict: bool = False) -> dict | None:
    """The date, time and offset texts of a DTM (TS.1 in v2.3-2.5), checked to be a real moment; a bad one is left
    out with a warning (102), or refuses the message when `strict`."""
    text = value(component, subcomponent)
    if not text:
        return None
    match = DTM.fullmatch(text)
    if not match or not is_real_moment(match["date"], match["time"] or "", match["offset"] or "+0000"):
        context.lenient(value.error(f"{quoted(text)} is not a date/time of the form YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]", 102), strict)
        return None
    return match.groupdict()


def is_real_moment(date: str, time: str, offset: str) -> bool:
    """A calendar date and clock time that exist, with an offset FHIR accepts (at most 14 hours)."""
    digits = (date + "0101")[:8] + (time + "000000")[:6]
    try:  # the constructor checks what strptime would, at a tenth of its cost
        datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]), int(digits[10:12]), int(digits[12:14]))
    except ValueError:
        return False
    return valid_offset(offset)


def valid_offset(offset: str) -> bool:
    return int(offset[1:3]) * 60 + int(offset[3:]) <= 14 * 60 and int(offset[3:]) < 60


def fhir_date(digits: str) -> str:
    return "-".join(part for part in (digits[:4], digits[4:6], digits[6:8]) if part)


def fhir_time(digits: str) -> str:
    """HH[MM[SS[.S]]] as hh:mm:ss[.s]: FHIR times carry seconds, so missing minutes and seconds are 00."""
    return f"{digits[:2]}:{digits[2:4] or '00'}:{digits[4:6] or '00'}{digits[6:]}"


def fhir_offset(offset: str) -> str:
    """+HHMM as +HH:MM; a zero offset as Z."""
    return "Z" if int(offset[1:]) == 0 else f"{offset[:3]}:{offset[3:]}"


def period(start: str | None, end: str | None) -> dict | None:
    return compact({"start": start, "end": end}) or None


def original_text(text: str) -> dict:
    """The extension that keeps a sender's value as it was sent, on an element that could not hold it."""
    return {"extension": [{"url": ORIGINAL_TEXT, "valueString": text}]}


def compact(element: dict) -> dict:
    """The element without its empty values: FHIR JSON has no empty strings, lists or objects."""
    return {key: value for key, value in element.items() if value or value is False or value == 0}
