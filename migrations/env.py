"""Alembic environment: runs on the connection or URL that app.store.migrate hands it.

A new migration takes the next number as its revision and its file name's prefix (`alembic revision --rev-id 0014
-m "..."` writes versions/0014_....py): the server's start-up check reads the revision it needs from the newest file's
name (app/store/migrate.py head_revision; tests/store/test_migrations.py holds the files to it)."""
from alembic import context
from sqlalchemy import create_engine

from app.store import metadata
import interop.hl7v2.tables  # noqa: F401  the feeds' tables, on the same metadata
import interop.dicom.tables  # noqa: F401
import app.security.tables  # noqa: F401  the authorization server's tables, on the same metadata


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    with create_engine(context.config.get_main_option("sqlalchemy.url")).connect() as connection:
        run_migrations(connection)


run_online()
