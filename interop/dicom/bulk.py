"""An instance's bulk data as WADO-RS gives it (PS3.18 8.7.3.3): its pixel data frame by frame, and each other large
binary value by the BulkDataURI its metadata names, never transcoded.

Frames of native (uncompressed) pixel data are their little-endian bytes (transfer syntax Explicit VR Little Endian,
application/octet-stream); frames of encapsulated pixel data are each frame's compressed stream without fragment
delimiters, under the media type PS3.18 Table 8.7.3-5 gives their transfer syntax. Objects stored in the retired
Explicit VR Big Endian would need their bytes swapped: their bulk data is not served (their objects are)."""
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.encaps import generate_fragments, generate_frames
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import BaseTag, Tag

NATIVE = "1.2.840.10008.1.2.1"  # Explicit VR Little Endian: how PS3.18 gives uncompressed bulk data
LITTLE_ENDIAN_NATIVE = frozenset({"1.2.840.10008.1.2", NATIVE, "1.2.840.10008.1.2.1.99"})  # implicit, explicit, deflated
BIG_ENDIAN = "1.2.840.10008.1.2.2"
OCTET_STREAM = "application/octet-stream"
COMPRESSED_MEDIA_TYPES = {  # PS3.18 Table 8.7.3-5
    **dict.fromkeys(("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"), "image/jpeg"),
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    **dict.fromkeys(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"), "image/jls"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"), "image/jp2"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"), "image/jpx"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"), "image/jphc"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.100.1", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.101.1"),
                    "video/mpeg"),
    **dict.fromkeys((f"1.2.840.10008.1.2.4.{number}{fragmentable}" for number in range(102, 107) for fragmentable in ("", ".1")), "video/mp4"),
    **dict.fromkeys(("1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108"), "video/H265"),
}
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW"})  # the last: pydicom's, for a VR it could not tell
BULK_DATA_THRESHOLD = 1024  # bytes of base64: a larger binary value is named by a BulkDataURI, a smaller one inline


class NoBulkData(Exception):
    """What was asked for is not bulk data of the instance (no pixel data, no such frame, no such value): why."""


class NotServed(Exception):
    """Bulk data stored in a form that would have to be transcoded: why."""


class NotFramed(Exception):
    """Frames asked of pixel data that is not cut into them (a video; single bits across bytes): why."""


@dataclass(frozen=True)
class Encoding:
    """How an instance's bulk data goes out: its media type and transfer syntax."""

    media_type: str
    transfer_syntax: str

    @property
    def compressed(self) -> bool:
        return self.transfer_syntax != NATIVE


def encoding_of(stored_syntax: str) -> Encoding:
    """How bulk data stored under `stored_syntax` goes out, as it is: uncompressed as octets, compressed as its media
    type says (or octets named by their transfer syntax, for one Table 8.7.3-5 does not list)."""
    if stored_syntax == BIG_ENDIAN:
        raise NotServed("The object is stored in Explicit VR Big Endian (retired): its bulk data is not transcoded; retrieve the object.")
    if stored_syntax in LITTLE_ENDIAN_NATIVE:
        return Encoding(OCTET_STREAM, NATIVE)
    return Encoding(COMPRESSED_MEDIA_TYPES.get(stored_syntax, OCTET_STREAM), stored_syntax)


def frames(dataset: Dataset, numbers: list[int]) -> list[bytes]:
    """The frames numbered `numbers` (from 1) of an instance's pixel data."""
    element = pixel_data(dataset)
    if is_video(dataset):
        raise NotFramed("A video's frames are not given one by one: retrieve its pixel data (the BulkDataURI of its metadata).")
    every = encapsulated_frames(dataset, element) if element.is_undefined_length else native_frames(dataset, element)
    outside = [number for number in numbers if not 1 <= number <= len(every)]
    if outside:
        raise NoBulkData(f"The instance's pixel data holds {len(every)} frame{'s' * (len(every) != 1)}: there is no frame {outside[0]}.")
    return [every[number - 1] for number in numbers]


def pixel_data(dataset: Dataset):
    element = next((dataset[keyword] for keyword in PIXEL_DATA_KEYWORDS if keyword in dataset), None)
    if element is None or element.is_empty:
        raise NoBulkData("The instance has no pixel data.")
    return element


def is_video(dataset: Dataset) -> bool:
    return COMPRESSED_MEDIA_TYPES.get(str(dataset.file_meta.get("TransferSyntaxUID", "")), "").startswith("video/")


def frame_count(dataset: Dataset) -> int:
    try:
        return max(int(dataset.get("NumberOfFrames") or 1), 1)
    except (TypeError, ValueError):
        return 1


def encapsulated_frames(dataset: Dataset, element) -> list[bytes]:
    """Each frame's compressed stream, as many as the pixel data holds (at most NumberOfFrames)."""
    has_table = "ExtendedOffsetTable" in dataset and "ExtendedOffsetTableLengths" in dataset
    offsets = (dataset.ExtendedOffsetTable, dataset.ExtendedOffsetTableLengths) if has_table else None
    try:
        return list(generate_frames(element.value, number_of_frames=frame_count(dataset), extended_offsets=offsets))
    except ValueError as error:  # fragments that do not add up to the frames the offset table or NumberOfFrames say
        raise NoBulkData(f"The instance's encapsulated pixel data cannot be cut into frames: {error}") from None


def native_frames(dataset: Dataset, element) -> list[bytes]:
    """Each whole frame of native pixel data (a frame of single bits that does not end on a byte cannot be cut out)."""
    count = frame_count(dataset)
    try:
        single_bits = int(dataset.get("BitsAllocated") or 0) == 1
        size, remainder = divmod(get_expected_length(dataset, "pixels") // count, 8) if single_bits else (get_expected_length(dataset) // count, 0)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise NoBulkData(f"The instance's image pixel module does not say how large a frame is: {error}") from None
    if remainder:
        raise NotFramed("A frame of this instance's single-bit pixel data does not end on a byte: retrieve its pixel data or the object.")
    if size <= 0:
        raise NoBulkData("The instance's image pixel module (Rows, Columns, BitsAllocated) does not say how large a frame is.")
    return [element.value[start:start + size] for start in range(0, min(count * size, len(element.value) // size * size), size)]


def bulk_value(dataset: Dataset, path: list[str]) -> list[bytes]:
    """The value at a BulkDataURI's path (bulk_paths): a tag, or a sequence's tag, an item index and so on;
    encapsulated pixel data as its frames (PS3.18 8.7.3.3.2: one part each)."""
    *items, last = path
    if len(items) % 2:
        raise NoBulkData(f"{'/'.join(path)} is not a bulk data path (a tag, or sequence tag / item index pairs before it).")
    for sequence, index in zip(items[::2], items[1::2]):
        dataset = nth_item(dataset, sequence, index)
    tag = parsed_tag(last)
    if tag not in dataset or dataset[tag].VR not in BULK_VRS:
        raise NoBulkData(f"The instance has no bulk data at {'/'.join(path)}.")
    if dataset[tag].is_undefined_length and not items:
        return [video_stream(dataset[tag])] if is_video(dataset) else encapsulated_frames(dataset, dataset[tag])
    return [bytes(dataset[tag].value or b"")]


def video_stream(element) -> bytes:
    """A video's one stream: every fragment after the basic offset table, in as many as the sender cut it into."""
    try:
        return b"".join(list(generate_fragments(element.value))[1:])
    except ValueError as error:
        raise NoBulkData(f"The instance's encapsulated video cannot be read: {error}") from None


def nth_item(dataset: Dataset, sequence: str, index: str) -> Dataset:
    tag = parsed_tag(sequence)
    if tag not in dataset or dataset[tag].VR != "SQ" or not (index.isascii() and index.isdigit()) or int(index) >= len(dataset[tag].value):
        raise NoBulkData(f"The instance has no item {index} of sequence {sequence}.")
    return dataset[tag].value[int(index)]


def parsed_tag(text: str) -> BaseTag:
    tag = tag_of(text)
    if tag is None:
        raise NoBulkData(f"{text} is not a tag (eight hexadecimal digits, such as 7FE00010).")
    return tag


def tag_of(text: str) -> BaseTag | None:
    """The tag that eight hexadecimal digits name, as DICOMweb writes one (`7FE00010`); None for other text."""
    return Tag(int(text, 16)) if len(text) == 8 and all(character in "0123456789abcdefABCDEF" for character in text) else None


def bulk_paths(dataset: Dataset) -> dict[int, str]:
    """The BulkDataURI path (`00420011`, `00540016/0/00181072`) of each binary value of a data set, by the element's
    id (pydicom's JSON encoder hands its bulk data handler the element alone)."""
    paths = {}
    for tag in list(dataset.keys()):
        try:
            element = dataset[tag]
            items = element.value if element.VR == "SQ" else None
        except Exception:  # noqa: BLE001 - a value pydicom cannot read: the JSON encoder leaves it out as well
            continue
        name = f"{tag:08X}"
        if element.VR in BULK_VRS:
            paths[id(element)] = name
        for index, item in enumerate(items or []):
            paths.update({key: f"{name}/{index}/{path}" for key, path in bulk_paths(item).items()})
    return paths


def metadata(dataset: Dataset, bulk_data_uri: Callable[[str], str]) -> dict:
    """An instance's attributes as DICOM JSON, each large binary value named by the BulkDataURI `bulk_data_uri` makes
    of its path; an attribute whose value cannot be read as its VR says is left out."""
    paths = bulk_paths(dataset)
    return dataset.to_json_dict(BULK_DATA_THRESHOLD, lambda element: bulk_data_uri(paths[id(element)]), suppress_invalid_tags=True)
