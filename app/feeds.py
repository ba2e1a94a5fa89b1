"""Feeds plug into the server through the `ehr.feeds` entry point group (setup.cfg), so that `app` never imports
them: each names the Flask blueprints it serves, the `ehr` commands it adds, and the stores of its own that hold
sealed values (its part of `ehr keys rewrap` and `retire`, see app/protection/commands.py). The HL7 v2 feed is
interop/hl7v2/feed.py; a DICOM feed will be another entry."""
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Protocol

import click
from flask import Blueprint
from sqlalchemy import Engine

FEED_ENTRY_POINTS = "ehr.feeds"


class SealedStore(Protocol):
    """Rows that hold values sealed under value keys (app/protection), outside the resource tables."""

    def rows_to_rewrap(self, engine: Engine) -> int:
        """How many rows rewrap looks at."""

    def rewrap(self, engine: Engine, rebuild_index: bool, processes: int) -> Iterator[tuple[int, int]]:
        """Seal again, under the primary value key, the rows sealed under another or not at all, in batches, while the
        server serves (and, with `rebuild_index`, rebuild whatever blind index rows the store keeps under the primary
        index key), with up to `processes` processes forked from this one; yields (rows looked at, rows changed) per
        batch."""

    def key_uses(self, engine: Engine, key_id: str) -> int:
        """How many rows hold values sealed under this value key."""


@dataclass(frozen=True)
class Feed:
    name: str
    blueprints: tuple[Blueprint, ...] = ()
    commands: tuple[click.Command, ...] = ()
    sealed_stores: tuple[SealedStore, ...] = ()


@cache
def installed_feeds() -> tuple[Feed, ...]:
    """The feeds of the installed distribution, by name; the package must be installed (`make install` does it)."""
    return tuple(entry.load() for entry in sorted(entry_points(group=FEED_ENTRY_POINTS), key=lambda entry: entry.name))
