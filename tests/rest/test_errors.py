"""Every failure a FHIR client can provoke is an OperationOutcome with a fitting status, issue code and diagnostics."""
import base64
import json
from urllib.parse import unquote

import pytest
from fhir.resources.R4B import get_fhir_model_class

from app.config import Settings
from app.web import create_app

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
PATIENT = {"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Aisha"]}], "gender": "female", "birthDate": "1984-03-02"}
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "valueQuantity": {"value": 72, "unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"},
}


def post(client, path, data, content_type=FHIR_JSON, **headers):
    payload = data if isinstance(data, (bytes, str)) else json.dumps(data)
    return client.post(path, data=payload, content_type=content_type, headers=headers)


def put(client, path, data, content_type=FHIR_JSON, **headers):
    payload = data if isinstance(data, (bytes, str)) else json.dumps(data)
    return client.put(path, data=payload, content_type=content_type, headers=headers)


def patch(client, path, operations, content_type=JSON_PATCH, **headers):
    payload = operations if isinstance(operations, (bytes, str)) else json.dumps(operations)
    return client.patch(path, data=payload, content_type=content_type, headers=headers)


def create_patient(client, body=PATIENT) -> dict:
    response = post(client, "/fhir/Patient", body)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def outcome(response, status: int, code: str | None = None) -> dict:
    """The response's OperationOutcome, after checking the status, media type, R4 validity and issue code."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type.startswith(FHIR_JSON)
    document = json.loads(response.get_data())
    assert document["resourceType"] == "OperationOutcome"
    get_fhir_model_class("OperationOutcome").model_validate(document)
    assert all(issue["severity"] in ("error", "fatal") for issue in document["issue"])
    assert all(issue.get("diagnostics", "").strip() for issue in document["issue"])
    if code is not None:
        assert code in issue_codes(document), document
    return document


def issue_codes(document: dict) -> list[str]:
    return [issue["code"] for issue in document["issue"]]


def expressions(document: dict) -> set[str]:
    return {expression for issue in document["issue"] for expression in issue.get("expression", [])}


def diagnostics(document: dict) -> str:
    return " ".join(issue["diagnostics"] for issue in document["issue"])


# Malformed and invalid bodies


def test_malformed_json_is_400_saying_the_body_is_not_json(client):
    document = outcome(post(client, "/fhir/Patient", '{"resourceType": "Patient", "gender": '), 400, "invalid")
    assert "JSON" in diagnostics(document)


def test_an_empty_body_is_400(client):
    document = outcome(post(client, "/fhir/Patient", b""), 400, "invalid")
    assert "body" in diagnostics(document).lower()


def test_an_invalid_birth_date_is_400_naming_patient_birth_date(client):
    document = outcome(post(client, "/fhir/Patient", {**PATIENT, "birthDate": "2nd of March"}), 400)
    assert "Patient.birthDate" in expressions(document)
    assert set(issue_codes(document)) <= {"value", "structure", "invalid"}


def test_an_empty_family_name_is_400_naming_patient_name_0_family(client):
    document = outcome(post(client, "/fhir/Patient", {**PATIENT, "name": [{"family": ""}]}), 400)
    assert "Patient.name[0].family" in expressions(document)


def test_every_invalid_element_is_named_in_one_outcome(client):
    body = {**PATIENT, "birthDate": "not-a-date", "name": [{"given": ["Aisha"]}, {"family": ""}], "deceasedBoolean": "perhaps", "hobby": "chess"}
    document = outcome(post(client, "/fhir/Patient", body), 400)
    assert {"Patient.birthDate", "Patient.name[1].family", "Patient.deceasedBoolean", "Patient.hobby"} <= expressions(document)


@pytest.mark.parametrize(
    ("body", "path"),
    [({**PATIENT, "gender": "woman"}, "Patient.gender"), ({**OBSERVATION, "status": "done"}, "Observation.status")],
    ids=["patient-gender", "observation-status"],
)
def test_a_code_outside_its_required_value_set_is_400_naming_the_element(client, body, path):
    """R4 required bindings: AdministrativeGender and ObservationStatus admit only their listed codes."""
    document = outcome(post(client, f"/fhir/{body['resourceType']}", body), 400)
    assert path in expressions(document)


def test_an_unknown_element_is_rejected_naming_it(client):
    document = outcome(post(client, "/fhir/Patient", {**PATIENT, "favouriteColour": "green"}), 400, "structure")
    assert "Patient.favouriteColour" in expressions(document)


def test_an_unknown_element_deep_inside_is_rejected_naming_its_path(client):
    body = {**PATIENT, "name": [{"family": "Okafor", "nickname": "Ai"}]}
    document = outcome(post(client, "/fhir/Patient", body), 400, "structure")
    assert "Patient.name[0].nickname" in expressions(document)


def test_a_missing_required_element_is_400_naming_it(client):
    body = {key: value for key, value in OBSERVATION.items() if key != "status"}
    document = outcome(post(client, "/fhir/Observation", body), 400, "required")
    assert "Observation.status" in expressions(document)


def test_two_values_for_one_choice_element_are_400(client):
    document = outcome(post(client, "/fhir/Observation", {**OBSERVATION, "valueString": "seventy-two"}), 400)
    assert any(expression.startswith("Observation.value") or expression == "Observation" for expression in expressions(document))


def test_an_invalid_resource_is_not_stored(client):
    outcome(post(client, "/fhir/Patient", {**PATIENT, "birthDate": "soon"}), 400)
    listing = client.get("/fhir/Patient?_summary=count").get_json()
    assert listing["total"] == 0


@pytest.mark.parametrize(
    ("element", "value", "path"),
    [
        ("name", [], "Patient.name"),
        ("maritalStatus", {}, "Patient.maritalStatus"),
        ("gender", None, "Patient.gender"),
        ("name", [{"family": "Okafor", "given": []}], "Patient.name[0].given"),
        ("name", [{}], "Patient.name[0]"),
    ],
    ids=["empty-array", "empty-object", "null", "nested-empty-array", "empty-object-in-array"],
)
def test_empty_arrays_objects_and_nulls_are_rejected_naming_the_element(client, element, value, path):
    document = outcome(post(client, "/fhir/Patient", {**PATIENT, element: value}), 400)
    assert path in expressions(document)


def test_a_resource_type_not_matching_the_url_is_400(client):
    document = outcome(post(client, "/fhir/Observation", PATIENT), 400)
    assert "Patient" in diagnostics(document) and "Observation" in diagnostics(document)


def test_a_body_without_resource_type_is_400(client):
    body = {key: value for key, value in PATIENT.items() if key != "resourceType"}
    document = outcome(post(client, "/fhir/Patient", body), 400)
    assert "resourceType" in diagnostics(document)


def test_a_put_whose_body_id_differs_from_the_url_id_is_400(client):
    document = outcome(put(client, "/fhir/Patient/p1", {**PATIENT, "id": "p2"}), 400)
    assert "p1" in diagnostics(document) and "p2" in diagnostics(document)
    assert client.get("/fhir/Patient/p1").status_code == 404
    assert client.get("/fhir/Patient/p2").status_code == 404


def test_a_put_without_an_id_in_the_body_is_400(client):
    document = outcome(put(client, "/fhir/Patient/p1", PATIENT), 400)
    assert "id" in diagnostics(document)
    assert client.get("/fhir/Patient/p1").status_code == 404


@pytest.mark.parametrize("resource_id", ["has space", "under_score", "x" * 65], ids=["space", "underscore", "65-chars"])
def test_a_put_with_an_id_fhir_does_not_allow_is_400(client, resource_id):
    outcome(put(client, f"/fhir/Patient/{resource_id}", {**PATIENT, "id": resource_id}), 400)


def test_a_resource_type_not_matching_the_url_on_put_is_400(client):
    outcome(put(client, "/fhir/Observation/o1", {**PATIENT, "id": "o1"}), 400)


# Unknown types and ids


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/fhir/Spaceship/1", None),
        ("GET", "/fhir/Spaceship/1/_history/1", None),
        ("POST", "/fhir/Spaceship", {"resourceType": "Spaceship"}),
        ("PUT", "/fhir/Spaceship/1", {"resourceType": "Spaceship", "id": "1"}),
        ("DELETE", "/fhir/Spaceship/1", None),
        ("GET", "/fhir/Spaceship", None),
        ("GET", "/fhir/Spaceship?_summary=count", None),
        ("GET", "/fhir/Spaceship/_history", None),
        ("GET", "/fhir/Spaceship/1/_history", None),
        ("GET", "/fhir/patient/1", None),
        ("POST", "/fhir/Parameters", {"resourceType": "Parameters"}),
    ],
    ids=["read", "vread", "create", "update", "delete", "search", "search-count", "history-type", "history-instance", "lowercase", "parameters"],
)
def test_an_unknown_resource_type_is_404_naming_the_type(client, method, path, body):
    data = None if body is None else json.dumps(body)
    response = client.open(path, method=method, data=data, content_type=FHIR_JSON if body else None)
    document = outcome(response, 404, "not-found")
    type_name = path.split("/")[2].split("?")[0]
    assert type_name in diagnostics(document)


def test_a_patch_of_an_unknown_resource_type_is_404(client):
    outcome(patch(client, "/fhir/Spaceship/1", [{"op": "remove", "path": "/x"}]), 404, "not-found")


def test_reading_an_id_that_does_not_exist_is_404_naming_it(client):
    document = outcome(client.get("/fhir/Patient/no-such-patient"), 404, "not-found")
    assert "no-such-patient" in diagnostics(document)


def test_reading_an_unknown_id_is_404_even_when_others_exist(client):
    create_patient(client)
    outcome(client.get("/fhir/Patient/no-such-patient"), 404, "not-found")


def test_patching_an_id_that_does_not_exist_is_404(client):
    outcome(patch(client, "/fhir/Patient/no-such-patient", [{"op": "add", "path": "/active", "value": True}]), 404, "not-found")


def test_history_of_an_id_that_does_not_exist_is_404(client):
    outcome(client.get("/fhir/Patient/no-such-patient/_history"), 404, "not-found")


# Ids FHIR does not allow, versions that cannot exist

BAD_IDS = {"nul": "a%00b", "underscore": "under_score", "65-chars": "x" * 65}
ID_ROUTES = {
    "read": ("GET", "/fhir/Patient/{}"),
    "vread": ("GET", "/fhir/Patient/{}/_history/1"),
    "history": ("GET", "/fhir/Patient/{}/_history"),
    "everything": ("GET", "/fhir/Patient/{}/$everything"),
    "delete": ("DELETE", "/fhir/Patient/{}"),
    "patch": ("PATCH", "/fhir/Patient/{}"),
    "update": ("PUT", "/fhir/Patient/{}"),
    "validate": ("POST", "/fhir/Patient/{}/$validate"),
}


def request_to(client, method: str, path: str, resource_id: str):
    """`method` on `path`, with the body that interaction takes (the resource carries the URL's id, decoded)."""
    if method == "PATCH":
        return patch(client, path, [{"op": "add", "path": "/active", "value": True}])
    if method in ("PUT", "POST"):
        return client.open(path, method=method, data=json.dumps({**PATIENT, "id": unquote(resource_id)}), content_type=FHIR_JSON)
    return client.open(path, method=method)


@pytest.mark.parametrize("resource_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize(("method", "path"), ID_ROUTES.values(), ids=ID_ROUTES.keys())
def test_every_interaction_on_an_id_fhir_does_not_allow_is_400_saying_what_an_id_is(client, method, path, resource_id):
    document = outcome(request_to(client, method, path.format(resource_id), resource_id), 400)
    assert "is not a FHIR resource id" in diagnostics(document)


@pytest.mark.parametrize("version", ["0", "2147483648", "99999999999999999999", "%C2%B2", "1.0"])
def test_a_version_that_cannot_exist_is_404(client, version):
    client.put("/fhir/Patient/p1", data=json.dumps({**PATIENT, "id": "p1"}), content_type=FHIR_JSON)
    outcome(client.get(f"/fhir/Patient/p1/_history/{version}"), 404, "not-found")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_an_id_holding_an_encoded_slash_is_not_redirected_to_another_resource(client, method):
    client.put("/fhir/Patient/p1", data=json.dumps({**PATIENT, "id": "p1"}), content_type=FHIR_JSON)
    response = client.open("/fhir/Patient/%2Fp1", method=method)
    outcome(response, 404, "not-found")
    assert client.get("/fhir/Patient/p1").status_code == 200


# Media types


@pytest.mark.parametrize(
    "content_type",
    ["application/fhir+xml", "application/xml", "application/x-www-form-urlencoded", "text/plain", "application/fhir+json; charset=iso-8859-1"],
)
def test_a_create_in_a_media_type_other_than_fhir_json_is_415(client, content_type):
    document = outcome(post(client, "/fhir/Patient", json.dumps(PATIENT), content_type=content_type), 415, "not-supported")
    assert FHIR_JSON in diagnostics(document) or "UTF-8" in diagnostics(document)
    assert client.get("/fhir/Patient?_summary=count").get_json()["total"] == 0


@pytest.mark.parametrize("content_type", ["application/fhir+xml", "text/plain"])
def test_an_update_in_a_media_type_other_than_fhir_json_is_415(client, content_type):
    outcome(put(client, "/fhir/Patient/p1", json.dumps({**PATIENT, "id": "p1"}), content_type=content_type), 415, "not-supported")


@pytest.mark.parametrize("content_type", [FHIR_JSON, "application/json"])
def test_a_json_patch_sent_as_another_media_type_is_415(client, content_type):
    created = create_patient(client)
    operations = [{"op": "replace", "path": "/gender", "value": "other"}]
    document = outcome(patch(client, f"/fhir/Patient/{created['id']}", operations, content_type=content_type), 415, "not-supported")
    assert JSON_PATCH in diagnostics(document)
    assert client.get(f"/fhir/Patient/{created['id']}").get_json()["gender"] == "female"


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/html", "application/fhir+json; fhirVersion=3.0"])
def test_an_accept_header_the_server_cannot_meet_is_406(client, accept):
    document = outcome(client.get("/fhir/metadata", headers={"Accept": accept}), 406, "not-supported")
    assert FHIR_JSON in diagnostics(document)


@pytest.mark.parametrize("requested", ["xml", "application/fhir+xml", "text/xml", "ttl", "html"])
def test_a_format_parameter_asking_for_another_format_is_406(client, requested):
    outcome(client.get("/fhir/metadata", query_string={"_format": requested}), 406, "not-supported")


def test_a_406_for_a_create_stores_nothing(client):
    response = post(client, "/fhir/Patient", PATIENT, Accept="application/fhir+xml")
    outcome(response, 406, "not-supported")
    assert client.get("/fhir/Patient?_summary=count").get_json()["total"] == 0


@pytest.mark.parametrize(
    "accept",
    [
        "application/fhir+json; fhirVersion=4.0",
        "application/fhir+json",
        "application/json",
        "*/*",
        "application/fhir+xml;q=0.9, application/fhir+json;q=0.8",
        None,
    ],
)
def test_accept_headers_that_allow_fhir_json_are_answered(client, accept):
    created = create_patient(client)
    headers = {"Accept": accept} if accept else {}
    response = client.get(f"/fhir/Patient/{created['id']}", headers=headers)
    assert response.status_code == 200
    assert response.get_json()["id"] == created["id"]


@pytest.mark.parametrize("requested", ["json", "application/fhir+json", "application/json"])
def test_a_format_parameter_asking_for_json_is_answered(client, requested):
    response = client.get("/fhir/metadata", query_string={"_format": requested}, headers={"Accept": "application/fhir+xml"})
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "CapabilityStatement"


def test_an_accept_of_application_json_is_answered_as_application_json(client):
    """R4 http.html: for a generic Accept such as application/json the server SHOULD answer in that mime type."""
    response = client.get("/fhir/metadata", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.mimetype == "application/json"


# Size limit


@pytest.fixture
def small_client(database_url):
    app = create_app(Settings(auth=False, database_url=database_url, max_body_bytes=1000))
    yield app.test_client()
    app.extensions["ehr.engine"].dispose()


def test_a_body_over_the_configured_limit_is_413(small_client):
    body = {**PATIENT, "name": [{"family": "x" * 2000}]}
    document = outcome(post(small_client, "/fhir/Patient", body), 413, "too-costly")
    assert "1000" in diagnostics(document)
    assert small_client.get("/fhir/Patient?_summary=count").get_json()["total"] == 0


def test_an_update_over_the_configured_limit_is_413(small_client):
    outcome(put(small_client, "/fhir/Patient/p1", {**PATIENT, "id": "p1", "name": [{"family": "x" * 2000}]}), 413, "too-costly")


def test_a_body_under_the_configured_limit_is_accepted(small_client):
    response = post(small_client, "/fhir/Patient", PATIENT)
    assert response.status_code == 201


# Methods and URLs


@pytest.mark.parametrize(
    ("method", "path", "must_allow"),
    [
        ("POST", "/fhir/Patient/123", {"GET", "PUT", "PATCH", "DELETE"}),
        ("PATCH", "/fhir/Patient", {"GET", "POST", "PUT", "DELETE"}),
        ("DELETE", "/fhir/Patient/123/_history/1", {"GET"}),
    ],
)
def test_an_unsupported_method_is_405_with_an_allow_header(client, method, path, must_allow):
    response = client.open(path, method=method, data="{}", content_type=FHIR_JSON)
    outcome(response, 405, "not-supported")
    allowed = {name.strip() for name in response.headers["Allow"].split(",")}
    assert must_allow <= allowed
    assert method not in allowed


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_a_conditional_write_without_criteria_is_400_saying_what_to_add(client, method):
    response = client.open("/fhir/Patient", method=method, data="{}", content_type=FHIR_JSON)
    outcome(response, 400, "invalid")
    assert "search criteria" in response.json["issue"][0]["diagnostics"]


@pytest.mark.parametrize("path", ["/fhir/Patient/1/2/3", "/nothing-here", "/fhir/Patient/1/_history/1/extra"])
def test_an_unknown_url_is_a_404_operation_outcome(client, path):
    outcome(client.get(path), 404, "not-found")


# Garbage never crashes the server


def deeply_nested_extension(depth: int) -> str:
    inner = '{"url": "http://example.org/leaf", "valueString": "leaf"}'
    for _ in range(depth):
        inner = '{"url": "http://example.org/nest", "extension": [' + inner + "]}"
    return '{"resourceType": "Patient", "extension": [' + inner + "]}"


GARBAGE = {
    "non-utf8": b"\xff\xfe\xfa\x00{}",
    "latin1-json": '{"resourceType": "Patient", "name": [{"family": "M\u00fcller"}]}'.encode("latin-1"),
    "json-array": b'[{"resourceType": "Patient"}]',
    "json-string": b'"Patient"',
    "json-number": b"42",
    "json-null": b"null",
    "json-true": b"true",
    "nested-arrays": b"[" * 5000 + b"]" * 5000,
    "nested-objects": b'{"resourceType": "Patient", "a": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001,
    "nested-extensions": deeply_nested_extension(400).encode(),
    "huge-integer": b'{"resourceType": "Patient", "multipleBirthInteger": %d}' % 2**70,
    "huge-decimal-exponent": b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1e999}}',
    "nan": b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": NaN}}',
    "resource-type-number": b'{"resourceType": 7}',
    "resource-type-object": b'{"resourceType": {"a": 1}}',
    "id-number": b'{"resourceType": "Patient", "id": 7}',
    "meta-string": b'{"resourceType": "Patient", "meta": "v1"}',
    "name-string": b'{"resourceType": "Patient", "name": "Okafor"}',
    "lone-surrogate": b'{"resourceType": "Patient", "name": [{"family": "\\ud800"}]}',
    "nul-character": b'{"resourceType": "Patient", "name": [{"family": "a\\u0000b"}]}',
    "duplicate-keys": b'{"resourceType": "Patient", "gender": "male", "gender": 5}',
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_in_a_create_is_a_4xx_outcome_never_a_500(client, body):
    response = post(client, "/fhir/Observation" if b"Observation" in body else "/fhir/Patient", body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:500]
    assert json.loads(response.get_data())["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_in_an_update_is_a_4xx_outcome_never_a_500(client, body):
    response = put(client, "/fhir/Patient/p1", body)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)[:500]
    assert json.loads(response.get_data())["resourceType"] == "OperationOutcome"


def test_an_integer_beyond_the_fhir_32_bit_range_is_400_naming_the_element(client):
    document = outcome(post(client, "/fhir/Patient", {**PATIENT, "multipleBirthInteger": 2**31}), 400)
    assert "Patient.multipleBirthInteger" in expressions(document)


# JSON Patch


def test_a_json_patch_that_is_not_an_array_is_400(client):
    created = create_patient(client)
    document = outcome(patch(client, f"/fhir/Patient/{created['id']}", {"op": "replace", "path": "/gender", "value": "male"}), 400)
    assert "array" in diagnostics(document)


def test_a_json_patch_that_is_not_json_is_400(client):
    created = create_patient(client)
    outcome(patch(client, f"/fhir/Patient/{created['id']}", b"[{op: replace}"), 400, "invalid")


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "test", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/gender", "value": "other"}],
        [{"op": "replace", "path": "/maritalStatus/text", "value": "married"}],
        [{"op": "remove", "path": "/name/7"}],
        [{"op": "frobnicate", "path": "/gender"}],
        [{"path": "/gender", "value": "male"}],
        [{"op": "add", "path": "gender", "value": "male"}],
        ["replace"],
    ],
    ids=["failed-test", "missing-parent", "index-out-of-range", "unknown-op", "no-op", "bad-pointer", "not-an-object"],
)
def test_a_json_patch_that_cannot_be_applied_is_4xx_and_changes_nothing(client, operations):
    created = create_patient(client)
    response = patch(client, f"/fhir/Patient/{created['id']}", operations)
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)
    outcome(response, response.status_code)
    current = client.get(f"/fhir/Patient/{created['id']}")
    assert current.get_json() == created and current.headers["ETag"] == 'W/"1"'


def test_a_json_patch_producing_an_invalid_resource_is_4xx_naming_the_element(client):
    created = create_patient(client)
    response = patch(client, f"/fhir/Patient/{created['id']}", [{"op": "replace", "path": "/birthDate", "value": "yesterday"}])
    assert response.status_code in (400, 422)
    assert "Patient.birthDate" in expressions(outcome(response, response.status_code))
    assert client.get(f"/fhir/Patient/{created['id']}").get_json()["birthDate"] == "1984-03-02"


def test_a_json_patch_changing_the_id_is_422(client):
    created = create_patient(client)
    document = outcome(patch(client, f"/fhir/Patient/{created['id']}", [{"op": "replace", "path": "/id", "value": "other"}]), 422)
    assert "id" in diagnostics(document)
    assert client.get("/fhir/Patient/other").status_code == 404
    assert client.get(f"/fhir/Patient/{created['id']}").get_json() == created


def test_a_json_patch_changing_the_resource_type_is_422(client):
    created = create_patient(client)
    outcome(patch(client, f"/fhir/Patient/{created['id']}", [{"op": "replace", "path": "/resourceType", "value": "Person"}]), 422)


def test_a_json_patch_removing_the_id_is_422(client):
    created = create_patient(client)
    outcome(patch(client, f"/fhir/Patient/{created['id']}", [{"op": "remove", "path": "/id"}]), 422)


# Search and history parameters


def test_an_unknown_search_parameter_is_400_naming_it(client):
    document = outcome(client.get("/fhir/Patient?shoe-size=42"), 400)
    assert "shoe-size" in diagnostics(document)


def test_an_unknown_search_parameter_is_400_with_prefer_handling_strict(client):
    document = outcome(client.get("/fhir/Patient?shoe-size=42", headers={"Prefer": "handling=strict"}), 400)
    assert "shoe-size" in diagnostics(document)


def test_with_lenient_handling_an_unknown_parameter_is_ignored_and_left_out_of_the_self_link(client):
    create_patient(client)
    response = client.get("/fhir/Patient?shoe-size=42&_count=5", headers={"Prefer": "handling=lenient"})
    assert response.status_code == 200
    bundle = response.get_json()
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert "shoe-size" not in self_link and "_count=5" in self_link
    assert len(bundle["entry"]) == 1


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", "10abc", "%C2%B2"])
def test_a_count_that_is_not_a_whole_number_is_400(client, value):
    document = outcome(client.get(f"/fhir/Patient?_count={value}"), 400)
    assert "_count" in diagnostics(document)


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/Patient/_history"])
def test_a_count_of_thousands_of_digits_gives_the_largest_page(client, path):
    create_patient(client)
    response = client.get(f"{path}?_count={'9' * 5000}")
    assert response.status_code == 200
    assert len(response.get_json()["entry"]) == 1


@pytest.mark.parametrize(("query", "named"), [
    ("Patient?name=a%00b", "name"),
    ("Patient?family:exact=a%00b", "family:exact"),
    ("Patient?_id=a%00b", "_id"),
    ("Observation?patient=a%00b", "patient"),
    ("Observation?code:text=a%00b", "code:text"),
    ("Observation?subject:Patient.name=a%00b", "subject:Patient.name"),
    ("Patient?_has:Observation:patient:code=a%00b", "_has:Observation:patient:code"),
])
def test_a_search_value_with_a_nul_character_is_400_naming_the_parameter(client, query, named):
    document = outcome(client.get(f"/fhir/{query}"), 400)
    assert f"'{named}'" in diagnostics(document)


def test_a_conditional_update_whose_criteria_hold_a_nul_character_is_400(client):
    outcome(put(client, "/fhir/Patient?name=a%00b", PATIENT), 400)


@pytest.mark.parametrize("value", ["1e999999999", "ap1e999999", "1e-999999999", "gt1e131072", "1." + "0" * 20000])
def test_a_number_beyond_what_any_resource_holds_is_400(client, value):
    document = outcome(client.get(f"/fhir/Observation?value-quantity={value}"), 400)
    assert "numbers this server compares" in diagnostics(document)


@pytest.mark.parametrize("path", ["/fhir/Patient?_summary=maybe", "/fhir/Patient/p1?_summary=maybe"])
def test_an_unknown_summary_mode_is_400(client, path):
    client.put("/fhir/Patient/p1", data=json.dumps({**PATIENT, "id": "p1"}), content_type=FHIR_JSON)
    document = outcome(client.get(path), 400)
    assert "_summary" in diagnostics(document)


def test_an_unknown_total_mode_is_400(client):
    document = outcome(client.get("/fhir/Patient?_total=lots"), 400)
    assert "_total" in diagnostics(document)


@pytest.mark.parametrize("cursor", ["garbage!", "eyJ4IjogMX0", "bnVsbA", "W10", "eyJhZnRlciI6IDV9"], ids=["not-base64", "other-key", "null", "array", "wrong-type"])
def test_a_cursor_the_server_did_not_issue_is_400(client, cursor):
    document = outcome(client.get(f"/fhir/Patient?_cursor={cursor}"), 400)
    assert "_cursor" in diagnostics(document)


def test_a_history_cursor_the_server_did_not_issue_is_400(client):
    outcome(client.get("/fhir/_history?_cursor=garbage!"), 400)


@pytest.mark.parametrize(("path", "cursor"), [
    ("/fhir/Patient", {"after": [["v", True]]}),
    ("/fhir/Patient", {"after": [["v", {"a": 1}]]}),
    ("/fhir/Patient", {"after": [["v", 2**63]]}),
    ("/fhir/Patient?_sort=name", {"after": [["v", "a\u0000b"], ["v", 1]]}),
    ("/fhir/Patient?_sort=birthdate", {"after": [["v", "x"], ["v", 1]]}),
    ("/fhir/Patient?_sort=birthdate", {"after": [["n", "1e999999"], ["v", 1]]}),
    ("/fhir/_history", {"before": True}),
    ("/fhir/Patient/p1/$everything", {"after_pk": -1}),
], ids=["bool-key", "object-key", "key-beyond-64-bits", "nul-text", "text-for-a-date", "huge-number", "bool-seq", "negative-pk"])
def test_a_forged_cursor_with_values_of_the_wrong_kind_is_400(client, path, cursor):
    client.put("/fhir/Patient/p1", data=json.dumps({**PATIENT, "id": "p1"}), content_type=FHIR_JSON)
    token = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
    document = outcome(client.get(f"{path}{'&' if '?' in path else '?'}_cursor={token}"), 400)
    assert "_cursor" in diagnostics(document)


@pytest.mark.parametrize("since", ["yesterday", "2024-13-01", "2024-02-30", "2024-05-17T09:30:00", "2024-05-17T25:00:00Z"])
def test_a_since_that_is_not_a_fhir_instant_is_400(client, since):
    document = outcome(client.get(f"/fhir/_history?_since={since}"), 400)
    assert since in diagnostics(document)


def test_a_since_that_is_not_a_date_is_400_on_type_and_instance_history(client):
    created = create_patient(client)
    outcome(client.get("/fhir/Patient/_history?_since=soon"), 400)
    outcome(client.get(f"/fhir/Patient/{created['id']}/_history?_since=soon"), 400)


def test_an_unknown_history_parameter_is_400_naming_it(client):
    document = outcome(client.get("/fhir/_history?gender=female"), 400)
    assert "gender" in diagnostics(document)
