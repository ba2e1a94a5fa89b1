"""The Alembic migrations build exactly the schema the code queries (app/store/schema.py)."""
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.store import migrate
from app.store.db import make_engine
from app.store.schema import metadata


def test_migrated_database_matches_the_table_definitions(engine):
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_database_is_at_the_head_revision(engine):
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_search_tokens_hash_indexes_leave_out_rows_without_a_hash(engine):
    """Most token rows have no system, and blind prefixes no system nor code hash: no entry is written for them."""
    names = ("ix_search_token_code", "ix_search_token_sys_code", "ix_search_token_sys")
    statement = ("SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN ({})" if engine.dialect.name == "postgresql"
                 else "SELECT name, sql FROM sqlite_master WHERE name IN ({})").format(", ".join(f"'{name}'" for name in names))
    with engine.connect() as connection:
        definitions = dict(connection.exec_driver_sql(statement).all())
    assert sorted(definitions) == sorted(names)
    assert all(f"WHERE {column} IS NOT NULL" in definitions[name].replace("(", "").replace(")", "")
               for name, column in zip(names, ("h_code", "h_sys_code", "h_sys")))


def test_the_revision_the_server_checks_for_is_alembics_head():
    """The start-up check reads the newest migration's revision from the file names, without Alembic: every file must
    be named after its revision, and they must form one line."""
    engine = make_engine("sqlite://")
    scripts = ScriptDirectory.from_config(migrate.alembic_config(engine))
    engine.dispose()
    assert scripts.get_heads() == [migrate.head_revision()]
    assert all(Path(script.path).name.startswith(f"{script.revision}_") for script in scripts.walk_revisions())
