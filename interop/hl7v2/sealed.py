"""The HL7 message store's sealed values: each message as received, sealed under a value key when protection is on
(service.py row_values), sealed again by `ehr keys rewrap` and counted by `ehr keys retire` (app/protection/commands.py).

Writers change a message's status and ACK, never its bytes, so a batch rewrites them without locking the rows."""
from collections.abc import Iterator

from sqlalchemy import Engine, func, select

from app.protection.fields import FORMAT, blob_key_id
from app.protection.service import protection_of
from app.store.db import read_unit, update_each, write_unit
from interop.hl7v2.service import raw_context
from interop.hl7v2.tables import hl7_message

BATCH_SIZE = 500


class MessageStoreSealing:
    def rows_to_rewrap(self, engine: Engine) -> int:
        with read_unit(engine) as connection:
            return connection.execute(select(func.count()).select_from(hl7_message)).scalar()

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        """The messages' bytes sealed again, by this process (`rebuild_index` does nothing: the store keeps no index of
        them; a message's bytes cost one decryption and one encryption, no process would be worth its start)."""
        with read_unit(engine) as connection:
            last = connection.execute(select(func.max(hl7_message.c.id))).scalar() or 0  # messages stored later are sealed as configured
        after = 0
        while True:
            with write_unit(engine) as connection:
                rows = connection.execute(
                    select(hl7_message).where(hl7_message.c.id > after, hl7_message.c.id <= last).order_by(hl7_message.c.id).limit(BATCH_SIZE)
                ).all()
                changed = resealed(connection, rows)
            if not rows:
                return
            after = rows[-1].id
            yield len(rows), changed

    def key_uses(self, engine: Engine, key_id: str) -> int:
        prefix = f"{FORMAT}{key_id}:".encode()
        with read_unit(engine) as connection:
            return connection.execute(select(func.count()).select_from(hl7_message).where(func.substr(hl7_message.c.raw, 1, len(prefix)) == prefix)).scalar()


def resealed(connection, rows: list) -> int:
    """Seal again the messages of a batch not sealed under the primary value key; how many."""
    protection = protection_of(connection)
    primary = protection.ring().primary("value").id
    changed = [
        (row.id, protection.sealed_blob(protection.opened_blob(row.raw, raw_context(row._mapping)), raw_context(row._mapping)))
        for row in rows if blob_key_id(row.raw) != primary
    ]
    update_each(connection, hl7_message.c.raw, hl7_message.c.id, changed)
    return len(changed)
