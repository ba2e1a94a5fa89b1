"""The DICOM feed as the server installs it (the `ehr.feeds` entry point in setup.cfg): DICOMweb under `/dicomweb`,
the `ehr dicom` and `ehr dicom-quarantine` commands, and its stored objects, sealed when protection is on."""
from app.feeds import Feed
from interop.dicom.cli import dicom, dicom_quarantine
from interop.dicom.http import dicomweb
from interop.dicom.sealed import DicomSealing

DICOM = Feed("dicom", blueprints=(dicomweb,), commands=(dicom, dicom_quarantine), sealed_stores=(DicomSealing(),))
