"""History at instance, type and system level over HTTP."""
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def put_patient(client, resource_id, family):
    body = {"resourceType": "Patient", "id": resource_id, "name": [{"family": family}]}
    return client.put(f"/fhir/Patient/{resource_id}", json=body, headers=FHIR_JSON)


def entries(bundle):
    return bundle.get("entry", [])


def test_instance_history_lists_every_version_newest_first(client):
    for family in ("One", "Two", "Three"):
        put_patient(client, "p1", family)
    client.delete("/fhir/Patient/p1")
    bundle = client.get("/fhir/Patient/p1/_history").json
    assert bundle["type"] == "history"
    assert [e["request"]["method"] for e in entries(bundle)] == ["DELETE", "PUT", "PUT", "PUT"]
    assert [e["response"]["etag"] for e in entries(bundle)] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert "resource" not in entries(bundle)[0]
    assert entries(bundle)[1]["resource"]["name"][0]["family"] == "Three"


def test_history_of_a_missing_resource_is_404(client):
    assert client.get("/fhir/Patient/nobody/_history").status_code == 404


def test_type_history_holds_only_that_type(client):
    put_patient(client, "p1", "One")
    client.put("/fhir/Practitioner/d1", json={"resourceType": "Practitioner", "id": "d1"}, headers=FHIR_JSON)
    bundle = client.get("/fhir/Patient/_history").json
    assert [e["resource"]["resourceType"] for e in entries(bundle)] == ["Patient"]


def test_system_history_holds_every_type(client):
    put_patient(client, "p1", "One")
    client.put("/fhir/Practitioner/d1", json={"resourceType": "Practitioner", "id": "d1"}, headers=FHIR_JSON)
    types = {e["resource"]["resourceType"] for e in entries(client.get("/fhir/_history").json)}
    assert types == {"Patient", "Practitioner"}


def test_history_since_leaves_out_older_versions(client):
    put_patient(client, "p1", "One")
    cutoff = put_patient(client, "p1", "Two").json["meta"]["lastUpdated"]
    put_patient(client, "p1", "Three")
    bundle = client.get("/fhir/Patient/p1/_history", query_string={"_since": cutoff}).json
    assert [e["resource"]["meta"]["versionId"] for e in entries(bundle)] == ["3", "2"]


def test_history_at_gives_the_version_current_then(client):
    put_patient(client, "p1", "One")
    moment = put_patient(client, "p1", "Two").json["meta"]["lastUpdated"]
    put_patient(client, "p1", "Three")
    bundle = client.get("/fhir/Patient/p1/_history", query_string={"_at": moment}).json
    assert [e["resource"]["name"][0]["family"] for e in entries(bundle)] == ["Two"]


def test_history_at_a_year_covers_versions_current_during_it(client):
    put_patient(client, "p1", "One")
    bundle = client.get("/fhir/Patient/p1/_history?_at=2001").json
    assert entries(bundle) == []


def test_history_count_pages_with_next_links(client):
    for family in ("One", "Two", "Three", "Four", "Five"):
        put_patient(client, "p1", family)
    versions, url = [], "/fhir/Patient/p1/_history?_count=2"
    while url:
        bundle = client.get(url).json
        versions += [e["resource"]["meta"]["versionId"] for e in entries(bundle)]
        url = next((link["url"].split("localhost", 1)[1] for link in bundle["link"] if link["relation"] == "next"), None)
    assert versions == ["5", "4", "3", "2", "1"]


def test_history_rejects_unknown_parameters(client):
    put_patient(client, "p1", "One")
    response = client.get("/fhir/Patient/p1/_history?_sort=x")
    assert response.status_code == 400 and "_sort" in response.json["issue"][0]["diagnostics"]
