"""PV1-3 and PV1-6 as Location resources, and an Encounter's location history across messages, through the
service and the REST API, on SQLite and PostgreSQL."""
from interop.hl7v2.service import receive
from tests.hl7v2.test_batch import a01, entries

VISIT = "V55501"  # test_batch's A01: visit number in PV1-19, PV1-3 W1^101^1, MSH-4 NORTH


def adt(event: str, control: str, location: str, prior: str = "") -> bytes:
    """test_batch's A01 as `event`, at `location` (PV1-3), from `prior` (PV1-6)."""
    raw = a01(control).replace(b"ADT^A01^ADT_A01", f"ADT^{event}^ADT_A01".encode()).replace(b"EVN|A01", f"EVN|{event}".encode())
    return raw.replace(b"PV1|1|I|W1^101^1||||", f"PV1|1|I|{location}|||{prior}|".encode())


def encounter_locations(client) -> list[tuple[str, str]]:
    (encounter,) = entries(client, f"Encounter?identifier={VISIT}")
    return [(entry["location"]["display"], entry["status"]) for entry in encounter["location"]]


def location_path(client, reference: str) -> list[str]:
    """The Location a reference names and those it is part of, by their business keys."""
    path = []
    while reference:
        body = client.get(f"/fhir/{reference}").get_json()
        path.append(body["identifier"][0]["value"])
        reference = body.get("partOf", {}).get("reference")
    return path


def test_the_encounter_references_the_bed_which_is_part_of_the_room_and_the_ward(client, engine):
    assert receive(engine, a01("L1"), "test").status == "applied"
    (encounter,) = entries(client, f"Encounter?identifier={VISIT}")
    assert encounter["location"][0]["location"]["display"] == "W1/101/1"
    assert location_path(client, encounter["location"][0]["location"]["reference"]) == ["NORTH/W1/101/1", "NORTH/W1/101", "NORTH/W1"]
    (bed,) = entries(client, "Location?identifier=urn:ehr:hl7v2:location|NORTH/W1/101/1")
    assert bed["physicalType"]["coding"][0]["code"] == "bd"


def test_a_resent_location_is_not_written_again(client, engine):
    receive(engine, a01("L2"), "test")
    receive(engine, a01("L3"), "test")  # the same patient and visit, another control id
    locations = entries(client, "Location")
    assert len(locations) == 3
    assert {location["meta"]["versionId"] for location in locations} == {"1"}


def test_transfers_and_the_discharge_keep_where_the_patient_has_been(client, engine):
    receive(engine, a01("L4"), "test")
    receive(engine, adt("A02", "L5", "ICU^12^A", prior="W1^101^1"), "test")
    assert encounter_locations(client) == [("ICU/12/A", "active"), ("W1/101/1", "completed")]
    receive(engine, adt("A02", "L6", "W2^201^2", prior="ICU^12^A"), "test")
    assert encounter_locations(client) == [("W2/201/2", "active"), ("ICU/12/A", "completed"), ("W1/101/1", "completed")]
    receive(engine, adt("A03", "L7", "W2^201^2"), "test")
    assert encounter_locations(client) == [("W2/201/2", "completed"), ("ICU/12/A", "completed"), ("W1/101/1", "completed")]


def test_a_cancelled_transfer_leaves_the_patient_where_they_were_without_the_cancelled_bed(client, engine):
    receive(engine, a01("L8"), "test")
    receive(engine, adt("A02", "L9", "ICU^12^A", prior="W1^101^1"), "test")
    receive(engine, adt("A12", "L10", "W1^101^1", prior="ICU^12^A"), "test")
    assert encounter_locations(client) == [("W1/101/1", "active")]
