"""What a search index holds for one value: FHIR elements turned into comparable index values.

Each search parameter type reads certain FHIR types (R4 search.html): a string
parameter reads strings, HumanName and Address; a token reads Coding,
CodeableConcept, Identifier, ContactPoint, code, boolean and id; a date reads
date, dateTime, instant, Period and Timing as [low, high) UTC ranges at their
precision; and so on. Values of other types are not indexed.
"""
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from anyascii import anyascii

from app.errors import BadRequest
from app.model.instants import EARLIEST, LATEST, date_range

STRING_INDEX_LENGTH = 200
ISO_4217 = "urn:iso:std:iso:4217"
HUMAN_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
STRING_TYPES = frozenset({"string", "markdown", "code", "id", "uri", "url", "canonical"})
CODE_TYPES = frozenset({"code", "string", "id", "uri", "url", "canonical", "oid", "uuid"})
URI_TYPES = frozenset({"uri", "url", "canonical", "oid", "uuid"})
NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt"})
QUANTITY_TYPES = frozenset({"Quantity", "Age", "Duration", "Distance", "Count", "SimpleQuantity", "MoneyQuantity"})


@dataclass(frozen=True, slots=True)
class StringValue:
    normalized: str  # case- and accent-folded, for the default prefix match and :contains
    exact: str


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None
    code: str | None
    text: str | None = None  # display or CodeableConcept.text, folded, for :text


@dataclass(frozen=True, slots=True)
class DateValue:
    low: datetime
    high: datetime  # exclusive


@dataclass(frozen=True, slots=True)
class NumberValue:
    value: Decimal


@dataclass(frozen=True, slots=True)
class QuantityValue:
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    version: str | None
    url: str | None  # absolute and canonical references, and urn:uuid/urn:oid


@dataclass(frozen=True, slots=True)
class UriValue:
    uri: str


@lru_cache(maxsize=65536)  # names, display texts and units recur across resources
def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Müller ' and 'muller' compare equal, and so do 'Søren' and 'soren'."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    if not stripped.isascii():
        stripped = "".join(map(latin_as_ascii, stripped))
    return " ".join(stripped.casefold().split())[:STRING_INDEX_LENGTH]


def latin_as_ascii(char: str) -> str:
    """A Latin letter that NFKD leaves whole (ł, ø, đ, æ, œ, þ, ı...) as anyascii spells it in ASCII.

    Other scripts stay as they are: transliterating them would let 'wang' find 王 and 汪 alike.
    """
    if char.isascii() or not unicodedata.name(char, "").startswith("LATIN "):
        return char
    return anyascii(char)


def string_values(value, fhir_type: str) -> list[StringValue]:
    if fhir_type in STRING_TYPES and isinstance(value, str):
        return [StringValue(fold(value), value)]
    if fhir_type == "HumanName" and isinstance(value, dict):
        return [StringValue(fold(part), part) for part in parts_of(value, HUMAN_NAME_PARTS)]
    if fhir_type == "Address" and isinstance(value, dict):
        return [StringValue(fold(part), part) for part in parts_of(value, ADDRESS_PARTS)]
    return []


def parts_of(value: dict, names: tuple[str, ...]) -> list[str]:
    parts = []
    for name in names:
        item = value.get(name)
        parts.extend(item if isinstance(item, list) else [item])
    return [part for part in parts if isinstance(part, str) and part]


def token_values(value, fhir_type: str) -> list[TokenValue]:
    if fhir_type == "Coding" and isinstance(value, dict):
        return [coding_token(value)]
    if fhir_type == "CodeableConcept" and isinstance(value, dict):
        return codeable_concept_tokens(value)
    if fhir_type == "Identifier" and isinstance(value, dict):
        return [TokenValue(value.get("system"), value.get("value"), folded_text((value.get("type") or {}).get("text")))]
    if fhir_type == "ContactPoint" and isinstance(value, dict):
        return [TokenValue(None, value.get("value"))]
    if fhir_type == "boolean" and isinstance(value, bool):
        return [TokenValue(None, "true" if value else "false")]
    if fhir_type in CODE_TYPES and isinstance(value, str):
        return [TokenValue(None, value)]
    return []


def identifier_type_tokens(identifier: dict) -> list[TokenValue]:
    """For :of-type: one token per Identifier.type coding, system `type-system|type-code`, code the identifier's value."""
    codings = (identifier.get("type") or {}).get("coding") or []
    value = identifier.get("value")
    return [TokenValue(f"{coding.get('system') or ''}|{coding['code']}", value) for coding in codings if coding.get("code") and value]


def reference_identifier_tokens(reference: dict) -> list[TokenValue]:
    """For :identifier: the logical identifier a Reference may carry instead of (or beside) a literal reference."""
    identifier = reference.get("identifier")
    return [TokenValue(identifier.get("system"), identifier["value"])] if isinstance(identifier, dict) and identifier.get("value") else []


def coding_token(coding: dict) -> TokenValue:
    return TokenValue(coding.get("system"), coding.get("code"), folded_text(coding.get("display")))


def codeable_concept_tokens(concept: dict) -> list[TokenValue]:
    tokens = [coding_token(coding) for coding in concept.get("coding") or [] if isinstance(coding, dict)]
    if concept.get("text"):
        tokens.append(TokenValue(None, None, folded_text(concept["text"])))
    return tokens


def folded_text(text) -> str | None:
    return fold(text) if isinstance(text, str) and text else None


def date_values(value, fhir_type: str) -> list[DateValue]:
    if fhir_type in ("date", "dateTime", "instant") and isinstance(value, str):
        return [DateValue(*date_range_or_all(value))]
    if fhir_type == "Period" and isinstance(value, dict):
        return [period_value(value)]
    if fhir_type == "Timing" and isinstance(value, dict):
        return timing_values(value)
    return []


def date_range_or_all(text: str) -> tuple[datetime, datetime]:
    try:
        return date_range(text)
    except BadRequest:  # validation lets through what FHIR allows; anything else matches no date search
        return LATEST, LATEST


def period_value(period: dict) -> DateValue:
    """A Period covers from its start's low to its end's high; an open end is unbounded."""
    low = date_range_or_all(period["start"])[0] if isinstance(period.get("start"), str) else EARLIEST
    high = date_range_or_all(period["end"])[1] if isinstance(period.get("end"), str) else LATEST
    return DateValue(low, high)


def timing_values(timing: dict) -> list[DateValue]:
    values = [DateValue(*date_range_or_all(event)) for event in timing.get("event") or [] if isinstance(event, str)]
    bounds = (timing.get("repeat") or {}).get("boundsPeriod")
    if isinstance(bounds, dict):
        values.append(period_value(bounds))
    return values


def number_values(value, fhir_type: str) -> list[NumberValue]:
    number = as_decimal(value) if fhir_type in NUMBER_TYPES else None
    return [NumberValue(number)] if number is not None else []


def as_decimal(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def quantity_values(value, fhir_type: str) -> list[QuantityValue]:
    if not isinstance(value, dict):
        return []
    if fhir_type in QUANTITY_TYPES:
        number = as_decimal(value.get("value"))
        return [QuantityValue(number, value.get("system"), value.get("code"), value.get("unit"))] if number is not None else []
    if fhir_type == "Money":
        number = as_decimal(value.get("value"))
        return [QuantityValue(number, ISO_4217, value.get("currency"), value.get("currency"))] if number is not None else []
    if fhir_type == "SampledData":
        return quantity_values(value.get("origin"), "Quantity")
    return []


def reference_values(value, fhir_type: str) -> list[ReferenceValue]:
    if fhir_type == "Reference" and isinstance(value, dict):
        reference = value.get("reference")
        return [parse_reference(reference)] if isinstance(reference, str) and not reference.startswith("#") else []
    if fhir_type in URI_TYPES and isinstance(value, str):
        return [ReferenceValue(None, None, None, value)]
    return []


def parse_reference(reference: str) -> ReferenceValue:
    """`Type/id` and `Type/id/_history/n` name a resource here; an absolute URL is kept whole (every entrance writes
    references to this server's own base as relative ones: app/model/references.py)."""
    if "://" in reference or reference.startswith("urn:"):
        return ReferenceValue(None, None, None, reference)
    segments = reference.split("?")[0].rstrip("/").split("/")
    version = None
    if len(segments) == 4 and segments[2] == "_history":
        version, segments = segments[3], segments[:2]
    if len(segments) == 2 and segments[0][:1].isupper():
        return ReferenceValue(segments[0], segments[1], version, None)
    return ReferenceValue(None, None, None, reference)


def uri_values(value, fhir_type: str) -> list[UriValue]:
    return [UriValue(value)] if fhir_type in URI_TYPES and isinstance(value, str) else []


VALUES_BY_PARAMETER_TYPE = {
    "string": string_values,
    "token": token_values,
    "date": date_values,
    "number": number_values,
    "quantity": quantity_values,
    "reference": reference_values,
    "uri": uri_values,
}
