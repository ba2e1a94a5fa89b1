"""Observation/$stats: statistics over one subject's measurements of some codes, one result Observation per code.

The measurements are the valueQuantity of each matching Observation (status other
than entered-in-error) and, for a panel such as blood pressure (85354-9), of each
component, grouped by the component's code; a requested component code (8480-6)
is also found inside panels. Values in a unit other than the group's first are
counted in total-count but left out of the other statistics. Statistics are the
sample statistics of app/operations/statistics.py.
"""
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal


from app.errors import BadRequest, NotSupported
from app.model.instants import EARLIEST, format_instant, shifted, utc_now
from app.model.references import rewritten_reference
from app.operations.parameters import boolean, check_known_parameters, positive_integer
from app.operations.statistics import STATISTICS
from app.search.criteria import Query, parse_number
from app.search.values import as_decimal
from app.store.resources import StoredResource
from app.store.unit import Unit

STATISTICS_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-statistics"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
STATS_PARAMETERS = frozenset({"subject", "code", "system", "coding", "duration", "period", "statistic", "include", "limit", "_format", "_pretty"})
COUNTS = {"count": "Count", "total-count": "Total Count"}
STATISTIC_CODES = (*COUNTS, *STATISTICS)


@dataclass(frozen=True)
class StatsRequest:
    subject: str  # Type/id
    codes: tuple[tuple[str | None, str], ...]  # (system, or None for any system; code)
    statistics: tuple[str, ...]
    start: str | None = None  # a FHIR date or dateTime, as sent or computed from duration
    end: str | None = None
    include: bool = False
    limit: int | None = None


@dataclass
class Measurements:
    """One code's values across the source Observations."""

    coding: dict
    values: list[Decimal] = field(default_factory=list)
    unit: dict | None = None  # the unit of the first valid value; the others must share it
    total: int = 0
    moments: list[datetime] = field(default_factory=list)

    def add(self, quantity, moment: datetime | None) -> None:
        """Count a measurement; keep its value when it is a number in the group's unit."""
        self.total += 1
        value = as_decimal(quantity.get("value")) if isinstance(quantity, dict) else None
        if value is None:
            return
        unit = {key: quantity[key] for key in ("unit", "system", "code") if key in quantity}
        self.unit = unit if self.unit is None else self.unit
        if same_unit(self.unit, unit):
            self.values.append(value)
            self.moments += [moment] if moment is not None else []


def same_unit(first: dict, second: dict) -> bool:
    """UCUM-coded quantities compare by system and code; others by their unit text."""
    if first.get("code") or second.get("code"):
        return (first.get("system"), first.get("code")) == (second.get("system"), second.get("code"))
    return first.get("unit") == second.get("unit")


def stats_request(pairs: list[tuple[str, str]], lenient: bool, base: str | None = None) -> StatsRequest:
    """The request that $stats's pairs ask for; `subject` (Type/id, or its absolute URL under this server's
    `base`) and at least one code and statistic are required."""
    check_known_parameters(pairs, STATS_PARAMETERS, "$stats", lenient)
    values = dict(pairs)
    if not values.get("subject"):
        raise BadRequest("$stats needs subject, e.g. ?subject=Patient/123&code=8867-4&system=http://loinc.org&statistic=average.")
    start, end = requested_period(values.get("duration"), values.get("period"))
    return StatsRequest(
        subject=rewritten_reference(values["subject"], {}, base),
        codes=requested_codes(pairs, values.get("system")),
        statistics=requested_statistics(pairs),
        start=start,
        end=end,
        include=boolean("include", values.get("include", "false")),
        limit=positive_integer("limit", values["limit"]) if "limit" in values else None,
    )


def requested_codes(pairs: list[tuple[str, str]], system: str | None) -> tuple[tuple[str | None, str], ...]:
    codes = [(system, bare_code(code)) for name, value in pairs if name == "code" for code in split_list(value)]
    codes += [split_coding(value) for name, value in pairs if name == "coding" for value in split_list(value)]
    if not codes:
        raise BadRequest("$stats needs the codes to evaluate: code (with system), or coding=system|code.")
    return tuple(dict.fromkeys(codes))


def bare_code(code: str) -> str:
    """A `code` as $stats defines it: the code alone, its system in `system`. A system|code here would match nothing."""
    if "|" in code:
        system, _, bare = code.rpartition("|")
        raise BadRequest(
            f"code={code} holds a system; $stats takes the code alone with its system (system={system}&code={bare}), "
            f"or the pair as coding={code}."
        )
    return code


def split_coding(value: str) -> tuple[str | None, str]:
    system, separator, code = value.rpartition("|")
    if not separator or not code:
        raise BadRequest(f"coding={value} is not of the form system|code.")
    return system or None, code


def requested_statistics(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    codes = tuple(dict.fromkeys(code for name, value in pairs if name == "statistic" for code in split_list(value)))
    if not codes:
        raise BadRequest(f"$stats needs statistic, one or more of {', '.join(STATISTIC_CODES)}.")
    for code in codes:
        if code == "regression":
            raise NotSupported("statistic=regression is not supported by this server.")
        if code not in STATISTIC_CODES:
            raise BadRequest(f"statistic={code} is not a StatisticsCode this server computes; use {', '.join(STATISTIC_CODES)}.")
    return codes


def requested_period(duration: str | None, period: str | None) -> tuple[str | None, str | None]:
    """(start, end): from `duration` hours back to now, or from `period` given as start/end (either side may be empty)."""
    if duration and period:
        raise BadRequest("$stats takes duration or period, not both.")
    if duration:
        hours = parse_number(duration)
        if hours <= 0:
            raise BadRequest(f"duration={duration} must be a positive number of hours.")
        now = utc_now()
        return format_instant(hours_before(now, hours)), format_instant(now)
    if period:
        start, separator, end = period.partition("/")
        if not separator:
            raise BadRequest(f"period={period} is not of the form start/end, e.g. 2025-01-01/2025-03-31.")
        return start or None, end or None
    return None, None


def hours_before(moment: datetime, hours: Decimal) -> datetime:
    """`hours` back from `moment`; EARLIEST when that is before year 1 (timedelta holds fewer hours than a Decimal)."""
    try:
        return shifted(moment, -timedelta(hours=float(hours)))
    except OverflowError:
        return EARLIEST


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def observation_statistics(unit: Unit, request: StatsRequest) -> dict:
    """A Parameters resource: a `statistics` Observation per code, then (with include) the `source` Observations."""
    sources = source_observations(unit, request)
    groups = measurement_groups(sources, request.codes)
    parameters = [{"name": "statistics", "resource": statistics_observation(group, request)} for group in groups]
    if request.include:
        parameters += [{"name": "source", "resource": stored.body} for stored, _ in sources[: request.limit]]
    return {"resourceType": "Parameters", "parameter": parameters}


def source_observations(unit: Unit, request: StatsRequest) -> list[tuple[StoredResource, datetime | None]]:
    """The subject's Observations of the codes (in Observation.code or a component's code), oldest first, with their effective time."""
    criteria = [
        Query("subject", request.subject),
        Query("combo-code", ",".join(f"{system}|{code}" if system else code for system, code in request.codes)),
        Query("status:not", "entered-in-error"),
    ]
    criteria += [Query("date", f"ge{request.start}")] if request.start else []
    criteria += [Query("date", f"le{request.end}")] if request.end else []
    return unit.observations_oldest_first(tuple(criteria))


def measurement_groups(sources: list[tuple[StoredResource, datetime | None]], codes: tuple[tuple[str | None, str], ...]) -> list[Measurements]:
    """Measurements per code, in order of first appearance; a requested code no Observation has gets an empty group."""
    groups: dict[tuple, Measurements] = {}
    matched: set[tuple] = set()
    for stored, moment in sources:
        for requested, coding, quantity in measured_values(stored.body, codes):
            matched.add(requested)
            groups.setdefault((coding.get("system"), coding["code"]), Measurements(coding)).add(quantity, moment)
    for system, code in codes:
        if (system, code) not in matched:
            groups[(system, code)] = Measurements({"system": system, "code": code} if system else {"code": code})
    return list(groups.values())


def measured_values(observation: dict, codes: tuple[tuple[str | None, str], ...]) -> list[tuple[tuple, dict, dict | None]]:
    """(requested code, measured coding, quantity) for each measurement of the Observation that a requested code asks for.

    An Observation whose own code is requested gives its value and each of its components;
    otherwise only its components whose code is requested count.
    """
    components = [component for component in observation.get("component") or [] if first_coding(component.get("code"))]
    found = requested_coding(observation.get("code"), codes)
    if found:
        requested, coding = found
        own = [(requested, coding, observation.get("valueQuantity"))] if "valueQuantity" in observation or not components else []
        return own + [(requested, first_coding(component["code"]), component.get("valueQuantity")) for component in components]
    measured = []
    for component in components:
        found = requested_coding(component["code"], codes)
        if found:
            measured.append((found[0], found[1], component.get("valueQuantity")))
    return measured


def requested_coding(concept, codes: tuple[tuple[str | None, str], ...]) -> tuple[tuple, dict] | None:
    """(the requested code, the concept's coding) for the first coding of `concept` that a requested code names."""
    for coding in codings_of(concept):
        for system, code in codes:
            if coding["code"] == code and system in (None, coding.get("system")):
                return (system, code), coding
    return None


def codings_of(concept) -> list[dict]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [coding for coding in codings or [] if isinstance(coding, dict) and isinstance(coding.get("code"), str)]


def first_coding(concept) -> dict | None:
    return next(iter(codings_of(concept)), None)


def statistics_observation(group: Measurements, request: StatsRequest) -> dict:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [group.coding]},
        "subject": {"reference": request.subject},
    }
    period = effective_period(group, request)
    if period:
        observation["effectivePeriod"] = period
    observation["component"] = [statistic_component(code, group) for code in request.statistics]
    return observation


def effective_period(group: Measurements, request: StatsRequest) -> dict:
    """The period asked for, or else the span of the measurements' effective times."""
    if request.start or request.end:
        return {key: value for key, value in (("start", request.start), ("end", request.end)) if value}
    if not group.moments:
        return {}
    return {"start": format_instant(min(group.moments)), "end": format_instant(max(group.moments))}


def statistic_component(code: str, group: Measurements) -> dict:
    display = COUNTS.get(code) or STATISTICS[code][0]
    component = {"code": {"coding": [{"system": STATISTICS_SYSTEM, "code": code, "display": display}]}}
    if code in COUNTS:
        component["valueInteger"] = len(group.values) if code == "count" else group.total
        return component
    _, in_unit, compute = STATISTICS[code]
    value = compute(sorted(group.values)) if group.values else None
    if value is None:
        component["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT_REASON, "code": "not-applicable"}]}
    else:
        component["valueQuantity"] = {"value": float(value), **(group.unit if in_unit else {})}
    return component
