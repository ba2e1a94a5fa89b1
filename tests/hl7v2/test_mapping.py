"""HL7 v2 messages to FHIR upserts: the sample feed in messages/, mapped field by field (pure, no database)."""
import re
from pathlib import Path
from urllib.parse import parse_qsl

import hl7
import pytest

from app.model.validation import validate_resource
from interop.hl7v2.mapping import MappingError, Merge, UnsupportedMessage, Upsert, map_message

MESSAGES = Path(__file__).parent / "messages"
GENHOSP = "urn:oid:2.16.840.1.113883.19.4.6"
LAB = "urn:oid:2.16.840.1.113883.19.4.9"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"
LOCAL_REF = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
DEPENDENCY_ORDER = ["Practitioner", "Organization", "Location", "Patient", "RelatedPerson", "AllergyIntolerance", "Condition", "Encounter",
                    "Observation", "DiagnosticReport"]


def text_of(name: str) -> str:
    return (MESSAGES / name).read_text()


def parse(text: str) -> hl7.Message:
    return hl7.parse(text.replace("\n", "\r"))


def mapped(name: str, *replacements: tuple[str, str]):
    text = text_of(name)
    for old, new in replacements:
        assert old in text, f"{old!r} is not in {name}"
        text = text.replace(old, new)
    return upserts_for(parse(text))


def upserts_for(message, systems=None) -> list:
    return list(map_message(message, systems or {}).instructions)


def warnings_of(name: str, *replacements: tuple[str, str]) -> list[MappingError]:
    text = text_of(name)
    for old, new in replacements:
        assert old in text, f"{old!r} is not in {name}"
        text = text.replace(old, new)
    return list(map_message(parse(text)).warnings)


def of_type(upserts, type_name: str):
    return [upsert for upsert in upserts if isinstance(upsert, Upsert) and upsert.type == type_name]


def only(upserts, type_name: str):
    (found,) = of_type(upserts, type_name)
    return found


def refused(name: str, *replacements: tuple[str, str]) -> MappingError:
    with pytest.raises(MappingError) as raised:
        mapped(name, *replacements)
    return raised.value


def location_of(error: MappingError):
    return error.code, error.segment, error.sequence, error.field


def codes(concepts) -> list[tuple[str, str]]:
    return [(coding.get("system"), coding["code"]) for concept in concepts for coding in concept["coding"]]


MAPPED_SAMPLES = sorted(path.name for path in MESSAGES.glob("*.hl7"))


@pytest.mark.parametrize("name", MAPPED_SAMPLES)
def test_every_sample_message_maps_to_valid_r4_resources_with_local_refs_and_identifier_criteria(name):
    upserts = [upsert for upsert in upserts_for(parse(text_of(name))) if isinstance(upsert, Upsert)]
    assert upserts
    for upsert in upserts:
        validate_resource(upsert.combine({}, upsert.body) if upsert.combine else upsert.body)  # as created
        assert upsert.body["resourceType"] == upsert.type
        assert LOCAL_REF.fullmatch(upsert.local_ref)
        assert upsert.criteria.startswith("identifier=")
        assert "id" not in upsert.body and "meta" not in upsert.body
    assert len({upsert.local_ref for upsert in upserts}) == len(upserts)
    assert len({(upsert.type, upsert.criteria) for upsert in upserts}) == len(upserts)


@pytest.mark.parametrize("name", ["adt_a01_v251.hl7", "oru_r01_v251.hl7", "oru_r01_v28.hl7"])
def test_upserts_come_in_dependency_order_and_refer_only_to_earlier_upserts(name):
    upserts = upserts_for(parse(text_of(name)))
    seen = set()
    for upsert in upserts:
        refs = set(re.findall(r"urn:uuid:[0-9a-f-]{36}", str(upsert.body)))
        assert refs <= seen, f"{upsert.type} refers to a later upsert"
        seen.add(upsert.local_ref)
    if name != "oru_r01_v28.hl7":  # two patient groups there: each group in order after the other
        ranks = [DEPENDENCY_ORDER.index(upsert.type) for upsert in upserts]
        assert ranks == sorted(ranks)


# ADT: Patient


def test_a01_patient_keeps_every_pid3_repetition_and_is_keyed_by_the_medical_record_number():
    patient = only(mapped("adt_a01_v251.hl7"), "Patient")
    assert [(i["type"]["coding"][0]["code"], i["system"], i["value"]) for i in patient.body["identifier"]] == [
        ("MR", GENHOSP, "100234"),
        ("SS", "urn:oid:2.16.840.1.113883.4.1", "123-45-6789"),
        ("NH", "urn:ehr:hl7v2:authority:NHS", "A778899"),
    ]
    assert patient.body["identifier"][0]["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0203"
    assert patient.criteria == f"identifier={GENHOSP}|100234"


def test_a01_patient_names_unescape_hex_and_map_name_types():
    patient = only(mapped("adt_a01_v251.hl7"), "Patient")
    assert patient.body["name"] == [
        {"use": "official", "family": "Müller", "given": ["Hans", "Peter"], "prefix": ["Herr"], "suffix": ["Jr"]},
        {"use": "nickname", "family": "Müller", "given": ["Hansi"]},
    ]


def test_a01_patient_demographics_telecom_and_addresses():
    body = only(mapped("adt_a01_v251.hl7"), "Patient").body
    assert body["gender"] == "male"
    assert body["birthDate"] == "1965-04-12"
    assert body["deceasedBoolean"] is False
    assert body["telecom"] == [
        {"system": "phone", "value": "+49 (30) 1234567", "use": "home"},
        {"system": "phone", "value": "+49 (170) 5551234", "use": "mobile"},
        {"system": "email", "value": "hans.mueller@example.org"},
        {"system": "phone", "value": "+49 (30) 7654321 ext. 22", "use": "work"},
    ]
    assert body["address"] == [
        {"use": "home", "line": ["Hauptstraße 12", "Apt 3"], "city": "Berlin", "state": "BE", "postalCode": "10115", "country": "DEU"},
        {"type": "postal", "line": ["Postfach 44"], "city": "Berlin", "state": "BE", "postalCode": "10001", "country": "DEU"},
    ]


def test_a01_next_of_kin_become_contacts_with_relationship_and_role_codes():
    spouse, employer = only(mapped("adt_a01_v251.hl7"), "Patient").body["contact"]
    assert codes(spouse["relationship"]) == [  # IG Relationship ConceptMap: SPO is v3-RoleCode SPS
        ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "SPS"), ("http://terminology.hl7.org/CodeSystem/v2-0131", "C"),
    ]
    assert spouse["name"] == {"family": "Müller", "given": ["Greta"]}
    assert spouse["telecom"] == [{"system": "phone", "value": "+49 (30) 1234567", "use": "home"}]
    assert spouse["address"]["line"] == ["Hauptstraße 12"]
    assert spouse["gender"] == "female"
    assert codes(employer["relationship"]) == [("http://terminology.hl7.org/CodeSystem/v2-0131", "E")]  # IG: EMR is contact role E
    assert employer["organization"] == {"display": "Schmidt & Söhne GmbH"}
    assert employer["telecom"] == [{"system": "phone", "value": "+49 (30) 9990000", "use": "work"}]


def test_a01_general_practitioner_is_a_practitioner_upserted_by_xcn_id_and_authority():
    upserts = mapped("adt_a01_v251.hl7")
    patient = only(upserts, "Patient")
    (gp,) = [upsert for upsert in of_type(upserts, "Practitioner") if upsert.criteria.endswith("|30011")]
    assert gp.criteria == f"identifier={GENHOSP}|30011"
    assert gp.body == {"resourceType": "Practitioner", "identifier": [{"system": GENHOSP, "value": "30011"}],
                       "name": [{"family": "Weber", "given": ["Klaus"], "prefix": ["Dr."]}]}
    assert patient.body["generalPractitioner"] == [{"reference": gp.local_ref, "display": "Dr. Klaus Weber"}]


def test_a01_z_segments_are_read_past():
    text = text_of("adt_a01_v251.hl7")
    without = "\n".join(line for line in text.splitlines() if not line.startswith("ZPI"))
    assert [strip_refs(upsert.body) for upsert in upserts_for(parse(text))] == [strip_refs(upsert.body) for upsert in upserts_for(parse(without))]


def test_a01_spouse_is_a_related_person_and_the_employer_is_not():
    upserts = mapped("adt_a01_v251.hl7")
    (spouse,) = of_type(upserts, "RelatedPerson")
    assert spouse.body["patient"] == {"reference": only(upserts, "Patient").local_ref}
    assert spouse.body["name"] == [{"family": "Müller", "given": ["Greta"]}]
    assert spouse.body["gender"] == "female"
    assert codes(spouse.body["relationship"])[0] == ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "SPS")


def test_a01_allergy_and_diagnosis():
    upserts = mapped("adt_a01_v251.hl7")
    allergy, condition, encounter = only(upserts, "AllergyIntolerance").body, only(upserts, "Condition"), only(upserts, "Encounter")
    assert (allergy["category"], allergy["type"]) == (["medication"], "allergy")
    assert allergy["reaction"] == [{"manifestation": [{"text": "Hives"}], "severity": "severe"}]
    assert codes([condition.body["code"]]) == [("http://hl7.org/fhir/sid/icd-10", "J18.9")]
    assert encounter.body["diagnosis"] == [{"condition": {"reference": condition.local_ref},
                                            "use": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/diagnosis-role", "code": "AD", "display": "Admission diagnosis"}]}}]


def strip_refs(body: dict) -> str:
    return re.sub(r"urn:uuid:[0-9a-f-]{36}", "ref", str(body))


# ADT: Encounter


def test_a01_encounter_is_in_progress_inpatient_at_its_bed_keyed_by_visit_number():
    upserts = mapped("adt_a01_v251.hl7")
    encounter, patient = only(upserts, "Encounter"), only(upserts, "Patient")
    assert encounter.criteria == f"identifier={GENHOSP}|V2024031501"
    assert encounter.body["identifier"][0]["type"]["coding"][0]["code"] == "VN"
    assert encounter.body["status"] == "in-progress"
    assert encounter.body["class"] == {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
    assert encounter.body["subject"] == {"reference": patient.local_ref}
    assert located(upserts, encounter) == [(BED_401B, "GENHOSP/4N/401/B", "active")]
    assert encounter.body["period"] == {"start": "2024-03-15T08:00:00+01:00"}
    assert codes(encounter.body["type"]) == [("http://terminology.hl7.org/CodeSystem/v2-0007", "E")]
    assert codes([encounter.body["serviceType"]]) == [("http://terminology.hl7.org/CodeSystem/v2-0069", "MED")]
    assert not set(encounter.keep) & {"status", "class", "type", "serviceType", "location", "participant", "period", "diagnosis"}


def test_a01_participants_reference_one_practitioner_per_id_and_name_only_doctors_by_display():
    upserts = mapped("adt_a01_v251.hl7")
    practitioners = {upsert.criteria.rsplit("|", 1)[1]: upsert for upsert in of_type(upserts, "Practitioner")}
    assert sorted(practitioners) == ["30011", "40021", "40077"]  # Dr. Okafor (no id) is not created
    participants = [(p["type"][0]["coding"][0]["code"], p["individual"]) for p in only(upserts, "Encounter").body["participant"]]
    attending = {"reference": practitioners["40021"].local_ref, "display": "Dr. Eva M Hartmann MD"}
    assert participants == [
        ("ATND", attending),
        ("REF", {"display": "Dr. Chidi Okafor"}),
        ("CON", {"reference": practitioners["40077"].local_ref, "display": "Dr. Sven Lindqvist"}),
        ("ADM", attending),
    ]
    assert practitioners["40021"].body["identifier"][0]["type"]["coding"][0]["code"] == "EI"


def test_a02_transfer_moves_the_patient_and_keeps_the_prior_bed_as_completed():
    upserts = mapped("adt_a02_v24.hl7")
    encounter = only(upserts, "Encounter")
    assert encounter.body["status"] == "in-progress"
    assert located(upserts, encounter) == [
        ("si:GENHOSP/wa:ICU/ro:12/bd:A", "GENHOSP/ICU/12/A", "active"), (BED_401B, "GENHOSP/4N/401/B", "completed"),
    ]


BED_401B = "si:GENHOSP/wa:4N/ro:401/bd:B"


def located(upserts, encounter) -> list[tuple[str, str, str]]:
    """Per Encounter.location: the business key of the Location upsert it references, its display, its status."""
    keys = {upsert.local_ref: upsert.body["identifier"][0]["value"] for upsert in of_type(upserts, "Location")}
    return [(keys[entry["location"]["reference"]], entry["location"]["display"], entry["status"]) for entry in encounter.body["location"]]


def test_a_location_is_a_chain_of_locations_from_the_bed_up_to_the_facility():
    upserts = mapped("adt_a01_v251.hl7")
    locations = {upsert.local_ref: upsert for upsert in of_type(upserts, "Location")}
    chain, ref = [], only(upserts, "Encounter").body["location"][0]["location"]["reference"]
    while ref:
        body = locations[ref].body
        chain.append((body["identifier"][0]["value"], body["name"], body["physicalType"]["coding"][0]["code"], body["mode"]))
        ref = body.get("partOf", {}).get("reference")
    assert chain == [
        (BED_401B, "B", "bd", "instance"), ("si:GENHOSP/wa:4N/ro:401", "401", "ro", "instance"),
        ("si:GENHOSP/wa:4N", "4N", "wa", "instance"), ("si:GENHOSP", "GENHOSP", "si", "instance"),
    ]
    assert {locations[ref].criteria for ref in locations} == {
        f"identifier=urn:ehr:hl7v2:location|{path}" for path in ("si:GENHOSP", "si:GENHOSP/wa:4N", "si:GENHOSP/wa:4N/ro:401", BED_401B)
    }


def test_a_location_without_a_facility_is_in_the_sending_facility_and_pl9_describes_it():
    upserts = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|4N^401^^^^^^^North wing 401|"))
    (entry,) = only(upserts, "Encounter").body["location"]
    locations = {upsert.body["identifier"][0]["value"]: upsert.body for upsert in of_type(upserts, "Location")}
    assert sorted(locations) == ["si:GENHOSP", "si:GENHOSP/wa:4N", "si:GENHOSP/wa:4N/ro:401"]  # MSH-4 is GENHOSP
    assert entry["location"]["display"] == "North wing 401"
    assert locations["si:GENHOSP/wa:4N/ro:401"]["description"] == "North wing 401"
    assert "description" not in locations["si:GENHOSP/wa:4N"]


def test_a_room_and_a_bed_of_the_same_name_are_different_locations():
    room = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|4N^1^^GENHOSP|"))
    bed = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|4N^^1^GENHOSP|"))
    assert located(room, only(room, "Encounter"))[0][0] == "si:GENHOSP/wa:4N/ro:1"
    assert located(bed, only(bed, "Encounter"))[0][0] == "si:GENHOSP/wa:4N/bd:1"


def test_a_slash_in_a_location_name_cannot_make_two_locations_one():
    first = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|4N/A^401^^GENHOSP|"))
    second = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|4N^A/401^^GENHOSP|"))
    assert located(first, only(first, "Encounter"))[0][0] != located(second, only(second, "Encounter"))[0][0]


def test_a_location_with_only_a_description_is_referenced_by_display():
    upserts = mapped("adt_a01_v251.hl7", ("|4N^401^B^GENHOSP|", "|^^^^^^^^Ambulance bay|"))
    assert only(upserts, "Encounter").body["location"] == [{"location": {"display": "Ambulance bay"}, "status": "active"}]
    assert of_type(upserts, "Location") == []


def test_a_location_names_each_location_once_however_often_the_message_names_it():
    upserts = mapped("adt_a02_v24.hl7")
    assert len(of_type(upserts, "Location")) == len({upsert.criteria for upsert in of_type(upserts, "Location")}) == 7  # 1 facility, 2 x 3 levels


def test_a02_patient_keeps_what_the_transfer_does_not_send():
    patient = only(mapped("adt_a02_v24.hl7"), "Patient")
    assert {"telecom", "address", "deceasedBoolean", "deceasedDateTime", "contact", "generalPractitioner", "maritalStatus"} <= set(patient.keep)
    assert not set(patient.keep) & {"name", "gender", "birthDate"}
    assert "telecom" not in patient.body and "name" not in patient.keep


def test_a03_v23_discharge_finishes_the_visit_with_its_end_in_utc_when_msh7_has_no_offset():
    upserts = mapped("adt_a03_v23.hl7")
    encounter = only(upserts, "Encounter")
    assert encounter.body["status"] == "finished"
    assert encounter.body["period"] == {"start": "2009-03-18T10:20:00Z", "end": "2009-03-22T16:00:00Z"}
    assert encounter.body["location"][0]["status"] == "completed"
    assert encounter.criteria == "identifier=urn:ehr:hl7v2:authority:STMARY|5501234"
    assert encounter.body["identifier"][0]["type"]["coding"][0]["code"] == "VN"  # CX.5 empty: PV1-19 is a visit number


def test_a03_v23_patient_reads_the_old_telephone_format_and_pid2():
    patient = only(mapped("adt_a03_v23.hl7"), "Patient").body
    assert patient["telecom"] == [{"system": "phone", "value": "(217)555-0100", "use": "home"}]
    assert [i["value"] for i in patient["identifier"]] == ["88123", "556677", "321-54-9876"]  # PID-19: the SSN
    assert patient["identifier"][2]["system"] == "http://hl7.org/fhir/sid/us-ssn"
    assert patient["name"] == [{"family": "O'NEIL", "given": ["MARY", "K"]}]
    assert patient["birthDate"] == "1945-03-15"


def test_a04_v28_registration_is_an_outpatient_visit_in_progress_with_pid40_telecom_and_coded_fields():
    upserts = mapped("adt_a04_v28.hl7")
    encounter, patient = only(upserts, "Encounter").body, only(upserts, "Patient").body
    assert encounter["status"] == "in-progress"  # the patient has arrived
    assert encounter["class"]["code"] == "AMB"
    assert encounter["period"] == {"start": "2024-04-02T09:30:00-05:00"}
    assert codes([encounter["serviceType"]]) == [("http://terminology.hl7.org/CodeSystem/v2-0069", "CAR")]
    assert patient["gender"] == "female"
    assert patient["telecom"] == [
        {"system": "phone", "value": "+13125550199", "use": "mobile"},
        {"system": "email", "value": "linh.nguyen@example.com"},
    ]
    assert patient["address"][0]["district"] == "Cook"
    assert patient["identifier"][0]["system"] == "urn:oid:2.16.840.1.113883.19.7"


def test_a04_v28_attending_doctor_is_keyed_by_npi():
    practitioner = only(mapped("adt_a04_v28.hl7"), "Practitioner")
    assert practitioner.criteria == "identifier=urn:oid:2.16.840.1.113883.4.6|77001"
    assert practitioner.body["identifier"][0]["type"]["coding"][0]["code"] == "NPI"


def test_a05_preadmission_is_planned_at_a_planned_location():
    encounter = only(mapped("adt_a05_v251.hl7"), "Encounter").body
    assert encounter["status"] == "planned"
    assert encounter["class"]["code"] == "PRENC"
    assert encounter["location"][0]["status"] == "planned"


def test_a08_keeps_the_encounter_status_and_writes_unknown_only_for_a_new_encounter():
    encounter = only(mapped("adt_a08_v251.hl7"), "Encounter")
    assert "status" in encounter.keep
    assert encounter.body["status"] == "unknown"
    assert "period" in encounter.keep  # PV1-44/45 not sent: the admit time stays
    assert encounter.body["location"][0]["location"]["display"] == "GENHOSP/4N/402/A"


def test_a08_unsent_fields_are_kept_and_the_null_value_deletes():
    patient = only(mapped("adt_a08_v251.hl7"), "Patient")
    assert "telecom" in patient.keep  # PID-13 empty
    assert "address" not in patient.keep and "address" not in patient.body  # PID-11 is ""
    assert patient.body["name"][0]["family"] == "Müller-Schmidt"


@pytest.mark.parametrize("name, status", [("adt_a11_v24.hl7", "cancelled"), ("adt_a12_v251.hl7", "in-progress"), ("adt_a13_v251.hl7", "in-progress")])
def test_cancellations_set_the_status_the_ig_gives_their_event(name, status):
    assert only(mapped(name), "Encounter").body["status"] == status


def test_a12_cancel_transfer_puts_the_patient_back_without_the_cancelled_location():
    upserts = mapped("adt_a12_v251.hl7")
    encounter = only(upserts, "Encounter")
    assert [status for _, _, status in located(upserts, encounter)] == ["active", "cancelled"]  # PV1-3, then PV1-6 to drop
    assert located(upserts, encounter)[0][0] == BED_401B
    assert encounter.combine({}, encounter.body)["location"] == [encounter.body["location"][0]]


def test_a13_cancel_discharge_removes_the_period_end_even_when_pv1_45_is_sent():
    encounter = only(mapped("adt_a13_v251.hl7"), "Encounter")
    assert encounter.body["period"] == {"start": "2024-03-15T08:00:00+01:00"}
    assert "period" not in encounter.keep


def test_a28_without_visit_number_creates_no_encounter_and_maps_partial_birth_date_and_death():
    upserts = mapped("adt_a28_v251.hl7")
    assert [upsert.type for upsert in upserts] == ["Patient"]
    body = upserts[0].body
    assert body["birthDate"] == "2001"
    assert body["deceasedDateTime"] == "2024-03-01T02:30:00+01:00"  # no offset in PID-29: MSH-7's


def test_a31_v23_updates_the_person_only():
    (patient,) = mapped("adt_a31_v23.hl7")
    assert patient.type == "Patient"
    assert patient.body["telecom"] == [{"system": "phone", "value": "(217)555-0111", "use": "home"}]
    assert "address" in patient.keep


# Dispatch


# ADT: merge


def test_a40_upserts_the_surviving_patient_once_and_merges_each_mrg1_patient_into_it():
    instructions = mapped("adt_a40_v251.hl7")
    patient = only(instructions, "Patient")
    assert [type(instruction) for instruction in instructions] == [Upsert, Merge, Merge]
    assert patient.criteria == f"identifier={GENHOSP}|100234"
    assert patient.body["name"][0]["family"] == "Müller"
    merged = {"active": False, "link": [{"other": {"reference": "Patient/1"}, "type": "replaced-by"}]}
    assert {"active": False, "link": merged["link"]}.items() <= patient.combine(merged, patient.body).items()  # an update never undoes a merge
    assert instructions[1:] == [
        Merge(patient.local_ref, "Patient", f"identifier={GENHOSP}|100999"),
        Merge(patient.local_ref, "Patient", f"identifier={GENHOSP}|100998"),  # MRG-1's MR repetition, as for PID-3
    ]


def test_a40_mrg1_without_assigning_authority_belongs_to_the_sender_like_pid3():
    merge = mapped("adt_a40_v251.hl7", ("MRG|100999^^^GENHOSP&2.16.840.1.113883.19.4.6&ISO^MR", "MRG|100999"))[1]
    assert merge.criteria == "identifier=urn:ehr:hl7v2:authority:GENHOSP|100999"


@pytest.mark.parametrize("msh9, code", [
    ("BAR^P01^BAR_P01", 200), ("SIU^S12^SIU_S12", 200), ("ADT^A17^ADT_A17", 201), ("ADT^A40^ADT_A40", 200), ("ORU^R30^ORU_R30", 201),
])
def test_unmapped_types_events_and_structures_are_unsupported(msh9, code):
    with pytest.raises(UnsupportedMessage) as raised:
        mapped("adt_a01_v251.hl7", ("ADT^A01^ADT_A01", msh9))
    assert location_of(raised.value) == (code, "MSH", 1, 9)


def test_an_event_sent_with_another_structure_of_its_family_is_mapped():
    assert only(mapped("adt_a01_v251.hl7", ("ADT^A01^ADT_A01", "ADT^A01^ADT_A05")), "Encounter").body["status"] == "in-progress"


# ORU


def test_oru_maps_one_report_per_obr_referring_to_the_observations_of_its_obx():
    upserts = mapped("oru_r01_v251.hl7")
    observations, reports = of_type(upserts, "Observation"), of_type(upserts, "DiagnosticReport")
    assert [report.criteria for report in reports] == [f"identifier={LAB}|F-90001", f"identifier={LAB}|F-90002", f"identifier={LAB}|F-90003"]
    refs = [[result["reference"] for result in report.body["result"]] for report in reports]
    assert refs == [[o.local_ref for o in observations[:3]], [o.local_ref for o in observations[3:8]], [o.local_ref for o in observations[8:]]]
    patient, encounter = only(upserts, "Patient"), only(upserts, "Encounter")
    for upsert in observations + reports:
        assert upsert.body["subject"] == {"reference": patient.local_ref}
        assert upsert.body["encounter"] == {"reference": encounter.local_ref}


def test_oru_report_fields_come_from_obr():
    report = of_type(mapped("oru_r01_v251.hl7"), "DiagnosticReport")[0].body
    assert [(i["type"]["coding"][0]["code"], i["system"], i["value"]) for i in report["identifier"]] == [
        ("FILL", LAB, "F-90001"), ("PLAC", "urn:ehr:hl7v2:authority:EPIC", "PL-5511"),
    ]
    assert report["status"] == "final"
    assert codes([report["code"]]) == [("http://loinc.org", "58410-2")]
    assert codes(report["category"]) == [("http://terminology.hl7.org/CodeSystem/v2-0074", "HM")]
    assert report["effectiveDateTime"] == "2024-03-15T09:00:00+01:00"
    assert report["issued"] == "2024-03-15T14:25:00+01:00"


def test_oru_report_with_an_end_time_has_an_effective_period():
    report = of_type(mapped("oru_r01_v251.hl7"), "DiagnosticReport")[1].body
    assert report["effectivePeriod"] == {"start": "2024-03-15T09:00:00+01:00", "end": "2024-03-15T09:10:00+01:00"}
    assert "effectiveDateTime" not in report


def test_oru_encounter_is_only_referenced_an_existing_one_keeps_everything():
    encounter = only(mapped("oru_r01_v251.hl7"), "Encounter")
    assert {"status", "class", "location", "participant", "period"} <= set(encounter.keep)


def test_observation_is_keyed_by_filler_order_and_its_code_not_its_set_id():
    leukocytes = of_type(mapped("oru_r01_v251.hl7"), "Observation")[0]
    assert leukocytes.criteria == f"identifier={LAB}|F-90001/6690-2"
    assert leukocytes.body["identifier"] == [{"system": LAB, "value": "F-90001/6690-2"}]


def test_nm_with_ucum_units_is_a_ucum_quantity_with_reference_range_and_interpretation():
    body = of_type(mapped("oru_r01_v251.hl7"), "Observation")[0].body
    quantity = {"unit": "thousand per microliter", "system": UCUM, "code": "10*3/uL"}
    assert body["status"] == "final"
    assert codes([body["code"]]) == [("http://loinc.org", "6690-2")]
    assert body["valueQuantity"] == {"value": 12.4, **quantity}
    assert body["referenceRange"] == [{"low": {"value": 4.0, **quantity}, "high": {"value": 11.0, **quantity}, "text": "4.0-11.0"}]
    assert codes(body["interpretation"]) == [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")]  # IG 0078 map
    assert body["effectiveDateTime"] == "2024-03-15T09:15:00+01:00"  # OBX-14


def test_nm_with_a_common_ucum_unit_and_no_coding_system_is_ucum_and_takes_obr7_as_effective_time():
    body = of_type(mapped("oru_r01_v251.hl7"), "Observation")[1].body
    assert body["valueQuantity"] == {"value": 13.8, "unit": "g/dL", "system": UCUM, "code": "g/dL"}
    assert body["effectiveDateTime"] == "2024-03-15T09:00:00+01:00"


def test_nm_with_local_units_keeps_their_coding_system_and_repeated_flags():
    body = of_type(mapped("oru_r01_v251.hl7"), "Observation")[2].body
    assert body["valueQuantity"] == {"value": 95, "unit": "thousand per microliter", "system": "urn:ehr:hl7v2:codesystem:99LAB", "code": "K/uL"}
    assert [coding["code"] for concept in body["interpretation"] for coding in concept["coding"]] == ["L", "A"]


def test_sn_values_become_quantity_with_comparator_ratio_and_range():
    crp, titer, cholesterol = of_type(mapped("oru_r01_v251.hl7"), "Observation")[3:6]
    assert crp.body["valueQuantity"] == {"value": 5, "unit": "mg/L", "system": UCUM, "code": "mg/L", "comparator": "<"}
    assert crp.body["referenceRange"] == [{"text": "<10"}]
    assert titer.body["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    mg_dl = {"unit": "mg/dL", "system": UCUM, "code": "mg/dL"}
    assert cholesterol.body["valueRange"] == {"low": {"value": 180, **mg_dl}, "high": {"value": 200, **mg_dl}}
    assert cholesterol.body["status"] == "preliminary"


def test_sn_that_is_no_number_pair_becomes_a_string():
    body = of_type(mapped("oru_r01_v251.hl7", ("^1^:^128", "^2^+")), "Observation")[4].body
    assert body["valueString"] == "2 +"


def test_cwe_and_dt_values():
    blood_group, collected = of_type(mapped("oru_r01_v251.hl7"), "Observation")[6:8]
    assert blood_group.body["valueCodeableConcept"] == {"coding": [{"system": "http://loinc.org", "code": "LA19710-5", "display": "Group A"}]}
    assert collected.body["valueDateTime"] == "2024-03-01"


def test_ft_and_tx_values_are_strings_with_line_breaks_and_unescaped_separators():
    narrative, comment = of_type(mapped("oru_r01_v251.hl7"), "Observation")[8:]
    assert narrative.body["valueString"] == "Skin, left forearm, biopsy:\n- Basal cell carcinoma & actinic keratosis.\n- Margins free (| 2 mm)."
    assert comment.body["valueString"] == "Reviewed with Dr. Weber \\ tumour board."
    assert narrative.criteria == f"identifier={LAB}|F-90003/22637-3/1"  # same code: OBX-4 sub-ids tell them apart
    assert comment.criteria == f"identifier={LAB}|F-90003/22637-3/2"


def test_a_correction_resending_one_result_as_set_id_1_updates_that_result_not_the_first():
    original = of_type(mapped("oru_r01_v251.hl7"), "Observation")
    corrected = only(mapped("oru_r01_corrected_v251.hl7"), "Observation")
    assert corrected.criteria == original[2].criteria != original[0].criteria
    assert corrected.body["status"] == "corrected"
    assert corrected.body["valueQuantity"]["value"] == 182
    report = only(mapped("oru_r01_corrected_v251.hl7"), "DiagnosticReport")
    assert report.criteria == f"identifier={LAB}|F-90001"
    assert report.body["status"] == "corrected"


def test_oru_v23_takes_the_filler_number_from_orc3_and_maps_ce_st_and_unitless_nm():
    upserts = mapped("oru_r01_v23.hl7")
    report = only(upserts, "DiagnosticReport")
    assert report.criteria == "identifier=urn:ehr:hl7v2:authority:QLAB|Q-55501"  # no namespace: the sending facility's
    assert [i["value"] for i in report.body["identifier"]] == ["Q-55501", "ORD-77"]
    color, appearance, gravity = of_type(upserts, "Observation")
    assert color.body["valueCodeableConcept"] == {"coding": [{"system": "urn:ehr:hl7v2:codesystem:99QLB", "code": "YEL", "display": "Yellow"}]}
    assert appearance.body["valueString"] == "Clear"
    assert gravity.body["valueQuantity"] == {"value": 1.015}
    assert gravity.body["referenceRange"] == [{"low": {"value": 1.005}, "high": {"value": 1.03}, "text": "1.005-1.030"}]
    assert color.body["effectiveDateTime"] == "2009-03-19T08:30:00Z"


def test_oru_v28_with_two_patients_gives_each_result_its_own_subject():
    upserts = mapped("oru_r01_v28.hl7")
    patients = of_type(upserts, "Patient")
    assert [p.criteria for p in patients] == [
        "identifier=urn:oid:2.16.840.1.113883.19.7|NC-20931", "identifier=urn:oid:2.16.840.1.113883.19.7|NC-30400",
    ]
    subjects = [upsert.body["subject"]["reference"] for upsert in upserts if upsert.type in ("Observation", "DiagnosticReport")]
    assert subjects == [patients[0].local_ref] * 2 + [patients[1].local_ref] * 2
    first = of_type(upserts, "Observation")[0].body
    assert first["effectiveDateTime"] == "2024-04-02T11:29:30.5-05:00"
    assert codes(first["interpretation"]) == [("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")]


def test_an_unmapped_value_type_gives_a_data_absent_reason_instead_of_failing():
    body = of_type(mapped("oru_r01_v251.hl7", ("OBX|2|TX|", "OBX|2|XAD|")), "Observation")[9].body
    assert body["dataAbsentReason"]["coding"][0]["code"] == "unsupported"
    assert "valueString" not in body


def test_identifier_values_are_escaped_for_search_and_url_encoded_in_criteria():
    patient = only(mapped("adt_a28_v251.hl7", ("100555^^^", "A\\T\\B 7,1^^^")), "Patient")
    assert patient.body["identifier"][0]["value"] == "A&B 7,1"
    assert patient.criteria == f"identifier={GENHOSP}|A%26B%207%5C%2C1"
    assert parse_qsl(patient.criteria) == [("identifier", f"{GENHOSP}|A&B 7\\,1")]


# Errors


@pytest.mark.parametrize("name, replacements, expected", [
    ("adt_a01_v251.hl7", [("PID|1||100234", "XXX|1||100234")], (101, "PID", 1, None)),
    ("adt_a01_v251.hl7", [("PID|1||" + "100234^^^GENHOSP&2.16.840.1.113883.19.4.6&ISO^MR~123-45-6789^^^SSA&2.16.840.1.113883.4.1&ISO^SS~A778899^^^NHS^NH", "PID|1||")], (101, "PID", 1, 3)),
    ("oru_r01_v251.hl7", [("OBX|2|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN", "OBX|2|NM|")], (101, "OBX", 2, 3)),
    ("oru_r01_v251.hl7", [("||13.8|", "||13,8|")], (102, "OBX", 2, 5)),
    ("oru_r01_v251.hl7", [("OBX|4|CWE|", "OBX|4|ZZ|")], (103, "OBX", 7, 2)),
    ("oru_r01_v251.hl7", [("|20240301|", "|2024-03-01|")], (102, "OBX", 8, 5)),
    ("adt_a40_v251.hl7", [("MRG|100999", "ZMG|100999")], (101, "MRG", 1, 1)),
    ("adt_a40_v251.hl7", [("MRG|A778899^^^NHS^NH~100998^^^GENHOSP&2.16.840.1.113883.19.4.6&ISO^MR|", "MRG||")], (101, "MRG", 2, 1)),
])
def test_messages_that_cannot_be_applied_name_the_error_code_and_location(name, replacements, expected):
    error = refused(name, *replacements)
    assert location_of(error) == expected
    assert not isinstance(error, UnsupportedMessage)



# Values read liberally: kept, warned about, never the whole message refused


@pytest.mark.parametrize("name, replacements, expected", [
    ("adt_a01_v251.hl7", [("|19650412|M|", "|19651345|M|")], (102, "PID", 1, 7)),
    ("adt_a01_v251.hl7", [("|19650412|M|", "|19650412|Q|")], (103, "PID", 1, 8)),
    ("adt_a01_v251.hl7", [("^HL70131||||||||F", "^HL70131||||||||Q")], (103, "NK1", 1, 15)),
    ("oru_r01_v251.hl7", [("||12.4|10*3/uL^thousand per microliter^UCUM|4.0-11.0|H|||F", "||12.4|10*3/uL^thousand per microliter^UCUM|4.0-11.0|H|||Z")], (103, "OBX", 1, 11)),
    ("oru_r01_v251.hl7", [("||HM|F", "||HM|")], (101, "OBR", 1, 25)),
    ("oru_r01_v251.hl7", [("||SP|P", "||SP|Y")], (103, "OBR", 3, 25)),
    ("oru_r01_v251.hl7", [("OBR|3||F-90003^LAB^2.16.840.1.113883.19.4.9^ISO|", "OBR|3|||")], (101, "OBR", 3, 3)),
    ("oru_r01_v251.hl7", [("OBR|2||F-90002^LAB^2.16.840.1.113883.19.4.9^ISO|24323-8^Comprehensive metabolic 2000 panel^LN|", "OBR|2||F-90002^LAB^2.16.840.1.113883.19.4.9^ISO||")], (101, "OBR", 2, 4)),
])
def test_values_outside_their_type_or_table_in_optional_fields_are_warnings_not_refusals(name, replacements, expected):
    (warning,) = warnings_of(name, *replacements)
    assert location_of(warning) == expected
