"""Where stored DICOM objects' bytes live: a directory by default, behind a small interface (BlobStore) that an object
store can implement instead. `add` and `put` return only once the bytes are durable: the sender's success follows."""
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def add(self, key: str, data: bytes) -> bool:
        """Keep `data` under `key` unless bytes are kept there already (then they stay); whether it did, durably."""

    def put(self, key: str, data: bytes) -> None:
        """Keep `data` under `key`, replacing what was there, durably."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; FileNotFoundError when there are none."""

    def delete(self, key: str) -> None:
        """Keep nothing under `key` any more."""


class DirectoryBlobStore:
    """Each blob a file under `root`, at its key's path (keys are made of UIDs: digits, dots and slashes)."""

    def __init__(self, root: Path):
        self.root = root

    def add(self, key: str, data: bytes) -> bool:
        """Written to a temporary file beside it and flushed to disk, then linked at the key's path unless a file is
        there (two senders of one object at once: the first keeps its copy), and the directory flushed."""
        path = self.root / key
        with self.written(path, data) as temporary:
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
        sync_directory(path.parent)
        return True

    def put(self, key: str, data: bytes) -> None:
        """Written as `add` does, then renamed over the key's path: a crash leaves the old bytes or the new ones."""
        path = self.root / key
        with self.written(path, data) as temporary:
            os.replace(temporary, path)
        sync_directory(path.parent)

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def written(self, path: Path, data: bytes) -> Iterator[str]:
        """The name of a temporary file holding `data`, flushed to disk, in `path`'s directory (made, and its making
        flushed, when missing); the file is removed at the end unless it was renamed."""
        created = missing_directories(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        for directory in created:
            sync_directory(directory.parent)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            yield temporary
        finally:
            Path(temporary).unlink(missing_ok=True)


def missing_directories(directory: Path) -> list[Path]:
    """`directory` and its parents that do not exist yet, outermost first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return missing[::-1]


def sync_directory(directory: Path) -> None:
    """Flush a directory's entries (a file linked or renamed into it, a directory made in it) to disk."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
