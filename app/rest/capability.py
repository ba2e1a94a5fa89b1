"""The CapabilityStatement, generated from the routes this server really has and the types it serves."""
from functools import cache

from flask import current_app

from app.model.instants import utc_now
from app.model.media_types import FHIR_JSON, JSON_PATCH
from app.model.registry import FHIR_VERSION, resource_types
from app.operations.registry import operations_of
from app.search.criteria import is_searchable
from app.search.parameters import parameters_of, reference_codes, shared_parameters
from app.security.discovery import capability_security

SOFTWARE_NAME = "EHR Integration Server"
SOFTWARE_VERSION = "0.1.0"

# (URL rule, HTTP method) -> the FHIR interaction it implements.
TYPE_INTERACTIONS = {
    ("/fhir/<type_name>/<resource_id>", "GET"): "read",
    ("/fhir/<type_name>/<resource_id>/_history/<version_id>", "GET"): "vread",
    ("/fhir/<type_name>/<resource_id>", "PUT"): "update",
    ("/fhir/<type_name>/<resource_id>", "PATCH"): "patch",
    ("/fhir/<type_name>/<resource_id>", "DELETE"): "delete",
    ("/fhir/<type_name>/<resource_id>/_history", "GET"): "history-instance",
    ("/fhir/<type_name>/_history", "GET"): "history-type",
    ("/fhir/<type_name>", "POST"): "create",
    ("/fhir/<type_name>", "GET"): "search-type",
}
# Interactions on a type's URL with search criteria.
CONDITIONAL_ROUTES = {"create": ("/fhir/<type_name>", "POST"), "update": ("/fhir/<type_name>", "PUT"), "delete": ("/fhir/<type_name>", "DELETE")}
# The routes that take every `$name` on a type or an instance; app/operations/registry.py says which are served.
OPERATION_ROUTES = (("/fhir/<type_name>/<operation:name>", "POST"), ("/fhir/<type_name>/<resource_id>/<operation:name>", "POST"))
SYSTEM_INTERACTIONS = {
    ("/fhir", "POST"): ("transaction", "batch"),
    ("/fhir/_history", "GET"): ("history-system",),
    ("/fhir", "GET"): ("search-system",),
}


def served_routes() -> set[tuple[str, str]]:
    return {(rule.rule.rstrip("/") or "/", method) for rule in current_app.url_map.iter_rules() for method in rule.methods}


def capability_statement(base: str) -> dict:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": utc_now().date().isoformat(),
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
        "implementation": {"description": SOFTWARE_NAME, "url": base},
        "fhirVersion": FHIR_VERSION,
        "format": [FHIR_JSON, "json"],
        "patchFormat": [JSON_PATCH],
        "rest": [rest_capability(served_routes())],
    }


def rest_capability(routes: set[tuple[str, str]]) -> dict:
    type_interactions = [code for route, code in TYPE_INTERACTIONS.items() if route in routes]
    system_interactions = [code for route, codes in SYSTEM_INTERACTIONS.items() if route in routes for code in codes]
    rest = {
        "mode": "server",
        "security": capability_security(),
        "resource": [resource_capability(type_name, type_interactions, routes) for type_name in sorted(resource_types())],
        "interaction": [{"code": code} for code in system_interactions],
    }
    if "search-system" in system_interactions:
        rest["searchParam"] = system_search_parameters()
    return rest


def resource_capability(type_name: str, interactions: list[str], routes: set[tuple[str, str]]) -> dict:
    capability = {
        "type": type_name,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{type_name}",
        "interaction": [{"code": code} for code in interactions],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": CONDITIONAL_ROUTES["create"] in routes,
        "conditionalRead": "full-support",
        "conditionalUpdate": CONDITIONAL_ROUTES["update"] in routes,
        "conditionalDelete": "single" if CONDITIONAL_ROUTES["delete"] in routes else "not-supported",
    }
    operations = type_operations(type_name, routes)
    if operations:
        capability["operation"] = operations
    if "search-type" in interactions:
        capability["searchInclude"] = [f"{type_name}:{code}" for code in reference_codes(type_name, "*")]
        capability["searchRevInclude"] = list(referencing_parameters().get(type_name, ()))
        capability["searchParam"] = search_parameters(type_name)
    return capability


def type_operations(type_name: str, routes: set[tuple[str, str]]) -> list[dict]:
    if not all(route in routes for route in OPERATION_ROUTES):
        return []
    return [{"name": operation.name, "definition": operation.canonical} for operation in operations_of(type_name)]


@cache
def referencing_parameters() -> dict[str, tuple[str, ...]]:
    """Type -> the `Source:parameter` values _revinclude takes for it: each reference parameter of a served type
    that can point at it (Patient: Observation:subject, Encounter:patient...)."""
    found = {}
    for source in sorted(resource_types()):
        references = [(code, parameter) for code, parameter in sorted(parameters_of(source).items()) if parameter.type == "reference"]
        for code, parameter in references:
            for target in parameter.targets:
                found.setdefault(target, []).append(f"{source}:{code}")
    return {target: tuple(values) for target, values in found.items()}


def search_parameters(type_name: str) -> list[dict]:
    """The parameters a search of this type really answers (not yet: special ones, and number$number composites)."""
    return [
        {"name": code, "definition": parameter.url, "type": parameter.type}
        for code, parameter in sorted(parameters_of(type_name).items())
        if is_searchable(type_name, parameter)
    ]


def system_search_parameters() -> list[dict]:
    """The parameters a search across every type answers: those all types share (_id, _lastUpdated, _tag...)."""
    type_names = tuple(sorted(resource_types()))
    return [
        {"name": code, "definition": parameter.url, "type": parameter.type}
        for code, parameter in sorted(shared_parameters(type_names).items())
        if all(is_searchable(type_name, parameters_of(type_name)[code]) for type_name in type_names)
    ]
