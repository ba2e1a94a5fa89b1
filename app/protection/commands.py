"""`ehr keys`: the key-encryption key file, and the data keys it wraps (docs/security.md).

`init` writes a new key file and prints its key id; with EHR_KEY_FILE naming it, every command and the server protect
fields; `rekey` wraps the data keys with another key-encryption key. `add` adds a data key, `promote` makes it primary for new writes, `rewrap` brings every stored value to the
primary keys and the configured paths (with a progress bar) while the server keeps serving, and `retire` deletes a key
that nothing uses any more."""
import os
import time
from datetime import timedelta
from pathlib import Path

import click
import orjson
from tqdm import tqdm

from app.model.instants import as_utc, format_instant, utc_now
from app.protection.keyfile import KeyFileError, new_key_file
from app.protection.keys import (
    PURPOSES, KeyUnavailable, add_data_key, data_key_rows, delete_data_key, mark_covered, primary_key_ids, promote_data_key, rewrap_data_keys,
)
from app.protection.service import RING_REFRESH_SECONDS, Protection, protection_of
from app.feeds import feed_sealed_stores
from app.store.db import write_unit
from app.store.rewrap import RESOURCES


# How long after a key is added or promoted every process has seen it: each reads the keys again every
# RING_REFRESH_SECONDS, and a unit of work that began just before may still be writing.
SEEN_EVERYWHERE = timedelta(seconds=2 * RING_REFRESH_SECONDS)
MAX_DEFAULT_PROCESSES = 4  # each holds up to two connections: a batch's and its key ring's


def print_json(value) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def key_commands(open_engine) -> list[click.Command]:
    """The commands, opening the database with `open_engine()` (its protection as the environment says) when they run."""

    @click.group()
    def keys():
        """Field-level protection keys: the key-encryption key file and the data keys it wraps."""

    @keys.command("init")
    @click.option("--file", "path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Where to write the key (mode 0600).")
    def keys_init(path):
        """Write a new key-encryption key file and print its key id. Set EHR_KEY_FILE to it to turn protection on."""
        try:
            click.echo(new_key_file(path).id)
        except KeyFileError as error:
            raise click.ClickException(str(error)) from None

    @keys.command("list")
    def keys_list():
        """Print the data keys as a JSON array, the primary of each purpose first."""
        engine, _ = protected_engine(open_engine)
        with engine.connect() as connection:
            print_json(listed_keys(data_key_rows(connection)))

    @keys.command("add")
    @click.option("--purpose", type=click.Choice(PURPOSES), default="value", show_default=True,
                  help="value: encrypts protected values; index: blinds their search index rows.")
    def keys_add(purpose):
        """Add a data key, wrapped by the configured key-encryption key; `promote` makes it primary."""
        engine, protection = protected_engine(open_engine)
        with write_unit(engine) as connection:
            key_id = add_data_key(connection, protection.keks[0], purpose, utc_now())
        print_json({"id": key_id, "purpose": purpose, "primary": False})

    @keys.command("promote")
    @click.argument("key_id")
    def keys_promote(key_id):
        """Make a data key primary: new writes use it (every server within RING_REFRESH_SECONDS); run `rewrap` next.
        A key added moments ago is promoted once every server knows it (its searches then look it up too)."""
        engine, _ = protected_engine(open_engine)
        with engine.connect() as connection:
            found = {row.id: row for row in data_key_rows(connection)}
        if key_id not in found:
            raise click.ClickException(f"There is no data key '{key_id}'; `ehr keys list` shows them.")
        wait_until(as_utc(found[key_id].created_at) + SEEN_EVERYWHERE, f"every server to know {key_id}")
        with write_unit(engine) as connection:
            promote_data_key(connection, key_id, utc_now())
        print_json({"id": key_id, "primary": True})

    @keys.command("rekey")
    def keys_rekey():
        """Wrap every data key with the first key-encryption key of EHR_KEY_FILE (a key-encryption key's rotation:
        EHR_KEY_FILE=new.json:old.json for every process first, then this, then EHR_KEY_FILE=new.json)."""
        engine, protection = protected_engine(open_engine)
        try:
            with write_unit(engine) as connection:
                rewrapped = rewrap_data_keys(connection, protection.keks)
        except KeyUnavailable as error:
            raise click.ClickException(str(error)) from None
        print_json({"kekId": protection.keks[0].id, "rewrapped": rewrapped})

    @keys.command("rewrap")
    @click.option("--processes", type=click.IntRange(min=1), default=min(os.cpu_count() or 1, MAX_DEFAULT_PROCESSES),
                  show_default=f"the number of cores, at most {MAX_DEFAULT_PROCESSES}",
                  help="Processes that rewrap batches at once on PostgreSQL, each with up to two database connections "
                       "(1 leaves more of the machine to the server).")
    def keys_rewrap(processes):
        """Seal every stored value again under the primary keys and the configured paths, in batches, while the server
        serves; prints how many rows were looked at and changed."""
        engine, _ = protected_engine(open_engine)
        with engine.connect() as connection:
            rows = data_key_rows(connection)
        primaries = [row for row in rows if row.id in primary_key_ids(rows)]
        replacing = [as_utc(row.promoted_at) for row in primaries if sum(other.purpose == row.purpose for other in rows) > 1]
        if replacing:  # a database's first keys replaced none
            wait_until(max(replacing) + SEEN_EVERYWHERE, "every server to use the keys promoted last")
        started = utc_now()
        rebuild_index = any(row.purpose == "index" and row.covered_at is None for row in primaries)
        seen = changed = 0
        with tqdm(total=sum(store.rows_to_rewrap(engine, rebuild_index) for store in sealed_stores()), unit="row", desc="rewrap", disable=None) as progress:
            for store in sealed_stores():
                for batch_seen, batch_changed in store.rewrap(engine, rebuild_index, processes):
                    seen, changed = seen + batch_seen, changed + batch_changed
                    progress.update(batch_seen)
        with write_unit(engine) as connection:
            mark_covered(connection, started)
        print_json({"rows": seen, "rewrapped": changed, "indexRebuilt": rebuild_index})

    @keys.command("retire")
    @click.argument("key_id")
    def keys_retire(key_id):
        """Delete a data key that nothing stored uses any more: one never promoted, or one replaced by a primary key that
        a complete `rewrap` brought everything to since (refused otherwise, with the count of rows still under it)."""
        engine, _ = protected_engine(open_engine)
        with engine.connect() as connection:
            rows = data_key_rows(connection)
        found = {row.id: row for row in rows}
        if key_id not in found:
            raise click.ClickException(f"There is no data key '{key_id}'; `ehr keys list` shows them.")
        key = found[key_id]
        if key_id in primary_key_ids(rows):
            raise click.ClickException(f"{key_id} is the primary {key.purpose} key; promote another and run `ehr keys rewrap` first.")
        uses = sum(store.key_uses(engine, key_id) for store in sealed_stores()) if key.purpose == "value" else 0
        if uses:
            raise click.ClickException(f"{uses} stored rows still use {key_id}; run `ehr keys rewrap`, then retire it.")
        if key.promoted_at is not None and not covered_since_replaced(rows, key):
            raise click.ClickException(f"{key_id} was primary until the {key.purpose} key now primary replaced it, and no complete "
                                       "`ehr keys rewrap` has run since: run it, then retire the key.")
        with write_unit(engine) as connection:
            delete_data_key(connection, key_id)
        print_json({"retired": key_id})

    return [keys]


def sealed_stores() -> list:
    """The resource tables, and each feed's stores of sealed values (app/feeds.py SealedStore)."""
    return [RESOURCES, *feed_sealed_stores()]


def protected_engine(open_engine) -> tuple:
    """The engine and its Protection; a ClickException when no key-encryption key is configured."""
    engine = open_engine()  # its keys read afresh (app/cli.py settings_engine: prepare_protection)
    protection = protection_of(engine)
    if not isinstance(protection, Protection):
        raise click.ClickException("Protection is off: set EHR_KEY_FILE to a key file written by `ehr keys init` (or EHR_KEY to its text).")
    return engine, protection


def covered_since_replaced(rows: list, key) -> bool:
    """Whether a complete rewrap started after every server used the key that replaced `key` as primary."""
    primary = next(row for row in rows if row.id in primary_key_ids(rows) and row.purpose == key.purpose)
    return primary.covered_at is not None and as_utc(primary.covered_at) >= as_utc(primary.promoted_at) + SEEN_EVERYWHERE


def listed_keys(rows: list) -> list[dict]:
    primaries = primary_key_ids(rows)
    return [{
        "id": row.id, "purpose": row.purpose, "primary": row.id in primaries, "kekId": row.kek_id,
        "created": format_instant(as_utc(row.created_at)), "promoted": format_instant(as_utc(row.promoted_at)) if row.promoted_at else None,
    } for row in rows]


def wait_until(moment, what: str) -> None:
    """Sleep until `moment`, saying why on stderr."""
    remaining = (moment - utc_now()).total_seconds()
    if remaining > 0:
        click.echo(f"Waiting {remaining:.0f} s for {what}...", err=True)
        time.sleep(remaining)
