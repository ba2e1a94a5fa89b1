"""The identifier systems an operator sets per assigning authority (`ehr hl7 authority add NAME SYSTEM`).

An assigning authority without a universal id (CX.4 `NORTH`) becomes the identifier system
`urn:ehr:hl7v2:authority:NORTH` by default; a hospital that searches its records by
`identifier=http://hospital.example/mrn|123` maps NORTH to that system here. The names are
matched without regard to case, against HD.1 (namespace id) and HD.2 (universal id), and apply
to messages received from then on (and replays); resources written before keep their systems.
"""
import time

from sqlalchemy import Engine, delete, select

from app.store.db import insert_rows, read_unit, write_unit
from interop.hl7v2.tables import hl7_authority

REFRESH_SECONDS = 5.0  # how soon a running listener sees a change


def authority_systems(engine: Engine) -> dict[str, str]:
    """Assigning authority name (upper case) -> identifier system."""
    with read_unit(engine) as connection:
        return {row.name: row.system for row in connection.execute(select(hl7_authority.c.name, hl7_authority.c.system))}


def set_authority(engine: Engine, name: str, system: str) -> None:
    """Map `name` to `system`, replacing an earlier mapping of that name."""
    with write_unit(engine) as connection:
        connection.execute(delete(hl7_authority).where(hl7_authority.c.name == name.upper()))
        insert_rows(connection, hl7_authority, [{"name": name.upper(), "system": system}])


def remove_authority(engine: Engine, name: str) -> bool:
    with write_unit(engine) as connection:
        return connection.execute(delete(hl7_authority).where(hl7_authority.c.name == name.upper())).rowcount > 0


class AuthorityTable:
    """authority_systems read again at most every REFRESH_SECONDS: a listener's worker maps each message with it."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.loaded: dict[str, str] = {}
        self.loaded_at = float("-inf")

    def systems(self) -> dict[str, str]:
        if time.monotonic() - self.loaded_at >= REFRESH_SECONDS:
            self.loaded, self.loaded_at = authority_systems(self.engine), time.monotonic()
        return self.loaded
