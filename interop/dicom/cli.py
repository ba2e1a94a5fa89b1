"""`ehr dicom`: the C-STORE and C-FIND SCP (scp.py) on the configured database, storing objects under EHR_DICOM_STORAGE."""
import logging
import signal
from pathlib import Path

import click

from app.cli import DEFAULT_HOST, settings_engine
from app.config import load_settings
from app.store import migrate
from interop.dicom.blobs import DirectoryBlobStore
from interop.dicom.mapping import dicomweb_address
from interop.dicom.scp import DEFAULT_AE_TITLE, ScpSettings, StorageServer
from interop.dicom.service import SUCCESS, DicomStore
from interop.dicom.studies import update_pending_studies


@click.command("dicom")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=11112, show_default=True, type=int, help="11112 is the registered DICOM port above 1023.")
@click.option("--ae-title", default=DEFAULT_AE_TITLE, show_default=True, help="Our AE title: associations called to another are refused.")
@click.option("--allow-calling-ae", multiple=True, help="Accept associations only from this calling AE title; repeatable.")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate: serve DICOM over TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key of --tls-cert.")
@click.option("--max-associations", default=20, show_default=True, type=int)
def dicom(host, port, ae_title, allow_calling_ae, tls_cert, tls_key, max_associations):
    """Receive DICOM objects (C-STORE) into blob storage and ImagingStudy resources; answer C-FIND and C-ECHO."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = configured_store()
    settings = ScpSettings(host, port, ae_title, tuple(allow_calling_ae), tls_cert, tls_key, max_associations)
    server = StorageServer(store, settings)
    signal.signal(signal.SIGTERM, interrupt)
    click.echo(f"DICOM C-STORE SCP {ae_title} on {host}:{server.port}, objects under {load_settings().dicom_storage}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        store.engine.dispose()


def interrupt(signal_number, frame) -> None:
    """SIGTERM stops the server as Ctrl-C does: associations under way are ended, what was acknowledged is stored."""
    raise KeyboardInterrupt


@click.group("dicom-quarantine")
def dicom_quarantine():
    """DICOM objects that could not be stored as instances (0xC000), kept with the reason."""


@dicom_quarantine.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
def quarantine_list(limit):
    """The newest first, one a line: id, received (UTC), sender, size, reason."""
    click.echo("\t".join(("ID", "RECEIVED", "FROM", "BYTES", "REASON")))
    for row in configured_store().quarantined_objects(limit):
        click.echo(f"{row.id}\t{row.received_at:%Y-%m-%d %H:%M:%S}\t{row.peer}\t{row.size}\t{row.reason}")


@dicom_quarantine.command("replay")
@click.argument("quarantine_ids", nargs=-1, type=int, required=True)
def quarantine_replay(quarantine_ids):
    """Store quarantined objects again, after a fix that reads them: those stored leave the quarantine (and their
    studies' ImagingStudies are written); the others stay, with the reason now."""
    store = configured_store()
    studies = set()
    for quarantine_id in quarantine_ids:
        outcome = store.replayed(quarantine_id)
        if outcome is None:
            raise click.ClickException(f"No quarantined DICOM object {quarantine_id}.")
        if outcome.status == SUCCESS:
            studies.add(outcome.instance.study_uid)
        click.echo(f"{quarantine_id}\t{'stored ' + outcome.instance.sop_instance_uid if outcome.status == SUCCESS else 'still quarantined: ' + outcome.reason}")
    update_pending_studies(store.engine, store.dicomweb_address, studies)


def configured_store() -> DicomStore:
    """The store of the configured database and EHR_DICOM_STORAGE, as `ehr dicom` uses it."""
    engine = settings_engine()
    migrate.check_schema_current(engine)
    configured = load_settings()
    return DicomStore(engine, DirectoryBlobStore(Path(configured.dicom_storage)), dicomweb_address(configured.base_url))
