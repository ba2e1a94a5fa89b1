"""v2 data types to FHIR data types, one field at a time (interop/hl7v2/mapping/datatypes.py)."""
import hl7
import pytest

from interop.hl7v2.mapping import MappingError
from interop.hl7v2.mapping.datatypes import (MessageContext, authority_system, codeable_concept, coding_system, contact_point,
                                             context_of, date_time, date_value, human_name, identifier, instant, time_value)
from interop.hl7v2.mapping.fields import segment_views


def context(**systems: str) -> MessageContext:
    return MessageContext(authority="urn:ehr:hl7v2:authority:HOSP", utc_offset="+02:00", facility="HOSP", systems=systems)


DEFAULTS = context()


def field(text: str, msh7: str = "20240102120000"):
    """Field 1 of a ZZZ segment holding `text`, in a message whose MSH-7 is `msh7`."""
    views = segment_views(hl7.parse(f"MSH|^~\\&|APP|HOSP|||{msh7}||ADT^A01|1|P|2.5.1\rZZZ|{text}"))
    return views[1].field(1)


@pytest.mark.parametrize("name, uri", [
    ("LN", "http://loinc.org"), ("SCT", "http://snomed.info/sct"), ("UCUM", "http://unitsofmeasure.org"),
    ("I10", "http://hl7.org/fhir/sid/icd-10"), ("HL70063", "http://terminology.hl7.org/CodeSystem/v2-0063"),
    ("HL7078", "http://terminology.hl7.org/CodeSystem/v2-0078"), ("99LOCAL", "urn:ehr:hl7v2:codesystem:99LOCAL"),
    ("MY LAB", "urn:ehr:hl7v2:codesystem:MY%20LAB"),
])
def test_coding_system_names_become_uris(name, uri):
    assert coding_system(name) == uri


def test_an_empty_coding_system_takes_the_fields_table_or_none():
    assert coding_system("", "0078") == "http://terminology.hl7.org/CodeSystem/v2-0078"
    assert coding_system("") is None


@pytest.mark.parametrize("hd, system", [
    (("HOSP", "1.2.3", "ISO"), "urn:oid:1.2.3"),
    (("", "https://hosp.example.org/mrn", "URI"), "https://hosp.example.org/mrn"),
    (("", "6B29FC40-CA47-1067-B31D-00DD010662DA", "UUID"), "urn:uuid:6b29fc40-ca47-1067-b31d-00dd010662da"),
    (("HOSP", "hosp.example.org", "DNS"), "urn:ehr:hl7v2:authority:HOSP"),
    (("St Mary", "", ""), "urn:ehr:hl7v2:authority:St%20Mary"),
    (("", "", ""), None),
])
def test_assigning_authorities_become_identifier_systems(hd, system):
    assert authority_system(*hd, DEFAULTS) == system


def test_an_operator_sets_the_system_of_an_assigning_authority_by_its_namespace_or_universal_id():
    hospital = context(NORTH="http://hospital.example/mrn", **{"1.2.3": "http://hospital.example/other"})
    assert authority_system("North", "", "", hospital) == "http://hospital.example/mrn"  # names match whatever their case
    assert authority_system("", "1.2.3", "ISO", hospital) == "http://hospital.example/other"
    assert identifier(field("123^^^NORTH^MR"), hospital)["system"] == "http://hospital.example/mrn"
    assert authority_system("SOUTH", "", "", hospital) == "urn:ehr:hl7v2:authority:SOUTH"


def test_cx_maps_value_authority_type_and_period():
    assert identifier(field("12345^^^HOSP&1.2.3&ISO^MR^^20200101^20291231"), DEFAULTS) == {
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
        "system": "urn:oid:1.2.3", "value": "12345", "period": {"start": "2020-01-01", "end": "2029-12-31"},
    }


def test_cx_without_assigning_authority_belongs_to_the_sender_and_without_value_is_nothing():
    assert identifier(field("12345"), DEFAULTS) == {"system": "urn:ehr:hl7v2:authority:HOSP", "value": "12345"}
    assert identifier(field("^^^HOSP^MR"), DEFAULTS) is None


def test_the_sender_is_msh4_and_the_default_offset_msh7s():
    views = segment_views(hl7.parse("MSH|^~\\&|APP|NORTH^2.16.840.1^ISO|||202401021200-0500||ADT^A01|1|P|2.5.1"))
    found = context_of(views[0])
    assert (found.authority, found.utc_offset, found.facility) == ("urn:oid:2.16.840.1", "-05:00", "NORTH")
    views = segment_views(hl7.parse("MSH|^~\\&|APP||||202401021200||ADT^A01|1|P|2.5.1"))
    found = context_of(views[0], {"APP": "http://hospital.example/app"})
    assert (found.authority, found.utc_offset, found.facility) == ("http://hospital.example/app", "Z", "APP")


@pytest.mark.parametrize("text, expected", [
    ("2024", "2024"), ("202403", "2024-03"), ("20240315", "2024-03-15"),
    ("2024031509", "2024-03-15T09:00:00+02:00"), ("202403150930", "2024-03-15T09:30:00+02:00"),
    ("20240315093015.25", "2024-03-15T09:30:15.25+02:00"), ("202403150930-0430", "2024-03-15T09:30:00-04:30"),
    ("202403150930+0000", "2024-03-15T09:30:00Z"), ("20240315093000^S", "2024-03-15T09:30:00+02:00"),
])
def test_dtm_keeps_its_precision_and_a_time_gets_a_zone(text, expected):
    assert date_time(field(text), DEFAULTS) == expected


def test_a_date_field_drops_the_time_and_an_instant_needs_one():
    assert date_value(field("196504121230"), DEFAULTS) == "1965-04-12"
    assert instant(field("20240315"), DEFAULTS) is None
    assert instant(field("202403150930"), DEFAULTS) == "2024-03-15T09:30:00+02:00"


MALFORMED = ["2024-03-15", "20241301", "20240230", "2024031525", "20240315093", "202403150930+1500", "yesterday"]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_dtm_is_left_out_with_a_data_type_warning_at_its_field(text):
    warned = context()
    assert date_time(field(text), warned) is None
    (warning,) = warned.warnings
    assert (warning.code, warning.segment, warning.sequence, warning.field) == (102, "ZZZ", 1, 1)


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_dtm_in_a_field_that_identifies_is_a_data_type_error(text):
    with pytest.raises(MappingError) as raised:
        date_time(field(text), context(), strict=True)
    assert (raised.value.code, raised.value.segment, raised.value.sequence, raised.value.field) == (102, "ZZZ", 1, 1)


def test_a_warning_quotes_at_most_200_characters_of_the_bad_value():
    warned = context()
    date_time(field("9" * 5000), warned)
    assert "9" * 200 + "...' (5000 characters)" in str(warned.warnings[0])
    assert len(str(warned.warnings[0])) < 400


@pytest.mark.parametrize("text, expected", [("0930", "09:30:00"), ("093015.5", "09:30:15.5"), ("09+0100", "09:00:00"), ("2561", None)])
def test_tm_is_a_fhir_time(text, expected):
    assert time_value(field(text), context()) == expected


def test_xpn_maps_parts_and_name_type():
    assert human_name(field("Smith&Van^John^Q^III^Dr^PhD^L"), DEFAULTS) == {
        "use": "official", "family": "Smith", "given": ["John", "Q"], "prefix": ["Dr"], "suffix": ["III", "PhD"],
    }
    assert human_name(field("Smith^John^^^^^A"), DEFAULTS)["given"] == ["John"]
    assert "use" not in human_name(field("Smith^John^^^^^A"), DEFAULTS)  # alias: the IG maps no use
    assert human_name(field("^^^^^^L"), DEFAULTS) is None


def test_xpn_validity_is_its_period():
    assert human_name(field("Smith^John^^^^^L^^^^^20200101^20231231"), DEFAULTS)["period"] == {"start": "2020-01-01", "end": "2023-12-31"}
    assert human_name(field("Smith^John^^^^^L^^^20200101&20231231"), DEFAULTS)["period"] == {"start": "2020-01-01", "end": "2023-12-31"}


@pytest.mark.parametrize("text, expected", [
    ("(555)555-1234", {"system": "phone", "value": "(555)555-1234", "use": "home"}),
    ("^ORN^PH^^^555^5551234", {"system": "phone", "value": "(555) 5551234"}),
    ("^WPN^FX^^1^555^5550000", {"system": "fax", "value": "+1 (555) 5550000", "use": "work"}),
    ("^PRN^CP^^^^^^^^^+15555551234", {"system": "phone", "value": "+15555551234", "use": "mobile"}),
    ("^NET^^someone@example.org", {"system": "email", "value": "someone@example.org"}),
    ("^NET^X.400^x400@example.org", {"system": "email", "value": "x400@example.org"}),
    ("^PRN^BP^^^^5550199", {"system": "pager", "value": "5550199", "use": "home"}),
])
def test_xtn_old_and_new_forms_become_contact_points(text, expected):
    assert contact_point(field(text), DEFAULTS, default_use="home") == expected


def test_xtn_preference_order_is_rank_and_its_dates_a_period():
    found = contact_point(field("^PRN^PH^^^555^5551234^^^^^^20200101^20301231^^^^2"), DEFAULTS)
    assert (found["rank"], found["period"]) == (2, {"start": "2020-01-01", "end": "2030-12-31"})


def test_cwe_maps_both_triplets_and_original_text():
    assert codeable_concept(field("H^High^HL70078^HI^Hoch^99LOC^^^High, flagged")) == {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0078", "code": "H", "display": "High"},
            {"system": "urn:ehr:hl7v2:codesystem:99LOC", "code": "HI", "display": "Hoch"},
        ],
        "text": "High, flagged",
    }
    assert codeable_concept(field("^free text only")) == {"text": "free text only"}
    assert codeable_concept(field('""')) is None


@pytest.mark.parametrize("character_set, text, expected", [
    ("UNICODE UTF-8", "M\\XC3BC\\ller", "Müller"),  # two bytes, one character
    ("", "M\\XC3BC\\ller", "Müller"),  # no MSH-18: UTF-8, as for the message's own bytes
    ("8859/1", "M\\XFC\\ller", "Müller"),
    ("UNICODE UTF-8", "M\\XFC\\ller", "Müller"),  # not UTF-8: read as Windows-1252, as undeclared text is
    ("8859/7", "\\XFC\\", "ό"),  # Greek
    ("UNICODE UTF-8", "M\\XC3\\\\XBC\\ller", "Müller"),  # one character's bytes in two escapes
    ("8859/1", "A\\X41\\\\F\\B", "AA|B"),
])
def test_hex_escapes_are_bytes_in_the_messages_character_set(character_set, text, expected):
    message = f"MSH|^~\\&|APP|HOSP|||20240102||ADT^A01|1|P|2.5.1||||||{character_set}\rZZZ|{text}"  # MSH-18
    assert segment_views(hl7.parse(message))[1].field(1)() == expected


def test_an_hd_typed_iso_that_is_no_oid_is_a_name():
    assert authority_system("HOSP", "r2.3", "ISO", DEFAULTS) == "urn:ehr:hl7v2:authority:HOSP"
    assert authority_system("", "1.2.840.114350", "ISO", DEFAULTS) == "urn:oid:1.2.840.114350"
