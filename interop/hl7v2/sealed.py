"""The HL7 feed's sealed values: each message as received and its outcome's texts (error, warnings, ACK), sealed under
a value key when protection is on (service.py sealed_values), and each queued application ACK (outbox.py queue);
sealed again by `ehr keys rewrap` and counted by `ehr keys retire` (app/protection/commands.py).

A batch locks its messages (a replay rewrites a message's outcome); a queued ACK's payload never changes."""
from collections.abc import Iterator

from sqlalchemy import Engine, func, or_, select

from app.feeds import rows_resealed
from app.protection.fields import FORMAT, sealed_under
from app.protection.service import protection_of
from app.store.db import read_unit, update_each
from interop.hl7v2.outbox import payload_context
from interop.hl7v2.service import SEALED_COLUMNS, opened_values, sealed_values
from interop.hl7v2.tables import hl7_message, hl7_outbox

BATCH_SIZE = 500


class MessageStoreSealing:
    def rows_to_rewrap(self, engine: Engine, rebuild_index: bool) -> int:
        with read_unit(engine) as connection:
            return sum(connection.execute(select(func.count()).select_from(table)).scalar() for table in (hl7_message, hl7_outbox))

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        """The messages and queued ACKs sealed again, by this process (`rebuild_index` does nothing: the store keeps no
        index of them; a row costs a decryption and an encryption per value, no process would be worth its start)."""
        yield from rows_resealed(engine, hl7_message.c.id, resealed_messages, BATCH_SIZE, locked=True)
        yield from rows_resealed(engine, hl7_outbox.c.id, resealed_payloads, BATCH_SIZE)

    def key_uses(self, engine: Engine, key_id: str) -> int:
        prefix = f"{FORMAT}{key_id}:"
        sealed_under_key = [func.substr(hl7_message.c[name], 1, len(prefix)) == (prefix.encode() if name == "raw" else prefix) for name in SEALED_COLUMNS]
        with read_unit(engine) as connection:
            messages = connection.execute(select(func.count()).select_from(hl7_message).where(or_(*sealed_under_key))).scalar()
            payloads = connection.execute(select(func.count()).select_from(hl7_outbox).where(func.substr(hl7_outbox.c.payload, 1, len(prefix)) == prefix)).scalar()
        return messages + payloads


def resealed_messages(connection, rows: list) -> int:
    """Seal again the messages of a batch with a value not sealed under the primary value key; how many."""
    protection = protection_of(connection)
    primary = protection.ring().primary("value").id
    stale = [row._mapping for row in rows if not all(sealed_under(row._mapping[name], primary) for name in SEALED_COLUMNS)]
    resealed = [(row["id"], sealed_values(protection, opened_values(protection, row), row)) for row in stale]
    for name in SEALED_COLUMNS:
        update_each(connection, hl7_message.c[name], hl7_message.c.id, [(row_id, values[name]) for row_id, values in resealed])
    return len(resealed)


def resealed_payloads(connection, rows: list) -> int:
    """Seal again the queued ACKs of a batch not sealed under the primary value key; how many."""
    protection = protection_of(connection)
    primary = protection.ring().primary("value").id
    resealed = [(row.id, protection.sealed_text(protection.opened_text(row.payload, payload_context(row.message_id)), payload_context(row.message_id)))
                for row in rows if not sealed_under(row.payload, primary)]
    update_each(connection, hl7_outbox.c.payload, hl7_outbox.c.id, resealed)
    return len(resealed)
