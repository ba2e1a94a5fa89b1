"""Liberal in what is accepted, strict in what is stored: messages as real senders send them, through the service and
POST /hl7v2, on SQLite and PostgreSQL. Each message is built here from the standard's segment definitions."""
from tests.hl7v2.test_receive import msa
from tests.test_cli import ehr
from interop.hl7v2.service import MessageQuery, receive, stored_message, stored_messages

MSH = "MSH|^~\\&|ADT1|NORTH|EHR|CENTRAL|{time}||{type}|{control}|P|{version}"


def segment(segment_id: str, fields: dict[int, str]) -> str:
    """A segment with each field at its number, as the standard numbers them."""
    values = [""] * max(fields)
    for number, value in fields.items():
        values[number - 1] = value
    return "|".join([segment_id, *values])


def message(type_: str, control: str, *segments: str, version: str = "2.5.1", time: str = "20250102030405") -> bytes:
    return ("\r".join([MSH.format(time=time, type=type_, control=control, version=version), *segments]) + "\r").encode()


def pid(mrn: str = "9001", **fields: str) -> str:
    return segment("PID", {1: "1", 3: f"{mrn}^^^NORTH^MR", 5: "Berg^Anna^Maria", 7: "19800101", 8: "F", **{int(k[1:]): v for k, v in fields.items()}})


def err_segments(ack: str) -> list[list[str]]:
    return [line.split("|") for line in ack.split("\r") if line.startswith("ERR")]


def search(client, query: str) -> list[dict]:
    return [entry["resource"] for entry in client.get(f"/fhir/{query}").get_json().get("entry", [])]


def test_a_value_outside_its_table_is_applied_with_a_warning_in_the_ack_and_the_list(engine, client):
    receipt = receive(engine, message("ADT^A01^ADT_A01", "W1", pid(f30="NO"), segment("PV1", {2: "ZZ", 19: "V1"})), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    locations = {tuple(err[2].split("^")): (err[3].split("^")[0], err[4]) for err in err_segments(receipt.ack)}
    assert locations == {("PID", "1", "30"): ("103", "W"), ("PV1", "1", "2"): ("103", "W")}
    (patient,) = search(client, "Patient?identifier=9001")
    assert patient["deceasedBoolean"] is False  # NO read as N
    (encounter,) = search(client, "Encounter?identifier=V1")
    assert encounter["class"] == {"system": "urn:ehr:hl7v2:codesystem:NORTH/v2-0004", "code": "ZZ"}  # the sender's own code
    (listed,) = stored_messages(engine, MessageQuery(control_id="W1"))
    assert "PID-30" in listed.warnings and "PV1-2" in listed.warnings


def test_an_unknown_gender_is_unknown_with_the_code_kept(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "G1", pid(f8="W")), "test")
    (patient,) = search(client, "Patient?identifier=9001")
    assert patient["gender"] == "unknown"
    assert patient["_gender"]["extension"][0]["valueString"] == "W"


def test_warnings_before_v25_go_in_err1_which_has_no_severity(engine):
    receipt = receive(engine, message("ADT^A28", "W23", pid(f30="NO"), version="2.3"), "test")
    (err,) = err_segments(receipt.ack)
    assert err[1] == "PID^1^30^103&Table value not found&HL70357"


def test_a_trigger_named_by_its_own_structure_is_read_as_the_standards(engine, client):
    for number, (event, structure) in enumerate([("A04", "ADT_A04"), ("A08", "ADT_A08"), ("A13", "ADT_A13"), ("A31", "ADT_A31")]):
        receipt = receive(engine, message(f"ADT^{event}^{structure}", f"S{number}", pid(), segment("PV1", {2: "O", 19: "V9"})), "test")
        assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA"), event
    assert len(search(client, "Patient?identifier=9001")) == 1


def test_a40_named_adt_a40_merges_when_it_has_its_mrg(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "M0", pid("9002")), "test")
    receipt = receive(engine, message("ADT^A40^ADT_A40", "M1", pid("9001"), segment("MRG", {1: "9002^^^NORTH^MR"})), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    (merged,) = search(client, "Patient?identifier=9002")
    assert merged["active"] is False and merged["link"][0]["type"] == "replaced-by"


def test_a40_without_mrg_under_another_structure_name_is_refused_ar(engine):
    receipt = receive(engine, message("ADT^A40^ADT_A40", "M2", pid("9001")), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("rejected", "AR")
    assert "no MRG" in receipt.ack


def test_a34_merges_the_patient_mrg1_names(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "M3", pid("9003")), "test")
    receive(engine, message("ADT^A34^ADT_A30", "M4", pid("9001"), segment("MRG", {1: "9003^^^NORTH^MR"})), "test")
    assert search(client, "Patient?identifier=9003")[0]["active"] is False


def test_a47_gives_the_patient_its_new_identifier_in_place_of_the_old(engine, client):
    receive(engine, message("ADT^A01^ADT_A01", "I1", pid("OLD-1"), segment("PV1", {2: "I", 19: "V47"})), "test")
    (before,) = search(client, "Patient?identifier=OLD-1")
    receipt = receive(engine, message("ADT^A47^ADT_A30", "I2", pid("NEW-1"), segment("MRG", {1: "OLD-1^^^NORTH^MR"})), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    (after,) = search(client, "Patient?identifier=NEW-1")
    assert after["id"] == before["id"]
    assert search(client, "Patient?identifier=OLD-1") == []
    assert search(client, f"Encounter?subject=Patient/{after['id']}")[0]["identifier"][0]["value"] == "V47"


def test_a47_to_an_identifier_another_patient_has_is_an_ae_205(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "I3", pid("OLD-2")), "test")
    receive(engine, message("ADT^A28^ADT_A05", "I4", pid("NEW-2")), "test")
    receipt = receive(engine, message("ADT^A47^ADT_A30", "I5", pid("NEW-2"), segment("MRG", {1: "OLD-2^^^NORTH^MR"})), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("error", "AE")
    assert "|205^" in receipt.ack
    assert len(search(client, "Patient?identifier=OLD-2")) == 1


def test_an_external_id_without_authority_never_matches_another_patients_mrn(engine, client):
    receive(engine, message("ADT^A08^ADT_A01", "X1", segment("PID", {1: "1", 2: "222", 3: "111^^^NORTH^MR", 5: "Berg^Anna"})), "test")
    receive(engine, message("ADT^A08^ADT_A01", "X2", segment("PID", {1: "1", 3: "222^^^NORTH^MR", 5: "Olsen^Bob"})), "test")
    assert search(client, "Patient?identifier=111")[0]["name"][0]["family"] == "Berg"
    assert search(client, "Patient?identifier=urn:ehr:hl7v2:authority:NORTH|222")[0]["name"][0]["family"] == "Olsen"


def test_a_later_message_with_fewer_name_components_keeps_the_middle_name_and_the_identifiers(engine, client):
    receive(engine, message("ADT^A08^ADT_A01", "F1", pid(f5="Berg^Anna^Maria", f19="123-45-6789")), "test")
    oru = message("ORU^R01^ORU_R01", "F2", pid(f5="Berg^Anna"), segment("OBR", {2: "P1", 3: "F1", 4: "1^Panel^LN", 7: "20250102", 25: "F"}),
                  segment("OBX", {2: "NM", 3: "2^Thing^LN", 5: "7", 11: "F"}))
    assert receive(engine, oru, "test").status == "applied"
    (patient,) = search(client, "Patient?identifier=9001")
    assert patient["name"][0]["given"] == ["Anna", "Maria"]
    assert any(found.get("system") == "http://hl7.org/fhir/sid/us-ssn" for found in patient["identifier"])


def test_a_visit_without_a_visit_number_is_keyed_by_the_patient_and_its_admit_time(engine, client):
    admitted = segment("PV1", {2: "I", 3: "W1^1^A", 44: "202501020300"})
    receive(engine, message("ADT^A01^ADT_A01", "N1", pid(), admitted), "test")
    discharged = segment("PV1", {2: "I", 3: "W1^1^A", 44: "202501020300", 45: "202501050900"})
    receive(engine, message("ADT^A03^ADT_A03", "N2", pid(), discharged), "test")
    (encounter,) = search(client, "Encounter?subject:Patient.identifier=9001")
    assert (encounter["status"], encounter["period"]["end"]) == ("finished", "2025-01-05T09:00:00Z")


def test_a_visit_that_starts_without_visit_number_nor_admit_time_is_kept_by_its_event_time_with_a_warning(engine, client):
    admit = message("ADT^A01^ADT_A01", "N3", segment("EVN", {1: "A01", 2: "202501020300"}), pid(), segment("PV1", {2: "I", 3: "W1^1^A", 7: "77^Doc^Dora"}))
    receipt = receive(engine, admit, "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    assert err_segments(receipt.ack)[0][2] == "PV1^1^19"
    (encounter,) = search(client, "Encounter")
    assert encounter["participant"][0]["individual"]["display"] == "Dora Doc"
    assert encounter["identifier"][0]["system"] == "urn:ehr:hl7v2:admission"


def test_a_later_event_without_visit_number_nor_admit_time_writes_no_encounter_with_a_warning(engine, client):
    receipt = receive(engine, message("ADT^A02^ADT_A02", "N4", pid(), segment("PV1", {2: "I", 3: "W1^1^A"})), "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    assert err_segments(receipt.ack)[0][2] == "PV1^1^19"
    assert search(client, "Encounter") == []


def test_results_before_any_obr_are_observations_without_a_report(engine, client):
    oru = message("ORU^R01^ORU_R01", "O1", pid(), segment("OBX", {2: "NM", 3: "8867-4^Heart rate^LN", 5: "72", 6: "/min", 11: "F", 14: "202501020300"}))
    receipt = receive(engine, oru, "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    (observation,) = search(client, "Observation?code=8867-4")
    assert observation["valueQuantity"]["value"] == 72
    assert search(client, "DiagnosticReport") == []
    assert receive(engine, oru.replace(b"|O1|", b"|O2|"), "test").status == "applied"  # sent again: the same Observation
    assert len(search(client, "Observation?code=8867-4")) == 1


def test_a29_makes_the_patient_inactive_and_keeps_its_record(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "D1", pid()), "test")
    receipt = receive(engine, message("ADT^A29^ADT_A21", "D2", pid(), segment("PV1", {2: "N"})), "test")
    assert receipt.status == "applied"
    (patient,) = search(client, "Patient?identifier=9001")
    assert patient["active"] is False and patient["name"][0]["family"] == "Berg"


def test_pending_and_cancel_events(engine, client):
    visit = {2: "I", 3: "W1^1^A", 19: "V77"}
    receive(engine, message("ADT^A14^ADT_A05", "P1", pid(), segment("PV1", {**visit, 2: "P"}), segment("PV2", {8: "202501100800"})), "test")
    (planned,) = search(client, "Encounter?identifier=V77")
    assert (planned["status"], planned["period"]["start"]) == ("planned", "2025-01-10T08:00:00Z")  # PV2-8 starts a planned visit
    receive(engine, message("ADT^A27^ADT_A21", "P2", pid(), segment("PV1", visit)), "test")
    assert search(client, "Encounter?identifier=V77")[0]["status"] == "cancelled"
    receive(engine, message("ADT^A01^ADT_A01", "P3", pid(), segment("PV1", {**visit, 19: "V78"})), "test")
    receive(engine, message("ADT^A15^ADT_A15", "P4", pid(), segment("PV1", {**visit, 19: "V78", 42: "W2^2^B"})), "test")
    pending = search(client, "Encounter?identifier=V78")[0]
    assert [entry["status"] for entry in pending["location"]] == ["active", "reserved"]
    receive(engine, message("ADT^A26^ADT_A21", "P5", pid(), segment("PV1", {**visit, 19: "V78", 42: "W2^2^B"})), "test")
    assert [entry["status"] for entry in search(client, "Encounter?identifier=V78")[0]["location"]] == ["active"]
    receive(engine, message("ADT^A16^ADT_A16", "P6", pid(), segment("PV1", {**visit, 19: "V78"}), segment("PV2", {9: "202501200900"})), "test")
    expected_end = search(client, "Encounter?identifier=V78")[0]["extension"]
    assert expected_end == [{"url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate", "valueDateTime": "2025-01-20T09:00:00Z"}]
    receive(engine, message("ADT^A25^ADT_A21", "P7", pid(), segment("PV1", {**visit, 19: "V78"}), segment("PV2", {9: "202501200900"})), "test")
    encounter = search(client, "Encounter?identifier=V78")[0]
    assert "extension" not in encounter and encounter["status"] == "in-progress"


def test_a06_and_a07_change_the_class_of_the_visit(engine, client):
    receive(engine, message("ADT^A04^ADT_A01", "C1", pid(), segment("PV1", {2: "O", 19: "V60"})), "test")
    receive(engine, message("ADT^A06^ADT_A06", "C2", pid(), segment("PV1", {2: "I", 19: "V60"})), "test")
    assert search(client, "Encounter?identifier=V60")[0]["class"]["code"] == "IMP"
    receive(engine, message("ADT^A07^ADT_A06", "C3", pid(), segment("PV1", {2: "O", 19: "V60"})), "test")
    assert search(client, "Encounter?identifier=V60")[0]["class"]["code"] == "AMB"


def test_tracking_events_move_and_cancel_temporary_locations(engine, client):
    visit = {2: "I", 3: "W1^1^A", 19: "V90"}
    receive(engine, message("ADT^A01^ADT_A01", "T1", pid(), segment("PV1", visit)), "test")
    receive(engine, message("ADT^A09^ADT_A09", "T2", pid(), segment("PV1", {**visit, 11: "XRAY^1"})), "test")
    assert [entry["status"] for entry in search(client, "Encounter?identifier=V90")[0]["location"]] == ["active", "active"]
    receive(engine, message("ADT^A33^ADT_A21", "T3", pid(), segment("PV1", {**visit, 11: "XRAY^1"})), "test")
    (only_bed,) = search(client, "Encounter?identifier=V90")[0]["location"]
    assert only_bed["status"] == "active"


def test_allergies_and_diagnoses_are_written_once_however_often_sent(engine, client):
    segments = (pid(), segment("PV1", {2: "I", 19: "V5"}), segment("AL1", {1: "1", 2: "DA", 3: "70618^Penicillin^RXNORM", 4: "SV", 5: "Hives"}),
                segment("DG1", {1: "1", 3: "J18.9^Pneumonia^I10", 6: "A"}))
    for control in ("A1", "A2"):
        assert receive(engine, message("ADT^A01^ADT_A01", control, *segments), "test").status == "applied"
    (allergy,) = search(client, "AllergyIntolerance?code=70618")
    assert allergy["reaction"][0]["severity"] == "severe"
    (condition,) = search(client, "Condition?code=J18.9")
    (encounter,) = search(client, "Encounter?identifier=V5")
    assert encounter["diagnosis"][0]["condition"]["reference"] == f"Condition/{condition['id']}"


def test_next_of_kin_become_related_persons(engine, client):
    receive(engine, message("ADT^A01^ADT_A01", "K1", pid(), segment("NK1", {1: "1", 2: "Berg^Olaf", 3: "SPO^Spouse^HL70063", 5: "^PRN^PH^^^555^1234567"}),
                            segment("PV1", {2: "I", 19: "V6"})), "test")
    (related,) = search(client, "RelatedPerson?name=Olaf")
    (patient,) = search(client, "Patient?identifier=9001")
    assert related["patient"]["reference"] == f"Patient/{patient['id']}"
    assert related["relationship"][0]["coding"][0]["code"] == "SPS"


def test_an_operator_sets_the_identifier_system_of_an_assigning_authority(database_url, engine, client, tmp_path):
    added = ehr(database_url, "hl7", "authority", "add", "north", "http://hospital.example/mrn", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    listed = ehr(database_url, "hl7", "authority", "list", cwd=tmp_path)
    assert "NORTH\thttp://hospital.example/mrn" in listed.stdout
    receive(engine, message("ADT^A28^ADT_A05", "AU1", pid("123")), "test")
    (patient,) = search(client, "Patient?identifier=http://hospital.example/mrn|123")
    assert patient["identifier"][0]["system"] == "http://hospital.example/mrn"
    assert ehr(database_url, "hl7", "authority", "add", "SOUTH", "not a uri", cwd=tmp_path).returncode == 2
    assert ehr(database_url, "hl7", "authority", "remove", "NORTH", cwd=tmp_path).returncode == 0
    assert ehr(database_url, "hl7", "authority", "remove", "NORTH", cwd=tmp_path).returncode == 1


def test_the_message_list_says_a_control_id_was_reused(database_url, engine, tmp_path):
    receive(engine, message("ADT^A28^ADT_A05", "SAME", pid("1")), "test")
    receive(engine, message("ADT^A28^ADT_A05", "SAME", pid("2")), "test")
    listed = ehr(database_url, "hl7", "list", "--control-id", "SAME", cwd=tmp_path).stdout.splitlines()
    assert listed[0].split("\t") == ["ID", "RECEIVED", "STATUS", "SENDER", "TYPE", "CONTROL ID", "NOTES"]
    assert "control id reused" in listed[1] and "control id reused" not in listed[2]
    shown = ehr(database_url, "hl7", "show", str(stored_messages(engine)[0].id), cwd=tmp_path).stdout
    assert "resources:\n  Patient/" in shown and "reuses_control_id_of: " in shown
    assert stored_message(engine, stored_messages(engine)[0].id).reuses_control_id_of == stored_messages(engine)[1].id


# What the review of this change found


def test_two_obrs_under_one_placer_number_without_filler_numbers_are_two_reports(engine, client):
    oru = message("ORU^R01^ORU_R01", "R1", pid(), segment("ORC", {1: "RE", 2: "ORD-9"}),
                  segment("OBR", {1: "1", 2: "ORD-9", 4: "24323-8^CMP^LN", 7: "20250102", 25: "F"}), segment("OBX", {2: "NM", 3: "2345-7^Glucose^LN", 5: "5", 11: "F"}),
                  segment("OBR", {1: "2", 2: "ORD-9", 4: "58410-2^CBC^LN", 7: "20250102", 25: "F"}), segment("OBX", {2: "NM", 3: "718-7^Hb^LN", 5: "13", 11: "F"}))
    receipt = receive(engine, oru, "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    assert sorted(report["code"]["coding"][0]["code"] for report in search(client, "DiagnosticReport")) == ["24323-8", "58410-2"]


def test_results_without_order_nor_time_on_two_days_are_two_observations(engine, client):
    result = segment("OBX", {2: "NM", 3: "8867-4^Heart rate^LN", 5: "72", 11: "F"})
    receive(engine, message("ORU^R01^ORU_R01", "H1", pid(), result, time="20250101080000"), "test")
    receive(engine, message("ORU^R01^ORU_R01", "H2", pid(), result.replace("|72|", "|80|"), time="20250102080000"), "test")
    assert sorted(found["valueQuantity"]["value"] for found in search(client, "Observation?code=8867-4")) == [72, 80]


def test_control_characters_and_doubled_spaces_in_codes_do_not_refuse_the_message(engine, client):
    oru = message("ORU^R01^ORU_R01", "CC1", pid(), segment("OBR", {1: "1", 3: "F7", 4: "1^Panel^LN", 7: "20250102", 25: "F"}),
                  segment("OBX", {2: "TX", 3: "11526-1^Report^LN", 5: "Page 1\x0cPage 2", 8: "H  H", 11: "F"}))
    receipt = receive(engine, oru, "test")
    assert (receipt.status, msa(receipt.ack)[1]) == ("applied", "AA")
    (observation,) = search(client, "Observation?code=11526-1")
    assert observation["valueString"] == "Page 1 Page 2"


def test_hex_encapsulated_data_is_kept_as_base64_and_a_reference_pointer_as_a_url(engine, client):
    oru = message("ORU^R01^ORU_R01", "ED1", pid(), segment("OBR", {1: "1", 3: "F8", 4: "1^Panel^LN", 7: "20250102", 25: "F"}),
                  segment("OBX", {1: "1", 2: "ED", 3: "11502-2^Report^LN", 5: "LAB^AP^PDF^Hex^255044462D", 11: "F"}),
                  segment("OBX", {1: "2", 2: "RP", 3: "18748-4^Image^LN", 5: "http://pacs.example/1^PACS^IM^JPEG", 11: "F"}))
    assert receive(engine, oru, "test").status == "applied"
    (pdf,) = search(client, "Observation?code=11502-2")
    assert pdf["extension"][0]["valueAttachment"] == {"contentType": "application/pdf", "data": "JVBERi0="}
    (image,) = search(client, "Observation?code=18748-4")
    assert image["extension"][0]["valueAttachment"] == {"url": "http://pacs.example/1", "contentType": "image/jpeg"}


def test_a_diagnosis_and_an_allergy_are_replaced_by_what_the_next_message_says(engine, client):
    visit = segment("PV1", {2: "I", 19: "V8"})
    receive(engine, message("ADT^A01^ADT_A01", "DX1", pid(), visit, segment("AL1", {1: "1", 2: "DA", 3: "PEN^Penicillin", 4: "SV", 5: "Hives"}),
                            segment("DG1", {1: "1", 3: "J18.9^Pneumonia^I10", 5: "20250101", 21: "D"})), "test")
    receive(engine, message("ADT^A08^ADT_A01", "DX2", pid(), visit, segment("AL1", {1: "1", 2: "DA", 3: "PEN^Penicillin", 4: "MI"}),
                            segment("DG1", {1: "1", 3: "J18.9^Pneumonia^I10", 5: '""', 21: "A"})), "test")
    (condition,) = search(client, "Condition")
    assert "verificationStatus" not in condition and "onsetDateTime" not in condition
    (allergy,) = search(client, "AllergyIntolerance")
    assert allergy.get("criticality") == "low" and "reaction" not in allergy


def test_a_cancelled_discharge_without_admit_time_keeps_the_visits_start(engine, client):
    visit = {2: "I", 19: "V13"}
    receive(engine, message("ADT^A01^ADT_A01", "E1", pid(), segment("PV1", {**visit, 44: "202501020800"})), "test")
    receive(engine, message("ADT^A03^ADT_A03", "E2", pid(), segment("PV1", {**visit, 45: "202501050800"})), "test")
    receive(engine, message("ADT^A13^ADT_A01", "E3", pid(), segment("PV1", visit)), "test")
    (encounter,) = search(client, "Encounter?identifier=V13")
    assert (encounter["status"], encounter["period"]) == ("in-progress", {"start": "2025-01-02T08:00:00Z"})


def test_the_null_value_in_a_component_deletes_that_part(engine, client):
    receive(engine, message("ADT^A08^ADT_A01", "ND1", pid(f5="Berg^Anna^Maria")), "test")
    receive(engine, message("ADT^A08^ADT_A01", "ND2", pid(f5='Berg^Anna^""')), "test")
    assert search(client, "Patient?identifier=9001")[0]["name"][0]["given"] == ["Anna"]


def test_a_result_keeps_the_visits_other_identifiers(engine, client):
    receive(engine, message("ADT^A01^ADT_A01", "V1", pid(), segment("PV1", {2: "I", 19: "V100", 50: "ALT-77"})), "test")
    receive(engine, message("ORU^R01^ORU_R01", "V2", pid(), segment("PV1", {2: "I", 19: "V100"}),
                            segment("OBR", {1: "1", 3: "F9", 4: "1^Panel^LN", 7: "20250102", 25: "F"}),
                            segment("OBX", {2: "NM", 3: "2^X^LN", 5: "1", 11: "F"})), "test")
    (encounter,) = search(client, "Encounter?identifier=V100")
    assert [found["value"] for found in encounter["identifier"]] == ["V100", "ALT-77"]


def test_a_multiple_birth_indicator_read_liberally_then_sent_right_leaves_no_stale_original_text(engine, client):
    receive(engine, message("ADT^A28^ADT_A05", "MB1", pid(f24="MAYBE")), "test")
    receive(engine, message("ADT^A28^ADT_A05", "MB2", pid(f24="Y")), "test")
    (patient,) = search(client, "Patient?identifier=9001")
    assert patient["multipleBirthBoolean"] is True and "_multipleBirthBoolean" not in patient
