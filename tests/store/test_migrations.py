"""The Alembic migrations build exactly the schema the code queries (app/store/schema.py)."""
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.store import migrate
from app.store.schema import metadata


def test_migrated_database_matches_the_table_definitions(engine):
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_database_is_at_the_head_revision(engine):
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
