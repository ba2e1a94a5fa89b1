"""TLS for the feeds' listeners (MLLP, DICOM)."""
import ssl


def server_ssl_context(certificate: str | None, key: str | None) -> ssl.SSLContext | None:
    """The server side of TLS with a PEM certificate and its private key; None (plain TCP) without a certificate."""
    if not certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context
