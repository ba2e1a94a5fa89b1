"""Schema migrations through Alembic, and the start-up check that the schema is current. Alembic is imported by the
functions that use it: most `ehr` commands never do, and it was a sixth of their start."""
from sqlalchemy import Engine

from app.config import CONFORMANCE_DIR

MIGRATIONS_DIR = CONFORMANCE_DIR.parent / "migrations"
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


def head_revision(engine: Engine) -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema_current(engine: Engine) -> None:
    current, head = current_revision(engine), head_revision(engine)
    if current is None:
        raise SchemaNotCurrent(f"The database at {engine.url!r} has no schema: {UPGRADE_HINT}.")
    if current != head:
        raise SchemaNotCurrent(f"The database schema is at revision {current}, this server needs {head}: {UPGRADE_HINT}.")
