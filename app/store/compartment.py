"""The SQL of Patient/$everything: the resources in a patient's compartment, and those they refer to.

A resource is in the patient's compartment when one of its Patient-compartment
parameters (the official CompartmentDefinition, e.g. Observation.subject and
Observation.performer) points at the patient: one semi-join on the reference index.
Pages follow a keyset on resource.pk, never OFFSET.
"""
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import Connection, and_, false, or_, select
from sqlalchemy.sql import ColumnElement

from app.protection.service import protection_of
from app.search.index import hash64
from app.search.parameters import patient_compartment
from app.store.resources import StoredResource, stored_from_row
from app.store.schema import INDEX_TABLES, resource


@dataclass(frozen=True)
class CompartmentQuery:
    patient_id: str | None  # None: every patient (Patient/$everything)
    types: frozenset[str] | None = None  # None: every type
    since: datetime | None = None
    count: int = 50
    after_pk: int | None = None


def compartment_page(connection: Connection, query: CompartmentQuery) -> tuple[list[StoredResource], int | None]:
    """One page of the compartment's live resources in pk order, and the pk the next page starts after (None on the last)."""
    statement = select(resource).where(compartment_condition(query)).order_by(resource.c.pk).limit(query.count + 1)
    rows = connection.execute(statement).all()
    matches = [stored_from_row(row, protection_of(connection)) for row in rows[: query.count]]
    return matches, (matches[-1].pk if len(rows) > query.count and matches else None)


def compartment_condition(query: CompartmentQuery) -> ColumnElement:
    conditions = [resource.c.deleted == false(), in_compartment(query), *filter_conditions(query)]
    if query.after_pk is not None:
        conditions.append(resource.c.pk > query.after_pk)
    return and_(*conditions)


def in_compartment(query: CompartmentQuery, table=resource) -> ColumnElement:
    """The patient and the resources (rows of `table`, a resource table alias) whose compartment parameters point at
    it; every patient's, without an id."""
    references = INDEX_TABLES["reference"]
    pointing = [references.c.target_type == "Patient", references.c.h_param.in_(compartment_hashes(query.types))]
    patients = [table.c.res_type == "Patient"]
    if query.patient_id is not None:
        pointing.append(references.c.target_id == query.patient_id)
        patients.append(table.c.res_id == query.patient_id)
    return or_(and_(*patients), table.c.pk.in_(select(references.c.res_pk).where(*pointing)))


def filter_conditions(query: CompartmentQuery) -> list[ColumnElement]:
    """_type and _since, which apply to included resources as to the compartment."""
    conditions = []
    if query.types is not None:
        conditions.append(resource.c.res_type.in_(sorted(query.types)))
    if query.since is not None:
        conditions.append(resource.c.last_updated >= query.since)
    return conditions


@cache
def compartment_parameter_hashes() -> dict[str, tuple[int, ...]]:
    """Type -> the hashes its reference index rows carry for its Patient-compartment parameters."""
    return {type_name: tuple(hash64(type_name, code) for code in codes) for type_name, codes in patient_compartment().items()}


def compartment_hashes(types: frozenset[str] | None) -> list[int]:
    return [param_hash for type_name, hashes in compartment_parameter_hashes().items() if types is None or type_name in types for param_hash in hashes]


def referenced_resources(connection: Connection, sources: list[StoredResource], types: frozenset[str], query: CompartmentQuery) -> list[StoredResource]:
    """The live resources of `types` that `sources` refer to, within the query's _type and _since, in pk order."""
    references = INDEX_TABLES["reference"]
    statement = (
        select(resource)
        .join(references, and_(resource.c.res_type == references.c.target_type, resource.c.res_id == references.c.target_id))
        .where(references.c.res_pk.in_([stored.pk for stored in sources]), resource.c.res_type.in_(sorted(types)), resource.c.deleted == false())
        .where(*filter_conditions(query))
        .distinct()
        .order_by(resource.c.pk)
    )
    return [stored_from_row(row, protection_of(connection)) for row in connection.execute(statement).all()]
