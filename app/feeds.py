"""Feeds plug into the server through the `ehr.feeds` entry point group (setup.cfg), so that `app` never imports
them: each names the Flask blueprints it serves and the `ehr` commands it adds. The HL7 v2 feed is
interop/hl7v2/feed.py; a DICOM feed will be another entry."""
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

import click
from flask import Blueprint

FEED_ENTRY_POINTS = "ehr.feeds"


@dataclass(frozen=True)
class Feed:
    name: str
    blueprints: tuple[Blueprint, ...] = ()
    commands: tuple[click.Command, ...] = ()


@cache
def installed_feeds() -> tuple[Feed, ...]:
    """The feeds of the installed distribution, by name; the package must be installed (`make install` does it)."""
    return tuple(entry.load() for entry in sorted(entry_points(group=FEED_ENTRY_POINTS), key=lambda entry: entry.name))
