"""The `ehr` command line: database migrations, the development server, loading files, the demo; and the commands of
each installed feed (app/feeds.py)."""
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from tqdm import tqdm

from app.config import Database, load_settings
from app.demo import DEMO_PRACTITIONER, demo_bundle
from app.errors import DatabaseUnavailable, KeyUnavailableError, ProtectedValueUnreadable
from app.feeds import COMMANDS, StaleInstall, feed_command, installed
from app.loader import LoadReport, bundle_candidates, load_candidates, read_candidates
from app.model.registry import is_served
from app.protection.commands import key_commands
from app.protection.keyfile import KeyFileError
from app.protection.paths import PathError
from app.protection.service import prepare_protection
from app.security.commands import security_commands
from app.security.demo import demo_client_id, token_command
from app.store.reindex import reindex, resources_to_reindex
from app.store import migrate
from app.store.db import is_missing_database, make_engine, open_database
from app.store.unit import reading

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def settings_engine(database: Database | None = None):
    """The configured database (or `database`), its protection's keys checked (see prepare_protection)."""
    engine = open_database(database or load_settings().database)
    prepare_protection(engine)
    return engine


class CommandLine(click.Group):
    """`ehr`: its own commands and those of each installed feed. A command that fails on the database ends with one line
    saying what is wrong and what to do (create the database, run `ehr db upgrade`, start the server), not with a
    traceback."""

    def list_commands(self, ctx):
        with stale_install_said():
            return sorted({*super().list_commands(ctx), *installed(COMMANDS)})

    def get_command(self, ctx, name):
        with stale_install_said():
            return super().get_command(ctx, name) or feed_command(name)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (migrate.SchemaNotCurrent, KeyFileError, PathError, KeyUnavailableError, ProtectedValueUnreadable, StaleInstall) as error:
            raise click.ClickException(str(error)) from None
        except (SQLAlchemyError, DatabaseUnavailable):
            trouble = database_trouble(load_settings().database_url)
            if trouble is None:  # the database is fine: the failure is a bug, and its traceback is wanted
                raise
            raise click.ClickException(trouble) from None


@contextmanager
def stale_install_said():
    """StaleInstall as one line, also where click lists or finds commands (`ehr --help`), before any command runs."""
    try:
        yield
    except StaleInstall as error:
        raise click.ClickException(str(error)) from None


def database_trouble(database_url: str) -> str | None:
    """Why the database cannot serve commands, in one line: it cannot be opened or reached, does not exist, or lacks
    the current schema; None when none of these is the case."""
    engine = make_engine(database_url)
    try:
        migrate.check_schema_current(engine)
    except migrate.SchemaNotCurrent as error:
        return str(error)
    except SQLAlchemyError as error:
        return connection_trouble(engine.url, error)
    finally:
        engine.dispose()
    return None


def connection_trouble(url: URL, error: SQLAlchemyError) -> str:
    reason = (str(error.orig) if isinstance(error, DBAPIError) else str(error)).strip().splitlines()[0]
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {url.database} cannot be opened: {reason}"
    if is_missing_database(url):
        return f"database {url.database} does not exist: create it with `{createdb_command(url)}`"
    return f"cannot connect to the database {url.render_as_string()}: {reason}"


def createdb_command(url: URL) -> str:
    options = {"-h": url.host, "-p": url.port, "-U": url.username}
    return " ".join(["createdb", *(f"{flag} {value}" for flag, value in options.items() if value), url.database])


@click.group(cls=CommandLine)
def main():
    """EHR integration server: a FHIR R4 server with an HL7 v2 feed."""


def public_fhir_base() -> str:
    """EHR_BASE_URL, or where `ehr serve` listens by default."""
    return load_settings().base_url or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/fhir"


for command in [*security_commands(settings_engine, public_fhir_base), *key_commands(settings_engine)]:
    main.add_command(command)


@main.group()
def db():
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target Alembic revision.")
def db_upgrade(revision):
    """Create or migrate the schema of EHR_DATABASE_URL (default: the SQLite file under var/)."""
    engine = settings_engine()
    migrate.upgrade(engine, revision)
    click.echo(f"Database schema at revision {migrate.current_revision(engine)} ({engine.url.render_as_string()}).")


@db.command("current")
def db_current():
    """Show the schema revision of the database and the one this code needs."""
    engine = settings_engine()
    click.echo(f"current: {migrate.current_revision(engine)}  needed: {migrate.head_revision()}")


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def serve(host, port):
    """Serve the FHIR API with the development server (use gunicorn in production)."""
    from app.web import create_app  # the web application's modules, for this command alone

    app = create_app(bind_host=host)
    tokens = "SMART bearer tokens required" if app.config["EHR_SETTINGS"].auth else "EHR_AUTH=off: no token needed, for development only"
    click.echo(f"FHIR R4 API at http://{host}:{port}/fhir ({tokens}).")
    app.run(host=host, port=port, threaded=True)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check-references/--no-check-references", default=None,
              help="Reject resources whose references name no stored resource and none in the same batch of 500 "
                   "(default: as EHR_REFERENTIAL_INTEGRITY_ON_WRITE says, on unless set false). Turn it off to load "
                   "files that refer to each other in no particular order, such as a bulk export's NDJSON files.")
def load(files, check_references):
    """Load FHIR NDJSON (.ndjson) and Bundle or resource JSON (.json) files, upserting by id."""
    settings = load_settings()
    database = settings.database
    if check_references is not None:
        database = database._replace(integrity=replace(database.integrity, on_write=check_references))
    engine = settings_engine(database)
    report = LoadReport()
    for path in files:
        candidates = read_candidates(path, report)
        load_candidates(engine, tqdm(candidates, desc=path.name, unit=" resources", file=sys.stderr), report, settings.base_url)
    print_report(report)
    if report.outcomes["rejected"]:
        sys.exit(1)


def print_report(report: LoadReport) -> None:
    counts = ", ".join(f"{report.outcomes[kind]} {kind}" for kind in ("created", "updated", "unchanged", "rejected"))
    click.echo(f"Loaded: {counts}.")
    for where, reason in report.rejected[:100]:
        click.echo(f"  rejected {where}: {reason}")
    if len(report.rejected) > 100:
        click.echo(f"  ... and {len(report.rejected) - 100} more rejected.")


@main.command("reindex")
@click.option("--type", "type_name", help="Only resources of this type (e.g. Observation).")
def reindex_command(type_name):
    """Rebuild search index rows (after the search parameter data changed); the server may keep serving."""
    if type_name and not is_served(type_name):
        raise click.BadParameter(f"'{type_name}' is not a resource type this server serves.", param_hint="--type")
    engine = settings_engine()
    total = resources_to_reindex(engine, type_name)
    with tqdm(total=total, desc=f"reindex {type_name or 'all types'}", unit=" resources", file=sys.stderr) as progress:
        for done in reindex(engine, type_name):
            progress.update(done)
    click.echo(f"Reindexed {total} resources.")


@main.command()
def demo():
    """Load the demo data set (patients, practitioners, encounters, vital signs) if the database is empty, and say how
    to get a token for the demo clinician."""
    engine = settings_engine()
    load_demo_data(engine)
    with reading(engine) as unit:
        if not unit.stored_keys([("Practitioner", DEMO_PRACTITIONER)]):
            return
    with engine.begin() as connection:
        client_id = demo_client_id(connection, f"Practitioner/{DEMO_PRACTITIONER}")
    click.echo(f"The FHIR API takes SMART bearer tokens. A token for the demo clinician (printed as JSON; send its access_token as "
               f"Authorization: Bearer ...):\n  {token_command(sys.argv[0], client_id)}")


def load_demo_data(engine) -> None:
    with reading(engine) as unit:
        empty = not unit.has_resources()
    if not empty:
        click.echo("The database already holds resources; demo data not loaded.")
        return
    report = LoadReport()
    load_candidates(engine, bundle_candidates("demo", demo_bundle()), report)
    print_report(report)
