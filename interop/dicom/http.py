"""DICOMweb (PS3.18) over HTTP: STOW-RS `POST /dicomweb/studies` stores objects through the same service as the
C-STORE SCP; QIDO-RS finds stored studies, series and instances (query.py, as C-FIND does); WADO-RS gives back what was
stored, byte for byte (Implicit VR objects in Explicit VR: web_encoded), its metadata as DICOM JSON, and its frames
and bulk data (bulk.py).

Storing takes a backend service's token that writes every type (`system/*.cu`, as `/hl7v2`); finding and retrieving,
a token that reads ImagingStudies and their Patients: one that reads every one (`user/ImagingStudy.rs user/Patient.rs`,
`system/*.rs`...) sees every study, one confined to some (a patient's `patient/*.rs`) sees the studies of the
ImagingStudies it may read (readable_studies); anyone with EHR_AUTH=off. Each answer is audited as a search of the
ImagingStudies it is about (audited).

routes.py maps the URLs to these views, and imports this module (and with it pydicom) on the first DICOMweb request."""
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from email import policy
from email.parser import BytesParser
from io import BytesIO
from pathlib import Path

import orjson
from flask import Response, current_app, g, request
from pydicom import Dataset, dcmread
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.errors import BadRequest, Forbidden, NotAcceptable, NotFound, UnsupportedMediaType
from app.rest.negotiation import media_type_and_params, read_raw_body
from app.search.service import search_request
from app.security.bearer import request_access
from app.store.access import Access
from app.store.unit import reading
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom import bulk
from interop.dicom.mapping import dicomweb_address
from interop.dicom.query import LEVELS, Query, imaging_studies, matches, studies_written_as
from interop.dicom.service import SUCCESS, UID, DicomStore, Outcome
from interop.dicom.studies import LaterUpdates, studies_marked, update_pending_studies

log = logging.getLogger("ehr.dicom")
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
QUERY_CONTROLS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})  # QIDO-RS parameters that are not keys
DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET = Query.limit, 1000, 2**31 - 1
READ_TYPES = ("ImagingStudy", "Patient")  # what QIDO-RS and WADO-RS answers tell: the studies, and their patients' names and ids
WEB_SYNTAXES = {ImplicitVRLittleEndian: ExplicitVRLittleEndian}  # what web_encoded gives an object stored in a syntax web services may not use
MAX_CONFINED_STUDIES = 10_000  # studies a reader that may see only some of them may see
IMMEDIATE_UPDATE_LIMIT = 100  # instances in a study whose ImagingStudy STOW-RS writes before answering
LATER_UPDATE_SECONDS = 5.0


def sweep_marks_once():
    """The first DICOMweb request of a process starts later updates when studies are marked (by a process that
    stopped before it updated them, or by a migration), so that a server running DICOMweb alone, without `ehr dicom`,
    brings every ImagingStudy up to date."""
    if current_app.extensions.get("ehr.dicom.marks_swept"):
        return
    current_app.extensions["ehr.dicom.marks_swept"] = True
    store = dicom_store()
    if studies_marked(store.engine):
        later_updates(store).ask()


def authenticate():
    if request.method == "POST":
        request_access().require_system("cu", "Storing DICOM objects (STOW-RS)")
    else:
        g.ehr_dicom_studies = readable_studies(request_access())


def readable_studies(access: Access) -> frozenset[str] | None:
    """The StudyInstanceUIDs a reader may find and retrieve: None (every study) when it may read and search every
    ImagingStudy and Patient; else those of the ImagingStudies it may read and search whose Patient it may read too
    (a patient's own studies, through patient/ scopes). Forbidden when it may read no ImagingStudy or no Patient."""
    if access.reaches_every(READ_TYPES, "rs"):
        return None
    if not all(access.reaches(type_name, letter) for type_name, letter in (("ImagingStudy", "r"), ("ImagingStudy", "s"), ("Patient", "r"))):
        raise Forbidden(f"Finding and retrieving DICOM objects (QIDO-RS, WADO-RS) needs a token that may read and search ImagingStudy "
                        f"and read Patient (such as user/ImagingStudy.rs user/Patient.rs, or a patient's patient/ImagingStudy.rs "
                        f"patient/Patient.rs); {access.grant} do not allow that.")
    search, _ = search_request("ImagingStudy", [("_include", "ImagingStudy:subject")], False, MAX_CONFINED_STUDIES + 1, MAX_CONFINED_STUDIES + 1)
    with reading(current_app.extensions["ehr.engine"], access=replace(access, caller=None)) as unit:  # each answer is audited itself
        found = unit.search(search)
    if len(found.matches) > MAX_CONFINED_STUDIES:
        raise Forbidden(f"{access.grant} reach more than {MAX_CONFINED_STUDIES} imaging studies, but not all: DICOMweb "
                        f"needs a token that may read every ImagingStudy and Patient (such as user/ImagingStudy.rs user/Patient.rs).")
    patients = {f"Patient/{stored.id}" for stored in found.included if stored.type == "Patient"}
    readable_ids = {study.id for study in found.matches if study.body.get("subject", {}).get("reference") in patients}
    return studies_written_as(current_app.extensions["ehr.engine"], readable_ids)


def readable(study_uid: str) -> bool:
    return g.ehr_dicom_studies is None or study_uid in g.ehr_dicom_studies


def dicom_store() -> DicomStore:
    settings = current_app.config["EHR_SETTINGS"]
    return DicomStore(current_app.extensions["ehr.engine"], DirectoryBlobStore(Path(settings.dicom_storage)), dicomweb_address(settings.base_url))


def store_instances(study_uid: str | None = None):
    """STOW-RS: each part of a multipart/related; type="application/dicom" body stored; 200 when all were, 202 when
    some were, 409 when none was, with a DICOM JSON answer naming each (and the failure reason of the others)."""
    store, peer = dicom_store(), f"http:{request.remote_addr}"
    outcomes = [store.store(part, peer, study_uid) for part in dicom_parts()]
    stored = [outcome for outcome in outcomes if outcome.status == SUCCESS]
    update_studies(store, {outcome.instance.study_uid for outcome in stored})
    status = 200 if len(stored) == len(outcomes) else 202 if stored else 409
    return Response(orjson.dumps(store_answer(outcomes)), status, content_type=DICOM_JSON)


def update_studies(store: DicomStore, study_uids: set[str]) -> None:
    """Write the ImagingStudies of the studies stored to before answering, unless a study holds more than
    IMMEDIATE_UPDATE_LIMIT instances: those are updated within LATER_UPDATE_SECONDS (studies.py LaterUpdates), so that
    a client that sends a large study an instance per request does not rebuild it, and version it, on every request."""
    counts = store.instance_counts(study_uids) if study_uids else {}
    large = {uid for uid, count in counts.items() if count > IMMEDIATE_UPDATE_LIMIT}
    updated = update_pending_studies(store.engine, store.dicomweb_address, study_uids - large)
    if large or updated < len(study_uids - large):  # also a study another update held, or whose update failed
        later_updates(store).ask()


def later_updates(store: DicomStore) -> LaterUpdates:
    """This process's later updates for the app's database."""
    return current_app.extensions.setdefault("ehr.dicom.later_updates", LaterUpdates(store.engine, store.dicomweb_address, LATER_UPDATE_SECONDS))


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
    """The URL of a study, series or instance, under the public base (EHR_BASE_URL) when set, else the request's."""
    path = "/".join(f"{level}/{uid}" for level, uid in zip(("studies", "series", "instances"), uids))
    return f"{dicomweb_address(current_app.config['EHR_SETTINGS'].base_url) or request.url_root + 'dicomweb'}/{path}"


def retrieve(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
    """WADO-RS: the study's, series' or instance's objects as stored, in a multipart/related answer."""
    store = dicom_store()
    objects = found_objects(store, study_uid, series_uid, sop_uid)
    check_accepts_dicom({WEB_SYNTAXES.get(stored.transfer_syntax_uid, stored.transfer_syntax_uid) for stored in objects})
    audited({study_uid})
    boundary = secrets.token_hex(16)

    def parts():
        for stored in objects:
            syntax, encoded = web_encoded(store.stored_bytes(stored.blob), stored.transfer_syntax_uid)
            yield f"--{boundary}\r\nContent-Type: {DICOM}; transfer-syntax={syntax}\r\n\r\n".encode() + encoded + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return Response(parts(), 200, content_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')


def web_encoded(encoded: bytes, stored_syntax: str) -> tuple[str, bytes]:
    """An object as WADO-RS gives it, and its transfer syntax: as stored, but for Implicit VR Little Endian, which web
    services may not use (PS3.18 8.7.3): the same data set in Explicit VR Little Endian, each element with its VR
    (pixel data untouched); as stored when pydicom cannot write it so."""
    if stored_syntax != ImplicitVRLittleEndian:
        return stored_syntax, encoded
    try:
        dataset = dcmread(BytesIO(encoded))
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta.MediaStorageSOPClassUID = dataset.file_meta.get("MediaStorageSOPClassUID") or dataset.SOPClassUID
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.file_meta.get("MediaStorageSOPInstanceUID") or dataset.SOPInstanceUID
        written = BytesIO()
        dataset.save_as(written, enforce_file_format=True)
    except Exception as error:  # noqa: BLE001 - a value pydicom cannot write as its VR says: the object as it came
        log.warning("DICOM object given back in Implicit VR as stored: %s", error)
        return stored_syntax, encoded
    return ExplicitVRLittleEndian, written.getvalue()


def retrieve_metadata(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None):
    """WADO-RS metadata: each object's attributes as DICOM JSON, each large binary value (pixel data among them) named
    by a BulkDataURI that retrieve_bulk_data serves, a small one inline."""
    store = dicom_store()
    answer = [metadata_of(store.stored_bytes(stored.blob), retrieve_url(study_uid, stored.series_uid, stored.sop_instance_uid))
              for stored in found_objects(store, study_uid, series_uid, sop_uid)]
    audited({study_uid})
    return Response(orjson.dumps(answer), 200, content_type=DICOM_JSON)


def retrieve_frames(study_uid: str, series_uid: str, sop_uid: str, frame_list: str):
    """WADO-RS frames (`frames/1,3`): each frame asked for, in a part of its own, as stored (bulk.py)."""
    numbers, instance_url = frame_numbers(frame_list), retrieve_url(study_uid, series_uid, sop_uid)
    return bulk_answer(study_uid, series_uid, sop_uid,
                       lambda dataset: [(f"{instance_url}/frames/{number}", frame) for number, frame in zip(numbers, bulk.frames(dataset, numbers))])


def retrieve_bulk_data(study_uid: str, series_uid: str, sop_uid: str, path: str):
    """WADO-RS bulk data: the value a BulkDataURI of the instance's metadata names (pixel data: a part per frame)."""
    url = f"{retrieve_url(study_uid, series_uid, sop_uid)}/bulkdata/{path.strip('/')}"
    return bulk_answer(study_uid, series_uid, sop_uid, lambda dataset: [(url, value) for value in bulk.bulk_value(dataset, path.strip("/").split("/"))])


def frame_numbers(frame_list: str) -> list[int]:
    numbers = [item.strip() for item in frame_list.split(",")]
    if not all(number.isascii() and number.isdigit() and len(number) <= 9 for number in numbers):
        raise BadRequest(f"frames/{frame_list[:80]}: give frame numbers from 1, separated by commas (frames/1,2).")
    return [int(number) for number in numbers]


def bulk_answer(study_uid: str, series_uid: str, sop_uid: str, taken: Callable[[Dataset], list[tuple[str, bytes]]]) -> Response:
    """The bulk data `taken` from a stored instance (each value with its URL), each value a part of a multipart/related
    answer, in the encoding the client accepts (406 when that would need a transcoding)."""
    store = dicom_store()
    [stored] = found_objects(store, study_uid, series_uid, sop_uid)
    try:
        stored_encoding = bulk.encoding_of(stored.transfer_syntax_uid)
        values = taken(dcmread(BytesIO(store.stored_bytes(stored.blob))))
        encoding, multipart = accepted_bulk_encoding(stored_encoding, len(values))
    except bulk.NotServed as error:
        raise NotAcceptable(str(error)) from None
    except bulk.NotFramed as error:
        raise BadRequest(str(error)) from None
    except bulk.NoBulkData as error:
        raise NotFound(str(error)) from None
    audited({study_uid})
    if not multipart:
        [(location, value)] = values
        return Response(value, 200, content_type=f"{encoding.media_type}; transfer-syntax={encoding.transfer_syntax}", headers={"Content-Location": location})
    boundary = secrets.token_hex(16)
    content_type = f"Content-Type: {encoding.media_type}; transfer-syntax={encoding.transfer_syntax}"
    body = b"".join(f"--{boundary}\r\n{content_type}\r\nContent-Location: {location}\r\n\r\n".encode() + value + b"\r\n"
                    for location, value in values) + f"--{boundary}--\r\n".encode()
    return Response(body, 200, content_type=f'multipart/related; type="{encoding.media_type}"; boundary={boundary}')


def accepted_bulk_encoding(stored: bulk.Encoding, parts: int) -> tuple[bulk.Encoding, bool]:
    """The encoding of the answer's `parts` values, and whether it is multipart/related: the stored encoding, when an
    entry of the client's Accept takes it (PS3.18 8.7.3.3: application/octet-stream without transfer-syntax asks for
    uncompressed data; the compressed media type, or transfer-syntax=*, for it as it is); a single part only for a
    single value."""
    for media_type, params in accepted_entries():
        if media_type in ("*/*", "multipart/*"):
            return stored, True
        multipart = media_type == "multipart/related"
        if not multipart and parts != 1:
            continue
        part_type, wanted = (params.get("type", bulk.OCTET_STREAM).lower() if multipart else media_type), params.get("transfer-syntax")
        if wanted not in (None, "*", stored.transfer_syntax):
            continue
        if part_type == bulk.OCTET_STREAM and (wanted is not None or not stored.compressed):
            return bulk.Encoding(bulk.OCTET_STREAM, stored.transfer_syntax), multipart
        if part_type == "*/*" or (stored.media_type != bulk.OCTET_STREAM and part_type in (stored.media_type.lower(), f"{stored.media_type.split('/')[0]}/*")):
            return stored, multipart
    raise NotAcceptable(f'The bulk data is stored as {stored.media_type} (transfer-syntax={stored.transfer_syntax}) and is not transcoded: '
                        f'accept multipart/related; type="{stored.media_type}", or type="{bulk.OCTET_STREAM}"; transfer-syntax=*.')


def accepted_entries() -> list[tuple[str, dict[str, str]]]:
    """The entries of the request's Accept (media type, parameters), most preferred first, without those of q=0."""
    entries = []
    for entry in request.headers.get("Accept", "*/*").split(","):
        media_type, params = media_type_and_params(entry)
        try:
            quality = float(params.get("q", "1"))
        except ValueError:
            quality = 1.0
        if quality > 0:
            entries.append((quality, media_type, params))
    return [(media_type, params) for _, media_type, params in sorted(entries, key=lambda entry: -entry[0])]


def found_objects(store: DicomStore, study_uid: str, series_uid: str | None, sop_uid: str | None) -> list:
    for uid in (study_uid, series_uid, sop_uid):
        if uid is not None and (len(uid) > 64 or not UID.fullmatch(uid)):
            raise BadRequest(f"'{uid[:80]}' in the path is not a UID (digits and dots, at most 64 characters).")
    keys = store.stored_objects(study_uid, series_uid, sop_uid) if readable(study_uid) else []
    if not keys:
        raise NotFound(f"No stored DICOM {'instance' if sop_uid else 'series' if series_uid else 'study'} "
                       f"{sop_uid or series_uid or study_uid}.")
    return keys


def metadata_of(encoded: bytes, instance_url: str) -> dict:
    """An object's attributes as DICOM JSON, its bulk data named by the BulkDataURIs retrieve_bulk_data serves under
    its `instance_url`."""
    return bulk.metadata(dcmread(BytesIO(encoded)), lambda path: f"{instance_url}/bulkdata/{path}")


def check_accepts_dicom(stored_syntaxes: set[str]) -> None:
    """406 unless the client takes the objects as they were stored (none is transcoded): multipart/related;
    type="application/dicom" with transfer-syntax=* (or none named), or with the one syntax every object has; or
    anything."""
    for media_type, params in accepted_entries():
        wanted = params.get("transfer-syntax", "*")
        if media_type in ("*/*", "multipart/*") or (
            media_type == "multipart/related" and params.get("type", DICOM).lower() == DICOM and (wanted == "*" or {wanted} == stored_syntaxes)
        ):
            return
    raise NotAcceptable(f'WADO-RS here gives multipart/related; type="{DICOM}" with the objects as they were stored '
                        f'(transfer-syntax={",".join(sorted(stored_syntaxes))}); ask for transfer-syntax=*.')


def search_studies():
    """QIDO-RS: the stored studies that the query's attributes match (query.py), as DICOM JSON."""
    return search_answer("STUDY", {})


def search_series(study_uid: str | None = None):
    return search_answer("SERIES", {"StudyInstanceUID": study_uid} if study_uid else {})


def search_instances(study_uid: str | None = None, series_uid: str | None = None):
    path_keys = {keyword: uid for keyword, uid in (("StudyInstanceUID", study_uid), ("SeriesInstanceUID", series_uid)) if uid}
    return search_answer("IMAGE", path_keys)


def search_answer(level: str, path_keys: dict[str, str]) -> Response:
    keys = {**query_keys(), **path_keys}
    query = Query(level, keys, whole_argument("limit", DEFAULT_LIMIT, MAX_LIMIT), whole_argument("offset", 0, MAX_OFFSET), g.ehr_dicom_studies)
    found = matches(current_app.extensions["ehr.engine"], query)
    audited({str(dataset.get("StudyInstanceUID", "")) for dataset in found})
    return Response(orjson.dumps([with_retrieve_url(level, dataset) for dataset in found]), 200, content_type=DICOM_JSON)


def audited(study_uids: set[str]) -> None:
    """Record an answer's access as a search of the ImagingStudies of its studies, by the caller, through the one
    reader (app/store/unit.py), which writes the AuditEvents of what a token holder reads: one per patient. Callers
    trusted otherwise (EHR_AUTH=off) are not audited: nothing to look up."""
    access = request_access()
    if access.caller is None:
        return
    with reading(current_app.extensions["ehr.engine"], access=access) as unit:
        imaging_studies(unit, study_uids)


def query_keys() -> dict[str, str]:
    """The query's matching keys by keyword, named by keyword or by tag (`PatientID` or `00100020`); the paging and
    answer-shaping parameters are not keys."""
    keys = {}
    for name, value in request.args.items(multi=True):
        if name in QUERY_CONTROLS:
            continue
        keyword = keyword_for_tag(tag) if (tag := bulk.tag_of(name)) is not None else name
        if not keyword or tag_for_keyword(keyword) is None:
            raise BadRequest(f"{name} names no DICOM attribute (give its keyword, such as PatientID, or its tag, such as 00100020).")
        keys[keyword] = value
    return keys


def whole_argument(name: str, default: int, maximum: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequest(f"{name}={text} is not a whole number.")
    return min(int(text), maximum)


def with_retrieve_url(level: str, dataset) -> dict:
    uids = [str(dataset.get(keyword, "")) for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")[:LEVELS.index(level) + 1]]
    return {**dataset.to_json_dict(), "00081190": {"vr": "UR", "Value": [retrieve_url(*uids)]}}
