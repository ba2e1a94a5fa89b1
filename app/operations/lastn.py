"""Observation/$lastn: the `max` most recent Observations of each code, for one patient.

Matching uses the ordinary search criteria (patient or subject required; category,
code, date and the rest as in a search). The Observations are then grouped by code
as R4 asks: codings with the same system and code are one code, an Observation with
several codings joins their groups together, and text-only codes group by their text.
Within a group the newest by effective date (the `date` index) come first; ties with
the last one kept are kept too.
"""
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


from app.errors import BadRequest
from app.operations.parameters import positive_integer
from app.search.criteria import Query
from app.search.service import is_result_parameter, search_request
from app.store.resources import StoredResource
from app.store.unit import Unit

SUBJECT_PARAMETERS = frozenset({"patient", "subject"})
LASTN_RESULT_PARAMETERS = frozenset({"_format", "_pretty"})


@dataclass(frozen=True)
class LastnRequest:
    criteria: tuple[Query, ...]
    max: int = 1


@dataclass(frozen=True)
class Candidate:
    """One matching Observation, before grouping: its pk, effective moment (None if it has none) and code."""

    pk: int
    effective: datetime | None
    code: dict | None


def lastn_request(pairs: list[tuple[str, str]], lenient: bool, own_base: str | None) -> LastnRequest:
    """The request that $lastn's pairs ask for: `max` plus Observation search criteria naming a patient or subject."""
    criteria_pairs = [(name, value) for name, value in pairs if name != "max"]
    unsupported = sorted({name for name, _ in criteria_pairs if is_result_parameter(name)} - LASTN_RESULT_PARAMETERS)
    if unsupported:
        raise BadRequest(f"$lastn does not take {', '.join(unsupported)}; it returns every group's latest Observations in one Bundle.")
    search, _ = search_request("Observation", criteria_pairs, lenient, 1, 1, own_base=own_base)
    if not any(base_code(query.name) in SUBJECT_PARAMETERS for query in search.criteria):
        raise BadRequest("$lastn needs a patient or subject, e.g. ?patient=Patient/123&category=vital-signs.")
    max_text = dict(pairs).get("max")
    return LastnRequest(search.criteria, positive_integer("max", max_text) if max_text is not None else 1)


def base_code(name: str) -> str:
    return name.split(".")[0].split(":")[0]


def last_observations(unit: Unit, request: LastnRequest) -> list[StoredResource]:
    """The latest Observations of each code group, groups in order of their latest, each newest first."""
    candidates = [Candidate(*found) for found in unit.latest_observations(request.criteria)]
    chosen = [candidate.pk for group in code_groups(candidates) for candidate in latest_of(group, request.max)]
    return unit.resources_in_order(chosen)


def code_groups(candidates: list[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by equivalent code (union of shared codings), groups ordered by their newest member."""
    parents: dict[tuple, tuple] = {}
    for candidate in candidates:
        keys = code_keys(candidate.code)
        for key in keys[1:]:
            unite(parents, keys[0], key)
    groups: dict[tuple, list[Candidate]] = {}
    for candidate in newest_first(candidates):
        groups.setdefault(root(parents, code_keys(candidate.code)[0]), []).append(candidate)
    return list(groups.values())


def code_keys(code) -> list[tuple]:
    """An Observation.code's identities: each coding's (system, code), or else its exact text."""
    code = code if isinstance(code, dict) else {}
    codings = [("coding", coding.get("system"), coding["code"]) for coding in code.get("coding") or [] if isinstance(coding, dict) and coding.get("code")]
    return codings or [("text", code.get("text"))]


def root(parents: dict[tuple, tuple], key: tuple) -> tuple:
    while parents.get(key, key) != key:
        key = parents[key]
    return key


def unite(parents: dict[tuple, tuple], first: tuple, second: tuple) -> None:
    parents[root(parents, second)] = root(parents, first)


def newest_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Latest effective first; Observations without an effective date last; pk breaks ties for a stable order."""
    return sorted(candidates, key=lambda c: (c.effective is not None, c.effective or datetime.min, c.pk), reverse=True)


def latest_of(group: list[Candidate], count: int) -> list[Candidate]:
    """The first `count` of a newest-first group, plus any that tie with the last of them."""
    kept = group[:count]
    return kept + [candidate for candidate in group[count:] if candidate.effective == kept[-1].effective]
