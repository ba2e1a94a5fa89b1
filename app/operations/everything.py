"""Patient/{id}/$everything: the patient, every resource in its compartment, and the resources those lean on.

A resource is in the patient's compartment when one of its Patient-compartment
parameters (the official CompartmentDefinition, e.g. Observation.subject and
Observation.performer) points at the patient: one semi-join on the reference index.
Patient/$everything, at type level, is the same for every patient (R4, as HAPI serves it).
Pages follow a keyset on resource.pk, never OFFSET.
"""
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection, and_, false, or_, select
from sqlalchemy.sql import ColumnElement

from app.errors import BadRequest
from app.model.instants import date_range
from app.model.registry import is_served
from app.operations.parameters import check_known_parameters
from app.search.cursor import FOREIGN_CURSOR, decode_cursor, is_row_key
from app.search.index import hash64
from app.search.parameters import patient_compartment
from app.search.service import page_count
from app.store.resources import StoredResource, read_resource, stored_from_row
from app.store.schema import INDEX_TABLES, resource

EVERYTHING_PARAMETERS = frozenset({"_since", "_type", "_count", "_cursor", "_format", "_pretty"})
# Outside the compartment, but needed to read the record: who treated the patient, where, for whom, with what.
SUPPORTING_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location", "Medication"})


@dataclass(frozen=True)
class EverythingRequest:
    patient_id: str | None  # None: every patient (Patient/$everything)
    types: frozenset[str] | None = None  # None: every type
    since: datetime | None = None
    count: int = 50
    after_pk: int | None = None


@dataclass(frozen=True)
class EverythingPage:
    matches: list[StoredResource]
    included: list[StoredResource]
    next_after_pk: int | None


def everything_request(patient_id: str | None, pairs: list[tuple[str, str]], lenient: bool, default_count: int, max_count: int) -> EverythingRequest:
    """The request that $everything's (name, value) pairs ask for: _since, _type (repeatable, comma-separated), _count."""
    check_known_parameters(pairs, EVERYTHING_PARAMETERS, "$everything", lenient)
    values = dict(pairs)
    return EverythingRequest(
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


def patient_everything(connection: Connection, request: EverythingRequest) -> EverythingPage:
    """One page of the record; NotFound for an unknown patient, Gone for a deleted one."""
    if request.patient_id is not None:
        read_resource(connection, "Patient", request.patient_id)
    statement = select(resource).where(everything_condition(request)).order_by(resource.c.pk).limit(request.count + 1)
    rows = connection.execute(statement).all()
    matches = [stored_from_row(row) for row in rows[: request.count]]
    next_after_pk = matches[-1].pk if len(rows) > request.count and matches else None
    return EverythingPage(matches, supporting_resources(connection, matches, request), next_after_pk)


def everything_condition(request: EverythingRequest) -> ColumnElement:
    conditions = [resource.c.deleted == false(), in_compartment(request), *filter_conditions(request)]
    if request.after_pk is not None:
        conditions.append(resource.c.pk > request.after_pk)
    return and_(*conditions)


def in_compartment(request: EverythingRequest) -> ColumnElement:
    """The patient and the resources whose compartment parameters point at it; every patient's, without an id."""
    references = INDEX_TABLES["reference"]
    pointing = [references.c.target_type == "Patient", references.c.h_param.in_(compartment_hashes(request.types))]
    patients = [resource.c.res_type == "Patient"]
    if request.patient_id is not None:
        pointing.append(references.c.target_id == request.patient_id)
        patients.append(resource.c.res_id == request.patient_id)
    return or_(and_(*patients), resource.c.pk.in_(select(references.c.res_pk).where(*pointing)))


def filter_conditions(request: EverythingRequest) -> list[ColumnElement]:
    """_type and _since, which apply to included resources as to the compartment."""
    conditions = []
    if request.types is not None:
        conditions.append(resource.c.res_type.in_(sorted(request.types)))
    if request.since is not None:
        conditions.append(resource.c.last_updated >= request.since)
    return conditions


@cache
def compartment_parameter_hashes() -> dict[str, tuple[int, ...]]:
    """Type -> the hashes its reference index rows carry for its Patient-compartment parameters."""
    return {type_name: tuple(hash64(type_name, code) for code in codes) for type_name, codes in patient_compartment().items()}


def compartment_hashes(types: frozenset[str] | None) -> list[int]:
    return [param_hash for type_name, hashes in compartment_parameter_hashes().items() if types is None or type_name in types for param_hash in hashes]


def supporting_resources(connection: Connection, matches: list[StoredResource], request: EverythingRequest) -> list[StoredResource]:
    """The practitioners, organizations, locations and medications the page's resources refer to."""
    types = SUPPORTING_TYPES if request.types is None else SUPPORTING_TYPES & request.types
    if not matches or not types:
        return []
    references = INDEX_TABLES["reference"]
    statement = (
        select(resource)
        .join(references, and_(resource.c.res_type == references.c.target_type, resource.c.res_id == references.c.target_id))
        .where(references.c.res_pk.in_([stored.pk for stored in matches]), resource.c.res_type.in_(sorted(types)), resource.c.deleted == false())
        .where(*filter_conditions(request))
        .distinct()
        .order_by(resource.c.pk)
    )
    return [stored_from_row(row) for row in connection.execute(statement).all()]
