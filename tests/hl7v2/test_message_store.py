"""The message store's statement: on PostgreSQL one statement takes the business keys' locks, reads the stored messages
of the batch's control ids and inserts the new ones; the keys are looked up in the next, after the locks."""
import threading
import time

from sqlalchemy import event, text

from app.store.unit import writing
from interop.hl7v2.service import Senders, current_systems, read, receive, receive_all, store_and_apply
from tests.hl7v2.test_receive import a01, count_messages, msa
from tests.store.test_statement_counts import statements_run

WAIT = 0.5  # long enough for the second writer to be waiting


def patients(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM resource WHERE res_type = 'Patient'")).scalar()


def waiting_for_a_lock(engine) -> bool:
    """On PostgreSQL: whether a session waits for an advisory lock; on SQLite the second writer waits for the first
    one's transaction, which nothing here can see."""
    if engine.dialect.name != "postgresql":
        return True
    with engine.connect() as connection:
        return connection.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar() == 1


def held_until(engine, raw: bytes, release: threading.Event, stored: list) -> None:
    """Store and apply `raw` in a unit that commits only once `release` is set."""
    with writing(engine) as unit:
        stored.append(store_and_apply(unit, [read(raw, "holder", Senders())])[0])
        release.wait(10)


def received_while_held(engine, held: bytes, sent: bytes):
    """The receipts of `held`, stored and applied by a transaction that stays open, and of `sent`, received meanwhile,
    whose store waits for the first to commit."""
    release, stored, received = threading.Event(), [], []
    holder = threading.Thread(target=held_until, args=(engine, held, release, stored))
    holder.start()
    while not stored:
        time.sleep(0.01)
    sender = threading.Thread(target=lambda: received.append(receive(engine, sent, "sender")))
    sender.start()
    time.sleep(WAIT)
    assert not received, "the second message was stored before the first one's transaction committed"
    assert waiting_for_a_lock(engine)
    release.set()
    holder.join(10)
    sender.join(10)
    return stored[0], received[0]


def test_a_message_alone_is_the_store_the_key_lookup_the_write_and_commit_on_postgresql(engine):
    receive(engine, a01("WARM", mrn="55600"), "test")  # connects and warms up
    systems = current_systems(engine)  # as a listener's worker keeps them
    commits = []

    def committed(_connection):
        commits.append(1)

    event.listen(engine, "commit", committed)
    try:
        with statements_run(engine) as statements:
            receipt, = receive_all(engine, [(a01("ONE", mrn="55601"), "test")], systems=systems)
    finally:
        event.remove(engine, "commit", committed)
    assert receipt.status == "applied"
    assert len(commits) == 1
    if engine.dialect.name == "postgresql":
        assert [statement.split()[0] for statement in statements] == ["WITH", "SELECT", "WITH"], [s[:60] for s in statements]
        assert "pg_advisory_xact_lock" in statements[0] and "INSERT INTO hl7_message" in statements[0]
    else:  # BEGIN IMMEDIATE, the stored messages, the insert, the key lookup, then one insert per table
        assert statements[1].startswith("SELECT") and statements[2].startswith("INSERT INTO hl7_message")


def test_a_message_waits_for_the_lock_on_its_business_key_and_finds_what_its_holder_created(engine):
    first, second = received_while_held(engine, a01("H1", mrn="55610", family="Berg"), a01("H2", mrn="55610", family="Lund"))
    assert (first.status, second.status) == ("applied", "applied")
    assert patients(engine) == 1  # the second found the first one's Patient: it looked after the lock, not before


def test_the_same_message_received_while_its_first_copy_is_being_stored_is_its_resend(engine):
    message = a01("SAME", mrn="55620")
    first, second = received_while_held(engine, message, message)
    assert second.status == "applied"
    assert second.message_id == first.message_id
    assert msa(second.ack)[1] == "AA"
    assert count_messages(engine) == 1
    assert patients(engine) == 1


def test_a_message_that_changes_its_patient_updates_the_version_its_key_lookup_found_without_reading_it_again(engine, client):
    receive(engine, a01("V1", mrn="55630", family="Berg"), "test")
    systems = current_systems(engine)
    with statements_run(engine) as statements:
        receipt, = receive_all(engine, [(a01("V2", mrn="55630", family="Lund"), "test")], systems=systems)
    assert receipt.status == "applied"
    [entry] = client.get("/fhir/Patient?identifier=55630").get_json()["entry"]
    assert (entry["resource"]["name"][0]["family"], entry["resource"]["meta"]["versionId"]) == ("Lund", "2")
    if engine.dialect.name == "postgresql":  # the store, the key lookup, then the update and the Provenance together
        assert [statement.split()[0] for statement in statements] == ["WITH", "SELECT", "WITH"], [s[:60] for s in statements]
        assert "UPDATE resource SET" in statements[2] and "INSERT INTO resource (" in statements[2]
        assert not any("FOR UPDATE" in statement for statement in statements)
