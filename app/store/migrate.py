"""Schema migrations through Alembic, and the start-up check that the schema is current. Alembic is imported by the
functions that migrate: most `ehr` commands never do (it was a sixth of their start), and the check reads the
revisions without it, since importing it (with Mako and Pygments) holds 10 MiB of every server worker."""
from functools import cache

from sqlalchemy import Column, Engine, MetaData, String, Table, inspect, select

from app.config import CONFORMANCE_DIR

MIGRATIONS_DIR = CONFORMANCE_DIR.parent / "migrations"
VERSIONS_DIR = MIGRATIONS_DIR / "versions"
ALEMBIC_VERSION = Table("alembic_version", MetaData(), Column("version_num", String(32)))  # where Alembic records it
UPGRADE_HINT = "run `ehr db upgrade` (with the same EHR_DATABASE_URL) to create or update it"


class SchemaNotCurrent(RuntimeError):
    """The database schema is missing or older than this code; the server must not start."""


def alembic_config(engine: Engine):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@cache  # the revision this process's code needs does not change while it runs; /readyz asks each time
def head_revision() -> str:
    """The revision this code needs, the newest migration's: each migration file is named after its revision
    (`0013_dicom_study_imaging_study.py`), each follows the one before (tests/store/test_migrations.py holds Alembic's
    own reading of the files to this)."""
    return max(path.name.split("_", 1)[0] for path in VERSIONS_DIR.glob("*.py"))


def current_revision(engine: Engine) -> str | None:
    """The revision the database's schema is at, as Alembic recorded it; None for a database without a schema."""
    with engine.connect() as connection:
        if not inspect(connection).has_table(ALEMBIC_VERSION.name):
            return None
        return connection.execute(select(ALEMBIC_VERSION.c.version_num)).scalar()


def check_schema_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision()
    if current is None:
        raise SchemaNotCurrent(f"The database at {engine.url!r} has no schema: {UPGRADE_HINT}.")
    if current != head:
        raise SchemaNotCurrent(f"The database schema is at revision {current}, this server needs {head}: {UPGRADE_HINT}.")
