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
from interop.dicom.service import DicomStore


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
    engine = settings_engine()
    migrate.check_schema_current(engine)
    configured = load_settings()
    storage = Path(configured.dicom_storage)
    settings = ScpSettings(host, port, ae_title, tuple(allow_calling_ae), tls_cert, tls_key, max_associations)
    server = StorageServer(DicomStore(engine, DirectoryBlobStore(storage), dicomweb_address(configured.base_url)), settings)
    signal.signal(signal.SIGTERM, interrupt)
    click.echo(f"DICOM C-STORE SCP {ae_title} on {host}:{server.port}, objects under {storage}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        engine.dispose()


def interrupt(signal_number, frame) -> None:
    """SIGTERM stops the server as Ctrl-C does: associations under way are ended, what was acknowledged is stored."""
    raise KeyboardInterrupt
