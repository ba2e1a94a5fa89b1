"""Which element paths are protected, per resource type, and which search parameters read them.

The default protects the direct identifiers of people: Patient and RelatedPerson name, telecom, address, birthDate,
identifier.value, contact and photo, Practitioner telecom, address and identifier.value, and the narrative (`text`)
of all three, which repeats them; Encounter identifier values (visit numbers are account numbers, and the HL7 feed
keys a visit without one by the patient's identifier); and the search criteria an AuditEvent records (entity.query),
which hold what was searched for. EHR_PROTECTED_PATHS replaces that list (`Patient.name,Observation.note`) or, when every entry starts
with + or -, adds to it and takes from it (`+Observation.note,-Practitioner.text`); `none` protects nothing (then
`ehr keys rewrap` decrypts what is stored).
"""
import re
from dataclasses import dataclass
from functools import cache, cached_property

from app.model.elements import element_of, element_table, elements_of
from app.model.registry import is_served
from app.search.index import indexed_parameters
from app.search.parameters import SearchParameter, parameters_of

PEOPLE_PATHS = ("name", "telecom", "address", "birthDate", "identifier.value", "contact", "photo", "text")
DEFAULT_PROTECTED_PATHS = (
    *(f"Patient.{path}" for path in PEOPLE_PATHS),
    *(f"RelatedPerson.{path}" for path in PEOPLE_PATHS if path != "contact"),  # a RelatedPerson has no contact
    "Practitioner.telecom", "Practitioner.address", "Practitioner.identifier.value", "Practitioner.text",
    "Encounter.identifier.value",  # visit numbers, and the patient's identifier in a feed's key for a visit without one
    "AuditEvent.entity.query",
)
UNPROTECTABLE = frozenset({"id", "meta", "resourceType"})  # what the store itself reads and writes
PATH_SYNTAX = re.compile(r"[A-Z][A-Za-z]*(\.[a-z][A-Za-z0-9]*)+")
# The element names after the resource (written as NUL) in a FHIRPath expression, up to the first function call:
# `Patient.telecom.where(system='phone')` reads telecom.
ELEMENT_CHAIN = re.compile(r"\x00((?:\.[a-zA-Z]\w*(?![\w(]))+)")


class PathError(ValueError):
    """A protected path names no element of a served resource type."""


@dataclass(frozen=True)
class ProtectedPath:
    """`identifier.value` of Patient: `text` names it in the additional data of its ciphertexts; `steps` are the JSON
    keys each step may take (a choice element's: deceased -> deceasedBoolean, deceasedDateTime)."""

    text: str
    steps: tuple[tuple[str, ...], ...]


# The parts of a name or an address whose own search parameters' blind rows a parameter over the whole element shares.
SHARED_PARTS = {"HumanName": ("family", "given"), "Address": ("city", "state", "postalCode", "country")}


@dataclass(frozen=True)
class ProtectedPaths:
    by_type: dict[str, tuple[ProtectedPath, ...]]

    def of(self, type_name: str) -> tuple[ProtectedPath, ...]:
        return self.by_type.get(type_name, ())

    @cached_property
    def parameters(self) -> frozenset[tuple[str, str]]:
        """(type, code) of the search parameters that read a protected element: their index rows are blind, or none."""
        return frozenset(
            (type_name, indexed.parameter.code)
            for type_name, paths in self.by_type.items()
            for indexed in indexed_parameters(type_name)
            if reads_protected(type_name, indexed.parameter, paths)
        )

    @cached_property
    def codes_by_type(self) -> dict[str, frozenset[str]]:
        """The codes of `parameters`, per type."""
        return {type_name: frozenset(code for of_type, code in self.parameters if of_type == type_name) for type_name in self.by_type}

    @cached_property
    def whole_value_codes(self) -> frozenset[tuple[str, str]]:
        """(type, code) of the protected string parameters that read whole Address elements (`address`, which searches
        street lines, city, state, postal code and country alike): their blind rows hold whole values, no prefixes, so
        their searches match a whole line or part. Every prefix of every street line would add more rows to a Patient
        than all its other parameters together; `address-city`, `address-postalcode`... keep theirs."""
        return frozenset(key for key in self.parameters if parameters_of(key[0])[key[1]].type == "string" and reads_whole_addresses(*key))

    @cached_property
    def blind_codes(self) -> dict[tuple[str, str], str]:
        """(type, code) -> the parameter whose blind rows a protected parameter shares: the first, by code, of those
        of its type with its expression and parameter type (Patient `phonetic` is `name` here), so that they are
        made once."""
        groups: dict[tuple, list[str]] = {}
        for type_name, code in sorted(self.parameters):
            parameter = parameters_of(type_name)[code]
            groups.setdefault((type_name, parameter.expression, parameter.type), []).append(code)
        return {(key[0], code): codes[0] for key, codes in groups.items() for code in codes}

    @cached_property
    def shared_parts(self) -> dict[tuple[str, str], dict[str, str]]:
        """(type, code) of a protected string parameter over whole names or addresses (Patient `name`, `address`) ->
        {part: code} of the protected string parameters over one part of the same element that keep prefix rows
        (`family`, `given`; `address-city`, `address-state`, `address-postalcode`, `address-country`), whose blind
        rows it shares: its own rows hold the other parts (a name's text, prefix and suffix; an address's text, lines
        and district), and its searches look up the parts' rows too (those of their whole values alone, for a
        parameter that matches whole values: `address`). Each family name, given name, city... was blinded twice: a
        third of a Patient's blind rows and HMACs."""
        by_element: dict[tuple[str, str], dict[str, str]] = {}
        for type_name, code in sorted(self.parameters - self.whole_value_codes):
            chain = string_chain(type_name, code)
            if chain and len(chain) == 2 and chain[1] in SHARED_PARTS.get(element_of(type_name, chain[0]).node, ()):
                by_element.setdefault((type_name, chain[0]), {})[chain[1]] = code
        return {(type_name, code): by_element[(type_name, chain[0])] for type_name, code in self.parameters
                if (chain := string_chain(type_name, code)) and len(chain) == 1 and (type_name, chain[0]) in by_element}


def reads_protected(type_name: str, parameter: SearchParameter, paths: tuple[ProtectedPath, ...]) -> bool:
    """Whether the parameter's expression reads a protected element: an element path of it (`Patient.name.family`,
    `Patient.identifier`) lies inside a protected one or holds one. `AuditEvent.entity.what` reads nothing of a
    protected `AuditEvent.entity.query`. An expression with no element path that can be told reads one."""
    chains = element_chains(type_name, parameter.expression)
    for component in parameter.components:  # relative to the resource or to an element of it: both are counted
        relative = element_chains(type_name, f"{type_name}.{component.expression}")
        chains += relative + [base + chain for base in chains for chain in relative]
    if not chains:
        return True
    return any(overlaps(chain, path.text.split(".")) for chain in chains for path in paths)


def string_chain(type_name: str, code: str) -> list[str] | None:
    """The one element path a string parameter reads (["name", "family"] for Patient `family`); None for another."""
    parameter = parameters_of(type_name)[code]
    chains = element_chains(type_name, parameter.expression)
    return chains[0] if parameter.type == "string" and len(chains) == 1 else None


def reads_whole_addresses(type_name: str, code: str) -> bool:
    """Whether every element path of the parameter's expression is an Address element of the resource."""
    chains = element_chains(type_name, parameters_of(type_name)[code].expression)
    return bool(chains) and all(len(chain) == 1 and element_of(type_name, chain[0]).node == "Address" for chain in chains)


def element_chains(type_name: str, expression: str) -> list[list[str]]:
    """The element paths an expression reads from the resource: [["telecom"]] for `Patient.telecom.where(...)`."""
    marked = re.sub(rf"(?<![\w.%]){type_name}\.", "\x00.", expression)
    return [chain.lstrip(".").split(".") for chain in ELEMENT_CHAIN.findall(marked)]


def overlaps(chain: list[str], protected: list[str]) -> bool:
    """One of the two element paths is the start of the other."""
    shorter = min(len(chain), len(protected))
    return chain[:shorter] == protected[:shorter]


def protected_paths(spec: str | None) -> ProtectedPaths:
    """The paths EHR_PROTECTED_PATHS names (see the module's docstring); the default when it is empty."""
    if (spec or "").strip().lower() == "none":
        return ProtectedPaths({})
    entries = [entry.strip() for entry in (spec or "").split(",") if entry.strip()]
    if entries and all(entry[0] in "+-" for entry in entries):
        added = [entry[1:].strip() for entry in entries if entry[0] == "+"]
        removed = {entry[1:].strip() for entry in entries if entry[0] == "-"}
        unknown = removed - set(DEFAULT_PROTECTED_PATHS)
        if unknown:
            raise PathError(f"EHR_PROTECTED_PATHS removes {', '.join(sorted(unknown))}, which the default does not protect.")
        entries = [path for path in DEFAULT_PROTECTED_PATHS if path not in removed] + added
    by_type: dict[str, list[ProtectedPath]] = {}
    for entry in dict.fromkeys(entries or DEFAULT_PROTECTED_PATHS):
        type_name, _, path = entry.partition(".")
        by_type.setdefault(type_name, []).append(resolved_path(entry))
    return ProtectedPaths({type_name: tuple(paths) for type_name, paths in by_type.items()})


@cache
def resolved_path(entry: str) -> ProtectedPath:
    if not PATH_SYNTAX.fullmatch(entry):
        raise PathError(f"'{entry}' is not an element path such as Patient.name or Patient.identifier.value.")
    type_name, *names = entry.split(".")
    if not is_served(type_name):
        raise PathError(f"'{entry}': this server does not serve {type_name} resources.")
    if names[0] in UNPROTECTABLE:
        raise PathError(f"'{entry}': {names[0]} cannot be protected; the server reads it to store and find resources.")
    node, steps = type_name, []
    for name in names:
        if node is None or node not in element_table():
            raise PathError(f"'{entry}': {'.'.join(names[:len(steps)])} is a primitive value, with no element '{name}' inside.")
        keys = {key: element for key, element in elements_of(node).items() if key == name or element.base == name}
        if not keys:
            raise PathError(f"'{entry}': R4 defines no element '{name}' in {node}.")
        steps.append(tuple(keys))
        node = next(iter(keys.values())).node if len(keys) == 1 else None
    return ProtectedPath(".".join(names), tuple(steps))
