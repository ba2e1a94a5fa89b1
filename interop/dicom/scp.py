"""`ehr dicom`: a DICOM C-STORE SCP (pynetdicom) for the storage SOP classes of common modalities, a C-FIND SCP (Study
Root: studies, series, instances, matched as QIDO-RS matches them), and C-ECHO.

Each C-STORE is answered only after the object is stored (service.py): success (0x0000) for a stored or already
stored instance, 0xC000 for one that could not be read (quarantined), 0xA700 (out of resources) when the database or
the disk failed, so that the sender tries again. An unknown SOP class is refused when the association is negotiated.
ImagingStudies are updated after each association and every UPDATE_SECONDS (studies.py).

Each C-FIND is audited before its first answer goes out (app/store/audit.py dicom_query_events): by the calling AE
title and address, one AuditEvent per patient whose studies it matched; when that record cannot be written, the query
is answered as a failure, never with unrecorded matches.

Speed: a sender such as dcmtk's storescu leaves Nagle's algorithm on, so each of its PDUs waits for our ACK of the
last one; Linux delays ACKs by up to 40 ms. The server sets TCP_NODELAY on each connection and re-arms TCP_QUICKACK
after every receive, so that it acknowledges at once (11-22 instances/s become hundreds)."""
import logging
import re
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass

from pydicom import DataElement, Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    HTJ2KLossless, HTJ2KLosslessRPCL, JPEG2000Lossless, JPEG2000MCLossless, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless,
    AllTransferSyntaxes, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer
from sqlalchemy import Engine

from app.store.audit import DicomQuery, dicom_query_events, write_audit_events
from app.store.resources import StoredResource
from app.store.unit import reading
from interop.dicom.query import LEVELS, Query, imaging_studies, matches
from interop.dicom.service import DicomStore, Outcome
from interop.dicom.studies import update_pending_studies
from interop.tls import server_ssl_context

log = logging.getLogger("ehr.dicom")
OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3: refused, out of resources: the sender may try again
PENDING, CANCELLED, UNABLE_TO_PROCESS = 0xFF00, 0xFE00, 0xC001  # PS3.4 C.4.1.1.4: C-FIND statuses
MAX_FIND_MATCHES = 100_000
UPDATE_SECONDS = 5.0
CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f\\]")  # what an LO value (the Error Comment) cannot hold
# Of the transfer syntaxes a sender proposes for a context, the first of these is accepted (pynetdicom goes by the
# acceptor's order): Explicit VR Little Endian first, which keeps each element's VR and is what DICOMweb gives back
# (PS3.18 8.7.3: not Implicit VR, nor Big Endian), then the other uncompressed ones, then the lossless compressed ones,
# so that a sender is never asked to compress lossily when it offers otherwise, then the rest; Big Endian (retired) last.
LITTLE_ENDIAN_UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
LOSSLESS_COMPRESSED = [JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, JPEG2000MCLossless, HTJ2KLossless, HTJ2KLosslessRPCL,
                       RLELossless]
ACCEPTED_TRANSFER_SYNTAXES = [*LITTLE_ENDIAN_UNCOMPRESSED, *LOSSLESS_COMPRESSED,
                              *(uid for uid in AllTransferSyntaxes if uid not in {*LITTLE_ENDIAN_UNCOMPRESSED, *LOSSLESS_COMPRESSED, ExplicitVRBigEndian}),
                              ExplicitVRBigEndian]
DEFAULT_AE_TITLE = "EHR"


@dataclass(frozen=True)
class ScpSettings:
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = DEFAULT_AE_TITLE
    calling_ae_titles: tuple[str, ...] = ()  # accept associations only from these; every one when empty
    tls_certificate: str | None = None
    tls_key: str | None = None
    max_associations: int = 20

    def ssl_context(self) -> ssl.SSLContext | None:
        return server_ssl_context(self.tls_certificate, self.tls_key)


class QuickAckSocket(socket.socket):
    """A connection that acknowledges what it receives at once (TCP_QUICKACK lasts until the kernel's next delayed
    ACK decision, so it is set again after every receive)."""

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


class PromptRequestHandler(RequestHandler):
    """pynetdicom's handler of a new connection, with Nagle off and quick ACKs on (TLS connections: Nagle off)."""

    def setup(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if type(self.request) is socket.socket and hasattr(socket, "TCP_QUICKACK"):
            self.request = QuickAckSocket(fileno=self.request.detach())
        super().setup()


class StorageServer:
    """The SCP of a DicomStore: call `serve_forever` (blocking) or `start` (a thread), then `shutdown`."""

    def __init__(self, store: DicomStore, settings: ScpSettings):
        self.store, self.settings = store, settings
        self.stopping = threading.Event()
        self.ae = application_entity(settings)
        handlers = [(evt.EVT_C_STORE, self.handle_store), (evt.EVT_C_FIND, self.handle_find), (evt.EVT_C_ECHO, lambda event: 0x0000),
                    (evt.EVT_RELEASED, self.association_ended), (evt.EVT_ABORTED, self.association_ended)]
        self.server: ThreadedAssociationServer = self.ae.make_server(
            (settings.host, settings.port), ae_title=settings.ae_title, ssl_context=settings.ssl_context(), evt_handlers=handlers,
            server_class=ThreadedAssociationServer, request_handler=PromptRequestHandler,
        )
        self.updater = threading.Thread(target=self.update_studies_now_and_then, name="dicom-study-updater", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> "StorageServer":
        threading.Thread(target=self.server.serve_forever, name="dicom-scp", daemon=True).start()
        self.updater.start()
        return self

    def serve_forever(self) -> None:
        self.updater.start()
        self.server.serve_forever()

    def shutdown(self) -> None:
        """Stop listening, end the associations under way (what they had acknowledged is stored), stop updating."""
        self.stopping.set()
        socketserver.BaseServer.shutdown(self.server)  # pynetdicom's own also unlists it from AE.start_server's servers
        self.server.server_close()
        for association in self.ae.active_associations:
            association.abort()
        if self.updater.is_alive():
            self.updater.join(timeout=30)

    def handle_store(self, event) -> int:
        peer = f"dicom:{event.assoc.requestor.ae_title}@{event.assoc.requestor.address}:{event.assoc.requestor.port}"
        try:
            outcome = self.store.store(event.encoded_dataset(), peer)
        except Exception:  # the database or the disk failed: nothing acknowledged, the sender sends it again
            log.exception("dicom object from %s could not be stored", peer)
            return OUT_OF_RESOURCES
        return store_status(outcome)

    def handle_find(self, event):
        """C-FIND (Study Root, study, series and instance levels): a pending answer per match, from the same index as
        QIDO-RS (query.py), each with the keys the query asked for."""
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "")).upper()
        if level not in LEVELS:
            yield UNABLE_TO_PROCESS, None
            return
        try:
            found = matches(self.store.engine, Query(level, find_keys(identifier), limit=MAX_FIND_MATCHES))
            write_audit_events(self.store.engine, dicom_query_events(asked_query(event), matched_studies(self.store.engine, found)))
        except Exception:  # noqa: BLE001 - the database failed (finding or auditing): answered as a failure, the peer may ask again
            log.exception("dicom C-FIND failed")
            yield UNABLE_TO_PROCESS, None
            return
        for match in found:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, find_answer(identifier, match, self.settings.ae_title)

    def association_ended(self, event) -> None:
        self.update_studies()

    def update_studies_now_and_then(self) -> None:
        while not self.stopping.is_set():
            self.update_studies()
            self.stopping.wait(UPDATE_SECONDS)

    def update_studies(self) -> None:
        """Update the marked studies; a failure leaves them marked for the next round."""
        try:
            update_pending_studies(self.store.engine, self.store.dicomweb_address)
        except Exception:  # noqa: BLE001 - the marks stay: tried again within UPDATE_SECONDS
            log.exception("updating ImagingStudies failed")


def store_status(outcome: Outcome) -> Dataset:
    """The C-STORE response's status, with the reason of a failure as its Error Comment (LO: 64 characters)."""
    status = Dataset()
    status.Status = outcome.status
    if outcome.reason:
        status.ErrorComment = CONTROL_OR_BACKSLASH.sub(" ", outcome.reason.encode("ascii", "replace").decode())[:64]
    return status


def find_keys(identifier: Dataset) -> dict[str, str]:
    """The matching keys of a C-FIND identifier, by keyword (a list of values separated by backslashes)."""
    keys = {}
    for element in identifier:
        if element.keyword and element.keyword != "QueryRetrieveLevel" and element.VR != "SQ" and element.value not in (None, ""):
            value = element.value
            keys[element.keyword] = "\\".join(map(str, value)) if isinstance(value, MultiValue) else str(value)
    return keys


def find_answer(identifier: Dataset, match: Dataset, ae_title: str) -> Dataset:
    """The identifier of one match: each key the query asked for, with the match's value (empty when it has none)."""
    answer = Dataset()
    for element in identifier:
        answer[element.tag] = match[element.tag] if element.tag in match else DataElement(element.tag, element.VR, None)
    answer.QueryRetrieveLevel = identifier.QueryRetrieveLevel
    answer.RetrieveAETitle = ae_title
    answer.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: names in any script, as stored
    return answer


def asked_query(event) -> DicomQuery:
    """The C-FIND request of `event` for the audit trail: its identifier as received, in the association's transfer syntax."""
    requestor = event.assoc.requestor
    return DicomQuery(requestor.ae_title, requestor.address, event.assoc.acceptor.ae_title, str(event.context.abstract_syntax),
                      event.request.Identifier.getvalue(), str(event.context.transfer_syntax))


def matched_studies(engine: Engine, found: list[Dataset]) -> list[StoredResource]:
    """The ImagingStudies of the matches' studies."""
    with reading(engine) as unit:
        return imaging_studies(unit, {str(match.get("StudyInstanceUID", "")) for match in found})


def application_entity(settings: ScpSettings) -> AE:
    """The AE: every storage SOP class pynetdicom knows (CT, MR, CR, DX, US, MG, PET, SC, SR, encapsulated PDF...)
    with every transfer syntax it knows, as SCP; Verification (C-ECHO)."""
    ae = AE(ae_title=settings.ae_title)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ACCEPTED_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.maximum_associations = settings.max_associations
    if settings.calling_ae_titles:
        ae.require_calling_aet = list(settings.calling_ae_titles)
    return ae
