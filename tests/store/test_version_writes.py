"""The writers of resource versions store the same rows whichever form they take: PostgreSQL's one statement (JSON
expanded by the database), its COPY streams for large batches, SQLite's executemany."""
from decimal import Decimal

import pytest
from sqlalchemy import event, select

from app.errors import Conflict, PreconditionFailed
from app.store import resources
from app.store.db import read_unit
from app.store.schema import INDEX_TABLES, resource, resource_history, search_quantity, search_string
from app.store.unit import reading, writing

HUGE = 1234567890123456789  # more digits than a float keeps
OBSERVATION = {
    "resourceType": "Observation", "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Hjärtfrekvens ♥ 心率 😀 \u2028 end"},
    "effectiveDateTime": "2024-02-29T23:59:59.123456+05:30",
    "valueQuantity": {"value": HUGE, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    "component": [{"code": {"text": "small"}, "valueQuantity": {"value": 0.000000000000000000001, "unit": "x"}}],
}


def create_all(engine, bodies) -> list[str]:
    with writing(engine) as unit:
        return [unit.create(dict(body)).stored.id for body in bodies]


def stored_rows(engine, resource_id) -> dict:
    """The resource's body and every row of its history and index tables, without the keys that differ per write."""
    with read_unit(engine) as connection:
        row = connection.execute(select(resource).where(resource.c.res_id == resource_id)).one()
        history = connection.execute(select(resource_history.c.version, resource_history.c.method).where(resource_history.c.res_id == resource_id)).all()
        index = {
            name: sorted((tuple(r)[1:] for r in connection.execute(select(table).where(table.c.res_pk == row.pk))), key=repr)
            for name, table in INDEX_TABLES.items()
        }
    return {"index_mask": row.index_mask, "history": history, "index": index}


def test_a_batch_too_large_for_one_statement_stores_the_same_rows_as_one_statement(engine, monkeypatch):
    monkeypatch.setattr(resources, "ONE_STATEMENT_CREATES", 2)
    small = create_all(engine, [OBSERVATION])
    large = create_all(engine, [OBSERVATION] * 3)
    assert all(stored_rows(engine, large_id) == stored_rows(engine, small[0]) for large_id in large)


def test_numbers_keep_every_digit_in_the_index_on_postgresql(engine):
    if engine.dialect.name != "postgresql":
        return  # SQLite has no exact decimal type: its NUMERIC keeps a float
    create_all(engine, [OBSERVATION])
    with read_unit(engine) as connection:
        values = set(connection.execute(select(search_quantity.c.value)).scalars())
    assert Decimal(HUGE) in values
    assert Decimal("1E-21") in values


def test_unicode_text_comes_back_as_it_was_sent(engine):
    text = OBSERVATION["code"]["text"]
    [observation_id, patient_id] = create_all(engine, [OBSERVATION, {"resourceType": "Patient", "name": [{"family": text}]}])
    with reading(engine) as unit:
        assert unit.read("Observation", observation_id).body["code"]["text"] == text
        assert unit.read("Patient", patient_id).body["name"][0]["family"] == text
    with read_unit(engine) as connection:
        assert text in set(connection.execute(select(search_string.c.exact)).scalars())


@pytest.mark.parametrize("count", [1, 4])
def test_updates_replace_index_rows_and_keep_one_history_row_per_version(engine, count):
    [resource_id] = create_all(engine, [OBSERVATION])
    for n in range(count):
        with writing(engine) as unit:
            unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": ["amended", "corrected"][n % 2]})
    rows = stored_rows(engine, resource_id)
    assert [version for version, _ in sorted(rows["history"])] == list(range(1, count + 2))
    assert rows["index"] == stored_rows(engine, create_all(engine, [{**OBSERVATION, "status": ["amended", "corrected"][(count - 1) % 2]}])[0])["index"]


@pytest.mark.parametrize("one_statement_creates", [resources.ONE_STATEMENT_CREATES, 0])
def test_an_update_of_the_version_found_without_a_lock_swaps_it_and_is_a_conflict_once_another_writer_changed_it(engine, monkeypatch, one_statement_creates):
    """(With 0 versions per statement, PostgreSQL writes the update in a statement of its own, after the unit's creates.)"""
    monkeypatch.setattr(resources, "ONE_STATEMENT_CREATES", one_statement_creates)
    [resource_id] = create_all(engine, [OBSERVATION])
    with writing(engine) as unit:
        found = unit.read("Observation", resource_id)
        written = unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "amended"}, found=found)
    assert written.stored.version == 2
    with writing(engine) as unit:  # another writer, after `written` was found
        unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "corrected"})
    with pytest.raises(Conflict), writing(engine) as unit:
        unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "cancelled"}, found=written.stored)
    with reading(engine) as unit:
        current = unit.read("Observation", resource_id)
    assert (current.version, current.body["status"]) == (3, "corrected")
    assert [version for version, _ in sorted(stored_rows(engine, resource_id)["history"])] == [1, 2, 3]


@pytest.mark.parametrize("if_match", [None, 'W/"1"'])
def test_an_update_alone_that_loses_its_swap_is_written_again_under_the_row_lock_or_fails_its_if_match(engine, if_match):
    """On PostgreSQL an update that is its unit's only write reads the current version without a lock; when another
    writer swaps in a version between that read and its write, it is written again under the row lock, after the other
    one, unless its If-Match named the version that is no longer current (412). (SQLite's writers hold the database's
    lock from their first statement: nothing can come between.)"""
    [resource_id] = create_all(engine, [OBSERVATION])
    racing = engine.dialect.name == "postgresql"
    reads = []

    def another_writer_after_the_read(_connection, _cursor, statement, *_):
        if not reads and statement.startswith("SELECT"):
            reads.append(statement)
            if "FOR UPDATE" in statement:  # the other writer would wait for this unit, which waits for it
                return
            with writing(engine) as other:
                other.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "corrected"})

    event.listen(engine, "after_cursor_execute", another_writer_after_the_read) if racing else None
    try:
        with writing(engine, alone=True) as unit:
            unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "amended"}, if_match)
        refused = False
    except PreconditionFailed:
        refused = True
    finally:
        event.remove(engine, "after_cursor_execute", another_writer_after_the_read) if racing else None
    with reading(engine) as unit:
        current = unit.read("Observation", resource_id)
    assert not racing or "FOR UPDATE" not in reads[0]
    expected = (3, "amended", False) if racing and not if_match else (2, "corrected", True) if racing else (2, "amended", False)
    assert (current.version, current.body["status"], refused) == expected
    assert [version for version, _ in sorted(stored_rows(engine, resource_id)["history"])] == list(range(1, current.version + 1))


@pytest.mark.parametrize("one_statement_creates", [resources.ONE_STATEMENT_CREATES, 1])
def test_updates_of_found_versions_are_written_with_the_units_creates_each_version_kept(engine, monkeypatch, one_statement_creates):
    """A feed's unit updates what its key lookup found and creates beside it (on PostgreSQL in one statement, or, when
    there are too many for one, the creates first and then each update); a second update of the same resource in the
    unit writes the first one before it is built on."""
    monkeypatch.setattr(resources, "ONE_STATEMENT_CREATES", one_statement_creates)
    [resource_id] = create_all(engine, [OBSERVATION])
    with writing(engine) as unit:
        found = unit.read("Observation", resource_id)
        first = unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "amended"}, found=found)
        created = unit.create(dict(OBSERVATION)).stored.id
        unit.update("Observation", resource_id, {**OBSERVATION, "id": resource_id, "status": "corrected"}, found=first.stored)
    with reading(engine) as unit:
        current = unit.read("Observation", resource_id)
        assert unit.read("Observation", created).version == 1
    assert (current.version, current.body["status"]) == (3, "corrected")
    assert [version for version, _ in sorted(stored_rows(engine, resource_id)["history"])] == [1, 2, 3]
    rows_per_table = [{table: len(rows) for table, rows in stored_rows(engine, key)["index"].items()} for key in (resource_id, created)]
    assert rows_per_table[0] == rows_per_table[1]  # the rows of versions 1 and 2 replaced, not added to


def test_an_update_of_a_found_version_that_refers_to_nothing_writes_nothing_of_its_unit(engine):
    from app.store.integrity import DanglingReferences

    [resource_id] = create_all(engine, [OBSERVATION])
    with pytest.raises(DanglingReferences), writing(engine) as unit:
        found = unit.read("Observation", resource_id)
        dangling = {**OBSERVATION, "id": resource_id, "subject": {"reference": "Patient/nobody"}}
        unit.update("Observation", resource_id, dangling, found=found)
        created = unit.create(dict(OBSERVATION)).stored.id
    with reading(engine) as unit:
        assert unit.read("Observation", resource_id).version == 1
        assert not unit.stored_keys({("Observation", created)})


def plans_of_writes(engine, write) -> list[str]:
    """PostgreSQL's plans (EXPLAIN, in a transaction rolled back) of the CTE statements `write` runs."""
    captured = []

    def record(_connection, _cursor, statement, parameters, _context, _executemany):
        if statement.startswith("WITH"):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        write()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as connection:
        cursor = connection.connection.cursor()
        plans = []
        for statement, parameters in captured:
            cursor.execute("EXPLAIN " + statement, parameters)
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
        connection.rollback()
    return plans


def test_the_write_statements_look_up_a_units_few_rows_by_index_not_by_scanning_the_resource_table(engine):
    """The planner takes jsonb_to_recordset for 100 rows, and joined a unit's one version or target to `resource` by a
    sequential scan of the whole table, which grows with it; the statements tell it the real count."""
    if engine.dialect.name != "postgresql":
        return  # SQLite writes each row by its own statement
    [patient_id] = create_all(engine, [{"resourceType": "Patient"}])
    referring = {**OBSERVATION, "subject": {"reference": f"Patient/{patient_id}"}}
    ids = create_all(engine, [referring] * 300)

    def update_and_create_and_delete():
        with writing(engine, alone=True) as unit:
            unit.update("Observation", ids[0], {**referring, "id": ids[0], "status": "amended"})
        create_all(engine, [referring])
        with writing(engine) as unit:
            unit.delete("Observation", ids[1])

    plans = plans_of_writes(engine, update_and_create_and_delete)
    assert len(plans) == 3
    assert all("Index Scan using uq_resource_type_id on resource" in plan for plan in plans), plans
    assert not any("Seq Scan on resource" in plan for plan in plans), plans
