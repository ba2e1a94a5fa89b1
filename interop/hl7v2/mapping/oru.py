"""ORU^R01 results: one Observation per OBX and one DiagnosticReport per OBR (IG OBR[DiagnosticReport], OBX[Observation],
NTE[Observation]).

Business keys: a report is its filler order number (OBR-3, else ORC-3), else its placer order
number (OBR-2, else ORC-2); an observation is OBX-21 (its own identifier) when sent, else that
order number with OBX-3's code and OBX-4's sub-id, which v2 requires to be unique under an OBR.
OBX-1 is not used: it is a position, and a correction message that resends one result numbers
it 1. An OBX before any OBR (a result without an order) is an Observation without a report,
keyed by the patient, OBX-3, OBX-4 and its time (OBX-14, else the message's, MSH-7) (*ours*).
"""
import base64
import re
from dataclasses import dataclass, field

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import (CODING_SYSTEMS, MessageContext, codeable_concept, coding_system, compact, date_time,
                                             entity_identifier, instant, time_value)
from interop.hl7v2.mapping.encounter import RESULT_CONTEXT, encounter_upsert, visit_key
from interop.hl7v2.mapping.events import MessageEvent
from interop.hl7v2.mapping.fields import FieldValue, SegmentView, first_segment, patient_groups
from interop.hl7v2.mapping.organizations import organization_reference
from interop.hl7v2.mapping.patient import patient_upsert
from interop.hl7v2.mapping.practitioners import interpreter_reference, practitioner_reference
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import composite_key, reference, upsert_by_identifier
from interop.hl7v2.mapping.vocabulary import INTERPRETATION, OBSERVATION_STATUS, REPORT_STATUS, mapped_concept, required_code
from interop.hl7v2.text import quoted

UCUM = CODING_SYSTEMS["UCUM"]
RESULT_SYSTEM = "urn:ehr:hl7v2:result"  # identifier values of results without an order number: the patient's, and more
UNMAPPED_VALUE_TYPES = {  # in table 0125 but not mapped: the Observation gets dataAbsentReason "unsupported"
    "AD", "CK", "CN", "CP", "CX", "EI", "MA", "MO", "NA", "PN", "XAD", "XCN", "XON", "XPN", "XTN",
}
COMMON_UCUM_UNITS = frozenset({  # unit codes sent without a coding system that are valid, unambiguous UCUM
    "%", "/uL", "10*3/uL", "10*6/uL", "10*9/L", "10*12/L", "fL", "pg", "g/dL", "g/L", "mg/dL", "mg/L", "ug/L",
    "ug/dL", "ng/mL", "ng/dL", "pg/mL", "mmol/L", "umol/L", "nmol/L", "pmol/L", "meq/L", "U/L", "[IU]/L",
    "m[IU]/L", "u[IU]/mL", "mL/min", "mL/min/{1.73_m2}", "mm[Hg]", "/min", "kg", "g", "cm", "mm", "Cel",
    "[degF]", "kg/m2", "s", "min", "h", "mL", "L", "mm/h",
})
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
RANGE = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*-\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*")
COMPARATORS = {"<": "<", ">": ">", "<=": "<=", ">=": ">=", "=": None, "": None}  # SN.1 -> Quantity.comparator
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
EXTENSION = "http://hl7.org/fhir/StructureDefinition/"
VALUE_ATTACHMENT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"  # IG OBX-5 ED/RP
MEDIA_TYPES = {"PDF": "application/pdf", "RTF": "application/rtf", "HTML": "text/html", "XML": "application/xml",
               "JPEG": "image/jpeg", "JPG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "TIFF": "image/tiff",
               "TEXT": "text/plain", "PLAIN": "text/plain"}  # ED.3 data subtypes (table 0291) -> media types


@dataclass
class Order:
    """One ORDER_OBSERVATION group: its optional ORC, its OBR and the OBX results under it, each with its NTEs."""

    orc: SegmentView | None
    obr: SegmentView | None  # None: results sent before any OBR
    results: list[tuple[SegmentView, list[SegmentView]]] = field(default_factory=list)


def oru_upserts(segments: list[SegmentView], context: MessageContext, event: str) -> list[Upsert]:
    """Practitioners, Organizations, Locations, then per patient group its Patient, Encounter, Observations and
    DiagnosticReports."""
    shared = SharedUpserts(context)
    groups = [patient_result(group, shared) for group in patient_groups(segments)]
    return [*shared.upserts, *(upsert for group in groups for upsert in group)]


def patient_result(group: list[SegmentView], shared: SharedUpserts) -> list[Upsert]:
    context = shared.context
    patient = patient_upsert(group, shared)
    patient_key = patient.key
    links = {"subject": reference(patient)}
    pv1 = first_segment(group, "PV1")
    encounters = []
    if (key := visit_key(pv1, patient_key, context)) is not None:
        encounters.append(encounter_upsert(pv1, first_segment(group, "PV2"), key, links["subject"], shared, RESULT_CONTEXT))
        links["encounter"] = reference(encounters[0])
    observations, reports, numbers = [], [], set()
    for order in orders(group):
        number = distinct_key(order, order_key(order, patient_key, context), numbers, context)
        occurrences = occurrence_numbers(order, context)
        results = [observation_upsert(order, obx, notes, number, occurrence, links, shared)
                   for (obx, notes), occurrence in zip(order.results, occurrences)]
        observations.extend(results)
        if order.obr is not None:
            reports.append(report_upsert(order, number, results, links, shared))
    return [patient, *encounters, *observations, *reports]


def orders(group: list[SegmentView]) -> list[Order]:
    """OBR groups in order: an ORC applies to the OBR after it, an OBX and its NTEs to the OBR before it; OBXs before any
    OBR form an order without an OBR."""
    found: list[Order] = []
    orc = None
    for segment in group:
        if segment.id == "ORC":
            orc = segment
        elif segment.id == "OBR":
            found.append(Order(orc, segment))
            orc = None
        elif segment.id == "OBX":
            if not found:
                found.append(Order(None, None))
            found[-1].results.append((segment, []))
        elif segment.id == "NTE" and found and found[-1].results:
            found[-1].results[-1][1].append(segment)
    return found


def occurrence_numbers(order: Order, context: MessageContext) -> list[int]:
    """Each result's occurrence among the order's results with its OBX-3 code and OBX-4 sub-id: v2 says OBX-4 tells
    them apart, but senders repeat a code without it (a narrative in lines, a series). The second and later are kept
    as results of their own, keyed by their occurrence, with a warning, instead of overwriting the first."""
    seen: dict[tuple[str, str], int] = {}
    numbers = []
    for obx, _ in order.results:
        identity = (obx.field(3)(), obx.field(4)())
        seen[identity] = seen.get(identity, 0) + 1
        numbers.append(seen[identity])
        if seen[identity] == 2:
            context.lenient(obx.field(4).error(f"OBX-3 {quoted(identity[0])} comes again under this OBR without an OBX-4 sub-id that "
                                               f"tells the results apart: each is kept as a result of its own, by its occurrence", 101))
    return numbers


def distinct_key(order: Order, key: dict, taken: set, context: MessageContext) -> dict:
    """The order's key, or, when an OBR before it in the message has it (several OBRs under one placer number and no
    filler numbers), a key of its own with OBR-4, with a warning: two reports must not become one."""
    if order.obr is not None and (key.get("system"), key["value"]) in taken:
        context.lenient(order.obr.field(3).error("another OBR of this message has the same order number: this report is keyed by "
                                                 "its order number and OBR-4", 101))
        key = composite_key(RESULT_SYSTEM, key.get("system", ""), key["value"], order.obr.field(4)(3), order.obr.field(4)())
    taken.add((key.get("system"), key["value"]))
    return key


def order_key(order: Order, patient_key: dict, context: MessageContext) -> dict:
    """The report's business key: the filler order number (OBR-3, else ORC-3) typed FILL, else the placer's (OBR-2,
    else ORC-2) typed PLAC, else (*ours*, with a warning) the patient, the service (OBR-4) and its time (OBR-7); for
    results without an OBR, the patient's key."""
    patient = (patient_key.get("system", ""), patient_key["value"])
    if order.obr is None:
        return composite_key(RESULT_SYSTEM, *patient)
    found = order_number(order, 3, "FILL", context) or order_number(order, 2, "PLAC", context)
    if found is None:
        context.lenient(order.obr.field(3).error("no filler or placer order number (OBR-3, OBR-2, ORC-3, ORC-2): the report is keyed "
                                                 "by the patient, OBR-4 and OBR-7", 101))
        return composite_key(RESULT_SYSTEM, *patient, order.obr.field(4)(3), order.obr.field(4)(), order.obr.field(7)())
    return found


def order_number(order: Order, field_number: int, type_code: str, context: MessageContext) -> dict | None:
    """The order number in OBR's field, else in the ORC's same field (2 placer, 3 filler), typed `type_code`."""
    for ei in (order.obr.field(field_number), order.orc.field(field_number) if order.orc else None):
        found = ei and entity_identifier(ei, context, type_code)
        if found:
            return found
    return None


def report_upsert(order: Order, key: dict, results: list[Upsert], links: dict, shared: SharedUpserts) -> Upsert:
    """OBR-2/3 identifiers, OBR-4 code, OBR-7/8 effective time, OBR-22 issued, OBR-24 category, OBR-25 status, OBR-32
    results interpreter, OBR-34/35 performers (IG OBR[DiagnosticReport])."""
    context = shared.context
    obr = order.obr
    start, end = date_time(obr.field(7), context), date_time(obr.field(8), context)
    identifiers = [key] + [found for number, code in ((3, "FILL"), (2, "PLAC")) if (found := order_number(order, number, code, context)) and found != key]
    body = compact({
        "resourceType": "DiagnosticReport",
        "identifier": identifiers,
        **status(obr.field(25), REPORT_STATUS, context),
        "category": [category] if (category := codeable_concept(obr.field(24), "0074")) else [],
        "code": service_code(obr.field(4), context),
        **links,
        "effectivePeriod": compact({"start": start, "end": end}) if end else None,
        "effectiveDateTime": None if end else start,
        "issued": instant(obr.field(22), context),
        "performer": [found for number in (34, 35) for ndl in obr.repetitions(number) if (found := interpreter_reference(ndl, shared))],
        "resultsInterpreter": [found for ndl in obr.repetitions(32) if (found := interpreter_reference(ndl, shared))],
        "result": [reference(result) for result in results],
    })
    return upsert_by_identifier(body, key)


def observation_upsert(order: Order, obx: SegmentView, notes: list[SegmentView], order_key_: dict, occurrence: int, links: dict,
                       shared: SharedUpserts) -> Upsert:
    """IG OBX[Observation]: OBX-3 code, OBX-5 value of type OBX-2 with OBX-6 units, OBX-7 reference range, OBX-8
    interpretation, OBX-11 status, OBX-14 effective time, OBX-15/23 performing organization, OBX-16 responsible
    observer, OBX-17 method, OBX-18 device, OBX-19 analysis time, OBX-20 body site, OBX-21 identifier; NTE notes."""
    context = shared.context
    code = required_concept(obx.field(3), "the observation identifier")
    effective = date_time(obx.field(14), context) or (date_time(order.obr.field(7), context) if order.obr else None)
    key = result_key(obx, order_key_, effective or context.message_time, occurrence, context)
    analysed = date_time(obx.field(19), context)
    body = compact({
        "resourceType": "Observation",
        "identifier": [key],
        "extension": [{"url": EXTENSION + "observation-analysis-date-time", "valueDateTime": analysed}] if analysed else [],
        **status(obx.field(11), OBSERVATION_STATUS, context),
        "code": code,
        **links,
        "effectiveDateTime": effective,
        "performer": performers(obx, shared),
        **observation_value(obx, context),
        "interpretation": [found for rep in obx.repetitions(8) if (found := mapped_concept(rep, INTERPRETATION, context))],
        "note": [found for nte in notes if (found := note(nte, shared))],
        "bodySite": codeable_concept(obx.field(20)),
        "method": codeable_concept(obx.field(17)),
        "device": {"identifier": device} if (device := entity_identifier(obx.field(18), context, "")) else None,
        "referenceRange": reference_ranges(obx),
    })
    return upsert_by_identifier(body, key)


def result_key(obx: SegmentView, order_key_: dict, moment: str, occurrence: int, context: MessageContext) -> dict:
    """OBX-21 when sent (typed FILL, IG); else the order number / OBX-3 code [/ OBX-4 sub-id] [/ #occurrence from the
    second on], and for a result without an order also / its time (OBX-14, else the message's, MSH-7): yesterday's
    heart rate is not today's."""
    own = entity_identifier(obx.field(21), context, "FILL")
    if own:
        return own
    code, sub_id = obx.field(3).required(1, "an observation identifier code"), obx.field(4)()
    again = f"#{occurrence}" if occurrence > 1 else ""
    if order_key_.get("system") == RESULT_SYSTEM:
        return composite_key(RESULT_SYSTEM, order_key_["value"], code, sub_id, moment, again)
    return compact({"system": order_key_.get("system"), "value": "/".join(part for part in (order_key_["value"], code, sub_id, again) if part)})


def performers(obx: SegmentView, shared: SharedUpserts) -> list[dict]:
    """OBX-16 responsible observers (Practitioners), OBX-23 performing organization (with OBX-24 its address), else
    OBX-15 producer's id."""
    found = [found for xcn in obx.repetitions(16) if (found := practitioner_reference(xcn, shared))]
    organization = organization_reference(obx.field(23), shared, obx.field(24)) or (
        {"display": obx.field(15)(2) or obx.field(15)()} if obx.field(15)() else None)
    return found + ([organization] if organization else [])


def note(nte: SegmentView, shared: SharedUpserts) -> dict | None:
    """NTE-3 comment (repetitions as lines), NTE-5 entered by, NTE-6 entered at (IG NTE[Observation])."""
    text = "\n".join(value.text().replace("\r\n", "\n").replace("\r", "\n") for value in nte.repetitions(3)).strip()
    if not text:
        return None
    author = practitioner_reference(nte.field(5), shared)
    author_element = {"authorReference": author} if author and "reference" in author else {"authorString": author["display"]} if author else {}
    return compact({**author_element, "time": date_time(nte.field(6), shared.context), "text": text})


def service_code(cwe: FieldValue, context: MessageContext) -> dict:
    """OBR-4, which R4 requires of a report: when it is empty, the data-absent-reason code unknown, with a warning."""
    concept = codeable_concept(cwe)
    if concept is None:
        context.lenient(cwe.error("the universal service identifier is empty: the report's code is unknown", 101))
        return {"coding": [{"system": DATA_ABSENT_REASON, "code": "unknown", "display": "Unknown"}]}
    return concept


def required_concept(cwe: FieldValue, what: str) -> dict:
    concept = codeable_concept(cwe)
    if concept is None:
        raise cwe.error(f"{what} is required", 101)
    return concept


def status(value: FieldValue, table_, context: MessageContext) -> dict:
    """A required FHIR status from OBX-11 or OBR-25; an empty or unknown one is `unknown` (the code kept), warned about."""
    if not value():
        context.lenient(value.error(f"a status is required ({table_.described()}): read as unknown", 101))
        return {"status": "unknown"}
    code, original = required_code(value, table_, context, "unknown")
    return compact({"status": code, "_status": original})


def observation_value(obx: SegmentView, context: MessageContext) -> dict:
    """OBX-5 as the value[x] its type OBX-2 calls for (IG OBX[Observation] rows for OBX-5); OBX-5 and OBX-2 identify
    what was observed, so a value that breaks its type refuses the message."""
    values = [rep for rep in obx.repetitions(5) if rep.has_content()]
    if not values:
        return {}
    value_type = obx.field(2).required(1, "a value type (OBX-5 is valued)").upper()
    if value_type in UNMAPPED_VALUE_TYPES:
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT_REASON, "code": "unsupported"}]}}
    if value_type not in VALUE_MAPPERS:
        raise obx.field(2).error(f"{quoted(obx.field(2)())} is not a value type of HL7 table 0125", 103)
    return VALUE_MAPPERS[value_type](values, obx.field(6), context)


def numeric_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    return {"valueQuantity": quantity(number(values[0], 1), units)}


def structured_numeric_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    return structured_numeric(values[0], units)


def coded_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    return {"valueCodeableConcept": codeable_concept(values[0])}


def date_time_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    return {"valueDateTime": date_time(values[0], context, strict=True)}


def time_of_day_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    return {"valueTime": time_value(values[0], context, strict=True)}


def period_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """DR: range start ^ range end, each a DTM."""
    return {"valuePeriod": compact({"start": date_time(values[0], context, 1, strict=True), "end": date_time(values[0], context, 2, strict=True)})}


def numeric_range_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """NR: low ^ high."""
    low, high = (values[0](component) for component in (1, 2))
    return {"valueRange": compact({"low": quantity(number(values[0], 1), units) if low else None,
                                   "high": quantity(number(values[0], 2), units) if high else None})}


def text_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """ST/TX/FT, repetitions as lines; python-hl7 turns \\.br\\ into \\r, which FHIR strings carry as \\n."""
    return {"valueString": "\n".join(value.text().replace("\r\n", "\n").replace("\r", "\n") for value in values)}


def identifier_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """ID and IS: a code of some table, as text."""
    return {"valueString": values[0]()}


def encapsulated_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """ED (source application ^ type of data ^ subtype ^ encoding ^ data) as the R5 valueAttachment extension (IG),
    with the media type of ED.3 (else of ED.2). Base64 (without the line breaks and spaces senders wrap it with, and
    with the padding they leave off), Hex and A (plain text) data become Base64; data that is none of them, or does not
    decode, is left out with a warning (dataAbsentReason error)."""
    ed = values[0]
    data = attachment_data(ed, context)
    if data is None:
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT_REASON, "code": "error"}]}}
    media = MEDIA_TYPES.get(ed(3).upper()) or ("text/plain" if ed(2).upper() == "TEXT" else "application/octet-stream")
    return attachment({"contentType": media, "data": data})


def attachment_data(ed: FieldValue, context: MessageContext) -> str | None:
    encoding, text = ed(4).upper(), ed(5)
    try:
        if encoding == "BASE64":
            padded = "".join(text.split())
            padded += "=" * (-len(padded) % 4)
            return base64.b64encode(base64.b64decode(padded, validate=True)).decode() if padded else None
        if encoding == "HEX":
            return base64.b64encode(bytes.fromhex("".join(text.split()))).decode() if text else None
        if encoding == "A":
            return base64.b64encode(text.encode()).decode() if text else None
    except ValueError:
        pass
    context.lenient(ed.error(f"the encapsulated data ({quoted(encoding, 20)}: {quoted(text, 40)}) is not Base64, Hex or A text: left out", 102))
    return None


def reference_pointer_value(values: list[FieldValue], units: FieldValue, context: MessageContext) -> dict:
    """RP (pointer ^ application id ^ type of data ^ subtype) as the R5 valueAttachment extension (IG): its url."""
    rp = values[0]
    return attachment(compact({"url": rp(1), "contentType": MEDIA_TYPES.get(rp(4).upper())})) if rp(1) else {}


def attachment(value: dict) -> dict:
    return {"extension": [{"url": VALUE_ATTACHMENT, "valueAttachment": value}]}


VALUE_MAPPERS = {  # OBX-2 (table 0125) -> its value[x]
    "NM": numeric_value, "SN": structured_numeric_value,
    "CE": coded_value, "CWE": coded_value, "CNE": coded_value, "CF": coded_value,
    "DT": date_time_value, "DTM": date_time_value, "TS": date_time_value, "TM": time_of_day_value, "DR": period_value,
    "NR": numeric_range_value, "ST": text_value, "TX": text_value, "FT": text_value, "ID": identifier_value, "IS": identifier_value,
    "ED": encapsulated_value, "RP": reference_pointer_value,
}


def number(value: FieldValue, component: int) -> int | float:
    text = value(component)
    if not NUMBER.fullmatch(text):
        raise value.error(f"{quoted(text)} is not a number", 102)
    return json_number(text)


def json_number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def structured_numeric(sn: FieldValue, units: FieldValue) -> dict:
    """SN (comparator, number, separator/suffix, number): Quantity, Range (-), Ratio (: or /), else a string."""
    comparator, separator = sn(1), sn(3)
    if comparator == "<>" or comparator not in COMPARATORS or separator not in ("", "-", ":", "/"):
        return {"valueString": " ".join(part for part in (sn(1), sn(2), sn(3), sn(4), unit_text(units)) if part)}
    first = number(sn, 2)
    if separator == "-":
        return {"valueRange": {"low": quantity(first, units), "high": quantity(number(sn, 4), units)}}
    if separator:
        return {"valueRatio": {"numerator": quantity(first, units), "denominator": quantity(number(sn, 4), units)}}
    return {"valueQuantity": compact({**quantity(first, units), "comparator": COMPARATORS[comparator]})}


def quantity(value: int | float, units: FieldValue) -> dict:
    """A number with OBX-6 units (IG CWE[Quantity]): UCUM-coded when CWE.3 says UCUM or the unit is common UCUM."""
    code, system_name = units(1), units(3)
    if system_name.upper() == "UCUM" or (not system_name and code in COMMON_UCUM_UNITS):
        system = UCUM
    else:
        system = coding_system(system_name) if code and system_name else None
    return compact({"value": value, "unit": unit_text(units), "system": system, "code": code if system else None})


def unit_text(units: FieldValue) -> str:
    return units(2) or units(1)


def reference_ranges(obx: SegmentView) -> list[dict]:
    """OBX-7 as text; a plain "low-high" also as low and high in OBX-6 units (numeric results only)."""
    text = obx.field(7)()
    if not text:
        return []
    bounds = RANGE.fullmatch(text)
    if not bounds or obx.field(2)().upper() not in ("NM", "SN"):
        return [{"text": text}]
    low, high = (quantity(json_number(bound), obx.field(6)) for bound in bounds.groups())
    return [{"low": low, "high": high, "text": text}]


ORU_EVENTS = {"R01": MessageEvent(("ORU_R01",), ("PID",), oru_upserts)}
