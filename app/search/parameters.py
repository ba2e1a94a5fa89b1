"""The search parameters of each served type, read once from fhir/search-parameters.json (see fhir/extract.py).

Every expression is FHIRPath on the type itself (`Observation.code`, `Patient.meta.tag`):
the extractor keeps only the type's branches of the official unions.
"""
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

from app.config import CONFORMANCE_DIR
from app.model.registry import resource_types

SEARCH_PARAMETER_URL = "http://hl7.org/fhir/SearchParameter/"


@dataclass(frozen=True)
class Component:
    """One part of a composite parameter: a parameter code and its expression, relative to the composite's."""

    code: str
    expression: str


@dataclass(frozen=True)
class SearchParameter:
    code: str
    type: str
    expression: str | None
    targets: tuple[str, ...]
    components: tuple[Component, ...]
    url: str


def read_conformance(file_name: str) -> dict:
    return json.loads((CONFORMANCE_DIR / file_name).read_text())


def parameter_from_entry(code: str, entry: dict, type_name: str) -> SearchParameter:
    """The file's entry as a SearchParameter; a common expression (Resource.id) is rewritten onto the type (Patient.id)."""
    expression = entry.get("e")
    if expression and expression.startswith("Resource."):
        expression = type_name + expression.removeprefix("Resource")
    targets = entry.get("to", ())
    return SearchParameter(
        code=code,
        type=entry["t"],
        expression=expression,
        targets=tuple(sorted(resource_types())) if targets == "*" else tuple(targets),
        components=tuple(Component(part_code, part_expression) for part_code, part_expression in entry.get("c", ())),
        url=SEARCH_PARAMETER_URL + entry["id"],
    )


@cache
def parameters_by_type() -> dict[str, Mapping[str, SearchParameter]]:
    """Each served type's own parameters plus the common ones that have an expression (_id, _lastUpdated, _tag...)."""
    document = read_conformance("search-parameters.json")
    common = {code: entry for code, entry in document["common"].items() if "e" in entry}
    return {
        type_name: MappingProxyType({code: parameter_from_entry(code, entry, type_name) for code, entry in (common | own).items()})
        for type_name, own in document["types"].items()
    }


def parameters_of(type_name: str) -> Mapping[str, SearchParameter]:
    """code -> parameter for a search on `type_name` (read-only, shared); empty for a type we do not serve."""
    return parameters_by_type().get(type_name, MappingProxyType({}))


def parameter(type_name: str, code: str) -> SearchParameter | None:
    return parameters_of(type_name).get(code)


def shared_parameters(type_names: tuple[str, ...]) -> dict[str, SearchParameter]:
    """code -> parameter for the parameters that every one of `type_names` defines with the same type:
    those a search across these types may use (R4 search.html, _type). Across every type: _id, _lastUpdated, _tag...
    """
    first, *others = type_names
    return {
        code: shared
        for code, shared in parameters_of(first).items()
        if all(code in parameters_of(other) and parameters_of(other)[code].type == shared.type for other in others)
    }


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    document = read_conformance("compartment-patient.json")
    return {type_name: tuple(codes) for type_name, codes in document["resources"].items()}


def patient_compartment_parameters(type_name: str) -> tuple[str, ...]:
    """The parameters of `type_name` whose value is the patient (Observation: subject, performer); () if it is never in the compartment.

    Patient itself is linked by `link`; a patient is in its own compartment by id.
    """
    return patient_compartment().get(type_name, ())


def reference_codes(type_name: str, code: str) -> list[str]:
    """The reference parameters `Type:code` names (in _include or _revinclude): `code`, or for `*` all of the type's."""
    if code != "*":
        return [code]
    return [name for name, parameter in parameters_of(type_name).items() if parameter.type == "reference"]
