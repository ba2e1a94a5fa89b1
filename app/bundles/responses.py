"""The entries of a transaction-response or batch-response Bundle."""
from dataclasses import dataclass
from http import HTTPStatus

from app.errors import FhirError
from app.model.bundles import version_fields
from app.model.outcome import information, operation_outcome
from app.store.resources import StoredResource


@dataclass(frozen=True)
class Written:
    """What a write entry did: the version it wrote (None when a delete found nothing), its status and a message."""

    stored: StoredResource | None
    status: int
    message: str


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


def write_entry(written: Written, base: str, prefer_return: str) -> dict:
    """Status, location and version always; the resource or an OperationOutcome as the client prefers."""
    response = {"status": status_line(written.status)}
    stored = written.stored
    if stored is not None:
        if not stored.deleted:
            response["location"] = stored.versioned_reference
        response.update(version_fields(stored))
    if prefer_return == "OperationOutcome":
        response["outcome"] = information(written.message)
    if prefer_return == "representation" and stored is not None and not stored.deleted:
        return {"fullUrl": f"{base}/{stored.type}/{stored.id}", "resource": stored.body, "response": response}
    return {"response": response}


def version_entry(stored: StoredResource, base: str, with_body: bool) -> dict:
    """A read or vread; HEAD leaves out the resource."""
    entry = {"fullUrl": f"{base}/{stored.type}/{stored.id}"}
    if with_body:
        entry["resource"] = stored.body
    entry["response"] = {"status": status_line(200), **version_fields(stored)}
    return entry


def bundle_read_entry(result: dict, with_body: bool) -> dict:
    """A search or history read, whose result is itself a Bundle."""
    entry = {"resource": result} if with_body else {}
    entry["response"] = {"status": status_line(200)}
    return entry


def failure_entry(error: FhirError) -> dict:
    """A batch entry that failed: its status and what went wrong; the other entries are unaffected."""
    return {"response": {"status": status_line(error.status), "outcome": operation_outcome(error.issues)}}
