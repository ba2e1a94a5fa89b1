"""The one registry of resource types we serve, derived from the fhir.resources R4B models.

The list itself is data (fhir/resource-types.json, extracted from the R4 definitions);
each listed type is validated by its R4B model, identical to R4 for these types.
"""
import json
from functools import cache

from fhir.resources.R4B import get_fhir_model_class

from app.config import CONFORMANCE_DIR
from app.errors import NotFound

FHIR_VERSION = "4.0.1"


@cache
def resource_types() -> frozenset[str]:
    document = json.loads((CONFORMANCE_DIR / "resource-types.json").read_text())
    return frozenset(document["resourceTypes"])


def is_served(type_name: str) -> bool:
    return type_name in resource_types()


@cache
def model_class(type_name: str):
    """The pydantic model class that validates `type_name` (a served type)."""
    return get_fhir_model_class(type_name)


def require_served_type(type_name: str) -> None:
    if not is_served(type_name):
        raise NotFound(f"Unknown resource type '{type_name}': this server serves the FHIR R4 resource types listed in GET /fhir/metadata.")
