"""Dependencies point one way: feeds (interop) build on the server (app), which never imports them, and feeds keep
to their own tables rather than the store's; inside the server, only the store (app/store) queries its tables."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    # `from app.store import schema` imports the module app.store.schema too
    submodules = {f"{node.module}.{alias.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module for alias in node.names}
    return names | modules | submodules


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules_of("app"), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_server_never_imports_a_feed(path):
    assert not {name for name in imported_modules(path) if name == "interop" or name.startswith("interop.")}


@pytest.mark.parametrize("path", modules_of("interop"), ids=lambda path: str(path.relative_to(ROOT)))
def test_a_feed_never_queries_the_stores_tables(path):
    assert "app.store.schema" not in imported_modules(path)


def server_modules_outside_the_store() -> list[Path]:
    return [path for path in modules_of("app") if not path.is_relative_to(ROOT / "app" / "store")]


@pytest.mark.parametrize("path", server_modules_outside_the_store(), ids=lambda path: str(path.relative_to(ROOT)))
def test_only_the_store_queries_its_tables(path):
    assert "app.store.schema" not in imported_modules(path)


STORE_STEPS = frozenset({
    "new_resource", "insert_new_resources", "update_resource", "patch_resource", "delete_resource", "read_resource",
    "read_version", "live_referrers", "stored_keys", "has_resources", "read_history",
})


def names_imported_from(path: Path, modules: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module in modules for alias in node.names}


@pytest.mark.parametrize("path", server_modules_outside_the_store() + modules_of("interop"), ids=lambda path: str(path.relative_to(ROOT)))
def test_entrances_write_and_read_resources_only_through_the_unit_of_work(path):
    assert not names_imported_from(path, {"app.store.resources", "app.store.history"}) & STORE_STEPS


def test_the_feeds_are_installed_with_their_routes_commands_and_sealed_stores():
    from app.feeds import COMMANDS, feed_blueprints, feed_command, feed_sealed_stores, installed

    assert {name: feed_command(name).name for name in installed(COMMANDS)} == {name: name for name in ("dicom", "dicom-quarantine", "hl7", "mllp")}
    assert [blueprint.name for blueprint in feed_blueprints()] == ["dicomweb", "hl7v2"]
    assert [type(store).__name__ for store in feed_sealed_stores()] == ["DicomSealing", "MessageStoreSealing"]


def test_an_install_older_than_the_code_is_refused_rather_than_missing_its_feeds(monkeypatch):
    """Installed before the feeds' entry point groups were split, its metadata names only `ehr.feeds`: `ehr keys
    retire` would then count no use of a key in the feeds' sealed stores. Every command says to reinstall instead."""
    import importlib.metadata

    from click.testing import CliRunner

    import app.feeds
    from app.cli import main

    def stale_entry_points(group):
        if group == app.feeds.STALE_GROUP:
            return [importlib.metadata.EntryPoint("hl7v2", "interop.hl7v2.feed:HL7V2", group)]
        return []

    monkeypatch.setattr(app.feeds, "entry_points", stale_entry_points)
    for arguments in (["mllp", "--help"], ["--help"], []):
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 1 and "reinstall it with `make install`" in result.output, (arguments, result.output)


@pytest.mark.parametrize("value", ["interop.dicom.http:dicomweb", "interop.dicom.web:dicomweb"])
def test_an_entry_point_the_code_no_longer_has_is_refused_rather_than_a_traceback(monkeypatch, value):
    """A checkout updated without reinstalling names a feed's old module, or an old name in a module."""
    import importlib.metadata

    import app.feeds

    monkeypatch.setattr(app.feeds, "entry_points", lambda group: [importlib.metadata.EntryPoint("dicomweb", value, group)]
                        if group == app.feeds.BLUEPRINTS else [])
    with pytest.raises(app.feeds.StaleInstall, match=f"it names {value}"):
        app.feeds.feed_blueprints.__wrapped__()


def test_another_packages_broken_entry_point_keeps_its_own_error():
    """Only this project's feed modules can be stale installs: another package's error is its own to report."""
    import importlib.metadata

    from app.feeds import loaded

    with pytest.raises(AttributeError):
        loaded(importlib.metadata.EntryPoint("other", "json:no_such_name", "ehr.blueprints"))
    with pytest.raises(ModuleNotFoundError):
        loaded(importlib.metadata.EntryPoint("other", "no_such_package.feed:blueprint", "ehr.blueprints"))


SERVER_WORKER = """
import sys
from app.web import create_app
client = create_app().test_client()
loaded = lambda: [name for name in ("pydicom", "alembic") if name in sys.modules]
print(loaded(), client.get("/fhir/metadata").status_code, loaded(), client.get("/dicomweb/studies").status_code, loaded())
"""


def test_a_server_worker_loads_pydicom_on_its_first_dicomweb_request_and_alembic_never(database_url):
    """Each would hold 10-30 MiB of every worker: the schema check reads the revisions without Alembic, and DICOMweb's
    views (with pydicom) are imported by the first request that needs one."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "EHR_DATABASE_URL": database_url, "EHR_AUTH": "off"}
    result = subprocess.run([sys.executable, "-c", SERVER_WORKER], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split("\n")[0] == "[] 200 [] 200 ['pydicom']", result.stderr


def test_every_dicomweb_route_names_a_view_that_exists():
    """The views are imported on the first DICOMweb request: a wrong name would show only then."""
    from interop.dicom import http, routes

    names = {name for _, _, name in routes.ROUTES} | set(routes.BEFORE_EACH_REQUEST)
    assert all(callable(getattr(http, name, None)) for name in names)
