"""WADO-RS frames and bulk data, read by a real DICOMweb client (dicomweb-client, as viewers' back ends use it) and by
`requests` for the content negotiation: each frame and each bulk value comes back as pydicom reads it from the
stored object, never transcoded. On SQLite and PostgreSQL."""
from io import BytesIO

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from tests.dicom.test_dicomweb import PYDICOM_FILES, encoded, parts_of, stow
from tests.dicom.test_cstore import ct

OCTETS = 'multipart/related; type="application/octet-stream"'


def stored(dicomweb: str, name: str):
    """A pydicom test file stored over STOW-RS; its data set as pydicom reads it."""
    dataset = dcmread(get_testdata_file(name))
    assert stow(f"{dicomweb}/studies", encoded(dataset)).status_code == 200
    return dataset


def frame_url(dicomweb: str, dataset, frames: str) -> str:
    return (f"{dicomweb}/studies/{dataset.StudyInstanceUID}/series/{dataset.SeriesInstanceUID}"
            f"/instances/{dataset.SOPInstanceUID}/frames/{frames}")


def test_native_frames_are_cut_from_the_pixel_data(dicomweb):
    dose = stored(dicomweb, "rtdose.dcm")  # 15 frames of 32-bit native pixel data, implicit VR
    size = len(dose.PixelData) // 15
    client = DICOMwebClient(dicomweb)
    frames = client.retrieve_instance_frames(dose.StudyInstanceUID, dose.SeriesInstanceUID, dose.SOPInstanceUID, [1, 15, 2])
    assert frames == [dose.PixelData[:size], dose.PixelData[14 * size:], dose.PixelData[size:2 * size]]
    answer = requests.get(frame_url(dicomweb, dose, "3"), headers={"Accept": OCTETS}, timeout=30)
    assert answer.status_code == 200 and b"Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n" in answer.content


def test_compressed_frames_are_given_as_stored_to_a_client_that_takes_them(dicomweb):
    rle = stored(dicomweb, "SC_rgb_rle_2frame.dcm")
    expected = list(generate_frames(rle.PixelData, number_of_frames=2))
    client = DICOMwebClient(dicomweb)
    assert client.retrieve_instance_frames(rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID, [2, 1],
                                           media_types=(("image/dicom-rle", "1.2.840.10008.1.2.5"),)) == [expected[1], expected[0]]
    any_syntax = requests.get(frame_url(dicomweb, rle, "1"), headers={"Accept": f"{OCTETS}; transfer-syntax=*"}, timeout=30)
    assert any_syntax.status_code == 200 and parts_of(any_syntax) == [expected[0]]
    assert b"transfer-syntax=1.2.840.10008.1.2.5" in any_syntax.content
    uncompressed = requests.get(frame_url(dicomweb, rle, "1"), headers={"Accept": OCTETS}, timeout=30)
    assert uncompressed.status_code == 406 and "not transcoded" in uncompressed.text  # we do not decompress


def test_a_jpeg_frame_is_an_image_jpeg_part(dicomweb):
    jpeg = stored(dicomweb, "SC_rgb_jpeg_dcmtk.dcm")
    answer = requests.get(frame_url(dicomweb, jpeg, "1"), headers={"Accept": 'multipart/related; type="image/jpeg"'}, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith('multipart/related; type="image/jpeg"')
    [frame] = parts_of(answer)
    assert frame == next(generate_frames(jpeg.PixelData, number_of_frames=1)) and frame.startswith(b"\xff\xd8")


def test_frames_that_are_not_there_are_404_and_a_bad_list_400(dicomweb):
    dose = stored(dicomweb, "rtdose.dcm")
    assert requests.get(frame_url(dicomweb, dose, "16"), timeout=30).status_code == 404
    assert requests.get(frame_url(dicomweb, dose, "0"), timeout=30).status_code == 404
    assert requests.get(frame_url(dicomweb, dose, "1,a"), timeout=30).status_code == 400
    report = stored(dicomweb, "test-SR.dcm")
    no_pixels = requests.get(frame_url(dicomweb, report, "1"), timeout=30)
    assert no_pixels.status_code == 404 and "no pixel data" in no_pixels.text
    assert requests.get(frame_url(dicomweb, ct(), "1"), timeout=30).status_code == 404


def bulk_data_uris(value, path=()) -> dict[tuple, str]:
    """Each BulkDataURI of DICOM JSON, by its path of tags and item indexes."""
    found = {}
    for tag, element in value.items():
        if "BulkDataURI" in element:
            found[(*path, tag)] = element["BulkDataURI"]
        for index, item in enumerate(element.get("Value", []) if element.get("vr") == "SQ" else []):
            found.update(bulk_data_uris(item, (*path, tag, index)))
    return found


def element_at(dataset, path: tuple):
    for tag, index in zip(path[:-1:2], path[1::2]):
        dataset = dataset[int(tag, 16)].value[index]
    return dataset[int(path[-1], 16)]


def test_every_bulk_data_uri_of_every_stored_pydicom_file_gives_its_value(dicomweb):
    """Metadata names each large binary value (pixel data, overlays, waveforms, private blobs...) by a BulkDataURI and
    keeps small ones inline; each URI gives the value as pydicom reads it (encapsulated pixel data: a part per frame),
    or 406 for the retired big-endian syntax, which would need its bytes swapped."""
    client, checked = DICOMwebClient(dicomweb), 0
    for path in PYDICOM_FILES:
        answer = stow(f"{dicomweb}/studies", path.read_bytes())
        if answer.status_code != 200:
            continue
        url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        metadata = requests.get(f"{url}/metadata", timeout=30)
        assert metadata.status_code == 200, (path.name, metadata.text[:300])
        dataset = dcmread(BytesIO(parts_of(requests.get(url, timeout=30))[0]))  # the first copy of its SOP Instance UID
        for tags, uri in bulk_data_uris(metadata.json()[0]).items():
            assert uri.startswith(f"{url}/bulkdata/"), (path.name, uri)
            if dataset.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.2":
                assert requests.get(uri, timeout=30).status_code == 406, path.name
                continue
            element = element_at(dataset, tags)
            expected = [element.value]
            if len(tags) == 1 and element.is_undefined_length:
                expected = list(generate_frames(element.value, number_of_frames=int(dataset.get("NumberOfFrames") or 1)))
            assert client.retrieve_bulkdata(uri, media_types=(("application/octet-stream", "*"),)) == expected, (path.name, tags)
            checked += 1
    assert checked >= 20


def stored_dataset(dicomweb: str, dataset):
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    assert stow(f"{dicomweb}/studies", encoded(dataset)).status_code == 200
    return dataset


def test_native_frames_are_sized_by_the_photometric_interpretation_and_never_past_the_pixel_data(dicomweb):
    ybr = dcmread(get_testdata_file("SC_ybr_full_422_uncompressed.dcm"))  # 4:2:2: two samples a pixel, not three
    single = ybr.PixelData
    ybr.PixelData, ybr.NumberOfFrames = single * 3, 3
    ybr = stored_dataset(dicomweb, ybr)
    answer = requests.get(frame_url(dicomweb, ybr, "2,3"), headers={"Accept": OCTETS}, timeout=30)
    assert answer.status_code == 200 and parts_of(answer) == [single, single]
    assert f"Content-Location: {frame_url(dicomweb, ybr, '2')}\r\n".encode() in answer.content
    short = dcmread(get_testdata_file("rtdose.dcm"))  # 15 frames declared, pixel data for 7 and a half
    short.PixelData = short.PixelData[:len(short.PixelData) // 2]
    short = stored_dataset(dicomweb, short)
    assert requests.get(frame_url(dicomweb, short, "7"), timeout=30).status_code == 200
    missing = requests.get(frame_url(dicomweb, short, "8"), timeout=30)
    assert missing.status_code == 404 and "holds 7 frames" in missing.text


def test_a_videos_stream_is_its_bulk_data_and_has_no_frames(dicomweb):
    video = dcmread(get_testdata_file("CT_small.dcm"))
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    stream = b"\x00\x00\x00\x18ftypmp42" + bytes(range(200))
    video.PixelData, video.NumberOfFrames = encapsulate([stream]), 10
    video["PixelData"].VR = "OB"
    video = stored_dataset(dicomweb, video)
    assert requests.get(frame_url(dicomweb, video, "2"), timeout=30).status_code == 400
    bulk_url = frame_url(dicomweb, video, "1").replace("/frames/1", "/bulkdata/7FE00010")
    answer = requests.get(bulk_url, headers={"Accept": 'multipart/related; type="video/mp4"'}, timeout=30)
    assert answer.status_code == 200 and parts_of(answer) == [stream] and b"Content-Type: video/mp4;" in answer.content
    assert requests.get(bulk_url, headers={"Accept": OCTETS}, timeout=30).status_code == 406  # uncompressed: not transcoded


def test_accept_entries_of_q_0_are_not_taken(dicomweb):
    rle = stored(dicomweb, "SC_rgb_rle_2frame.dcm")
    refused = f"{OCTETS}; transfer-syntax=*; q=0, {OCTETS}"
    assert requests.get(frame_url(dicomweb, rle, "1"), headers={"Accept": refused}, timeout=30).status_code == 406
    preferred = f'{OCTETS}; transfer-syntax=*; q=0.5, multipart/related; type="image/dicom-rle"'
    answer = requests.get(frame_url(dicomweb, rle, "1"), headers={"Accept": preferred}, timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith('multipart/related; type="image/dicom-rle"')


def test_a_single_value_is_given_as_a_single_part_to_a_client_that_asks_so(dicomweb):
    """Viewers fetch a video or a document's bulk data as one body (OHIF's `singlepart`)."""
    rle = stored(dicomweb, "SC_rgb_rle_2frame.dcm")
    expected = list(generate_frames(rle.PixelData, number_of_frames=2))
    single = requests.get(frame_url(dicomweb, rle, "2"), headers={"Accept": "application/octet-stream; transfer-syntax=*"}, timeout=30)
    assert single.status_code == 200 and single.content == expected[1]
    assert single.headers["Content-Type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.5"
    assert single.headers["Content-Location"] == frame_url(dicomweb, rle, "2")
    two = requests.get(frame_url(dicomweb, rle, "1,2"), headers={"Accept": "image/dicom-rle, multipart/related; type=\"image/dicom-rle\""}, timeout=30)
    assert two.status_code == 200 and parts_of(two) == expected  # two values: the multipart entry
    assert requests.get(frame_url(dicomweb, rle, "1,2"), headers={"Accept": "image/dicom-rle"}, timeout=30).status_code == 406


def test_odd_frame_lists_and_bulk_data_paths_are_refused_never_a_server_error(dicomweb):
    dose = stored(dicomweb, "rtdose.dcm")
    assert requests.get(frame_url(dicomweb, dose, "%C2%B2"), timeout=30).status_code == 400  # a digit, but not 0-9
    bulk = frame_url(dicomweb, dose, "1").replace("/frames/1", "/bulkdata")
    assert requests.get(f"{bulk}/300C0002/%C2%B2/00081150", timeout=30).status_code == 404
    assert requests.get(f"{bulk}/300C0002/7FE00010", timeout=30).status_code == 404  # a sequence without its item index
    video = dcmread(get_testdata_file("CT_small.dcm"))
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    video.PixelData, video.NumberOfFrames = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\x01\x02\x03\x04\x05\x06\x07\x08", 2
    video["PixelData"].VR = "OB"
    video = stored_dataset(dicomweb, video)
    broken = frame_url(dicomweb, video, "1").replace("/frames/1", "/bulkdata/7FE00010")
    assert requests.get(broken, timeout=30).status_code == 404


def test_a_video_sent_in_fragments_with_an_offset_table_is_one_stream(dicomweb):
    video = dcmread(get_testdata_file("CT_small.dcm"))
    video.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"
    video.PixelData, video.NumberOfFrames = encapsulate([b"first-part", b"second-part!"], has_bot=True), 2
    video["PixelData"].VR = "OB"
    video = stored_dataset(dicomweb, video)
    bulk_url = frame_url(dicomweb, video, "1").replace("/frames/1", "/bulkdata/7FE00010")
    answer = requests.get(bulk_url, headers={"Accept": "video/mp4"}, timeout=30)
    assert answer.status_code == 200 and answer.content == b"first-partsecond-part!"
