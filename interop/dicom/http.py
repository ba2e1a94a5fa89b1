"""DICOMweb (PS3.18) over HTTP: STOW-RS `POST /dicomweb/studies` stores objects through the same service as the
C-STORE SCP; QIDO-RS finds stored studies, series and instances (query.py, as C-FIND does); WADO-RS gives back what was
stored, byte for byte, and its metadata as DICOM JSON.

Storing takes a backend service's token that writes every type (`system/*.cu`, as `/hl7v2`); finding and retrieving,
a token that reads every ImagingStudy (`user/ImagingStudy.rs`, `system/*.rs`...), unless EHR_AUTH=off."""
import secrets
from email import policy
from email.parser import BytesParser
from io import BytesIO
from pathlib import Path

import orjson
from flask import Blueprint, Response, current_app, request
from pydicom import dcmread
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from app.errors import BadRequest, NotAcceptable, NotFound, UnsupportedMediaType
from app.rest.negotiation import media_type_and_params, read_raw_body
from app.security.bearer import request_access
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.mapping import dicomweb_address
from interop.dicom.query import LEVELS, Query, matches
from interop.dicom.service import SUCCESS, DicomStore, Outcome
from interop.dicom.studies import update_pending_studies

dicomweb = Blueprint("dicomweb", __name__)
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
QUERY_CONTROLS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})  # QIDO-RS parameters that are not keys
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})  # left out of metadata: no bulk data URIs are served


@dicomweb.before_request
def authenticate():
    if request.method == "POST":
        request_access().require_system("cu", "Storing DICOM objects (STOW-RS)")
    else:
        request_access().require_every("ImagingStudy", "rs", "Finding and retrieving DICOM objects (QIDO-RS, WADO-RS)")


def dicom_store() -> DicomStore:
    settings = current_app.config["EHR_SETTINGS"]
    return DicomStore(current_app.extensions["ehr.engine"], DirectoryBlobStore(Path(settings.dicom_storage)), dicomweb_address(settings.base_url))


@dicomweb.post("/dicomweb/studies")
@dicomweb.post("/dicomweb/studies/<study_uid>")
def store_instances(study_uid: str | None = None):
    """STOW-RS: each part of a multipart/related; type="application/dicom" body stored; 200 when all were, 202 when
    some were, 409 when none was, with a DICOM JSON answer naming each (and the failure reason of the others)."""
    store, peer = dicom_store(), f"http:{request.remote_addr}"
    outcomes = [store.store(part, peer, study_uid) for part in dicom_parts()]
    update_pending_studies(store.engine, store.dicomweb_address)
    stored = [outcome for outcome in outcomes if outcome.status == SUCCESS]
    status = 200 if len(stored) == len(outcomes) else 202 if stored else 409
    return Response(orjson.dumps(store_answer(outcomes)), status, content_type=DICOM_JSON)


def dicom_parts() -> list[bytes]:
    media_type, params = media_type_and_params(request.headers.get("Content-Type", ""))
    if media_type != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
        raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom" (DICOM objects in the file format).')
    if not params.get("boundary"):
        raise BadRequest("The multipart/related body has no boundary parameter.")
    body = read_raw_body()
    message = BytesParser(policy=policy.HTTP).parsebytes(f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode() + body)
    parts = [part for part in message.walk() if not part.is_multipart()]
    if not message.is_multipart() or not parts:
        raise BadRequest("The multipart/related body holds no part.")
    for part in parts:
        if part.get_content_type() not in (DICOM, "application/octet-stream"):
            raise UnsupportedMediaType(f"A part is {part.get_content_type()}: STOW-RS here takes {DICOM} parts only.")
    return [part.get_payload(decode=True) or b"" for part in parts]


def store_answer(outcomes: list[Outcome]) -> dict:
    """The STOW-RS response data set: ReferencedSOPSequence of what was stored, FailedSOPSequence of the rest."""
    referenced = [reference(outcome) for outcome in outcomes if outcome.status == SUCCESS]
    failed = [{**reference(outcome), "00081197": {"vr": "US", "Value": [outcome.status]}} for outcome in outcomes if outcome.status != SUCCESS]
    answer = {}
    if referenced:
        answer["00081199"] = {"vr": "SQ", "Value": referenced}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    return answer


def reference(outcome: Outcome) -> dict:
    instance = outcome.instance
    if instance is None:
        return {}
    return {
        "00081150": {"vr": "UI", "Value": [instance.sop_class_uid]},
        "00081155": {"vr": "UI", "Value": [instance.sop_instance_uid]},
        "00081190": {"vr": "UR", "Value": [retrieve_url(instance.study_uid, instance.series_uid, instance.sop_instance_uid)]},
    }


def retrieve_url(*uids: str) -> str:
    path = "/".join(f"{level}/{uid}" for level, uid in zip(("studies", "series", "instances"), uids))
    return f"{request.url_root}dicomweb/{path}"


@dicomweb.get("/dicomweb/studies/<study_uid>")
@dicomweb.get("/dicomweb/studies/<study_uid>/series/<series_uid>")
@dicomweb.get("/dicomweb/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>")
def retrieve(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
    """WADO-RS: the study's, series' or instance's objects as stored, in a multipart/related answer."""
    check_accepts_dicom()
    store = dicom_store()
    keys = found_blobs(store, study_uid, series_uid, sop_uid)
    boundary = secrets.token_hex(16)

    def parts():
        for key in keys:
            yield f"--{boundary}\r\nContent-Type: {DICOM}\r\n\r\n".encode() + store.stored_bytes(key) + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return Response(parts(), 200, content_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')


@dicomweb.get("/dicomweb/studies/<study_uid>/metadata")
@dicomweb.get("/dicomweb/studies/<study_uid>/series/<series_uid>/metadata")
@dicomweb.get("/dicomweb/studies/<study_uid>/series/<series_uid>/instances/<sop_uid>/metadata")
def retrieve_metadata(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
    """WADO-RS metadata: each object's attributes as DICOM JSON, without pixel data and other bulk data."""
    store = dicom_store()
    answer = [metadata_of(store.stored_bytes(key)) for key in found_blobs(store, study_uid, series_uid, sop_uid)]
    return Response(orjson.dumps(answer), 200, content_type=DICOM_JSON)


def found_blobs(store: DicomStore, study_uid: str, series_uid: str | None, sop_uid: str | None) -> list[str]:
    keys = store.blob_keys(study_uid, series_uid, sop_uid)
    if not keys:
        raise NotFound(f"No stored DICOM {'instance' if sop_uid else 'series' if series_uid else 'study'} "
                       f"{sop_uid or series_uid or study_uid}.")
    return keys


def metadata_of(encoded: bytes) -> dict:
    dataset = dcmread(BytesIO(encoded), stop_before_pixels=True)
    for element in list(dataset.iterall()):
        if element.VR in BULK_VRS:
            del dataset[element.tag]
    return dataset.to_json_dict()


def check_accepts_dicom() -> None:
    """406 unless the client takes DICOM objects as stored: multipart/related; type="application/dicom" (with any
    transfer syntax: none is transcoded), or anything."""
    accept = request.headers.get("Accept", "*/*")
    for entry in accept.split(","):
        media_type, params = media_type_and_params(entry)
        if media_type in ("*/*", "multipart/*") or (
            media_type == "multipart/related" and params.get("type", DICOM).lower() == DICOM and params.get("transfer-syntax", "*") == "*"
        ):
            return
    raise NotAcceptable(f'WADO-RS here gives multipart/related; type="{DICOM}"; transfer-syntax=* (objects as they were stored).')


@dicomweb.get("/dicomweb/studies")
def search_studies():
    """QIDO-RS: the stored studies that the query's attributes match (query.py), as DICOM JSON."""
    return search_answer("STUDY", {})


@dicomweb.get("/dicomweb/series")
@dicomweb.get("/dicomweb/studies/<study_uid>/series")
def search_series(study_uid: str | None = None):
    return search_answer("SERIES", {"StudyInstanceUID": study_uid} if study_uid else {})


@dicomweb.get("/dicomweb/instances")
@dicomweb.get("/dicomweb/studies/<study_uid>/instances")
@dicomweb.get("/dicomweb/studies/<study_uid>/series/<series_uid>/instances")
def search_instances(study_uid: str | None = None, series_uid: str | None = None):
    path_keys = {keyword: uid for keyword, uid in (("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid)) if uid}
    return search_answer("IMAGE", path_keys)


def search_answer(level: str, path_keys: dict[str, str]) -> Response:
    keys = {**query_keys(), **path_keys}
    query = Query(level, keys, whole_argument("limit", DEFAULT_LIMIT, MAX_LIMIT), whole_argument("offset", 0, None))
    found = matches(current_app.extensions["ehr.engine"], query)
    return Response(orjson.dumps([with_retrieve_url(level, dataset) for dataset in found]), 200, content_type=DICOM_JSON)


def query_keys() -> dict[str, str]:
    """The query's matching keys by keyword, named by keyword or by tag (`PatientID` or `00100020`); the paging and
    answer-shaping parameters are not keys."""
    keys = {}
    for name, value in request.args.items(multi=True):
        if name in QUERY_CONTROLS:
            continue
        keyword = keyword_for_tag(int(name, 16)) if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name) else name
        if not keyword or tag_for_keyword(keyword) is None:
            raise BadRequest(f"{name} names no DICOM attribute (give its keyword, such as PatientID, or its tag, such as 00100020).")
        keys[keyword] = value
    return keys


def whole_argument(name: str, default: int, maximum: int | None) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequest(f"{name}={text} is not a whole number.")
    return min(int(text), maximum) if maximum is not None else int(text)


def with_retrieve_url(level: str, dataset) -> dict:
    uids = [str(dataset.get(keyword, "")) for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")[:LEVELS.index(level) + 1]]
    return {**dataset.to_json_dict(), "00081190": {"vr": "UR", "Value": [retrieve_url(*uids)]}}
