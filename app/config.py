"""All configuration, read once from the environment with safe defaults (documented in README)."""
import os
from dataclasses import dataclass
from typing import NamedTuple
from pathlib import Path

DEFAULT_VAR_DIR = "var"
MiB = 1024 * 1024


def default_database_url(var_dir: str) -> str:
    path = Path(var_dir).resolve() / "ehr.db"
    return f"sqlite:///{path}"


@dataclass(frozen=True)
class PageSizes:
    """How many matches a page holds when the client does not say (`_count`), and at most."""

    default: int = 50
    maximum: int = 1000


@dataclass(frozen=True)
class Integrity:
    """Which referential-integrity checks units of work make (app/store/integrity.py)."""

    on_write: bool = True
    on_delete: bool = True


@dataclass(frozen=True)
class ProtectionSettings:
    """Field-level protection (app/protection): on when a key-encryption key is given, in a key file (EHR_KEY_FILE:
    several, separated by colons, while one replaces another) or as its JSON text (EHR_KEY); `paths` are
    EHR_PROTECTED_PATHS (empty: the default paths)."""

    key_file: str | None = None
    key_text: str | None = None
    paths: str | None = None

    @property
    def on(self) -> bool:
        return bool(self.key_file or self.key_text)


class Database(NamedTuple):
    """What a process needs to open the store (app/store/db.py open_database): where it is, how its units of work
    check references, and what they protect. A value, so that the MLLP listener hands it to its worker processes."""

    url: str
    integrity: Integrity = Integrity()
    protection: ProtectionSettings = ProtectionSettings()


@dataclass(frozen=True)
class Settings:
    database_url: str
    max_body_bytes: int = 64 * MiB
    default_page_size: int = PageSizes.default
    max_page_size: int = PageSizes.maximum
    base_url: str | None = None
    hl7_text_plain: bool = False  # POST /hl7v2 also takes text/plain, which a browser page can send without asking
    dicom_storage: str = os.path.join(DEFAULT_VAR_DIR, "dicom")  # the directory of stored DICOM objects (interop/dicom/blobs.py)
    allowed_hosts: tuple[str, ...] | None = None  # Host header names served (any port); None: see app/web.py trusted_hosts
    integrity: Integrity = Integrity()  # the referential-integrity checks of writes and deletes
    rate_limit_storage: str = "memory://"  # where sign-in and token rate limits count (per worker unless shared)
    trusted_proxies: int = 0  # reverse proxies in front, whose X-Forwarded-For entries tell the client's address
    auth: bool = True  # the FHIR API and /hl7v2 take SMART bearer tokens; off only for development (app/security/bearer.py)
    cors_origins: tuple[str, ...] = ("*",)  # the web origins whose pages may call the API and token endpoint (app/web.py)
    protection: ProtectionSettings = ProtectionSettings()

    @property
    def database(self) -> Database:
        return Database(self.database_url, self.integrity, self.protection)

    @property
    def page_sizes(self) -> PageSizes:
        return PageSizes(self.default_page_size, self.max_page_size)


def load_settings() -> Settings:
    var_dir = os.environ.get("EHR_VAR_DIR", DEFAULT_VAR_DIR)
    return Settings(
        database_url=os.environ.get("EHR_DATABASE_URL") or default_database_url(var_dir),
        max_body_bytes=int(os.environ.get("EHR_MAX_BODY_BYTES", 64 * MiB)),
        default_page_size=int(os.environ.get("EHR_PAGE_SIZE", PageSizes.default)),
        max_page_size=int(os.environ.get("EHR_MAX_PAGE_SIZE", PageSizes.maximum)),
        base_url=os.environ.get("EHR_BASE_URL") or None,
        hl7_text_plain=switched_on("EHR_HL7_TEXT_PLAIN", False),
        dicom_storage=os.environ.get("EHR_DICOM_STORAGE") or os.path.join(var_dir, "dicom"),
        allowed_hosts=tuple(filter(None, map(str.strip, os.environ.get("EHR_ALLOWED_HOSTS", "").split(",")))) or None,
        rate_limit_storage=os.environ.get("EHR_RATE_LIMIT_STORAGE") or "memory://",
        trusted_proxies=count_of("EHR_TRUSTED_PROXIES"),
        auth=switched_on("EHR_AUTH", True),
        cors_origins=tuple(filter(None, map(str.strip, os.environ.get("EHR_CORS_ORIGINS", "*").split(",")))),
        integrity=Integrity(
            on_write=switched_on("EHR_REFERENTIAL_INTEGRITY_ON_WRITE", True), on_delete=switched_on("EHR_REFERENTIAL_INTEGRITY_ON_DELETE", True),
        ),
        protection=ProtectionSettings(
            key_file=os.environ.get("EHR_KEY_FILE") or None, key_text=os.environ.get("EHR_KEY") or None,
            paths=os.environ.get("EHR_PROTECTED_PATHS") or None,
        ),
    )


def count_of(name: str) -> int:
    """A count setting: a whole number, 0 or more; unset or empty is 0."""
    value = os.environ.get(name, "").strip() or "0"
    if not value.isdigit():
        raise ValueError(f"{name}={value!r}: say how many, 0 or more.")
    return int(value)


def switched_on(name: str, default: bool) -> bool:
    """A yes/no setting: 1, true, yes or on; 0, false, no or off; unset or empty is the default."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{name}={value!r}: say true or false.")
    return value in ("1", "true", "yes", "on")

# Conformance data generated from the official definitions (see fhir/extract.py).
CONFORMANCE_DIR = Path(__file__).resolve().parent.parent / "fhir"
