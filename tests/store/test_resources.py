"""The one writer and reader (the unit of work), called directly as the feeds call it."""
import pytest
from sqlalchemy import func, select

from app.errors import Gone, InvalidResource, NotFound, PreconditionFailed, UnprocessableResource
from app.model.instants import date_range, format_instant
from app.store.history import HistoryQuery
from app.store.schema import resource_history
from app.store.unit import reading, writing

PATIENT = {"resourceType": "Patient", "name": [{"family": "Okafor", "given": ["Aisha"]}], "gender": "female"}


def create_patient(engine, body=PATIENT):
    with writing(engine) as unit:
        return unit.create(dict(body)).stored


def put(engine, resource_id, body, if_match=None):
    with writing(engine) as unit:
        return unit.update(body["resourceType"], resource_id, {**body, "id": resource_id}, if_match)


def test_create_assigns_id_version_and_last_updated(engine):
    stored = create_patient(engine)
    assert stored.version == 1
    assert stored.body["id"] == stored.id and len(stored.id) == 36
    assert stored.body["meta"]["versionId"] == "1"
    assert stored.body["meta"]["lastUpdated"].endswith("+00:00")


def test_create_ignores_client_id_and_server_meta(engine):
    stored = create_patient(engine, {**PATIENT, "id": "mine", "meta": {"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "t"}]}})
    assert stored.id != "mine"
    assert stored.body["meta"]["versionId"] == "1"
    assert not stored.body["meta"]["lastUpdated"].startswith("2001")
    assert stored.body["meta"]["tag"] == [{"code": "t"}]


def test_read_returns_what_was_written(engine):
    stored = create_patient(engine)
    with reading(engine) as unit:
        assert unit.read("Patient", stored.id).body == stored.body


def test_update_increments_version_and_keeps_history(engine):
    stored = create_patient(engine)
    result = put(engine, stored.id, {**PATIENT, "gender": "other"})
    assert result.stored.version == 2 and result.changed and not result.created
    with reading(engine) as unit:
        assert unit.read_version("Patient", stored.id, "1").body["gender"] == "female"
        assert unit.read_version("Patient", stored.id, "2").body["gender"] == "other"


def test_update_with_identical_content_writes_no_version(engine):
    stored = create_patient(engine)
    result = put(engine, stored.id, {**PATIENT, "meta": {"versionId": "99"}})
    assert not result.changed and result.stored.version == 1
    with reading(engine) as unit:
        count = unit.connection.execute(select(func.count()).select_from(resource_history)).scalar()
    assert count == 1


def test_update_of_a_new_id_creates_it(engine):
    result = put(engine, "chosen-id", PATIENT)
    assert result.created and result.stored.id == "chosen-id" and result.stored.version == 1


def test_update_with_stale_if_match_raises_precondition_failed(engine):
    stored = create_patient(engine)
    put(engine, stored.id, {**PATIENT, "gender": "male"})
    with pytest.raises(PreconditionFailed):
        put(engine, stored.id, {**PATIENT, "gender": "other"}, if_match='W/"1"')


def test_update_with_matching_if_match_succeeds(engine):
    stored = create_patient(engine)
    assert put(engine, stored.id, {**PATIENT, "gender": "male"}, if_match='W/"1"').stored.version == 2


def test_update_rejects_an_invalid_resource_and_keeps_the_old_one(engine):
    stored = create_patient(engine)
    with pytest.raises(InvalidResource) as raised:
        put(engine, stored.id, {**PATIENT, "birthDate": "yesterday"})
    assert raised.value.issues[0].expression == ("Patient.birthDate",)
    with reading(engine) as unit:
        assert unit.read("Patient", stored.id).version == 1


def test_patch_applies_json_patch_as_a_new_version(engine):
    stored = create_patient(engine)
    with writing(engine) as unit:
        result = unit.patch("Patient", stored.id, [{"op": "replace", "path": "/gender", "value": "male"}])
    assert result.stored.version == 2 and result.stored.body["gender"] == "male"


def test_patch_that_makes_the_resource_invalid_is_rejected(engine):
    stored = create_patient(engine)
    with pytest.raises(InvalidResource), writing(engine) as unit:
        unit.patch("Patient", stored.id, [{"op": "add", "path": "/colour", "value": "blue"}])


def test_patch_changing_the_id_is_unprocessable(engine):
    stored = create_patient(engine)
    with pytest.raises(UnprocessableResource), writing(engine) as unit:
        unit.patch("Patient", stored.id, [{"op": "replace", "path": "/id", "value": "other"}])


def test_delete_makes_reads_gone_and_keeps_old_versions(engine):
    stored = create_patient(engine)
    with writing(engine) as unit:
        deleted = unit.delete("Patient", stored.id)
    assert deleted.version == 2 and deleted.deleted
    with reading(engine) as unit:
        with pytest.raises(Gone) as raised:
            unit.read("Patient", stored.id)
        assert raised.value.headers["ETag"] == 'W/"2"'
        assert unit.read_version("Patient", stored.id, "1").body["gender"] == "female"


def test_delete_of_a_missing_resource_returns_none(engine):
    with writing(engine) as unit:
        assert unit.delete("Patient", "nobody") is None


def test_update_after_delete_resurrects_with_next_version(engine):
    stored = create_patient(engine)
    with writing(engine) as unit:
        unit.delete("Patient", stored.id)
    result = put(engine, stored.id, PATIENT)
    assert result.created and result.stored.version == 3


def test_read_of_unknown_type_is_not_found(engine):
    with reading(engine) as unit, pytest.raises(NotFound):
        unit.read("Spaceship", "1")


def test_history_lists_versions_newest_first_with_methods(engine):
    stored = create_patient(engine)
    put(engine, stored.id, {**PATIENT, "gender": "male"})
    with writing(engine) as unit:
        unit.delete("Patient", stored.id)
    with reading(engine) as unit:
        page = unit.history(HistoryQuery(type="Patient", id=stored.id))
    assert [(v.version, v.method) for v in page.versions] == [(3, "DELETE"), (2, "PUT"), (1, "POST")]


def test_history_pages_with_a_keyset_cursor(engine):
    for _ in range(5):
        create_patient(engine)
    with reading(engine) as unit:
        first = unit.history(HistoryQuery(count=2))
        second = unit.history(HistoryQuery(count=2, before_seq=first.next_before_seq))
        third = unit.history(HistoryQuery(count=2, before_seq=second.next_before_seq))
    ids = [v.id for page in (first, second, third) for v in page.versions]
    assert len(ids) == 5 == len(set(ids))
    assert third.next_before_seq is None


def test_history_at_returns_the_version_current_at_that_moment(engine):
    stored = create_patient(engine)
    moment = put(engine, stored.id, {**PATIENT, "gender": "male"}).stored.last_updated
    put(engine, stored.id, {**PATIENT, "gender": "other"})
    with reading(engine) as unit:
        page = unit.history(HistoryQuery(type="Patient", id=stored.id, at=date_range(format_instant(moment))))
    assert [v.version for v in page.versions] == [2]
