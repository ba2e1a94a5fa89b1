"""Patient/{id}/$everything: the patient, every resource in its compartment, and the resources those lean on.

Patient/$everything, at type level, is the same for every patient (R4, as HAPI serves it).
app/store/compartment.py finds the compartment's resources and pages them.
"""
from dataclasses import dataclass


from app.errors import BadRequest
from app.model.instants import date_range
from app.model.registry import is_served
from app.operations.parameters import check_known_parameters
from app.search.cursor import FOREIGN_CURSOR, decode_cursor, is_row_key
from app.search.service import page_count
from app.store.compartment import CompartmentQuery
from app.store.resources import StoredResource
from app.store.unit import Unit

EVERYTHING_PARAMETERS = frozenset({"_since", "_type", "_count", "_cursor", "_format", "_pretty"})
# Outside the compartment, but needed to read the record: who treated the patient, where, for whom, with what.
SUPPORTING_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location", "Medication"})


@dataclass(frozen=True)
class EverythingPage:
    matches: list[StoredResource]
    included: list[StoredResource]
    next_after_pk: int | None


def everything_request(patient_id: str | None, pairs: list[tuple[str, str]], lenient: bool, default_count: int, max_count: int) -> CompartmentQuery:
    """The request that $everything's (name, value) pairs ask for: _since, _type (repeatable, comma-separated), _count."""
    check_known_parameters(pairs, EVERYTHING_PARAMETERS, "$everything", lenient)
    values = dict(pairs)
    return CompartmentQuery(
        patient_id=patient_id,
        types=requested_types([value for name, value in pairs if name == "_type"]),
        since=date_range(values["_since"])[0] if values.get("_since") else None,
        count=page_count(values.get("_count"), default_count, max_count),
        after_pk=cursor_pk(values.get("_cursor")),
    )


def requested_types(values: list[str]) -> frozenset[str] | None:
    if not values:
        return None
    types = frozenset(part.strip() for value in values for part in value.split(",") if part.strip())
    unknown = sorted(type_name for type_name in types if not is_served(type_name))
    if unknown:
        raise BadRequest(f"_type names {', '.join(unknown)}, which this server does not serve.")
    return types


def cursor_pk(text: str | None) -> int | None:
    if not text:
        return None
    pk = decode_cursor(text).get("after_pk")
    if not is_row_key(pk):
        raise BadRequest(FOREIGN_CURSOR)
    return pk


def patient_everything(unit: Unit, request: CompartmentQuery) -> EverythingPage:
    """One page of the record; NotFound for an unknown patient, Gone for a deleted one."""
    if request.patient_id is not None:
        unit.read("Patient", request.patient_id)
    matches, next_after_pk = unit.compartment(request)
    return EverythingPage(matches, supporting_resources(unit, matches, request), next_after_pk)


def supporting_resources(unit: Unit, matches: list[StoredResource], request: CompartmentQuery) -> list[StoredResource]:
    """The practitioners, organizations, locations and medications the page's resources refer to."""
    types = SUPPORTING_TYPES if request.types is None else SUPPORTING_TYPES & request.types
    if not matches or not types:
        return []
    return unit.referenced(matches, types, request)
