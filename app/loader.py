"""Bulk loading of FHIR NDJSON and Bundle JSON files through the one write path.

Every resource is upserted by its id (a PUT), so loading the same file twice
changes nothing the second time. Bundle entries without an id take it from their
fullUrl: `urn:uuid:X` becomes id X and every reference to `urn:uuid:X` in the file
is rewritten to `Type/X`, which keeps Synthea-style transaction files idempotent.
"""
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from sqlalchemy import Engine

from app.errors import FhirError
from app.model.references import rewrite_references
from app.store.unit import Unit, writing

BATCH_SIZE = 500
URN_PREFIXES = ("urn:uuid:", "urn:oid:")


@dataclass
class LoadReport:
    outcomes: Counter = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.outcomes["rejected"] += 1
        self.rejected.append((where, reason))


@dataclass(frozen=True)
class Candidate:
    where: str  # file and line or entry, for the report
    resource: object


def read_candidates(path: Path, report: LoadReport):
    """Yield the resources of an NDJSON file (one per line) or a JSON file (a Bundle or one resource)."""
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        yield from ndjson_candidates(path, report)
    else:
        yield from json_file_candidates(path, report)


def ndjson_candidates(path: Path, report: LoadReport):
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Candidate(f"{path.name}:{number}", orjson.loads(line))
            except orjson.JSONDecodeError as error:
                report.reject(f"{path.name}:{number}", f"not valid JSON: {error}")


def json_file_candidates(path: Path, report: LoadReport):
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        report.reject(path.name, f"not valid JSON: {error}")
        return
    if isinstance(document, dict) and document.get("resourceType") == "Bundle" and document.get("type") != "document":
        yield from bundle_candidates(path.name, document)
    else:
        yield Candidate(path.name, document)


def bundle_candidates(name: str, document: dict):
    entries = [entry for entry in document.get("entry") or [] if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)]
    ids = [entry_id(entry) for entry in entries]
    targets = {
        entry["fullUrl"]: f"{entry['resource'].get('resourceType')}/{resource_id}"
        for entry, resource_id in zip(entries, ids)
        if entry.get("fullUrl") and resource_id
    }
    for index, (entry, resource_id) in enumerate(zip(entries, ids)):
        resource = rewrite_references(entry["resource"], targets)
        if resource_id and "id" not in resource:
            resource = {**resource, "id": resource_id}
        yield Candidate(f"{name}#entry[{index}]", resource)


def entry_id(entry: dict) -> str | None:
    """The id an entry's resource is stored under: its own, its PUT URL's, or its urn:uuid fullUrl's."""
    resource, full_url = entry["resource"], entry.get("fullUrl") or ""
    request_url = ((entry.get("request") or {}).get("url") or "").split("?")[0]
    if resource.get("id"):
        return resource["id"]
    if request_url.count("/") == 1:
        return request_url.split("/")[1]
    for prefix in URN_PREFIXES:
        if full_url.startswith(prefix):
            return full_url.removeprefix(prefix)
    return full_url.rstrip("/").rsplit("/", 1)[-1] if "/" in full_url else None


def load_candidates(engine: Engine, candidates, report: LoadReport, own_base: str | None = None) -> None:
    """Write the candidates in batches; references to `own_base` (EHR_BASE_URL) are made relative, as over REST."""
    batch = []
    for candidate in candidates:
        batch.append(Candidate(candidate.where, rewrite_references(candidate.resource, {}, own_base)) if own_base else candidate)
        if len(batch) >= BATCH_SIZE:
            write_batch(engine, batch, report)
            batch = []
    if batch:
        write_batch(engine, batch, report)


def write_batch(engine: Engine, batch: list[Candidate], report: LoadReport) -> None:
    """One unit of work per batch. Resources whose id is not stored yet are created (the unit writes them
    together: the first load of a file); the others are updated, and a second copy of an id in the batch
    updates the first."""
    with writing(engine) as unit:
        stored = unit.stored_keys(filter(None, (resource_key_of(candidate.resource) for candidate in batch)))
        for candidate in batch:
            try:
                report.outcomes[upsert(unit, candidate.resource, stored)] += 1
            except FhirError as error:
                report.reject(candidate.where, error.diagnostics)


def resource_key_of(resource) -> tuple[str, str] | None:
    if isinstance(resource, dict) and isinstance(resource.get("id"), str) and isinstance(resource.get("resourceType"), str):
        return resource["resourceType"], resource["id"]
    return None


def upsert(unit: Unit, resource, stored: set[tuple[str, str]]) -> str:
    """Write `resource` under its id (created, updated or unchanged), or under a new id when it has none;
    `stored` holds the keys known to exist, and gains those created."""
    key = resource_key_of(resource)
    if key is None:
        unit.create(resource)
        return "created"
    if key not in stored:
        unit.create(resource, None, key[1], "PUT")
        stored.add(key)
        return "created"
    result = unit.update(*key, resource)
    return "created" if result.created else ("updated" if result.changed else "unchanged")
