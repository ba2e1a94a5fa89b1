"""The HL7 v2 feed's `ehr` commands: `ehr mllp` (the listener) and `ehr hl7 ...` (the message store, assigning
authorities, ACK destinations and the outbox, replay)."""
import asyncio
import ipaddress
import signal
import ssl
import sys
from collections import Counter
from datetime import datetime, timezone

import click
from tqdm import tqdm

from app.cli import DEFAULT_HOST, settings_engine
from app.config import Database, load_settings
from app.protection.service import prepare_protection
from app.store import migrate
from app.store.db import open_database
from interop.hl7v2.authorities import authority_systems, remove_authority, set_authority
from interop.hl7v2.mllp import DEFAULT_WORKERS, Listener, ListenerSettings, configure_logging
from interop.hl7v2.outbox import (DEFAULT_INTERVAL_SECONDS, Deliverer, Destination, Sender, destinations, queued_acks,
                                   register_destination, remove_destination, resend)
from interop.hl7v2.service import (MESSAGE_STATUSES, MessageQuery, Senders, replay, stored_message, stored_message_ids, stored_messages,
                                   written_resources)
from interop.hl7v2.text import with_carriage_returns

DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=2575, show_default=True, type=int, help="2575 is the port IANA assigned to HL7 over MLLP.")
@click.option("--max-bytes", default=16 * 1024 * 1024, show_default=True, type=int, help="Largest message accepted.")
@click.option("--idle-seconds", default=300.0, show_default=True, type=float, help="Close a connection silent this long between frames.")
@click.option("--frame-seconds", default=30.0, show_default=True, type=float, help="Close a connection whose frame has not ended this long after it began.")
@click.option("--max-connections", default=200, show_default=True, type=int)
@click.option("--max-connections-per-peer", default=50, show_default=True, type=int, help="Connections one address may hold (trusted peers aside).")
@click.option("--reserved-connections", type=int, help="Of --max-connections, kept for known senders.  [default: a tenth]")
@click.option("--trusted-peer", multiple=True, help="Address or network (10.0.0.0/8) of known senders; repeatable.")
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=int, help="Worker processes applying messages.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve MLLP over TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("--allow-app", multiple=True, help="Accept only these sending applications (MSH-3); repeatable.")
@click.option("--allow-facility", multiple=True, help="Accept only these sending facilities (MSH-4); repeatable.")
@click.option("--deliver/--no-deliver", default=True, show_default=True, help="Send queued application ACKs (MSH-16) from this process.")
def mllp(host, port, max_bytes, idle_seconds, frame_seconds, max_connections, max_connections_per_peer, reserved_connections,
         trusted_peer, workers, tls_cert, tls_key, allow_app, allow_facility, deliver):
    """Receive HL7 v2 messages over MLLP: store each, apply it, then acknowledge it."""
    for network in trusted_peer:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise click.BadParameter(f"'{network}' is not an address or network", param_hint="--trusted-peer") from None
    settings = ListenerSettings(
        host=host, port=port, max_bytes=max_bytes, idle_seconds=idle_seconds, frame_seconds=frame_seconds,
        max_connections=max_connections, max_connections_per_peer=max_connections_per_peer,
        reserved_connections=reserved_connections, trusted_networks=tuple(trusted_peer), workers=workers,
        tls_certificate=tls_cert, tls_key=tls_key, senders=Senders(frozenset(allow_app), frozenset(allow_facility)), deliver=deliver,
    )
    database = current_database()
    configure_logging()
    stop_on_sigterm()
    listener = Listener(database, settings)
    try:
        asyncio.run(listener.serve_forever())
    except KeyboardInterrupt:
        pass
    finally:
        listener.close()


@click.group()
def hl7():
    """The HL7 v2 message store: list, show and replay messages."""


@hl7.command("list")
@click.option("--status", type=click.Choice(MESSAGE_STATUSES))
@click.option("--sender", help="Sending application (MSH-3 as sent, or its first component).")
@click.option("--facility", help="Sending facility (MSH-4 as sent, or its first component).")
@click.option("--type", "message_type", help="Message type as sent (MSH-9), or its first components: ADT, ADT^A01.")
@click.option("--control-id", help="Control id (MSH-10).")
@click.option("--since", type=click.DateTime(DATE_FORMATS), help="Received at or after (UTC).")
@click.option("--until", type=click.DateTime(DATE_FORMATS), help="Received before (UTC).")
@click.option("--limit", default=50, show_default=True, type=int)
def hl7_list(status, sender, facility, message_type, control_id, since, until, limit):
    """The newest messages first, one a line under a header: id, received (UTC), status, sender|facility, type,
    control id, and what to know: the error, warnings, a control id reused from an earlier message."""
    query = MessageQuery(status, sender, facility, message_type, control_id, utc(since), utc(until), limit=limit)
    rows = stored_messages(settings_engine(), query)
    click.echo("\t".join(("ID", "RECEIVED", "STATUS", "SENDER", "TYPE", "CONTROL ID", "NOTES")))
    for row in rows:
        sender_text = f"{row.sending_application or '-'}|{row.sending_facility or '-'}"
        click.echo(f"{row.id}\t{row.received_at:%Y-%m-%d %H:%M:%S}\t{row.status}\t{sender_text}\t{row.message_type or '-'}\t"
                   f"{row.control_id or '-'}\t{message_notes(row)}")


def message_notes(row) -> str:
    notes = [row.error] if row.error else []
    if row.reuses_control_id_of:
        notes.append(f"control id reused (message {row.reuses_control_id_of} had it)")
    if row.warnings:
        notes += [f"warning: {warning}" for warning in row.warnings.splitlines()]
    return "; ".join(notes)


def utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment else None


@hl7.command("show")
@click.argument("message_id", type=int)
def hl7_show(message_id):
    """One message: its record, the resources it wrote, the message as received and the ACK it got."""
    engine = settings_engine()
    row = stored_message(engine, message_id)
    if row is None:
        raise click.ClickException(f"No HL7 message {message_id}.")
    for name in ("id", "received_at", "updated_at", "peer", "status", "error", "sending_application", "sending_facility",
                 "message_type", "control_id", "version", "codec", "reuses_control_id_of"):
        click.echo(f"{name}: {getattr(row, name)}")
    click.echo("warnings:" + "".join(f"\n  {warning}" for warning in (row.warnings or "").splitlines()))
    click.echo("resources:" + "".join(f"\n  {written}" for written in written_resources(engine, message_id)))
    click.echo("message:\n" + with_carriage_returns(row.raw.decode(row.codec or "utf-8", errors="replace")).replace("\r", "\n"))
    click.echo("ack:\n" + (row.ack or "(none)").replace("\r", "\n"))


@hl7.group()
def authority():
    """Identifier systems per assigning authority: CX.4 NORTH as http://hospital.example/mrn instead of the default
    urn:ehr:hl7v2:authority:NORTH."""


@authority.command("add")
@click.argument("name")
@click.argument("system")
def authority_add(name, system):
    """Map the assigning authority NAME (HD.1 namespace id or HD.2 universal id, any case) to the identifier SYSTEM
    (a URI) for the messages received from now on; replaces an earlier mapping of NAME. Running listeners see it
    within seconds."""
    if not is_uri(system):
        raise click.BadParameter(f"'{system}' is not an absolute URI (http://..., urn:oid:..., urn:...)", param_hint="SYSTEM")
    set_authority(settings_engine(), name, system)
    click.echo(f"Identifiers assigned by {name.upper()} now have the system {system}.")


@authority.command("list")
def authority_list():
    """Each assigning authority and its identifier system."""
    systems = authority_systems(settings_engine())
    click.echo("AUTHORITY\tSYSTEM")
    for name, system in sorted(systems.items()):
        click.echo(f"{name}\t{system}")


@authority.command("remove")
@click.argument("name")
def authority_remove(name):
    """Forget the mapping of NAME: its identifiers get the default system again."""
    if not remove_authority(settings_engine(), name):
        raise click.ClickException(f"No identifier system is set for {name.upper()}.")
    click.echo(f"Identifiers assigned by {name.upper()} have the default system again.")


def is_uri(text: str) -> bool:
    scheme, _, rest = text.partition(":")
    return bool(scheme) and scheme.isascii() and scheme[0].isalpha() and bool(rest) and not any(character.isspace() for character in text)


@hl7.group()
def destination():
    """Where each sender's application ACKs (MSH-16) go: its own MLLP listener."""


@destination.command("add")
@click.argument("application")
@click.argument("address")
@click.option("--facility", default="", help="Only the messages from this sending facility (MSH-4); default: every facility.")
@click.option("--tls", is_flag=True, help="Connect with TLS.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True), help="PEM certificates to trust (with --tls).")
@click.option("--cert-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True), help="PEM client certificate, for a peer that asks for one.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True), help="PEM private key of --cert-file.")
def destination_add(application, address, facility, tls, ca_file, cert_file, key_file):
    """Send the application ACKs of messages from APPLICATION (MSH-3 as sent, components included) to ADDRESS,
    host:port or [IPv6]:port; replaces an earlier destination of the same sender."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port", param_hint="ADDRESS")
    if bool(cert_file) != bool(key_file):
        raise click.UsageError("--cert-file and --key-file go together.")
    destination = Destination(host, int(port), tls or bool(ca_file or cert_file), ca_file, cert_file, key_file)
    try:
        destination.ssl_context()  # a certificate that does not load is said now, not at each delivery
    except (OSError, ssl.SSLError) as error:
        raise click.ClickException(f"The TLS files cannot be used: {error}") from None
    sender = Sender(application, facility)
    register_destination(settings_engine(), sender, destination)
    click.echo(f"Application ACKs for {sender} go to {address}.")


@destination.command("list")
def destination_list():
    """Sender (application|facility) and where its application ACKs go."""
    for row in destinations(settings_engine()):
        click.echo(f"{Sender(row.sending_application, row.sending_facility)}\t{Destination.of(row)}")


@destination.command("remove")
@click.argument("application")
@click.option("--facility", default="")
def destination_remove(application, facility):
    """Stop sending the application ACKs of APPLICATION (and --facility) anywhere; they wait in the outbox."""
    sender = Sender(application, facility)
    if not remove_destination(settings_engine(), sender):
        raise click.ClickException(f"No destination for {sender}.")
    click.echo(f"Removed the destination of {sender}.")


@hl7.group()
def acks():
    """The outbox of application ACKs (MSH-16): list them, send refused ones again."""


@acks.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "failed"]))
@click.option("--limit", default=50, show_default=True, type=int)
def acks_list(status, limit):
    """The newest first: id, message id, status, sender, attempts, when sent (or next tried), last error."""
    rows = queued_acks(settings_engine(), status, limit)
    click.echo("\t".join(("ID", "MESSAGE", "STATUS", "SENDER", "ATTEMPTS", "WHEN", "LAST ERROR")))
    for row in rows:
        when = {"sent": row.sent_at, "pending": row.next_attempt_at}.get(row.status)
        click.echo(f"{row.id}\t{row.message_id}\t{row.status}\t{row.sending_application}|{row.sending_facility}\t"
                   f"{row.attempts}\t{f'{when:%Y-%m-%d %H:%M:%S}' if when else '-'}\t{row.last_error or ''}")


@acks.command("resend")
@click.argument("ack_ids", nargs=-1, type=int, required=True)
def acks_resend(ack_ids):
    """Queue application ACKs again, e.g. refused ones after the peer is fixed."""
    click.echo(f"Queued {resend(settings_engine(), list(ack_ids))} ACKs again.")


@hl7.command("deliver")
@click.option("--once", is_flag=True, help="Send what is due once, then exit; default: keep delivering.")
@click.option("--interval", default=DEFAULT_INTERVAL_SECONDS, show_default=True, type=float, help="Seconds between looks at the outbox.")
def hl7_deliver(once, interval):
    """Send queued application ACKs to their senders' destinations (`ehr mllp` does this too, unless --no-deliver)."""
    configure_logging()
    stop_on_sigterm()
    deliverer = Deliverer(open_database(current_database()))
    try:
        if once:
            attempts = asyncio.run(deliverer.deliver_due())
            click.echo(f"Delivery attempts: {counted(attempt.status for attempt in attempts)}.")
        else:
            asyncio.run(deliverer.run_forever(interval))
    except KeyboardInterrupt:
        pass
    finally:
        deliverer.engine.dispose()


def stop_on_sigterm() -> None:
    """End on SIGTERM (kill, systemd, container stop) as on Ctrl-C, so that the command's `finally` runs: `ehr mllp`
    shuts its worker processes down instead of leaving them behind."""
    signal.signal(signal.SIGTERM, interrupt)


def interrupt(signal_number, frame) -> None:
    raise KeyboardInterrupt


def current_database() -> Database:
    """The configured database, once its schema is known to be current and its protection's keys available."""
    database = load_settings().database
    engine = open_database(database)
    try:
        migrate.check_schema_current(engine)
        prepare_protection(engine)
    finally:
        engine.dispose()
    return database


@hl7.command("replay")
@click.argument("message_ids", nargs=-1, type=int)
@click.option("--status", type=click.Choice(["error", "rejected", "received"]), help="Replay every message of this status.")
def hl7_replay(message_ids, status):
    """Map and apply stored messages again, e.g. after a mapping fix: by id, or all of one status. A message already
    applied is left as it is (and counted applied)."""
    if bool(message_ids) == bool(status):
        raise click.UsageError("Give message ids or --status, not both.")
    engine = settings_engine()
    missing = [str(message_id) for message_id in message_ids if stored_message(engine, message_id) is None]
    if missing:
        raise click.ClickException(f"No HL7 message {', '.join(missing)}.")
    ids = message_ids or stored_message_ids(engine, MessageQuery(status, limit=1_000_000))
    click.echo(f"Replayed: {counted(replay(engine, message_id).status for message_id in tqdm(ids, unit=' messages', file=sys.stderr))}.")


def counted(statuses) -> str:
    """'2 applied, 1 error' for statuses applied, error, applied; 'nothing' for none."""
    return ", ".join(f"{count} {name}" for name, count in sorted(Counter(statuses).items())) or "nothing"
