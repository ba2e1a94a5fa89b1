"""Feeds plug into the server through entry point groups (setup.cfg), so that `app` never imports them, and each
process loads only the parts of them it uses (`ehr keys rewrap` imports no DICOM network code, nor the web server):
- `ehr.blueprints`: the Flask blueprints the server registers (`POST /hl7v2`, `/dicomweb`);
- `ehr.commands`: the `ehr` commands a feed adds, each loaded when it runs (or when `ehr --help` lists them);
- `ehr.sealed_stores`: the classes of a feed's stores of sealed values, its part of `ehr keys rewrap` and `retire`
  (app/protection/commands.py).
The HL7 v2 feed is interop/hl7v2, the DICOM feed interop/dicom."""
from collections.abc import Callable, Iterator
from functools import cache
from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Protocol

import click
from flask import Blueprint
from sqlalchemy import Column, Engine, func, select

from app.store.db import read_unit, write_unit

BLUEPRINTS, COMMANDS, SEALED_STORES = "ehr.blueprints", "ehr.commands", "ehr.sealed_stores"
STALE_GROUP = "ehr.feeds"  # the one group of this project's installs made before 2026-12-07
OUR_FEEDS = "interop."  # the package of this project's feeds, whose entry points only an install of it names


class StaleInstall(RuntimeError):
    """The installed metadata predates the code's entry point groups: the feeds would silently be missing."""

    def __init__(self, named: str):
        super().__init__(f"This checkout's installed metadata is older than its code (it names {named}): "
                         "reinstall it with `make install` (or `pip install -e .`).")


class SealedStore(Protocol):
    """Rows that hold values sealed under value keys (app/protection), outside the resource tables."""

    def rows_to_rewrap(self, engine: Engine, rebuild_index: bool) -> int:
        """How many rows rewrap looks at (with `rebuild_index`, as `rewrap` says)."""

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        """Seal again, under the primary value key, the rows sealed under another or not at all, in batches, while the
        server serves (and, with `rebuild_index`, rebuild whatever blind index rows the store keeps under the primary
        index key), with up to `processes` processes forked from this one; yields (rows looked at, rows changed) per
        batch."""

    def key_uses(self, engine: Engine, key_id: str) -> int:
        """How many rows hold values sealed under this value key."""


def rows_resealed(engine: Engine, key: Column, reseal: Callable[[object, list], int], batch_size: int,
                  locked: bool = False) -> Iterator[tuple[int, int]]:
    """A SealedStore's rewrap of one table: its rows stored before now (rows stored later are sealed as configured),
    in batches of `batch_size` by `key`, each in its own transaction (its rows locked when writers change them) and
    given to `reseal(connection, rows)`, which says how many it changed; (rows looked at, rows changed) per batch."""
    table = key.table
    with read_unit(engine) as connection:
        last = connection.execute(select(func.max(key))).scalar() or 0
    after = 0
    while True:
        with write_unit(engine) as connection:
            batch = select(table).where(key > after, key <= last).order_by(key).limit(batch_size)
            rows = connection.execute(batch.with_for_update() if locked else batch).all()
            changed = reseal(connection, rows)
        if not rows:
            return
        after = rows[-1]._mapping[key.name]
        yield len(rows), changed


def installed(group: str) -> dict[str, EntryPoint]:
    """The entry points of `group` of the installed distribution, by name, unloaded; the package must be installed
    (`make install` does it). StaleInstall when it was installed from older code: `ehr keys rewrap` and `retire` would
    pass over the feeds' sealed stores, and retire a key their values still need."""
    if any(entry.module.startswith(OUR_FEEDS) for entry in entry_points(group=STALE_GROUP)):
        raise StaleInstall(f"the `{STALE_GROUP}` entry points")
    return {entry.name: entry for entry in sorted(entry_points(group=group), key=lambda entry: entry.name)}


def loaded(entry: EntryPoint):
    """The object an entry point names; StaleInstall when this project's code no longer has the module or the name the
    installed metadata gives (a checkout updated without reinstalling)."""
    ours = entry.module.startswith(OUR_FEEDS)
    try:
        return entry.load()
    except ModuleNotFoundError as error:
        if not ours or error.name != entry.module:
            raise
        missing = error
    except AttributeError as error:
        if not ours or error.obj is not import_module(entry.module):
            raise
        missing = error
    raise StaleInstall(entry.value) from missing


@cache
def feed_blueprints() -> tuple[Blueprint, ...]:
    return tuple(loaded(entry) for entry in installed(BLUEPRINTS).values())


def feed_command(name: str) -> click.Command | None:
    entry = installed(COMMANDS).get(name)
    return loaded(entry) if entry else None


@cache
def feed_sealed_stores() -> tuple[SealedStore, ...]:
    return tuple(loaded(entry)() for entry in installed(SEALED_STORES).values())
