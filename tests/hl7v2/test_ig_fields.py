"""The HL7 v2-to-FHIR IG's segment maps, field by field: each case sends one field as the standard defines it and checks
the FHIR element the IG maps it to (mappings/segments, mappings/datatypes, mappings/codesystems). Pure: no database."""
import hl7
import pytest

from app.model.validation import validate_resource
from interop.hl7v2.mapping import IdentifierChange, Upsert, map_message

MSH = "MSH|^~\\&|APP|NORTH|EHR|CENTRAL|20250102030405+0100||{type}|C1|P|2.5.1"
V2 = "http://terminology.hl7.org/CodeSystem/v2-"
V3 = "http://terminology.hl7.org/CodeSystem/v3-"
EXT = "http://hl7.org/fhir/StructureDefinition/"


def segment(segment_id: str, fields: dict[int, str]) -> str:
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([segment_id, *values])


PID = {1: "1", 3: "9001^^^NORTH^MR", 5: "Berg^Anna"}
PV1 = {2: "I", 19: "V1"}
OBR = {1: "1", 3: "F1^LAB", 4: "24323-8^Panel^LN", 7: "20250102", 25: "F"}
OBX = {1: "1", 2: "NM", 3: "2345-7^Glucose^LN", 5: "5.5", 6: "mmol/L^^UCUM", 11: "F"}


def mapped(type_: str, *segments: str):
    message = hl7.parse("\r".join([MSH.format(type=type_), *segments]))
    result = map_message(message)
    for instruction in result.instructions:
        if isinstance(instruction, Upsert):
            validate_resource(instruction.combine({}, instruction.body) if instruction.combine else instruction.body)
    return result


def resource(type_name: str, message_type: str, *segments: str) -> dict:
    (found,) = [upsert.body for upsert in mapped(message_type, *segments).instructions if isinstance(upsert, Upsert) and upsert.type == type_name]
    return found


def patient(**fields: str) -> dict:
    return resource("Patient", "ADT^A28^ADT_A05", segment("PID", {**PID, **{int(k[1:]): v for k, v in fields.items()}}))


def encounter(pv1: dict, pv2: dict | None = None, event: str = "ADT^A01^ADT_A01") -> dict:
    segments = [segment("PID", PID), segment("PV1", {**PV1, **pv1})] + ([segment("PV2", pv2)] if pv2 else [])
    return resource("Encounter", event, *segments)


def observation(obx: dict, *more: str) -> dict:
    return resource("Observation", "ORU^R01^ORU_R01", segment("PID", PID), segment("OBR", OBR), segment("OBX", {**OBX, **obx}), *more)


def report(obr: dict) -> dict:
    return resource("DiagnosticReport", "ORU^R01^ORU_R01", segment("PID", PID), segment("OBR", {**OBR, **obr}), segment("OBX", OBX))


# PID[Patient]

@pytest.mark.parametrize("fields, element, expected", [
    ({"f2": "A-1"}, "identifier", {"value": "A-1"}),  # no authority: not the MRNs' system, where it would match an MRN
    ({"f2": "A-1^^^EXT"}, "identifier", {"system": "urn:ehr:hl7v2:authority:EXT", "value": "A-1"}),
    ({"f4": "ALT-1^^^OTHER"}, "identifier", {"system": "urn:ehr:hl7v2:authority:OTHER", "value": "ALT-1"}),
    ({"f19": "123-45-6789"}, "identifier", {"type": {"coding": [{"system": V2 + "0203", "code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}),
    ({"f20": "D123^MA^20301231"}, "identifier", {"type": {"coding": [{"system": V2 + "0203", "code": "DL"}]}, "system": "urn:ehr:hl7v2:driver-licence:MA", "value": "D123", "period": {"end": "2030-12-31"}}),
])
def test_pid_identifiers(fields, element, expected):
    assert expected in patient(**fields)[element]


@pytest.mark.parametrize("fields, expected", [
    ({"f6": "Schmidt^Eva"}, {"url": EXT + "patient-mothersMaidenName", "valueString": "Schmidt"}),
    ({"f17": "CAT^Catholic^HL70006"}, {"url": EXT + "patient-religion", "valueCodeableConcept": {"coding": [{"system": V2 + "0006", "code": "CAT", "display": "Catholic"}]}}),
    ({"f23": "Springfield General"}, {"url": EXT + "patient-birthPlace", "valueAddress": {"text": "Springfield General"}}),
    ({"f26": "US^United States^ISO3166_1"}, {"url": EXT + "patient-citizenship", "extension": [{"url": "code", "valueCodeableConcept": {"coding": [{"system": "urn:ehr:hl7v2:codesystem:ISO3166_1", "code": "US", "display": "United States"}]}}]}),
    ({"f28": "DE^Germany"}, {"url": EXT + "patient-nationality", "extension": [{"url": "code", "valueCodeableConcept": {"coding": [{"system": V2 + "0212", "code": "DE", "display": "Germany"}]}}]}),
    ({"f35": "125097000^Goat^SCT"}, {"url": EXT + "patient-animal", "extension": [{"url": "species", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "125097000", "display": "Goat"}]}}]}),
])
def test_pid_extensions(fields, expected):
    assert expected in patient(**fields)["extension"]


@pytest.mark.parametrize("fields, expected", [
    ({"f7": "19800101"}, {"birthDate": "1980-01-01"}),
    ({"f7": "198001010730"}, {"birthDate": "1980-01-01", "_birthDate": {"extension": [{"url": EXT + "patient-birthTime", "valueDateTime": "1980-01-01T07:30:00+01:00"}]}}),
    ({"f8": "A"}, {"gender": "other"}),
    ({"f8": "N"}, {"gender": "other"}),
    ({"f16": "M^Married^HL70002"}, {"maritalStatus": {"coding": [{"system": V3 + "MaritalStatus", "code": "M", "display": "Married"}]}}),
    ({"f16": "U"}, {"maritalStatus": {"coding": [{"system": V3 + "NullFlavor", "code": "UNK", "display": "unknown"}]}}),
    ({"f15": "en^English^ISO639"}, {"communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en", "display": "English"}]}, "preferred": True}]}),
    ({"f24": "Y"}, {"multipleBirthBoolean": True}),
    ({"f24": "Y", "f25": "2"}, {"multipleBirthInteger": 2}),
    ({"f29": "202501011200"}, {"deceasedDateTime": "2025-01-01T12:00:00+01:00"}),
    ({"f30": "Y"}, {"deceasedBoolean": True}),
    ({"f11": "1 Main St^^Town^ST^12345", "f12": "Essex"}, {"address": [{"line": ["1 Main St"], "city": "Town", "district": "Essex", "state": "ST", "postalCode": "12345"}]}),
    ({"f13": "^PRN^PH^^^555^1234567", "f14": "^^PH^^^555^7654321"}, {"telecom": [
        {"system": "phone", "value": "(555) 1234567", "use": "home"}, {"system": "phone", "value": "(555) 7654321", "use": "work"}]}),
])
def test_pid_elements(fields, expected):
    assert expected.items() <= patient(**fields).items()


def test_pd1_general_practitioner_facility_disability_and_congregation():
    pd1 = segment("PD1", {3: "North Clinic^^^^^NORTH^XX^^^NC-1", 4: "77^Weber^Klaus", 6: "B^Blind^HL70295", 14: "St Mary"})
    result = mapped("ADT^A28^ADT_A05", segment("PID", PID), pd1).instructions
    (body,) = [upsert.body for upsert in result if isinstance(upsert, Upsert) and upsert.type == "Patient"]
    (organization,) = [upsert for upsert in result if upsert.type == "Organization"]
    assert organization.body["identifier"][0]["value"] == "NC-1" and organization.body["name"] == "North Clinic"
    assert body["generalPractitioner"][0] == {"reference": organization.local_ref, "display": "North Clinic"}
    assert body["generalPractitioner"][1]["display"] == "Klaus Weber"
    assert {"url": EXT + "patient-disability", "valueCodeableConcept": {"coding": [{"system": V2 + "0295", "code": "B", "display": "Blind"}]}} in body["extension"]
    assert {"url": EXT + "patient-congregation", "valueString": "St Mary"} in body["extension"]


# NK1[RelatedPerson] and NK1[Patient]

def test_nk1_person_fields_map_to_a_related_person():
    nk1 = segment("NK1", {1: "1", 2: "Berg^Olaf", 3: "FTH^Father^HL70063", 4: "1 Main St^^Town", 5: "^PRN^PH^^^555^1", 6: "^WPN^PH^^^555^2",
                          7: "N^Next-of-Kin^HL70131", 8: "20200101", 12: "NK-77^^^NORTH", 15: "M", 16: "19500101", 20: "de^German^ISO639", 37: "987-65-4321"})
    body = resource("RelatedPerson", "ADT^A01^ADT_A01", segment("PID", PID), nk1, segment("PV1", PV1))
    assert body["identifier"][0]["system"] == "urn:ehr:hl7v2:related-person"  # the patient's relation: keyed by both
    assert body["identifier"][1] == {"system": "urn:ehr:hl7v2:authority:NORTH", "value": "NK-77"}
    assert body["identifier"][2]["system"] == "http://hl7.org/fhir/sid/us-ssn"
    assert [coding["code"] for concept in body["relationship"] for coding in concept["coding"]] == ["FTH", "N"]
    assert body["relationship"][0]["coding"][0]["system"] == V3 + "RoleCode"
    assert (body["gender"], body["birthDate"], body["period"]) == ("male", "1950-01-01", {"start": "2020-01-01"})
    assert [telecom.get("use") for telecom in body["telecom"]] == ["home", "work"]
    assert body["communication"][0]["language"]["coding"][0]["code"] == "de"


def test_nk1_about_an_employer_is_a_contact_with_its_organization_not_a_related_person():
    nk1 = segment("NK1", {1: "1", 3: "EMR^Employer^HL70063", 13: "ACME^^^^^NORTH^XX^^^AC-1"})
    result = mapped("ADT^A01^ADT_A01", segment("PID", PID), nk1, segment("PV1", PV1)).instructions
    assert not [upsert for upsert in result if upsert.type == "RelatedPerson"]
    (body,) = [upsert.body for upsert in result if upsert.type == "Patient"]
    assert body["contact"][0]["organization"]["display"] == "ACME"


def test_pid21_is_the_mother():
    body = resource("RelatedPerson", "ADT^A28^ADT_A05", segment("PID", {**PID, 21: "M-1^^^NORTH^MR"}))
    assert (body["identifier"][1]["value"], body["relationship"][0]["coding"][0]["code"]) == ("M-1", "MTH")


def test_siblings_with_one_mother_have_a_mother_each():
    first = resource("RelatedPerson", "ADT^A28^ADT_A05", segment("PID", {**PID, 3: "BABY1^^^NORTH^MR", 21: "MOM^^^NORTH^MR"}))
    second = resource("RelatedPerson", "ADT^A28^ADT_A05", segment("PID", {**PID, 3: "BABY2^^^NORTH^MR", 21: "MOM^^^NORTH^MR"}))
    assert first["identifier"][0] != second["identifier"][0] and first["identifier"][1] == second["identifier"][1]


# PV1[Encounter], PV2[Encounter]

@pytest.mark.parametrize("pv1, element, expected", [
    ({2: "E"}, "class", {"system": V3 + "ActCode", "code": "EMER", "display": "emergency"}),
    ({2: "R"}, "class", {"system": V2 + "0004", "code": "R", "display": "Recurring patient"}),
    ({4: "U^Urgent^HL70007"}, "type", [{"coding": [{"system": V2 + "0007", "code": "U", "display": "Urgent"}]}]),
    ({10: "CAR"}, "serviceType", {"coding": [{"system": V2 + "0069", "code": "CAR"}]}),
    ({44: "202501020800", 45: "202501051200"}, "period", {"start": "2025-01-02T08:00:00+01:00", "end": "2025-01-05T12:00:00+01:00"}),
    ({5: "PRE-1"}, "hospitalization", {"preAdmissionIdentifier": {"system": "urn:ehr:hl7v2:authority:NORTH", "value": "PRE-1"}}),
    ({13: "R"}, "hospitalization", {"reAdmission": {"coding": [{"system": V2 + "0092", "code": "R"}]}}),
    ({14: "7^Emergency room"}, "hospitalization", {"admitSource": {"coding": [{"system": V2 + "0023", "code": "7", "display": "Emergency room"}]}}),
    ({15: "A2"}, "hospitalization", {"specialArrangement": [{"coding": [{"system": V2 + "0009", "code": "A2"}]}]}),
    ({16: "VIP"}, "hospitalization", {"specialCourtesy": [{"coding": [{"system": V2 + "0099", "code": "VIP"}]}]}),
    ({36: "01^Home"}, "hospitalization", {"dischargeDisposition": {"coding": [{"system": V2 + "0112", "code": "01", "display": "Home"}]}}),
    ({37: "SNF^Skilled nursing"}, "hospitalization", {"destination": {"display": "SNF"}}),
    ({38: "V^Vegetarian"}, "hospitalization", {"dietPreference": [{"coding": [{"system": V2 + "0114", "code": "V", "display": "Vegetarian"}]}]}),
    ({50: "ALT-9"}, "identifier", [{"type": {"coding": [{"system": V2 + "0203", "code": "VN"}]}, "system": "urn:ehr:hl7v2:authority:NORTH", "value": "V1"},
                                   {"system": "urn:ehr:hl7v2:authority:NORTH", "value": "ALT-9"}]),
])
def test_pv1_elements(pv1, element, expected):
    assert encounter(pv1)[element] == expected


def test_pv1_participants_by_role():
    body = encounter({7: "1^A", 8: "2^B", 9: "3^C", 17: "4^D", 52: "5^E"})
    assert [participant["type"][0]["coding"][0]["code"] for participant in body["participant"]] == ["ATND", "REF", "CON", "ADM", "PART"]


def test_pv1_locations_by_role_and_bed_status():
    upserts = mapped("ADT^A01^ADT_A01", segment("PID", PID), segment("PV1", {**PV1, 3: "W1^1^A", 11: "XR^1", 40: "O", 42: "W2^2^B"})).instructions
    (body,) = [upsert.body for upsert in upserts if upsert.type == "Encounter"]
    assert [entry["status"] for entry in body["location"]] == ["active", "active", "reserved"]
    assert body["location"][1]["extension"][0]["url"] == EXT + "subject-locationClassification"  # PV1-11 is temporary
    (bed,) = [upsert.body for upsert in upserts if upsert.type == "Location" and upsert.body["name"] == "A"]
    assert bed["operationalStatus"] == {"system": V2 + "0116", "code": "O"}


@pytest.mark.parametrize("pv2, element, expected", [
    ({3: "CP^Chest pain"}, "reasonCode", [{"coding": [{"code": "CP", "display": "Chest pain"}]}]),
    ({8: "202501100800", 9: "202501150800"}, "extension", [
        {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate", "valueDateTime": "2025-01-10T08:00:00+01:00"},
        {"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate", "valueDateTime": "2025-01-15T08:00:00+01:00"}]),
    ({11: "4"}, "length", {"value": 4, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"}),
    ({12: "Knee <surgery>"}, "text", {"status": "additional", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Knee &lt;surgery&gt;</div>'}),
    ({25: "1"}, "priority", {"coding": [{"system": V3 + "ActPriority", "code": "EM", "display": "emergency"}]}),
])
def test_pv2_elements(pv2, element, expected):
    assert encounter({}, pv2)[element] == expected


def test_pv2_expected_admit_starts_a_planned_visit_and_pv2_13_refers():
    body = encounter({2: "P"}, {8: "202501100800", 13: "9^Referrer^Rita"}, "ADT^A05^ADT_A05")
    assert (body["status"], body["period"]) == ("planned", {"start": "2025-01-10T08:00:00+01:00"})
    assert body["participant"][0]["type"][0]["coding"][0]["code"] == "REF"


def test_pv1_45_ends_a_visit_whose_event_gives_no_status():
    assert encounter({45: "202501051200"}, event="ADT^A08^ADT_A01")["status"] == "finished"


# OBR[DiagnosticReport]

@pytest.mark.parametrize("obr, element, expected", [
    ({2: "P1^EPIC"}, "identifier", [{"type": {"coding": [{"system": V2 + "0203", "code": "FILL"}]}, "system": "urn:ehr:hl7v2:authority:LAB", "value": "F1"},
                                    {"type": {"coding": [{"system": V2 + "0203", "code": "PLAC"}]}, "system": "urn:ehr:hl7v2:authority:EPIC", "value": "P1"}]),
    ({8: "20250103"}, "effectivePeriod", {"start": "2025-01-02", "end": "2025-01-03"}),
    ({22: "202501031200"}, "issued", "2025-01-03T12:00:00+01:00"),
    ({24: "CH"}, "category", [{"coding": [{"system": V2 + "0074", "code": "CH"}]}]),
    ({25: "C"}, "status", "corrected"),
    ({32: "55&Hart&Eva&&&Dr"}, "resultsInterpreter", [{"reference": "Practitioner"}]),
])
def test_obr_elements(obr, element, expected):
    found = report(obr)[element]
    if element == "resultsInterpreter":
        assert found[0]["reference"].startswith("urn:uuid:") and found[0]["display"] == "Dr Eva Hart"
    else:
        assert found == expected


def test_a_report_without_filler_number_is_keyed_by_its_placer_number():
    body = report({3: "", 2: "P7^EPIC"})
    assert body["identifier"] == [{"type": {"coding": [{"system": V2 + "0203", "code": "PLAC"}]}, "system": "urn:ehr:hl7v2:authority:EPIC", "value": "P7"}]


# OBX[Observation], NTE[Observation]

@pytest.mark.parametrize("obx, expected", [
    ({2: "TM", 5: "0930"}, {"valueTime": "09:30:00"}),
    ({2: "DR", 5: "20250101^20250102"}, {"valuePeriod": {"start": "2025-01-01", "end": "2025-01-02"}}),
    ({2: "NR", 5: "3^7", 6: "mmol/L^^UCUM"}, {"valueRange": {"low": {"value": 3, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                                                             "high": {"value": 7, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}}),
    ({2: "IS", 5: "POS"}, {"valueString": "POS"}),
    ({2: "ED", 5: "^AP^PDF^Base64^JVBERi0xLjQK"}, {"extension": [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
                                                                 "valueAttachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}}]}),
    ({8: "HH"}, {"interpretation": [{"coding": [{"system": V3 + "ObservationInterpretation", "code": "HH"}]}]}),
    ({17: "M1^Method"}, {"method": {"coding": [{"code": "M1", "display": "Method"}]}}),
    ({18: "DEV-1^LAB"}, {"device": {"identifier": {"system": "urn:ehr:hl7v2:authority:LAB", "value": "DEV-1"}}}),
    ({19: "202501020800"}, {"extension": [{"url": EXT + "observation-analysis-date-time", "valueDateTime": "2025-01-02T08:00:00+01:00"}]}),
    ({20: "LA^Left arm^HL70163"}, {"bodySite": {"coding": [{"system": V2 + "0163", "code": "LA", "display": "Left arm"}]}}),
    ({21: "OBS-1^LAB"}, {"identifier": [{"type": {"coding": [{"system": V2 + "0203", "code": "FILL"}]}, "system": "urn:ehr:hl7v2:authority:LAB", "value": "OBS-1"}]}),
])
def test_obx_elements(obx, expected):
    assert expected.items() <= observation(obx).items()


def test_obx_performers_and_nte_notes():
    body = observation({16: "7^Observer^Olga", 23: "Lab Inc^^^^^NORTH^XX^^^L-1", 24: "1 Lab Rd^^Town"},
                       segment("NTE", {1: "1", 3: "Hemolysed~Redrawn", 6: "202501020900"}))
    assert [performer["display"] for performer in body["performer"]] == ["Olga Observer", "Lab Inc"]
    assert body["note"] == [{"time": "2025-01-02T09:00:00+01:00", "text": "Hemolysed\nRedrawn"}]


# AL1[AllergyIntolerance], DG1[Condition]

@pytest.mark.parametrize("al1, expected", [
    ({2: "FA", 3: "PNT^Peanut", 4: "SV"}, {"category": ["food"], "type": "allergy", "criticality": "high"}),
    ({2: "DA", 3: "PCN^Penicillin", 4: "MO", 5: "Rash~Hives"}, {"reaction": [{"manifestation": [{"text": "Rash"}], "severity": "moderate"},
                                                                             {"manifestation": [{"text": "Hives"}], "severity": "moderate"}]}),
    ({2: "EA", 3: "DUST^Dust", 6: "20200101"}, {"onsetDateTime": "2020-01-01", "category": ["environment"]}),
])
def test_al1_elements(al1, expected):
    body = resource("AllergyIntolerance", "ADT^A01^ADT_A01", segment("PID", PID), segment("PV1", PV1), segment("AL1", {1: "1", **al1}))
    assert expected.items() <= body.items()
    assert body["clinicalStatus"]["coding"][0]["code"] == "active"


def test_dg1_elements():
    dg1 = segment("DG1", {1: "1", 3: "I10^Hypertension^I10", 5: "20240101", 6: "W", 15: "1", 16: "8^Doc^Dan", 19: "20250102", 20: "DX-1^NORTH", 21: "D"})
    upserts = mapped("ADT^A01^ADT_A01", segment("PID", PID), segment("PV1", PV1), dg1).instructions
    (condition,) = [upsert for upsert in upserts if upsert.type == "Condition"]
    body = condition.body
    assert body["identifier"] == [{"system": "urn:ehr:hl7v2:authority:NORTH", "value": "DX-1"}]
    assert (body["onsetDateTime"], body["recordedDate"]) == ("2024-01-01", "2025-01-02")
    assert body["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert body["asserter"]["display"] == "Dan Doc"
    (visit,) = [upsert.body for upsert in upserts if upsert.type == "Encounter"]
    assert visit["diagnosis"] == [{"condition": {"reference": condition.local_ref}, "use": {"coding": [{"system": V2 + "0052", "code": "W"}]}, "rank": 1}]


# A47

def test_a47_changes_the_identifier_mrg1_names_into_pid3s():
    result = mapped("ADT^A47^ADT_A30", segment("PID", {**PID, 3: "NEW^^^NORTH^MR"}), segment("MRG", {1: "OLD^^^NORTH^MR"})).instructions
    change, patient = result[0], result[-1]
    assert isinstance(change, IdentifierChange) and change.upsert_ref == patient.local_ref
    assert (change.old_key["value"], change.new_key["value"], change.criteria) == ("OLD", "NEW", "identifier=urn:ehr:hl7v2:authority:NORTH|OLD")
    assert patient.criteria == "identifier=urn:ehr:hl7v2:authority:NORTH|NEW"


def test_a_code_repeated_without_sub_id_keeps_every_result():
    results = [segment("OBX", {**OBX, 1: str(number), 2: "TX", 5: f"line {number}"}) for number in (1, 2, 3)]
    mapped_message = mapped("ORU^R01^ORU_R01", segment("PID", PID), segment("OBR", OBR), *results)
    observations = [upsert for upsert in mapped_message.instructions if upsert.type == "Observation"]
    assert [upsert.body["valueString"] for upsert in observations] == ["line 1", "line 2", "line 3"]
    assert len({upsert.criteria for upsert in observations}) == 3
    assert observations[0].criteria == "identifier=urn:ehr:hl7v2:authority:LAB|F1/2345-7"  # the first as before
    (warning,) = mapped_message.warnings
    assert (warning.segment, warning.sequence, warning.field) == ("OBX", 2, 4)
    (report_body,) = [upsert.body for upsert in mapped_message.instructions if upsert.type == "DiagnosticReport"]
    assert [result["reference"] for result in report_body["result"]] == [upsert.local_ref for upsert in observations]
