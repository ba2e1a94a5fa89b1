"""PV1-3 and PV1-6 as Location resources, and an Encounter's location history across messages, through the
service and the REST API, on SQLite and PostgreSQL."""
from interop.hl7v2.service import receive
from tests.hl7v2.test_batch import a01, entries

BED = "si:NORTH/wa:W1/ro:101/bd:1"
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
    assert location_path(client, encounter["location"][0]["location"]["reference"]) == [
        BED, "si:NORTH/wa:W1/ro:101", "si:NORTH/wa:W1", "si:NORTH",  # PV1-3 has no PL.4: the sender's facility
    ]
    (bed,) = entries(client, f"Location?identifier=urn:ehr:hl7v2:location|{BED}")
    assert bed["physicalType"]["coding"][0]["code"] == "bd"


def test_a_resent_location_is_not_written_again(client, engine):
    receive(engine, a01("L2"), "test")
    receive(engine, a01("L3"), "test")  # the same patient and visit, another control id
    locations = entries(client, "Location")
    assert len(locations) == 4
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
    receive(engine, adt("A02", "L10", "W2^201^2", prior="ICU^12^A"), "test")
    receive(engine, adt("A12", "L11", "ICU^12^A", prior="W2^201^2"), "test")
    assert encounter_locations(client) == [("ICU/12/A", "active"), ("W1/101/1", "completed")]


def test_an_update_after_the_discharge_leaves_every_location_completed(client, engine):
    receive(engine, a01("L12"), "test")
    receive(engine, adt("A03", "L13", "W1^101^1"), "test")
    receive(engine, adt("A08", "L14", "W1^101^1"), "test")
    assert encounter_locations(client) == [("W1/101/1", "completed")]


def test_a_planned_location_never_occupied_is_not_history(client, engine):
    receive(engine, adt("A05", "L15", "W9^901^1"), "test")
    receive(engine, adt("A01", "L16", "W1^101^1"), "test")
    assert encounter_locations(client) == [("W1/101/1", "active")]


def test_a_location_stored_before_locations_were_resources_is_not_kept_twice(client, engine):
    created = client.post("/fhir/Encounter", json={
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
        "identifier": [{"system": "urn:ehr:hl7v2:authority:NORTH", "value": VISIT}],  # PV1-19 without authority: the sender's
        "location": [{"location": {"display": "W1/101/1"}, "status": "active"}],
    })
    assert created.status_code == 201
    receive(engine, a01("L17"), "test")
    (encounter,) = entries(client, f"Encounter?identifier={VISIT}")
    assert [(entry["location"]["display"], "reference" in entry["location"]) for entry in encounter["location"]] == [("W1/101/1", True)]


def test_what_an_operator_adds_to_a_location_stays_when_the_feed_names_it_again(client, engine):
    receive(engine, a01("L18"), "test")
    (bed,) = entries(client, f"Location?identifier=urn:ehr:hl7v2:location|{BED}")
    added = {"status": "suspended", "alias": ["Window bed"], "identifier": [*bed["identifier"], {"system": "urn:beds", "value": "17"}],
             "meta": {"tag": [{"system": "urn:tags", "code": "audited"}]}}
    assert client.put(f"/fhir/Location/{bed['id']}", json={**bed, **added}).status_code == 200
    receive(engine, adt("A08", "L19", "W1^101^1^^^^^^Window bed by the garden"), "test")
    (bed,) = entries(client, f"Location?identifier=urn:ehr:hl7v2:location|{BED}")
    assert (bed["status"], bed["alias"], bed["description"]) == ("suspended", ["Window bed"], "Window bed by the garden")
    assert [identifier["value"] for identifier in bed["identifier"]] == [BED, "17"]
    assert bed["meta"]["tag"] == [{"system": "urn:tags", "code": "audited"}]


def test_a_location_entry_without_a_status_does_not_stop_the_feed(client, engine):
    created = client.post("/fhir/Encounter", json={
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
        "identifier": [{"system": "urn:ehr:hl7v2:authority:NORTH", "value": VISIT}],
        "location": [{"location": {"display": "Old ward"}}],  # Encounter.location.status is optional
    })
    assert created.status_code == 201
    assert receive(engine, a01("L20"), "test").status == "applied"
    assert encounter_locations(client) == [("W1/101/1", "active"), ("Old ward", "completed")]


def test_a_location_naming_only_its_facility_is_that_facility(client, engine):
    receive(engine, adt("A01", "L21", "^^^SOUTH"), "test")
    (encounter,) = entries(client, f"Encounter?identifier={VISIT}")
    assert location_path(client, encounter["location"][0]["location"]["reference"]) == ["si:SOUTH"]
