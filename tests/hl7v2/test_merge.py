"""ADT^A40 merges through the service, on SQLite and PostgreSQL: the merged patient's records move to the survivor."""
from interop.hl7v2.service import receive

NORTH = "urn:oid:1.2.840.114350"


def segment(name: str, fields: dict[int, str]) -> str:
    """A segment with `fields` at their numbers, the others empty."""
    return "|".join([name, *(fields.get(number, "") for number in range(1, max(fields) + 1))])


def message(msh9: str, control: str, *segments: str) -> bytes:
    msh = f"MSH|^~\\&|SENDER|NORTH|EHR|CENTRAL|20250102030405||{msh9}|{control}|P|2.5.1"
    return "\r".join([msh, *segments]).encode() + b"\r"


def pid(mrn: str) -> str:
    return segment("PID", {1: "1", 3: f"{mrn}^^^NORTH&1.2.840.114350&ISO^MR", 5: "Berg^Anna", 7: "19800101", 8: "F"})


def admission(control: str, mrn: str = "1") -> bytes:
    visit = segment("PV1", {1: "1", 2: "I", 3: "W1^101^1", 19: f"V{mrn}", 44: "20250102030000"})
    return message("ADT^A01^ADT_A01", control, "EVN|A01|20250102030405", pid(mrn), visit)


def results(control: str, mrn: str = "2") -> bytes:
    return message(
        "ORU^R01^ORU_R01", control, pid(mrn),
        segment("PV1", {1: "1", 2: "O", 19: f"V{mrn}"}),
        segment("OBR", {1: "1", 3: f"F-{mrn}^LAB", 4: "24323-8^Metabolic panel^LN", 7: "20250103090000", 25: "F"}),
        segment("OBX", {1: "1", 2: "NM", 3: "2345-7^Glucose^LN", 5: "95", 6: "mg/dL", 11: "F"}),
        segment("OBX", {1: "2", 2: "NM", 3: "2951-2^Sodium^LN", 5: "140", 6: "mmol/L", 11: "F"}),
    )


def merge(control: str, survivor: str = "1", merged: str | None = "2") -> bytes:
    groups = [pid(survivor)]
    if merged is not None:
        groups.append(segment("MRG", {1: f"{merged}^^^NORTH&1.2.840.114350&ISO^MR", 7: "Berg^Anna"}))
    return message("ADT^A40^ADT_A39", control, "EVN|A40|20250105080000", *groups)


def msa_code(ack: str) -> str:
    return next(line for line in ack.split("\r") if line.startswith("MSA")).split("|")[1]


def patient(client, mrn: str) -> dict:
    (entry,) = client.get(f"/fhir/Patient?identifier={NORTH}|{mrn}").get_json()["entry"]
    return entry["resource"]


def found(client, query: str) -> list[dict]:
    return [entry["resource"] for entry in client.get(f"/fhir/{query}").get_json().get("entry", [])]


def merged_records(client, engine) -> tuple[str, str, int]:
    """Patient A (MRN 1) admitted, patient B (MRN 2) with lab results, then B merged into A: their ids and the A40's message id."""
    receive(engine, admission("A1"), "test")
    receive(engine, results("R1"), "test")
    first, second = patient(client, "1")["id"], patient(client, "2")["id"]
    receipt = receive(engine, merge("M1"), "test")
    assert (receipt.status, msa_code(receipt.ack)) == ("applied", "AA")
    return first, second, receipt.message_id


def test_a40_makes_the_merged_patient_inactive_and_links_both_patients(client, engine):
    survivor, merged, _ = merged_records(client, engine)
    old = patient(client, "2")
    assert old["active"] is False
    assert old["link"] == [{"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
    assert patient(client, "1")["link"] == [{"other": {"reference": f"Patient/{merged}"}, "type": "replaces"}]


def test_a40_moves_the_merged_patients_results_and_visits_to_the_survivor(client, engine):
    survivor, merged, message_id = merged_records(client, engine)
    observations = found(client, f"Observation?subject=Patient/{survivor}")
    assert len(observations) == 2
    assert all(body["meta"]["source"] == f"urn:ehr:hl7v2:message:{message_id}" for body in observations)
    assert [body["subject"]["reference"] for body in found(client, f"DiagnosticReport?subject=Patient/{survivor}")] == [f"Patient/{survivor}"]
    assert len(found(client, f"Encounter?subject=Patient/{survivor}")) == 2
    for query in ("Observation", "DiagnosticReport", "Encounter"):
        assert found(client, f"{query}?subject=Patient/{merged}") == []


def test_a40_provenance_names_both_patients_and_every_moved_resource(client, engine):
    survivor, merged, message_id = merged_records(client, engine)
    records = {body["meta"]["source"]: body for body in found(client, f"Provenance?target=Patient/{merged}")}
    targets = {target["reference"] for target in records.pop(f"urn:ehr:hl7v2:message:{message_id}")["target"]}
    moved = [f"{body['resourceType']}/{body['id']}" for query in ("Observation", "DiagnosticReport")
             for body in found(client, f"{query}?subject=Patient/{survivor}")]
    moved += [f"Encounter/{body['id']}" for body in found(client, "Encounter?identifier=V2")]
    assert {f"Patient/{survivor}", f"Patient/{merged}", *moved} <= targets
    (oru_record,) = records.values()  # the results' own Provenance still names the patient they came for
    assert f"Patient/{merged}" in {target["reference"] for target in oru_record["target"]}


def test_an_a40_whose_merged_patient_does_not_exist_only_updates_the_survivor(client, engine):
    receive(engine, admission("A1"), "test")
    receive(engine, results("R1"), "test")
    receipt = receive(engine, merge("M1", merged="3"), "test")
    assert msa_code(receipt.ack) == "AA"
    assert "link" not in patient(client, "1")
    other = patient(client, "2")
    assert (other["meta"]["versionId"], "active" in other) == ("1", False)
    assert len(found(client, f"Observation?subject=Patient/{other['id']}")) == 2


def test_an_a40_without_mrg_is_answered_ae_101_at_mrg_1_1_and_changes_nothing(client, engine):
    receive(engine, admission("A1"), "test")
    receive(engine, results("R1"), "test")
    receipt = receive(engine, merge("M1", merged=None), "test")
    assert (receipt.status, msa_code(receipt.ack)) == ("error", "AE")
    assert "|MRG^1^1|101^" in receipt.ack
    assert patient(client, "1")["meta"]["versionId"] == "1"
    assert "active" not in patient(client, "2")


def test_replaying_an_a40_under_a_new_control_id_changes_nothing_more(client, engine):
    survivor, merged, _ = merged_records(client, engine)
    before = {body["id"]: body["meta"]["versionId"] for body in found(client, f"Observation?subject=Patient/{survivor}")}
    merged_version = patient(client, "2")["meta"]["versionId"]
    receipt = receive(engine, merge("M2"), "test")
    assert msa_code(receipt.ack) == "AA"
    assert patient(client, "2")["meta"]["versionId"] == merged_version
    assert len(patient(client, "1")["link"]) == 1
    assert {body["id"]: body["meta"]["versionId"] for body in found(client, f"Observation?subject=Patient/{survivor}")} == before


def test_a_later_update_of_the_survivor_keeps_its_merge_link(client, engine):
    survivor, merged, _ = merged_records(client, engine)
    receive(engine, admission("A2"), "test")
    assert patient(client, "1")["link"] == [{"other": {"reference": f"Patient/{merged}"}, "type": "replaces"}]
