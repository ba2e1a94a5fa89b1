"""HL7 tables and the IG's ConceptMaps (mappings/codesystems) from their codes to FHIR's.

A coded field with a code outside its HL7 table is read liberally: the code is kept (as a
coding in the sender's own code system, or as the originalText of a FHIR code that could not
hold it) and a warning (103) names the field; the message is applied all the same.
"""
from dataclasses import dataclass, field

from interop.hl7v2.mapping.datatypes import V2_TABLE, MessageContext, code_of, codeable_concept, coding_system, compact, original_text
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.text import quoted

V3 = "http://terminology.hl7.org/CodeSystem/v3-"


@dataclass(frozen=True)
class Table:
    """An HL7 table: every code it has had in v2.3 to v2.8, and the FHIR codes the IG's ConceptMap gives them."""

    number: str  # "0001"
    name: str  # "administrative sex"
    codes: frozenset[str]
    to_fhir: dict = field(default_factory=dict)  # v2 code -> FHIR code, or (system, code, display) for a Coding

    def knows(self, code: str) -> bool:
        return code in self.codes

    def described(self) -> str:
        return f"{self.name} (HL7 table {self.number})"


def table(number: str, name: str, codes: str, to_fhir: dict | None = None) -> Table:
    return Table(number, name, frozenset(codes.split()), to_fhir or {})


ADMINISTRATIVE_SEX = table("0001", "administrative sex", "F M O U A N X", {
    "F": "female", "M": "male", "O": "other", "U": "unknown", "A": "other", "N": "other", "X": "other",
})
MARITAL_STATUS = table("0002", "marital status", "A B C D E G I M N O P R S T U W", {
    "A": (V3 + "MaritalStatus", "L", "Legally Separated"), "D": (V3 + "MaritalStatus", "D", "Divorced"),
    "M": (V3 + "MaritalStatus", "M", "Married"), "S": (V3 + "MaritalStatus", "S", "Never Married"),
    "W": (V3 + "MaritalStatus", "W", "Widowed"), "C": (V3 + "MaritalStatus", "C", "Common Law"),
    "G": (V3 + "MaritalStatus", "T", "Domestic partner"), "P": (V3 + "MaritalStatus", "T", "Domestic partner"),
    "R": (V3 + "MaritalStatus", "T", "Domestic partner"), "E": (V3 + "MaritalStatus", "L", "Legally Separated"),
    "N": (V3 + "MaritalStatus", "A", "Annulled"), "I": (V3 + "MaritalStatus", "I", "Interlocutory"),
    "B": (V3 + "MaritalStatus", "U", "unmarried"), "U": (V3 + "NullFlavor", "UNK", "unknown"),
    "O": (V3 + "NullFlavor", "OTH", "other"), "T": (V3 + "NullFlavor", "NAVU", "Not available"),
})
PATIENT_CLASS = table("0004", "patient class", "B C E I N O P R U", {
    "E": (V3 + "ActCode", "EMER", "emergency"), "I": (V3 + "ActCode", "IMP", "inpatient encounter"),
    "O": (V3 + "ActCode", "AMB", "ambulatory"), "P": (V3 + "ActCode", "PRENC", "pre-admission"),
    "R": (V2_TABLE + "0004", "R", "Recurring patient"), "B": (V2_TABLE + "0004", "B", "Obstetrics"),
    "C": (V2_TABLE + "0004", "C", "Commercial Account"), "N": (V2_TABLE + "0004", "N", "Not Applicable"),
    "U": (V2_TABLE + "0004", "U", "Unknown"),
})
RELATIONSHIP = table(
    "0063", "relationship",
    "ASC BRO CGV CHD DEP DOM EMC EME EMR EXF FCH FND FTH GCH GRD GRP MGR MTH NCH NON OAD OTH OWN PAR SCH SEL SIB SIS SPO TRA UNK WRD",
    {
        **{code: (V3 + "RoleCode", target, None) for code, target in {
            "SEL": "ONESELF", "SPO": "SPS", "DOM": "SIGOTHR", "CHD": "CHILD", "GCH": "GRNDCHILD", "NCH": "NCHILD",
            "SCH": "STPCHLD", "FCH": "CHLDFOST", "PAR": "PRN", "MTH": "MTH", "FTH": "FTH", "GRP": "GRPRN", "EXF": "EXT",
            "SIB": "SIB", "BRO": "BRO", "SIS": "SIS", "FND": "FRND"}.items()},
        **{code: (V2_TABLE + "0131", target, None) for code, target in {"EMR": "E", "EMC": "C", "UNK": "U", "OTH": "O"}.items()},
    },
)
INTERPRETATION = table(
    "0078", "abnormal flags",
    "< > A AA AC B CAR D DET E EX EXP H HH HM HU I IE IND L LL LU MS N NCL ND NEG NR NS POS QCF R RR S SDD SYN-R SYN-S TOX U VS W WR",
    {code: (V3 + "ObservationInterpretation", code, None) for code in (
        "< > A AA B CAR D DET E EX EXP H HH HU I IE IND L LL LU MS N NCL ND NEG NR NS POS R RR S SDD SYN-R SYN-S U VS W WR"
    ).split()},
)
OBSERVATION_STATUS = table("0085", "observation result status", "A B C D F I N O P R S U V W X", {
    "A": "amended", "B": "amended", "C": "corrected", "D": "entered-in-error", "W": "entered-in-error",
    "F": "final", "U": "final", "V": "final", "P": "preliminary", "R": "preliminary", "S": "preliminary",
    "I": "registered", "O": "registered", "X": "cancelled", "N": "cancelled",
})  # IG for A C D F P W X; the rest ours: FHIR requires a status
REPORT_STATUS = table("0123", "result status", "A C F I M N O P R S X Y Z", {
    "O": "registered", "I": "registered", "S": "registered", "A": "partial", "P": "preliminary", "R": "partial",
    "N": "partial", "C": "corrected", "M": "corrected", "F": "final", "X": "cancelled",
})  # IG; A, M, N ours
ALLERGEN_TYPE = table("0127", "allergen type", "AA DA EA FA LA MA MC PA", {
    "DA": "medication", "FA": "food", "EA": "environment", "AA": "biologic", "PA": "environment", "LA": "environment",
})
ALLERGY_SEVERITY = table("0128", "allergy severity", "MI MO SV U")
CRITICALITY = {"SV": "high", "MI": "low", "U": "unable-to-assess"}  # IG AllergySeverity[criticality]; U ours
REACTION_SEVERITY = {"SV": "severe", "MO": "moderate", "MI": "mild"}
CONTACT_ROLE = table("0131", "contact role", "C E F I N O S U")
YES_NO = table("0136", "yes/no indicator", "Y N", {"Y": True, "N": False})
YES_NO_WORDS = {"YES": True, "NO": False, "TRUE": True, "FALSE": False, "T": True, "F": False, "1": True, "0": False}
DIAGNOSIS_TYPE = table("0052", "diagnosis type", "A F W", {
    "A": ("http://terminology.hl7.org/CodeSystem/diagnosis-role", "AD", "Admission diagnosis"),
})
BED_STATUS = table("0116", "bed status", "C H I K O U")  # IG BedStatus: identity to v2-0116
PRIORITY = table("0217", "visit priority code", "1 2 3", {
    "1": (V3 + "ActPriority", "EM", "emergency"), "2": (V3 + "ActPriority", "UR", "urgent"), "3": (V3 + "ActPriority", "EL", "elective"),
})


def sent_code(value: FieldValue, component: int = 1) -> str:
    return value(component).upper()


def required_code(value: FieldValue, table_: Table, context: MessageContext, fallback: str) -> tuple[str, dict | None]:
    """A FHIR code bound to a required value set, mapped from a coded field; a code outside the table, or one FHIR
    cannot hold, is `fallback` with the sent code kept as originalText (the element's `_` twin), and warned about.
    An empty field is `fallback` with no warning left to give: the caller decides whether that may be."""
    code = sent_code(value)
    if code in table_.to_fhir:
        return table_.to_fhir[code], None
    if code:
        context.lenient(value.error(f"{quoted(value())} is not a code of {table_.described()} that maps to FHIR: read as {fallback}", 103))
    return fallback, original_text(value()) if code else None


def mapped_concept(cwe: FieldValue, table_: Table, context: MessageContext) -> dict | None:
    """A CWE of an HL7 table as a CodeableConcept: the IG's ConceptMap coding for a table code (the v2 coding when the
    map has none), a code outside the table as a coding of the sender's own system (warned about), and a code of
    another named coding system (CWE.3) as it is."""
    code, system_name = sent_code(cwe), cwe(3)
    if not code or (system_name and coding_system(system_name) != V2_TABLE + table_.number):
        return codeable_concept(cwe, table_.number)
    concept = codeable_concept(cwe, table_.number)
    if code in table_.to_fhir:
        system, fhir_code, display = table_.to_fhir[code]
        first = compact({"system": system, "code": fhir_code, "display": cwe(2) or display})
    elif table_.knows(code):
        first = compact({"system": V2_TABLE + table_.number, "code": code_of(cwe), "display": cwe(2)})
    else:
        context.lenient(cwe.error(f"{quoted(cwe())} is not a code of {table_.described()}: kept as the sender's own code", 103))
        first = compact({"system": context.local_system(table_.number), "code": code_of(cwe), "display": cwe(2)})
    return compact({**concept, "coding": [first, *concept.get("coding", [])[1:]]})


def table_coding(value: FieldValue, table_: Table, context: MessageContext) -> dict | None:
    """One Coding (Encounter.class, modeOfArrival) from a coded field, as mapped_concept reads it."""
    concept = mapped_concept(value, table_, context)
    return concept["coding"][0] if concept and concept.get("coding") else None


def yes_no(value: FieldValue, context: MessageContext) -> tuple[bool | None, dict | None]:
    """An ID of table 0136 as a boolean; YES, NO, TRUE, FALSE, 1 and 0 are read too, with a warning; anything else is
    no boolean, its text kept as originalText, with a warning."""
    code = sent_code(value)
    if not code:
        return None, None
    if code in YES_NO.to_fhir:
        return YES_NO.to_fhir[code], None
    if code in YES_NO_WORDS:
        read = YES_NO_WORDS[code]
        context.lenient(value.error(f"{quoted(value())} is not Y or N ({YES_NO.described()}): read as {'Y' if read else 'N'}", 103))
        return read, None
    context.lenient(value.error(f"{quoted(value())} is not Y or N ({YES_NO.described()}): not mapped", 103))
    return None, original_text(value())
