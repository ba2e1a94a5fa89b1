"""ORU^R01 results: one Observation per OBX and one DiagnosticReport per OBR (IG OBR[DiagnosticReport], OBX[Observation]).

Business keys: a report is its filler order number (OBR-3, else ORC-3); an observation is that
filler number with OBX-3's code and OBX-4's sub-id, which v2 requires to be unique under an OBR.
OBX-1 is not used: it is a position, and a correction message that resends one result numbers it 1.
"""
import re
from dataclasses import dataclass, field

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import (CODING_SYSTEMS, MessageDefaults, codeable_concept, coding_system, compact,
                                             date_time, entity_identifier, instant)
from interop.hl7v2.mapping.encounter import RESULT_CONTEXT, encounter_upsert, has_visit_number
from interop.hl7v2.mapping.fields import FieldValue, SegmentView, first_segment, patient_groups
from interop.hl7v2.mapping.patient import patient_upsert
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import reference, upsert_by_identifier

ORU_EVENTS = {"R01": "ORU_R01"}
UCUM = CODING_SYSTEMS["UCUM"]
REPORT_STATUSES = {  # OBR-25 (table 0123) -> DiagnosticReport.status (IG ResultStatus[Non-Queries]; A, M, N ours)
    "O": "registered", "I": "registered", "S": "registered", "A": "partial", "P": "preliminary", "R": "partial",
    "N": "partial", "C": "corrected", "M": "corrected", "F": "final", "X": "cancelled",
}
OBSERVATION_STATUSES = {  # OBX-11 (table 0085) -> Observation.status (IG; B, I, N, O, R, S, U, V ours: FHIR needs one)
    "A": "amended", "B": "amended", "C": "corrected", "D": "entered-in-error", "W": "entered-in-error",
    "F": "final", "U": "final", "V": "final", "P": "preliminary", "R": "preliminary", "S": "preliminary",
    "I": "registered", "O": "registered", "X": "cancelled", "N": "cancelled",
}
UNMAPPED_VALUE_TYPES = {  # in table 0125 but not mapped yet: the Observation gets dataAbsentReason "unsupported"
    "AD", "CF", "CK", "CN", "CP", "CX", "DR", "ED", "EI", "ID", "IS", "MA", "MO", "NA", "NR", "PN", "RP", "TM", "TN",
    "XAD", "XCN", "XON", "XPN", "XTN",
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
INTERPRETATION_TABLE = "0078"
DIAGNOSTIC_SECTION_TABLE = "0074"


@dataclass
class Order:
    """One ORDER_OBSERVATION group: its optional ORC, its OBR and the OBX results under it."""

    orc: SegmentView | None
    obr: SegmentView
    results: list[SegmentView] = field(default_factory=list)


def oru_upserts(segments: list[SegmentView], defaults: MessageDefaults, event: str) -> list[Upsert]:
    """Practitioners, then per patient group its Patient, Encounter, Observations, and DiagnosticReports."""
    shared = SharedUpserts(defaults)
    groups = [patient_result(group, defaults, shared) for group in patient_groups(segments)]
    return [*shared.upserts, *(upsert for group in groups for upsert in group)]


def patient_result(group: list[SegmentView], defaults: MessageDefaults, shared: SharedUpserts) -> list[Upsert]:
    patient = patient_upsert(group, shared)
    context = {"subject": reference(patient)}
    pv1 = first_segment(group, "PV1")
    encounters = []
    if has_visit_number(pv1):
        encounters.append(encounter_upsert(pv1, context["subject"], shared, RESULT_CONTEXT))
        context["encounter"] = reference(encounters[0])
    observations, reports = [], []
    for order in orders(group):
        filler = filler_identifier(order, defaults)
        results = [observation_upsert(order, obx, filler, context, defaults) for obx in order.results]
        observations.extend(results)
        reports.append(report_upsert(order, filler, results, context, defaults))
    return [patient, *encounters, *observations, *reports]


def orders(group: list[SegmentView]) -> list[Order]:
    """OBR groups in order: an ORC applies to the OBR after it, an OBX to the OBR before it (else 100)."""
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
                raise segment.error("An OBX comes before any OBR: its order is unknown.", 100)
            found[-1].results.append(segment)
    return found


def filler_identifier(order: Order, defaults: MessageDefaults) -> dict:
    """OBR-3, else ORC-3, typed FILL: the report's business key."""
    found = order_number(order, 3, "FILL", defaults)
    if found is None:
        raise order.obr.field(3).error("no filler order number (OBR-3 or ORC-3): the results cannot be matched", 101)
    return found


def order_number(order: Order, field_number: int, type_code: str, defaults: MessageDefaults) -> dict | None:
    """The order number in OBR's field, else in the ORC's same field (2 placer, 3 filler), typed `type_code`."""
    for ei in (order.obr.field(field_number), order.orc.field(field_number) if order.orc else None):
        found = ei and entity_identifier(ei, defaults, type_code)
        if found:
            return found
    return None


def report_upsert(order: Order, filler: dict, results: list[Upsert], context: dict, defaults: MessageDefaults) -> Upsert:
    obr = order.obr
    start, end = date_time(obr.field(7), defaults), date_time(obr.field(8), defaults)
    body = compact({
        "resourceType": "DiagnosticReport",
        "identifier": [found for found in (filler, order_number(order, 2, "PLAC", defaults)) if found],
        "status": coded_status(obr.field(25), REPORT_STATUSES, "result status (HL7 table 0123)"),
        "category": [category] if (category := codeable_concept(obr.field(24), DIAGNOSTIC_SECTION_TABLE)) else [],
        "code": required_concept(obr.field(4), "the universal service identifier"),
        **context,
        "effectivePeriod": compact({"start": start, "end": end}) if end else None,
        "effectiveDateTime": None if end else start,
        "issued": instant(obr.field(22), defaults),
        "result": [reference(result) for result in results],
    })
    return upsert_by_identifier(body, filler)


def observation_upsert(order: Order, obx: SegmentView, filler: dict, context: dict, defaults: MessageDefaults) -> Upsert:
    code = required_concept(obx.field(3), "the observation identifier")
    key = compact({"system": filler.get("system"), "value": observation_key(filler["value"], obx)})
    body = compact({
        "resourceType": "Observation",
        "identifier": [key],
        "status": coded_status(obx.field(11), OBSERVATION_STATUSES, "observation result status (HL7 table 0085)"),
        "code": code,
        **context,
        "effectiveDateTime": date_time(obx.field(14), defaults) or date_time(order.obr.field(7), defaults),
        **observation_value(obx, defaults),
        "interpretation": [found for rep in obx.repetitions(8) if (found := codeable_concept(rep, INTERPRETATION_TABLE))],
        "referenceRange": reference_ranges(obx),
    })
    return upsert_by_identifier(body, key)


def observation_key(filler: str, obx: SegmentView) -> str:
    """filler/OBX-3 code[/OBX-4 sub-id]."""
    sub_id = obx.field(4)()
    return "/".join(part for part in (filler, obx.field(3).required(1, "an observation identifier code"), sub_id) if part)


def required_concept(cwe: FieldValue, what: str) -> dict:
    concept = codeable_concept(cwe)
    if concept is None:
        raise cwe.error(f"{what} is required", 101)
    return concept


def coded_status(value: FieldValue, statuses: dict[str, str], table: str) -> str:
    code = value.required(1, "a status").upper()
    if code not in statuses:
        raise value.error(f"'{code}' is not a {table} code we can map", 103)
    return statuses[code]


def observation_value(obx: SegmentView, defaults: MessageDefaults) -> dict:
    """OBX-5 as the value[x] its type OBX-2 calls for (IG OBX[Observation] rows for OBX-5)."""
    values = [rep for rep in obx.repetitions(5) if rep.has_content()]
    if not values:
        return {}
    value_type = obx.field(2).required(1, "a value type (OBX-5 is valued)").upper()
    if value_type in UNMAPPED_VALUE_TYPES:
        return {"dataAbsentReason": {"coding": [{"system": DATA_ABSENT_REASON, "code": "unsupported"}]}}
    if value_type not in VALUE_MAPPERS:
        raise obx.field(2).error(f"'{value_type}' is not a value type of HL7 table 0125", 103)
    return VALUE_MAPPERS[value_type](values, obx.field(6), defaults)


def numeric_value(values: list[FieldValue], units: FieldValue, defaults: MessageDefaults) -> dict:
    return {"valueQuantity": quantity(number(values[0], 1), units)}


def structured_numeric_value(values: list[FieldValue], units: FieldValue, defaults: MessageDefaults) -> dict:
    return structured_numeric(values[0], units)


def coded_value(values: list[FieldValue], units: FieldValue, defaults: MessageDefaults) -> dict:
    return {"valueCodeableConcept": codeable_concept(values[0])}


def date_time_value(values: list[FieldValue], units: FieldValue, defaults: MessageDefaults) -> dict:
    return {"valueDateTime": date_time(values[0], defaults)}


def text_value(values: list[FieldValue], units: FieldValue, defaults: MessageDefaults) -> dict:
    """ST/TX/FT, repetitions as lines; python-hl7 turns \\.br\\ into \\r, which FHIR strings carry as \\n."""
    return {"valueString": "\n".join(value.text().replace("\r\n", "\n").replace("\r", "\n") for value in values)}


VALUE_MAPPERS = {  # OBX-2 (table 0125) -> its value[x]
    "NM": numeric_value, "SN": structured_numeric_value, "CE": coded_value, "CWE": coded_value, "CNE": coded_value,
    "DT": date_time_value, "DTM": date_time_value, "TS": date_time_value, "ST": text_value, "TX": text_value, "FT": text_value,
}


def number(value: FieldValue, component: int) -> int | float:
    text = value(component)
    if not NUMBER.fullmatch(text):
        raise value.error(f"'{text}' is not a number", 102)
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
