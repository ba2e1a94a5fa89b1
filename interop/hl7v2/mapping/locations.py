"""A PL (PV1-3, PV1-6) to Location resources, one per level it names, chained by partOf (IG PL[Location]).

The IG has the referencing resource point at the most granular level sent, each Location part
of the next less granular one: bed, room, floor, point of care, building, facility. The
facility is PL.4, else the sending facility (MSH-4, else MSH-3), so that a sender's PLs with
and without PL.4 make the same chain. A level such as room "101" is unique only inside the
levels above it, so each Location's business key is its whole path from the facility down,
each step naming its level: `si:GENHOSP/wa:4N/ro:401/bd:B`.
"""
from typing import NamedTuple
from urllib.parse import quote

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import compact
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import keeping_unmapped, reference

LOCATION_SYSTEM = "urn:ehr:hl7v2:location"  # identifier values: the path of levels from the facility down
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"


class Level(NamedTuple):
    component: int  # of the PL
    code: str  # location-physical-type
    display: str


FACILITY = Level(4, "si", "Site")
LEVELS = (  # least granular first; the point of care (a nursing unit) as a ward is ours: the IG names no code
    FACILITY, Level(7, "bu", "Building"), Level(1, "wa", "Ward"),
    Level(8, "lvl", "Level"), Level(2, "ro", "Room"), Level(3, "bd", "Bed"),
)


def location_reference(pl: FieldValue, shared: SharedUpserts, operational_status: dict | None = None) -> dict | None:
    """A reference to the most granular Location the PL names, after upserts of it and of the levels above it,
    displayed as PL.9's description, else the levels sent. A PL with only a description is referenced by
    display alone; None for an empty PL. `operational_status` (PV1-40, bed status) goes on a bed or room."""
    if not pl.width():
        return None
    sent = [(level, name) for level in LEVELS if (name := level_name(pl, level))]
    display = pl(9) or "/".join(name for _, name in sent)
    if not sent:
        return {"display": display} if display else None
    facility = next((name for level, name in sent if level is FACILITY), shared.context.facility)
    chain = ([(FACILITY, facility)] if facility else []) + [(level, name) for level, name in sent if level is not FACILITY]
    path, parent = [], None
    for number, (level, name) in enumerate(chain, 1):
        path.append(f"{level.code}:{quote(name, safe='')}")
        most_granular = number == len(chain)
        description = pl(9) if most_granular else ""  # IG: PL.9 describes the most granular level
        status = operational_status if most_granular and level.code in ("bd", "ro") else None
        parent = location_upsert(level, name, "/".join(path), parent, description, status, shared)
    return compact({**reference(parent), "display": display})


def level_name(pl: FieldValue, level: Level) -> str:
    """The level's name: for the facility, an HD, its namespace id else its universal id."""
    return pl(level.component) or (pl(level.component, 2) if level is FACILITY else "")


def location_upsert(level: Level, name: str, path: str, parent: Upsert | None, description: str, operational_status: dict | None,
                    shared: SharedUpserts) -> Upsert:
    """The Location of one level; an update keeps what the feed does not map (status, address...), as set over REST."""
    key = {"system": LOCATION_SYSTEM, "value": path}
    return shared.upsert(compact({
        "resourceType": "Location",
        "identifier": [key],
        "name": name,
        "description": description,
        "operationalStatus": operational_status,
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": level.code, "display": level.display}]},
        "partOf": reference(parent) if parent else None,
    }), key, combine=keeping_unmapped)
