"""Transaction and batch Bundles: many interactions in one request (FHIR R4 http.html#transaction)."""
from app.bundles.transaction import process_bundle

__all__ = ["process_bundle"]
