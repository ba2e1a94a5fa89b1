"""Where stored DICOM objects' bytes live: a directory by default, behind a small interface (BlobStore) that an object
store can implement instead. `put` returns only once the bytes are durable: the sender's success follows it."""
import os
import tempfile
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Keep `data` under `key` (replacing what was there), durably."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; FileNotFoundError when there are none."""

    def exists(self, key: str) -> bool:
        """Whether bytes are kept under `key`."""


class DirectoryBlobStore:
    """Each blob a file under `root`, at its key's path (keys are made of UIDs: digits, dots and slashes)."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        """Written to a temporary file beside it, flushed to disk, then renamed over the key's path (and the directory
        flushed): a crash leaves the old bytes or the new ones, never part of them."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()
