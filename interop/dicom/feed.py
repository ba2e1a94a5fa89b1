"""The DICOM feed as the server installs it (the `ehr.feeds` entry point in setup.cfg): the `ehr dicom` command, and
its stored objects, sealed when protection is on."""
from app.feeds import Feed
from interop.dicom.cli import dicom
from interop.dicom.sealed import DicomSealing

DICOM = Feed("dicom", commands=(dicom,), sealed_stores=(DicomSealing(),))
