"""The audit trail: AuditEvents for each unit of work an authenticated caller runs, after IHE's Basic Audit Log
Patterns (BALP), one per patient whose record it touched: who (the user, the app, the network address), what (the RESTful interactions, the resources read or
written, a search's query), about whom (each patient whose record it touched), when, and whether it succeeded.

- A write's AuditEvents are written in the write's own transaction (app/store/unit.py): the change and its record
  commit together, or neither does.
- A read's, a search's or a refusal's are written after it, on their own, before it is answered: an access that was
  answered is never unrecorded. Concurrent requests' AuditEvents share one statement and one commit (group commit).

Callers trusted otherwise (EHR_AUTH=off, the feeds, `ehr load`) are not audited here: the feeds keep their own
message store. A DICOM peer's C-FIND is audited though no token names the peer: by its calling AE title and address
(dicom_query_events, written by interop/dicom/scp.py before it answers).
"""
import base64
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from app.model.instants import format_instant, utc_now
from app.store.access import Caller, patients_of
from app.store.db import write_unit
from app.store.resources import StoredResource, first_version, insert_new_resources, new_id

INTERACTION_ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "history-type": "R", "history-system": "R",
                       "update": "U", "patch": "U", "delete": "D", "search-type": "E", "search-system": "E", "operation": "E"}
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"
EVENT_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "Restful Operation"}
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
CLIENT_SYSTEM = "urn:ehr:oauth-client"
USER_SYSTEM = "urn:ehr:user"
AE_TITLE_SYSTEM = "urn:ehr:dicom:ae-title"
DICOM_UID_SYSTEM = "urn:dicom:uid"  # a UID as urn:oid:..., as interop/dicom/mapping.py names them
QUERY_EVENT_TYPE = {"system": DICOM, "code": "110112", "display": "Query"}
SOURCE = {
    "observer": {"display": "EHR integration server"},
    "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
}


@dataclass
class Accessed:
    """What a unit of work did: its interactions (restful-interaction codes), the resources involved with the patients
    whose records hold them, and its queries."""

    interactions: list[str] = field(default_factory=list)
    resources: list[tuple[StoredResource, set[str]]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def note(self, interaction: str, resources: list[StoredResource], query: str | None = None,
             before: StoredResource | None = None) -> None:
        """`before`: for a deletion (which has no content), the version it deleted, whose patients it concerns."""
        if interaction not in self.interactions:
            self.interactions.append(interaction)
        self.resources += [(stored, patients_of(before or stored)) for stored in resources]
        if query:
            self.queries.append(query)


@dataclass(frozen=True)
class DicomQuery:
    """A C-FIND request as the audit trail records it: who asked (the calling AE title and its network address), whom
    (the called AE title: this server's), and what (the information model's SOP Class UID, and the identifier as
    received, in the transfer syntax named)."""

    calling_ae_title: str
    address: str
    called_ae_title: str
    sop_class_uid: str
    identifier: bytes
    transfer_syntax: str


def audit_events(caller: Caller, accessed: Accessed, outcome: str = SUCCESS, description: str | None = None) -> list[dict]:
    """The AuditEvents of one unit of work, or of a refused request (`outcome` MINOR_FAILURE, with a `description`):
    as BALP says, one per patient whose record it touched, naming that patient and that patient's resources only (a
    patient who reads the AuditEvents about her sees no one else's), and one more for what is in no patient's record,
    or alone when the unit touched no resource."""
    recorded = format_instant(utc_now())
    return [audit_event(caller, accessed, patient, resources, outcome, recorded, description)
            for patient, resources in patient_groups(accessed.resources)]


def patient_groups(resources: list[tuple[StoredResource, set[str]]]) -> list[tuple[str | None, list[StoredResource]]]:
    """BALP's grouping of the resources (each with the patients whose records hold it): each patient with the resources
    in that patient's record, then None with those in no patient's record, when there are some or no patient at all."""
    by_patient: dict[str, list[StoredResource]] = defaultdict(list)
    unattached = []
    for stored, patients in resources:
        for patient in patients:
            by_patient[patient].append(stored)
        if not patients:
            unattached.append(stored)
    groups: list[tuple[str | None, list[StoredResource]]] = [(patient, by_patient[patient]) for patient in sorted(by_patient)]
    if unattached or not groups:
        groups.append((None, unattached))
    return groups


def grant_event(caller: Caller, patient: str | None, scope: str) -> dict:
    """The AuditEvent of a token issued (DICOM's User Authentication, Login): to which app, for whom, with which
    scopes, for which patient in context."""
    token = {**entity(None, "2", "System Object", "13", "Security Resource"), "detail": [{"type": "scope", "valueString": scope}]}
    event = {
        "resourceType": "AuditEvent",
        "type": {"system": DICOM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DICOM, "code": "110122", "display": "Login"}],
        "action": "E", "recorded": format_instant(utc_now()), "outcome": SUCCESS, "agent": agents(caller), "source": SOURCE,
        "entity": [*([entity(f"Patient/{patient}", "1", "Person", "1", "Patient")] if patient else []), token],
    }
    return event


def dicom_query_events(query: DicomQuery, studies: list[StoredResource]) -> list[dict]:
    """The AuditEvents of a C-FIND answered with matches of `studies` (the ImagingStudies of the studies matched), after
    DICOM's Query message (PS3.15 A.5.3.10) and BALP: one per patient, naming that patient's ImagingStudies, and one
    without a patient when it matched none (or a study in no patient's record)."""
    recorded = format_instant(utc_now())
    groups = patient_groups([(stored, patients_of(stored)) for stored in studies])
    return [dicom_query_event(query, patient, resources, recorded) for patient, resources in groups]


def dicom_query_event(query: DicomQuery, patient: str | None, studies: list[StoredResource], recorded: str) -> dict:
    return {
        "resourceType": "AuditEvent", "type": QUERY_EVENT_TYPE, "action": "E", "recorded": recorded, "outcome": SUCCESS,
        "agent": [calling_application(query), called_application(query)], "source": SOURCE, "entity": [*entities(patient, studies, []), dicom_query_entity(query)],
    }


def calling_application(query: DicomQuery) -> dict:
    """The application entity that asked, known by its AE title and address alone (a DICOM peer has no token)."""
    return {
        "type": {"coding": [{"system": DICOM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": AE_TITLE_SYSTEM, "value": query.calling_ae_title}}, "requestor": True,
        "network": {"address": query.address, "type": "2"},
    }


def called_application(query: DicomQuery) -> dict:
    """This server as the application entity that answered (DICOM's Query message names both ends)."""
    return {
        "type": {"coding": [{"system": DICOM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"identifier": {"system": AE_TITLE_SYSTEM, "value": query.called_ae_title}}, "requestor": False,
    }


def dicom_query_entity(query: DicomQuery) -> dict:
    """The query as DICOM records it: the SOP Class asked, and the identifier in base64 as it came over the wire,
    in the transfer syntax that the TransferSyntax detail names (not re-encoded, so nothing the peer sent is lost)."""
    return {
        **entity(None, "2", "System Object", "24", "Query"),
        "what": {"identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{query.sop_class_uid}"}},
        "query": base64.b64encode(query.identifier).decode(),
        "detail": [{"type": "TransferSyntax", "valueString": query.transfer_syntax}],
    }


def record_audit_events(connection: Connection, events: list[dict]) -> None:
    """Write AuditEvents in the caller's transaction."""
    insert_new_resources(connection, [audit_version(event) for event in events])


def write_audit_events(engine: Engine, events: list[dict]) -> None:
    """Write the AuditEvents of a read or a refusal on their own, before its answer goes out (so that no access that
    was answered goes unrecorded): on PostgreSQL one statement that commits by itself, shared with the other requests'
    that reach it at the same time (app/store/group_commit.py)."""
    with write_unit(engine) as connection:
        insert_new_resources(connection, [audit_version(event) for event in events], last_of_unit=True)


def audit_event(caller: Caller, accessed: Accessed, patient: str | None, resources: list[StoredResource], outcome: str, recorded: str,
                description: str | None) -> dict:
    actions = {INTERACTION_ACTIONS[interaction] for interaction in accessed.interactions}
    event = {
        "resourceType": "AuditEvent", "type": EVENT_TYPE,
        "subtype": [{"system": INTERACTION_SYSTEM, "code": interaction} for interaction in accessed.interactions],
        "action": actions.pop() if len(actions) == 1 else "E", "recorded": recorded, "outcome": outcome, "outcomeDesc": description,
        "agent": agents(caller), "source": SOURCE, "entity": entities(patient, resources, accessed.queries),
    }
    return {key: value for key, value in event.items() if value not in ([], None)}


def agents(caller: Caller) -> list[dict]:
    """The app, and the user it acts for: the user is the requestor when there is one, else the app (a backend)."""
    network = {"network": {"address": caller.address, "type": "2"}} if caller.address else {}
    app = {
        "type": {"coding": [{"system": DICOM, "code": "110150", "display": "Application"}]},
        "who": {"identifier": {"system": CLIENT_SYSTEM, "value": caller.client_id}}, "requestor": caller.username is None, **network,
    }
    if caller.username is None:
        return [app]
    who = {"reference": caller.fhir_user} if caller.fhir_user else {"identifier": {"system": USER_SYSTEM, "value": caller.username}}
    user = {"who": who, "altId": caller.username, "requestor": True, **network}
    return [user, app]


def entities(patient: str | None, resources: list[StoredResource], queries: list[str]) -> list[dict]:
    """The patient, each resource version read or written, and each search's query."""
    versions = list(dict.fromkeys(stored.versioned_reference for stored in resources))
    return [
        *([entity(f"Patient/{patient}", "1", "Person", "1", "Patient")] if patient else []),
        *[entity(reference, "2", "System Object", "4", "Domain Resource") for reference in versions],
        *[{**entity(None, "2", "System Object", "24", "Query"), "query": base64.b64encode(query.encode()).decode()} for query in queries],
    ]


def entity(reference: str | None, type_code: str, type_display: str, role_code: str, role_display: str) -> dict:
    what = {"what": {"reference": reference}} if reference else {}
    return {**what, "type": {"system": ENTITY_TYPE, "code": type_code, "display": type_display},
            "role": {"system": OBJECT_ROLE, "code": role_code, "display": role_display}}


def audit_version(event: dict) -> StoredResource:
    """The AuditEvent as a first version to write. Not validated again: audit_event builds valid ones (its tests check)."""
    return first_version("AuditEvent", new_id(), event, "POST")
