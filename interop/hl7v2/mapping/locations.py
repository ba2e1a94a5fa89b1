"""A PL (PV1-3, PV1-6) to Location resources, one per level it names, chained by partOf (IG PL[Location]).

The IG has the referencing resource point at the most granular level sent, each Location part
of the next less granular one: bed, room, floor, point of care, building, facility. A level
such as room "101" is unique only inside the levels above it, so each Location's business key
is its whole path from the facility down (`GENHOSP/4N/401/B`); a PL without a facility (PL.4)
is in the sending facility's, which then gets no Location of its own.
"""
from typing import NamedTuple

from interop.hl7v2.mapping import Upsert
from interop.hl7v2.mapping.datatypes import compact
from interop.hl7v2.mapping.fields import FieldValue
from interop.hl7v2.mapping.shared import SharedUpserts
from interop.hl7v2.mapping.upserts import reference

LOCATION_SYSTEM = "urn:ehr:hl7v2:location"  # identifier values: the path of levels from the facility down
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"


class Level(NamedTuple):
    component: int  # of the PL
    code: str  # location-physical-type
    display: str


LEVELS = (  # least granular first; the point of care (a nursing unit) as a ward is ours: the IG names no code
    Level(4, "si", "Site"), Level(7, "bu", "Building"), Level(1, "wa", "Ward"),
    Level(8, "lvl", "Level"), Level(2, "ro", "Room"), Level(3, "bd", "Bed"),
)


def location_reference(pl: FieldValue, shared: SharedUpserts) -> dict | None:
    """A reference to the most granular Location the PL names, after upserts of it and of the levels above it;
    displayed as PL.9's description, else the levels sent. None for a PL that names no level."""
    levels = [(level, name) for level in LEVELS if (name := level_name(pl, level))]
    if not levels:
        return None
    path, parent = [] if levels[0][0].component == 4 else [shared.defaults.facility], None
    for level, name in levels:
        path.append(name)
        parent = location_upsert(level, name, "/".join(path), parent, shared)
    return compact({**reference(parent), "display": pl(9) or "/".join(name for _, name in levels)})


def level_name(pl: FieldValue, level: Level) -> str:
    """The level's name: for the facility, an HD, its namespace id else its universal id."""
    return pl(level.component) or (pl(level.component, 2) if level.component == 4 else "")


def location_upsert(level: Level, name: str, path: str, parent: Upsert | None, shared: SharedUpserts) -> Upsert:
    key = {"system": LOCATION_SYSTEM, "value": path}
    return shared.upsert(compact({
        "resourceType": "Location",
        "identifier": [key],
        "name": name,
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": level.code, "display": level.display}]},
        "partOf": reference(parent) if parent else None,
    }), key)
